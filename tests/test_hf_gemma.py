"""Gemma 3n (E4B text decoder: transformers' Gemma3nTextConfig defaults, tests/data).

Expected figures are written out from the config's fields and the shapes of Gemma3nTextModel
(transformers) / vLLM's gemma3n.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetsim.api import kv_report
from fleetsim.catalog import architecture_from_hf_config, load_model
from fleetsim.errors import CatalogError

DATA = Path(__file__).parent / "data"
BF16 = 2


def config() -> dict:
    return json.loads((DATA / "gemma-3n-e4b.config.json").read_text())


def test_gemma_3n_parameters_count_the_per_layer_embeddings_in_the_total_only():
    c = config()
    h, n, v = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    q, kv, hd, i = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["intermediate_size"]
    ple, ple_vocab, streams, rank = (
        c["hidden_size_per_layer_input"],
        c["vocab_size_per_layer_input"],
        c["altup_num_inputs"],
        c["laurel_rank"],
    )
    ple_table = ple_vocab * n * ple
    model = (
        v * h  # token table, tied to the LM head
        + ple_table
        + h * n * ple  # per_layer_model_projection
        + ple  # its norm
        + 2 * (streams - 1) * h * h  # altup_projections, altup_unembed_projections
        + h  # final norm
    )
    layer = (
        h * q * hd
        + 2 * h * kv * hd
        + q * hd * h
        + 2 * hd  # q/k/v/o, q_norm, k_norm (v_norm has no weight)
        + 3 * h * i  # gate, up, down
        + 4 * h  # input, post-attention, pre- and post-feedforward norms
        + h
        + streams * streams
        + streams * streams**2
        + h * streams
        + h  # AltUp
        + 2 * h * rank
        + h  # LAuReL
        + 2 * h * ple
        + h  # per-layer input gate, projection, norm
    )
    total = model + n * layer
    arch = architecture_from_hf_config(c, name="e4b")
    assert arch.total_params == total
    assert arch.active_params == total - ple_table  # the per-layer table is looked up, not multiplied
    assert ple_table == 262_144 * 35 * 256


def test_kv_shared_layers_store_no_kv():
    c = config()
    n, shared = c["num_hidden_layers"], c["num_kv_shared_layers"]
    own = c["layer_types"][: n - shared]
    sliding, full = own.count("sliding_attention"), own.count("full_attention")
    assert (sliding, full) == (16, 4)  # layers 0-19: every 5th is global
    per_layer = c["num_key_value_heads"] * c["head_dim"] * 2 * BF16
    window = c["sliding_window"]
    assert kv_report("gemma-3n-e4b", 500)["bytes_per_sequence"] == (sliding + full) * per_layer * 500
    n_tokens = 32_768
    expected = full * per_layer * n_tokens + sliding * per_layer * window
    assert kv_report("gemma-3n-e4b", n_tokens)["bytes_per_sequence"] == expected
    arch = load_model("gemma-3n-e4b")
    assert arch.count_layers("attention_kv_shared") == shared
    assert arch.count_layers("attention") == n - shared


def test_kv_shared_layers_still_attend():
    arch = load_model("gemma-3n-e4b")
    c = config()
    per_layer = 4 * c["num_attention_heads"] * c["head_dim"]
    assert arch.attention_flops_per_context_token() == per_layer * c["num_hidden_layers"]
    shared = [g for g in arch.layers if g.kind == "attention_kv_shared"]
    window = c["sliding_window"]
    at_4k = sum(g.attention_flops_per_query_token(4096) for g in shared)
    sliding = sum(g.count for g in shared if g.window_tokens == window)
    assert at_4k == per_layer * (sliding * window + (len(c["layer_types"][20:]) - sliding) * 4096)


def test_sharing_needs_an_earlier_layer_of_each_type():
    c = dict(config(), num_kv_shared_layers=33)  # only layers 0 and 1 (both sliding) keep their KV
    with pytest.raises(CatalogError, match="'num_kv_shared_layers' = 33.*no earlier full_attention layer"):
        architecture_from_hf_config(c, name="bad")


def test_per_layer_intermediate_sizes():
    c = dict(config(), intermediate_size=[8192] * 35)
    wider = architecture_from_hf_config(config(), name="a").total_params
    narrower = architecture_from_hf_config(c, name="b").total_params
    assert wider - narrower == 35 * 3 * 2048 * (16_384 - 8192)


# ------------------------------------------------------------------------------- Gemma 4
def gemma4_config() -> dict:
    return json.loads((DATA / "gemma-4-26b-a4b.config.json").read_text())["text_config"]


def test_gemma_4_26b_a4b_parameters():
    c = gemma4_config()
    h, n, v = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    q, hd, kv = c["num_attention_heads"], c["head_dim"], c["num_key_value_heads"]
    g_hd, g_kv = c["global_head_dim"], c["num_global_key_value_heads"]
    e, k, moe_i, i = c["num_experts"], c["top_k_experts"], c["moe_intermediate_size"], c["intermediate_size"]
    assert c["attention_k_eq_v"] and c["hidden_size_per_layer_input"] == 0 and c["num_kv_shared_layers"] == 0
    full = c["layer_types"].count("full_attention")
    sliding = n - full
    local = h * q * hd + 2 * h * kv * hd + q * hd * h + 2 * hd  # q/k/v/o, q_norm, k_norm
    glob = h * q * g_hd + h * g_kv * g_hd + q * g_hd * h + 2 * g_hd  # no v_proj: values reuse the keys
    expert = 3 * h * moe_i
    # dense GeGLU MLP + 4 norms; router (proj, scale, per-expert scale), experts, 3 more norms
    per_layer = 3 * h * i + 4 * h + (h * e + h + e) + e * expert + 3 * h
    total = v * h + h + sliding * local + full * glob + n * per_layer  # tied head; final norm
    active = total - n * (e - k) * expert  # tied: the token table is multiplied as the LM head
    arch = architecture_from_hf_config(json.loads((DATA / "gemma-4-26b-a4b.config.json").read_text()), name="g4")
    assert (arch.total_params, arch.active_params) == (total, active)
    # Google's Gemma 4 model card: 25.2B total, 3.8B active (the vision encoder is separate)
    assert total == pytest.approx(25.2e9, abs=0.05e9)
    assert active == pytest.approx(3.8e9, abs=0.05e9)


def test_gemma_4_full_layers_have_their_own_head_geometry():
    c = gemma4_config()
    local = c["num_key_value_heads"] * c["head_dim"] * 2 * BF16  # K and V cached, 8 x 256
    glob = c["num_global_key_value_heads"] * c["global_head_dim"] * 2 * BF16  # 2 x 512: K = V, both cached
    full = c["layer_types"].count("full_attention")
    sliding = c["num_hidden_layers"] - full
    window = c["sliding_window"]
    assert (sliding, full, window) == (25, 5, 1024)
    assert kv_report("gemma-4-26b-a4b", 1000)["bytes_per_sequence"] == (sliding * local + full * glob) * 1000
    n = 32_768
    assert kv_report("gemma-4-26b-a4b", n)["bytes_per_sequence"] == full * glob * n + sliding * local * window
    arch = load_model("gemma-4-26b-a4b")
    assert {(g.kv_heads, g.head_dim, g.window_tokens) for g in arch.layers} == {(8, 256, 1024), (2, 512, None)}
