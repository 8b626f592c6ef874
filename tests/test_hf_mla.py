"""DeepSeek-V2-Lite and DeepSeek-V3.2 read from their published config.json files (tests/data).

Expected figures are written out from the config's fields or are published counts cited beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetsim.api import kv_cache_spec, kv_report
from fleetsim.catalog import architecture_from_hf_config, load_model
from fleetsim.errors import CatalogError

DATA = Path(__file__).parent / "data"


def config(name: str) -> dict:
    return json.loads((DATA / f"{name}.config.json").read_text())


def deepseek_attention(c: dict) -> int:
    """MLA projections of one layer (q via a low-rank latent when q_lora_rank is set)."""
    h, heads = c["hidden_size"], c["num_attention_heads"]
    nope, rope, v_dim, kv_lora = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    q_lora = c["q_lora_rank"]
    if q_lora is None:
        q = h * heads * (nope + rope)
    else:
        q = h * q_lora + q_lora + q_lora * heads * (nope + rope)  # q_a, its norm, q_b
    kv = h * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v_dim)  # kv_a, its norm, kv_b
    return q + kv + heads * v_dim * h  # + o_proj


def deepseek_counts(c: dict, extra_attention: int = 0) -> tuple[int, int]:
    h, v, n = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
    e, k, shared = c["n_routed_experts"], c["num_experts_per_tok"], c["n_shared_experts"]
    dense_layers = c["first_k_dense_replace"]
    expert = 3 * h * c["moe_intermediate_size"]
    router = h * e + (e if c["topk_method"] == "noaux_tc" else 0)  # + the score-correction bias
    moe_layers = n - dense_layers
    total = (
        2 * v * h
        + h
        + n * (deepseek_attention(c) + extra_attention + 2 * h)
        + dense_layers * 3 * h * c["intermediate_size"]
        + moe_layers * ((e + shared) * expert + router)
    )
    active = total - v * h - moe_layers * (e - k) * expert
    return total, active


def test_deepseek_v2_lite_active_excludes_the_token_table():
    c = config("deepseek-v2-lite")
    total, active = deepseek_counts(c)
    arch = architecture_from_hf_config(c, name="v2-lite")
    assert (arch.total_params, arch.active_params) == (total, active)
    # DeepSeek-V2 paper (arXiv 2405.04434): V2-Lite has 15.7B parameters, 2.4B activated per token.
    # Counting the 0.21B token table as active put the estimate 10.9% over; without it, 2.1%.
    assert total == pytest.approx(15.7e9, rel=0.01)
    assert active == pytest.approx(2.4e9, rel=0.025)
    assert (active + c["vocab_size"] * c["hidden_size"]) / 2.4e9 > 1.10


def test_deepseek_v2_lite_kv_is_one_latent_per_layer():
    c = config("deepseek-v2-lite")
    per_token = c["num_hidden_layers"] * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 2
    assert per_token == 27 * 576 * 2 == 31_104
    assert kv_report("deepseek-v2-lite", 4096)["bytes_per_sequence"] == per_token * 4096


def indexer_params(c: dict) -> int:
    """One layer's lightning indexer: wq_b (q latent -> heads x dim), wk, its LayerNorm, weights_proj."""
    h, heads, dim = c["hidden_size"], c["index_n_heads"], c["index_head_dim"]
    return c["q_lora_rank"] * heads * dim + h * dim + 2 * dim + h * heads


def test_deepseek_v3_2_parameters_are_v3_plus_the_indexers():
    c = config("deepseek-v3.2")
    total, active = deepseek_counts(c, extra_attention=indexer_params(c))
    arch = architecture_from_hf_config(c, name="v3.2")
    assert (arch.total_params, arch.active_params) == (total, active)
    v3_total, _ = deepseek_counts(config("deepseek-v3"))
    assert total - v3_total == c["num_hidden_layers"] * indexer_params(c)  # same config otherwise
    assert arch.native_dtype == "fp8"


def test_deepseek_v3_2_kv_is_the_latent_plus_an_fp8_index_key():
    c = config("deepseek-v3.2")
    layers, latent = c["num_hidden_layers"], c["kv_lora_rank"] + c["qk_rope_head_dim"]
    # vLLM/SGLang store the index key as fp8 (1 byte per element) with one fp32 scale per 128
    index_bytes = c["index_head_dim"] * 1 + (c["index_head_dim"] // 128) * 4
    assert index_bytes == 132
    bf16 = kv_report("deepseek-v3.2", 1000)
    assert bf16["bytes_per_sequence"] == layers * (latent * 2 + index_bytes) * 1000
    assert bf16["by_layer_kind"]["dsa_indexer"] == {"layers": 61, "bytes": layers * index_bytes * 1000}
    # an fp8 KV cache halves the latent; the index key is fp8 already
    fp8 = kv_report("deepseek-v3.2", 1000, kv_cache_spec(key_dtype="fp8", value_dtype="fp8"))
    assert fp8["bytes_per_sequence"] == layers * (latent * 1 + index_bytes) * 1000
    # every token's latent stays cached: top-k selection bounds the attention, not the cache
    assert kv_report("deepseek-v3.2", 100_000)["bytes_per_sequence"] == layers * (latent * 2 + index_bytes) * 100_000


def test_deepseek_v3_2_attention_flops_stop_growing_past_index_topk():
    (g,) = load_model("deepseek-v3.2").layers
    c = config("deepseek-v3.2")
    mla = 2 * c["num_attention_heads"] * (2 * c["kv_lora_rank"] + c["qk_rope_head_dim"]) * c["num_hidden_layers"]
    index = 2 * c["index_n_heads"] * c["index_head_dim"] * c["num_hidden_layers"]
    assert g.attention_flops_per_context_token() == mla + index
    topk = c["index_topk"]
    assert g.attention_flops_per_query_token(1000) == (mla + index) * 1000
    assert g.attention_flops_per_query_token(100_000) == index * 100_000 + mla * topk
    assert g.state_flops_per_token() == 0


def test_the_indexer_needs_the_q_latent():
    c = dict(config("deepseek-v3.2"), q_lora_rank=None)
    with pytest.raises(CatalogError, match="'q_lora_rank'"):
        architecture_from_hf_config(c, name="bad")
