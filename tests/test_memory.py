"""Acceptance tests of the memory model: KV bytes of every attention architecture, precisions,
eviction, shared prefixes, the per-GPU plan and tensor parallelism.

Every expected figure is a closed form written out here, a published figure (cited beside it,
ids refer to shared/reference/public_figures.yaml) or a value read from a raw Hugging Face
config.json in tests/data -- never a number copied from fleetsim.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsim.api import kv_cache_spec, kv_report, memory_plan
from fleetsim.catalog import model_names

DATA = Path(__file__).parent / "data"
KIB = 1024
GIB = 1 << 30

# Bits per stored element, from the formats' definitions (not from fleetsim.precision):
# llama.cpp block formats keep one fp16 scale per 32 elements: q8_0 = (32*8 + 16)/32 = 8.5,
# q4_0 = (32*4 + 16)/32 = 4.5; GPTQ/AWQ-style int4 keeps one fp16 scale per 128: 4.125.
BITS = {"bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "q8_0": 8.5, "q4_0": 4.5, "int4": 4.125}

PROPERTY = settings(deadline=None, max_examples=50)


def config(name: str) -> dict:
    """A raw Hugging Face config.json from tests/data (the text config for multimodal ones)."""
    raw = json.loads((DATA / f"{name}.config.json").read_text())
    return raw.get("text_config", raw)


def attention_bytes_per_token(layers, kv_heads, head_dim, key_bits=16, value_bits=16):
    """layers x kv_heads x head_dim x (key bytes + value bytes)."""
    return layers * kv_heads * head_dim * (key_bits + value_bits) / 8


def kv_bytes(model, context, *, generated=0, **spec):
    return kv_report(model, context, kv_cache_spec(**spec), generated_tokens=generated)["bytes_per_sequence"]


# ----------------------------------------------------------------------- bf16 bytes per token
# Published: Raschka's LLM Architecture Gallery, "KV cache / token (bf16)" column
# (public_figures ids kv_per_token_gpt2_xl, _llama3_8b, _deepseek_v3, _qwen3_32b).
GALLERY_KIB_PER_TOKEN = {"gpt2-xl": 300, "llama-3-8b": 128, "deepseek-v3": 68.6, "qwen3-32b": 256}


def test_gpt2_xl_bf16_bytes_per_token():
    c = config("gpt2-xl")  # MHA: n_layer 48, n_head 25, n_embd 1600 -> head_dim 64
    closed = attention_bytes_per_token(c["n_layer"], c["n_head"], c["n_embd"] // c["n_head"])
    assert closed == 48 * 25 * 64 * 2 * 2 == 307_200
    assert kv_report("gpt2-xl")["bytes_per_token"] == 307_200
    assert 307_200 / KIB == GALLERY_KIB_PER_TOKEN["gpt2-xl"]


def test_llama_3_8b_bf16_bytes_per_token():
    c = config("llama-3-8b")  # GQA: 32 layers, 8 KV heads, head_dim 4096/32 = 128
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    closed = attention_bytes_per_token(c["num_hidden_layers"], c["num_key_value_heads"], head_dim)
    assert closed == 32 * 8 * 128 * 2 * 2 == 131_072
    assert kv_report("llama-3-8b")["bytes_per_token"] == 131_072
    assert 131_072 / KIB == GALLERY_KIB_PER_TOKEN["llama-3-8b"]


def test_deepseek_v3_bf16_bytes_per_token_is_one_latent_per_layer():
    c = config("deepseek-v3")  # MLA: one latent of kv_lora_rank + qk_rope_head_dim, no K/V pair
    closed = c["num_hidden_layers"] * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 2
    assert closed == 61 * (512 + 64) * 2 == 70_272
    assert kv_report("deepseek-v3")["bytes_per_token"] == 70_272
    assert round(70_272 / KIB, 1) == GALLERY_KIB_PER_TOKEN["deepseek-v3"]  # 68.625 KiB


def test_qwen3_32b_bf16_bytes_per_token():
    c = config("qwen3-32b")  # GQA: 64 layers, 8 KV heads, head_dim 128 (explicit in the config)
    closed = attention_bytes_per_token(c["num_hidden_layers"], c["num_key_value_heads"], c["head_dim"])
    assert closed == 64 * 8 * 128 * 2 * 2 == 262_144
    assert kv_report("qwen3-32b")["bytes_per_token"] == 262_144
    assert 262_144 / KIB == GALLERY_KIB_PER_TOKEN["qwen3-32b"]


# ----------------------------------------------------------------------- whole sequences
def test_gpt2_xl_one_4000_token_conversation_is_1_2_gb():
    # "The Weight of Remembering" (public_figures kv_article_weight_of_remembering):
    # 300 KiB/token, a 4,000-token conversation ~ 1.2 GB.
    assert kv_bytes("gpt2-xl", 4000) == 307_200 * 4000 == 1_228_800_000


def test_opt_30b_h2o_paper_180_gb_for_128_sequences_of_1024():
    # H2O (Zhang et al. 2023, arXiv 2306.14048), public_figures kv_h2o_opt30b: 180 GB.
    # 2 (K, V) x 48 layers x 7168 hidden x 128 sequences x 1024 tokens x 2 bytes (fp16).
    c = config("opt-30b")
    closed = 2 * c["num_hidden_layers"] * c["hidden_size"] * 128 * 1024 * 2
    assert closed == 180_388_626_432
    per_sequence = kv_bytes("opt-30b", 1024, key_dtype="fp16", value_dtype="fp16")
    assert 128 * per_sequence == 180_388_626_432
    assert round(128 * per_sequence / 1e9) == 180


def test_llama_3_8b_q8_0_keys_q4_0_values_is_0_40625_of_bf16():
    # (8.5 + 4.5) / (16 + 16) = 13 / 32 = 0.40625, exactly, at any length.
    for n in (1, 1000, 8192):
        quant = kv_bytes("llama-3-8b", n, key_dtype="q8_0", value_dtype="q4_0")
        assert quant / kv_bytes("llama-3-8b", n) == (8.5 + 4.5) / 32 == 0.40625
        assert quant == attention_bytes_per_token(32, 8, 128, 8.5, 4.5) * n


def test_key_and_value_precisions_are_separate():
    # Swapping K and V precisions gives the same total; each side counts its own bits.
    kq = kv_bytes("llama-3-8b", 100, key_dtype="fp8", value_dtype="bf16")
    vq = kv_bytes("llama-3-8b", 100, key_dtype="bf16", value_dtype="fp8")
    assert kq == vq == attention_bytes_per_token(32, 8, 128, 8, 16) * 100


# ----------------------------------------------------------------------- Gemma 3: 5 local : 1 global
def test_gemma_3_27b_local_layers_stop_at_the_window_global_layers_grow():
    c = config("gemma-3-27b")  # 62 layers, 16 KV heads, head_dim 128, sliding_window 1024, 5:1
    layers, kv_heads, head_dim, window = (
        c["num_hidden_layers"],
        c["num_key_value_heads"],
        c["head_dim"],
        c["sliding_window"],
    )
    global_layers = layers // 6  # every 6th layer is global: 10 of 62
    local_layers = layers - global_layers  # 52
    assert (global_layers, local_layers, window) == (10, 52, 1024)
    local_cap = local_layers * kv_heads * head_dim * 2 * 2 * window
    assert local_cap == 52 * 16 * 128 * 2 * 2 * 1024 == 436_207_616  # = 416 MiB (kv_gemma3_27b_effective_derived)

    at_2k = kv_report("gemma-3-27b", 2048)["by_layer_kind"]
    at_32k = kv_report("gemma-3-27b", 32_768)["by_layer_kind"]
    assert at_2k["attention_window"]["layers"] == 52 and at_2k["attention_global"]["layers"] == 10
    assert at_2k["attention_window"]["bytes"] == at_32k["attention_window"]["bytes"] == local_cap
    # Global layers grow with length: 10 x 16 x 128 x 4 B = 80 KiB per token.
    assert at_32k["attention_global"]["bytes"] == 16 * at_2k["attention_global"]["bytes"]
    assert at_32k["attention_global"]["bytes"] == 10 * 16 * 128 * 4 * 32_768

    total_32k = kv_report("gemma-3-27b", 32_768)["bytes_per_sequence"]
    assert total_32k == local_cap + 10 * 16 * 128 * 4 * 32_768


def test_gemma_3_27b_below_the_window_every_layer_counts():
    report = kv_report("gemma-3-27b", 512)
    assert report["bytes_per_sequence"] == 62 * 16 * 128 * 4 * 512
    # the gallery's 496 KiB/token (kv_per_token_gemma3_27b) counts every layer: true below the window
    assert report["bytes_per_token"] == 496 * KIB


# ----------------------------------------------------------------------- Mamba: fixed state
def test_mamba_2_8b_state_is_independent_of_length():
    c = config("mamba-2.8b")  # n_layer 64, intermediate_size (d_inner) 5120, state_size 16, conv_kernel 4
    layers, d_inner, d_state, d_conv = c["n_layer"], c["intermediate_size"], c["state_size"], c["conv_kernel"]
    assert (layers, d_inner, d_state, d_conv) == (64, 5120, 16, 4)
    # conv state (d_conv - 1) x d_inner + SSM state d_inner x d_state, per layer, 2 bytes each
    closed = layers * ((d_conv - 1) * d_inner + d_inner * d_state) * 2
    assert closed == 12_451_840
    assert kv_bytes("mamba-2.8b", 1000) == kv_bytes("mamba-2.8b", 100_000) == closed
    # KV precisions do not touch an SSM state
    assert kv_bytes("mamba-2.8b", 1000, key_dtype="q4_0", value_dtype="q4_0") == closed


# ----------------------------------------------------------------------- eviction
LLAMA_3_8B_PER_TOKEN = 32 * 8 * 128 * 2 * 2  # 131,072 B
LLAMA_3_8B_PER_LAYER_TOKEN = 8 * 128 * 2 * 2  # 4,096 B


def test_h2o_caps_at_heavy_plus_recent_tokens():
    # H2O (Zhang et al. 2023): keep 200 heavy hitters + 200 recent tokens.
    for n in (400, 4000, 100_000):
        assert (
            kv_bytes("llama-3-8b", n, eviction="h2o", heavy_tokens=200, recent_tokens=200) == 400 * LLAMA_3_8B_PER_TOKEN
        )
    assert (
        kv_bytes("llama-3-8b", 300, eviction="h2o", heavy_tokens=200, recent_tokens=200) == 300 * LLAMA_3_8B_PER_TOKEN
    )


def test_streamingllm_caps_at_sinks_plus_window():
    # StreamingLLM (Xiao et al. 2024): 4 attention sinks + a window of 1,020 recent tokens.
    for n in (1024, 10_000, 200_000):
        got = kv_bytes("llama-3-8b", n, eviction="streamingllm", sink_tokens=4, window_tokens=1020)
        assert got == 1024 * LLAMA_3_8B_PER_TOKEN


def test_snapkv_compresses_the_prompt_and_keeps_generated_tokens():
    # SnapKV (Li et al. 2024): the 8,000-token prompt shrinks to the 1,024 budget, the 100
    # generated tokens are all kept.
    got = kv_bytes("llama-3-8b", 8000, generated=100, eviction="snapkv", budget_tokens=1024)
    assert got == 131_072 * (1024 + 100)
    # a prompt under the budget is kept whole
    assert kv_bytes("llama-3-8b", 500, generated=100, eviction="snapkv", budget_tokens=1024) == 131_072 * 600


@pytest.mark.parametrize("budget", [128, 1024, 2048])
def test_pyramidkv_mean_budget_over_layers(budget):
    # PyramidKV (Cai et al. 2024): per-layer budgets shrink with depth; their mean is B, so for a
    # prompt far beyond every budget the total is 32 layers x B x per-layer bytes, up to the
    # rounding of each layer's budget to whole tokens (at most half a token per layer).
    got = kv_bytes("llama-3-8b", 100 * budget, eviction="pyramidkv", budget_tokens=budget)
    expected = 32 * budget * LLAMA_3_8B_PER_LAYER_TOKEN
    assert abs(got - expected) <= 32 * 0.5 * LLAMA_3_8B_PER_LAYER_TOKEN


# ----------------------------------------------------------------------- shared prefix
def test_shared_prefix_is_stored_once_and_compressed_by_the_ratio():
    r = kv_report("llama-3-8b", 4096, kv_cache_spec(), shared_prefix_tokens=1024)
    assert r["shared_prefix_bytes"] == 1024 * 131_072
    assert r["bytes_per_sequence_beyond_shared_prefix"] == 3072 * 131_072
    c = kv_report("llama-3-8b", 4096, kv_cache_spec(prefix_compression_ratio=4), shared_prefix_tokens=1024)
    assert c["shared_prefix_bytes"] == 1024 * 131_072 // 4
    assert c["bytes_per_sequence_beyond_shared_prefix"] == 3072 * 131_072


# ----------------------------------------------------------------------- the per-GPU plan
def test_llama_3_8b_on_h100_kv_capacity_matches_vllm():
    # Published vLLM measurement, Llama-3.1-8B-Instruct (same architecture as Llama-3-8B: 32 layers,
    # 8 KV heads, head_dim 128), TP 1, one H100 (79.18 GiB), default gpu-memory-utilization 0.9:
    #   "Available KV cache memory: 51.38 GiB"
    # github.com/llm-d/llm-d-benchmark/blob/259334868c5075da530cc6c90b43fceb11b6e6a7/
    #   config_explorer/empirical-vllm-memory-results.md  (section 5, Llama-3.1-8B-Instruct)
    # vLLM divides that into 16-token blocks of 16 x 131,072 B = 2 MiB and reports
    # "GPU KV cache size: blocks x 16 tokens":
    vllm_blocks = int(51.38 * GIB // (16 * 131_072))
    vllm_tokens = vllm_blocks * 16
    assert 420_000 < vllm_tokens < 421_000  # 420,896 tokens
    plan = memory_plan("llama-3-8b", "h100-sxm", gpu_memory_utilization=0.9)
    assert 0.9 * vllm_tokens <= plan.kv_capacity_tokens <= 1.1 * vllm_tokens, (
        f"fleetsim {plan.kv_capacity_tokens:,} tokens vs vLLM {vllm_tokens:,} (+-10%)"
    )


def test_plan_splits_one_gpu_into_weights_workspace_and_pool():
    plan = memory_plan("llama-3-8b", "h100-sxm", context_tokens=4096)
    assert plan.usable_bytes_per_gpu == int(plan.gpu_memory_bytes * 0.9)
    assert (
        plan.weights_bytes_per_gpu + plan.workspace_bytes_per_gpu + plan.kv_pool_bytes_per_gpu
        == plan.usable_bytes_per_gpu
    )
    # Weights: the published 8,030,261,248 parameters (HF safetensors total) x 2 bytes.
    assert plan.weights_bytes_per_gpu == 8_030_261_248 * 2
    # Paged: 16-token blocks of 16 x 131,072 B; capacity is whole blocks.
    assert plan.block_bytes_per_gpu == 16 * 131_072
    assert plan.kv_blocks == plan.kv_pool_bytes_per_gpu // (16 * 131_072)
    assert plan.kv_capacity_tokens == 16 * plan.kv_blocks
    # A 4,096-token sequence holds 256 blocks.
    assert plan.max_concurrent_sequences == plan.kv_blocks // 256


def test_llama_3_70b_needs_two_h100s_and_the_tp2_plan_halves_weights():
    from fleetsim.errors import CapacityError

    # 70,553,706,496 parameters x 2 B = 141 GB > one 80 GB H100.
    with pytest.raises(CapacityError, match=r"tp=2"):
        memory_plan("llama-3-70b", "h100-sxm")
    plan = memory_plan("llama-3-70b", "h100-sxm", tp=2)
    assert plan.weights_bytes_per_gpu == 70_553_706_496 * 2 // 2
    # 8 KV heads split 4 per rank: 80 x 4 x 128 x 4 B per token per GPU, 16-token blocks.
    assert plan.block_bytes_per_gpu == 16 * 80 * 4 * 128 * 4
    assert plan.kv_capacity_tokens > 0 and plan.max_concurrent_sequences >= 1


def test_tp_splits_kv_heads_replicates_them_past_kv_heads_and_replicates_the_mla_latent():
    # Llama 3 8B has 8 KV heads: at tp=16 each rank still holds one whole head (replicated twice).
    assert memory_plan("llama-3-8b", "h100-sxm", tp=2).block_bytes_per_gpu == 16 * 32 * 4 * 128 * 4
    assert memory_plan("llama-3-8b", "h100-sxm", tp=16).block_bytes_per_gpu == 16 * 32 * 1 * 128 * 4
    # DeepSeek-V3's latent (512 + 64 per layer) is the same on every rank: no split by tp.
    plan = memory_plan("deepseek-v3", "h200", tp=8, weight_dtype="fp8")
    assert plan.block_bytes_per_gpu == 16 * 61 * (512 + 64) * 2


# ----------------------------------------------------------------------- HF config.json by path
# configs in tests/data that are catalog entries (others, like nemotron-h-56b, are reader tests only)
CONFIG_MODELS = sorted(
    name for p in DATA.glob("*.config.json") if (name := p.name.removesuffix(".config.json")) in model_names()
)


@pytest.mark.parametrize("name", CONFIG_MODELS)
def test_config_json_by_path_gives_the_catalog_kv_bytes(name):
    path = str(DATA / f"{name}.config.json")
    for n in (1, 1000, 5000, 100_000):
        assert kv_bytes(path, n) == kv_bytes(name, n), f"{name} at {n} tokens"
    assert kv_bytes(path, 3000, key_dtype="fp8", value_dtype="q4_0") == kv_bytes(
        name, 3000, key_dtype="fp8", value_dtype="q4_0"
    )


# (model, gpu, tp, weight dtype): a deployment that fits, for each config in tests/data.
PLANS = {
    "gpt2-xl": ("h100-sxm", 1, "bf16"),
    "llama-3-8b": ("h100-sxm", 1, "bf16"),
    "llama-3.1-8b": ("h100-sxm", 1, "bf16"),
    "mistral-7b-v0.1": ("h100-sxm", 1, "bf16"),
    "mamba-2.8b": ("h100-sxm", 1, "bf16"),
    "qwen3-32b": ("h100-sxm", 1, "bf16"),
    "mixtral-8x7b": ("h100-sxm", 2, "bf16"),
    "llama-3-70b": ("h100-sxm", 2, "bf16"),
    "llama-3.1-70b": ("h100-sxm", 2, "bf16"),
    "llama-2-70b": ("h100-sxm", 2, "bf16"),
    "llama-3.1-405b": ("h200", 8, "bf16"),
    "gemma-3-27b": ("h100-sxm", 1, "bf16"),
    "jamba-1.5-mini": ("h100-sxm", 2, "bf16"),
    "opt-30b": ("h100-sxm", 1, "bf16"),
    "deepseek-v3": ("h200", 8, "fp8"),
    "deepseek-v3.2": ("h200", 8, "fp8"),
    "deepseek-v2-lite": ("h100-sxm", 1, "bf16"),
    "gpt-oss-120b": ("h200", 2, "bf16"),
    "gpt-oss-20b": ("h100-sxm", 1, "bf16"),
    "llama-4-scout": ("h200", 2, "bf16"),
    "qwen3-next-80b-a3b": ("h200", 2, "bf16"),
    "qwen3.5-35b-a3b": ("h100-sxm", 2, "bf16"),
    "qwen3.5-27b": ("h100-sxm", 1, "bf16"),
    "nemotron-3-nano-30b-a3b": ("h100-sxm", 1, "bf16"),
    "phi-3-mini-4k": ("h100-sxm", 1, "bf16"),
    "granite-3.3-8b": ("h100-sxm", 1, "bf16"),
    "gemma-3n-e4b": ("h100-sxm", 1, "bf16"),
    "gemma-4-26b-a4b": ("h100-sxm", 1, "bf16"),
}
# Catalog entries whose total_params is the publisher's rounded or multimodal figure rather than
# the count a config.json yields (opt-30b "30B", deepseek-v3 "671B", jamba-1.5-mini "52B",
# gemma-3-27b 27,433M including the 417M vision encoder): their weights legitimately differ.
PUBLISHED_COUNT = {
    "opt-30b",
    "deepseek-v3",
    "jamba-1.5-mini",
    "gemma-3-27b",
    # rounded published totals: gpt-oss (116.83B, 20.91B), DeepSeek-V2-Lite 15.7B, Nemotron 3 Nano 31.6B;
    # Llama 4 Scout's 109B includes its vision encoder (the text decoder is 107.8B)
    "gpt-oss-120b",
    "gpt-oss-20b",
    "deepseek-v2-lite",
    "nemotron-3-nano-30b-a3b",
    "llama-4-scout",
    "gemma-4-26b-a4b",  # 25.2B as published
}


@pytest.mark.parametrize("name", CONFIG_MODELS)
def test_config_json_by_path_gives_the_catalog_memory_plan(name):
    gpu, tp, wdtype = PLANS[name]
    by_name = memory_plan(name, gpu, tp=tp, weight_dtype=wdtype, context_tokens=4096).as_dict()
    by_path = memory_plan(
        str(DATA / f"{name}.config.json"), gpu, tp=tp, weight_dtype=wdtype, context_tokens=4096
    ).as_dict()
    if name not in PUBLISHED_COUNT:
        assert by_path == by_name
        return
    for key in ("block_bytes_per_gpu", "sequence_bytes_per_gpu", "workspace_bytes_per_gpu", "usable_bytes_per_gpu"):
        assert by_path[key] == by_name[key], key
    assert by_path["weights_bytes_per_gpu"] == pytest.approx(by_name["weights_bytes_per_gpu"], rel=0.02)


# ----------------------------------------------------------------------- properties
DTYPES = sorted(BITS)
EVICTIONS = st.sampled_from(
    [
        {},
        {"eviction": "h2o", "heavy_tokens": 64, "recent_tokens": 192},
        {"eviction": "streamingllm", "sink_tokens": 4, "window_tokens": 508},
        {"eviction": "snapkv", "budget_tokens": 512},
        {"eviction": "pyramidkv", "budget_tokens": 512},
    ]
)


@PROPERTY
@given(
    model=st.sampled_from(model_names()),
    a=st.integers(1, 300_000),
    b=st.integers(1, 300_000),
    k=st.sampled_from(DTYPES),
    v=st.sampled_from(DTYPES),
    ev=EVICTIONS,
)
def test_bytes_never_decrease_with_length(model, a, b, k, v, ev):
    short, long_ = sorted((a, b))
    assert kv_bytes(model, short, key_dtype=k, value_dtype=v, **ev) <= kv_bytes(
        model, long_, key_dtype=k, value_dtype=v, **ev
    )


@PROPERTY
@given(
    model=st.sampled_from(model_names()),
    n=st.integers(1, 200_000),
    a=st.sampled_from(DTYPES),
    b=st.sampled_from(DTYPES),
    other=st.sampled_from(DTYPES),
)
def test_lower_precision_never_increases_bytes(model, n, a, b, other):
    low, high = sorted((a, b), key=BITS.get)  # bits(low) <= bits(high)
    assert kv_bytes(model, n, key_dtype=low, value_dtype=other) <= kv_bytes(model, n, key_dtype=high, value_dtype=other)
    assert kv_bytes(model, n, key_dtype=other, value_dtype=low) <= kv_bytes(model, n, key_dtype=other, value_dtype=high)
    if BITS[a] == BITS[b]:  # fp8 = int8, bf16 = fp16
        assert kv_bytes(model, n, key_dtype=a, value_dtype=other) == kv_bytes(model, n, key_dtype=b, value_dtype=other)


@PROPERTY
@given(
    tps=st.sampled_from([(2, 4), (4, 8), (2, 8)]),
    k=st.sampled_from(DTYPES),
    v=st.sampled_from(DTYPES),
    util=st.sampled_from([0.8, 0.9, 0.95]),
)
def test_more_tp_ranks_never_reduce_replica_kv_capacity(tps, k, v, util):
    small, large = tps
    plans = [
        memory_plan(
            "llama-3-70b", "h200", tp=tp, kv=kv_cache_spec(key_dtype=k, value_dtype=v), gpu_memory_utilization=util
        )
        for tp in (small, large)
    ]
    assert plans[1].kv_capacity_tokens >= plans[0].kv_capacity_tokens
    assert plans[1].weights_bytes_per_gpu < plans[0].weights_bytes_per_gpu
    assert plans[1].weights_bytes_per_gpu == math.ceil(70_553_706_496 * 2 / large)


# ----------------------------------------------------------------------- layer groups' FLOPs
def test_attention_flops_per_context_token_by_layer_kind():
    from fleetsim.catalog import load_model

    # GQA: QK^T and PV, a multiply-add per head-dim element each: 4 x q_heads x head_dim per layer
    assert load_model("llama-3-8b").attention_flops_per_context_token() == 4 * 32 * 128 * 32
    # MLA, absorbed: 2 x q_heads x (2 x kv_lora_rank + qk_rope_head_dim) per layer
    assert load_model("deepseek-v3").attention_flops_per_context_token() == 2 * 128 * (2 * 512 + 64) * 61
    mamba = load_model("mamba-2.8b")
    assert mamba.attention_flops_per_context_token() == 0
    # Mamba-1: ~6 FLOPs per state element (decay, input, readout) + a multiply-add per conv tap
    assert mamba.state_flops_per_token() == 64 * (6 * 5120 * 16 + 2 * 5120 * 4)
    assert load_model("llama-3-8b").state_flops_per_token() == 0


def test_layer_flops_agree_with_the_step_model_where_it_knows_the_kind():
    import fleetsim.perf
    from fleetsim.catalog import load_model

    attention_flops_per_context_token = getattr(fleetsim.perf, "attention_flops_per_context_token", None)
    if attention_flops_per_context_token is None:
        pytest.skip("the step model reads the layer groups' own methods now")
    for name in model_names():
        arch = load_model(name)
        if {g.kind for g in arch.layers} <= {"attention", "mla", "ssm"}:
            assert arch.attention_flops_per_context_token() == attention_flops_per_context_token(arch), name


def test_windows_cap_the_tokens_a_query_attends_to():
    from fleetsim.catalog import load_model

    arch = load_model("gemma-3-27b")  # 52 local layers (window 1024) + 10 global, 32 heads of 128
    per_layer = 4 * 32 * 128
    at = sum(g.attention_flops_per_query_token(32_768) for g in arch.layers)
    assert at == per_layer * (52 * 1024 + 10 * 32_768)
