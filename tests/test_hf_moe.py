"""gpt-oss and Llama 4 read from their published config.json files (tests/data).

Every expected figure is written out from the config's fields (c[...]) -- the tensor shapes of the
family's modules -- or is the publisher's stated count, cited beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetsim.api import kv_report
from fleetsim.catalog import architecture_from_hf_config, load_model

DATA = Path(__file__).parent / "data"
BF16 = 2


def config(name: str) -> dict:
    raw = json.loads((DATA / f"{name}.config.json").read_text())
    return raw.get("text_config", raw)


def estimate(name: str):
    return architecture_from_hf_config(json.loads((DATA / f"{name}.config.json").read_text()), name=name)


def kv_bytes(model: str, context: int) -> int:
    return kv_report(model, context)["bytes_per_sequence"]


# ------------------------------------------------------------------------------- gpt-oss
def gpt_oss_counts(c: dict) -> tuple[int, int]:
    """(total, active) from a gpt-oss config: biased q/k/v/o, one sink logit per head, biased
    experts (gate_up: hidden -> 2 x intermediate; down) and router, untied embeddings."""
    h, q, kv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    e, k, i, v, n = (
        c["num_local_experts"],
        c["experts_per_token"],
        c["intermediate_size"],
        c["vocab_size"],
        c["num_hidden_layers"],
    )
    attention = (h * q * hd + q * hd) + 2 * (h * kv * hd + kv * hd) + (q * hd * h + h) + q  # + sinks
    expert = (h * 2 * i + 2 * i) + (i * h + h)
    router = h * e + e
    layer = attention + 2 * h + e * expert + router
    total = v * h + v * h + h + n * layer  # token table, LM head, final norm
    active = total - v * h - n * (e - k) * expert  # the token table is a lookup; k of e experts work
    return total, active


@pytest.mark.parametrize(
    ("name", "published_total", "published_active"),
    [
        # OpenAI gpt-oss model card (Aug 2025), Table 1
        ("gpt-oss-120b", 116.83e9, 5.13e9),
        ("gpt-oss-20b", 20.91e9, 3.61e9),
    ],
)
def test_gpt_oss_parameters(name, published_total, published_active):
    total, active = gpt_oss_counts(config(name))
    arch = estimate(name)
    assert (arch.total_params, arch.active_params) == (total, active)
    # the model card's figures, given to 0.01B, agree to within that rounding
    assert total == pytest.approx(published_total, abs=0.006e9)
    assert active == pytest.approx(published_active, abs=0.006e9)
    assert (arch.moe.num_experts, arch.moe.experts_per_token, arch.moe.shared_experts) == (
        config(name)["num_local_experts"],
        4,
        0,
    )


@pytest.mark.parametrize(("name", "gallery_kib"), [("gpt-oss-120b", 72), ("gpt-oss-20b", 48)])
def test_gpt_oss_kv_bytes_alternate_sliding_and_full(name, gallery_kib):
    c = config(name)
    per_layer = c["num_key_value_heads"] * c["head_dim"] * 2 * BF16  # K and V, no KV for the sinks
    n_layers, window = c["num_hidden_layers"], c["sliding_window"]
    sliding = c["layer_types"].count("sliding_attention")
    assert (window, sliding) == (128, n_layers // 2)
    # below the window every layer holds every token: the gallery's figure (public_figures
    # kv_per_token_gpt_oss_120b / _20b counts every layer)
    assert kv_bytes(name, 100) == n_layers * per_layer * 100
    assert n_layers * per_layer == gallery_kib * 1024
    # beyond it the sliding layers stop at 128 tokens
    n = 32_768
    assert kv_bytes(name, n) == (n_layers - sliding) * per_layer * n + sliding * per_layer * window


def test_gpt_oss_layers_are_in_depth_order():
    arch = load_model("gpt-oss-120b")
    assert [g.window_tokens for g in arch.layers[:4]] == [128, None, 128, None]
    assert arch.count_layers("attention") == 36


# ------------------------------------------------------------------------------- Llama 4
def test_llama_4_scout_parameters():
    c = config("llama-4-scout")
    h, q, kv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    e, k, i, v, n = (
        c["num_local_experts"],
        c["num_experts_per_tok"],
        c["intermediate_size"],
        c["vocab_size"],
        c["num_hidden_layers"],
    )
    assert c["interleave_moe_layer_step"] == 1  # every layer is MoE
    attention = h * q * hd + 2 * h * kv * hd + q * hd * h  # no biases; q/k L2 norms have no weights
    expert = 3 * h * i  # the shared expert has the same width
    layer = attention + 2 * h + e * expert + expert + h * e
    total = 2 * v * h + h + n * layer
    active = total - v * h - n * (e - k) * expert
    arch = estimate("llama-4-scout")
    assert (arch.total_params, arch.active_params) == (total, active)
    # Meta: 109B total (with the vision encoder) and 17B active, which counts the token table
    assert total == pytest.approx(109e9, rel=0.02)
    assert active + v * h == pytest.approx(17e9, rel=0.02)
    assert (arch.moe.num_experts, arch.moe.experts_per_token, arch.moe.moe_layers, arch.moe.shared_experts) == (
        16,
        1,
        48,
        1,
    )


def test_llama_4_scout_chunked_layers_hold_one_chunk_the_nope_layers_grow():
    c = config("llama-4-scout")
    per_layer = c["num_key_value_heads"] * c["head_dim"] * 2 * BF16
    n_layers, chunk = c["num_hidden_layers"], c["attention_chunk_size"]
    global_layers = n_layers // 4  # Llama4TextConfig: every 4th layer is NoPE and attends globally
    chunked = n_layers - global_layers
    assert kv_bytes("llama-4-scout", 1000) == n_layers * per_layer * 1000  # below one chunk
    # the gallery's Llama 4 Maverick (same attention geometry) lists 192 KiB/token, every layer
    assert n_layers * per_layer == 192 * 1024
    n = 32_768
    assert kv_bytes("llama-4-scout", n) == global_layers * per_layer * n + chunked * per_layer * chunk
    arch = load_model("llama-4-scout")
    assert [g.chunk_tokens for g in arch.layers[:2]] == [chunk, None]
    assert (arch.layers[0].count, arch.layers[1].count) == (3, 1)


def test_llama_4_explicit_no_rope_layers_override_the_default_cadence():
    raw = json.loads((DATA / "llama-4-scout.config.json").read_text())
    raw["text_config"] = dict(raw["text_config"], no_rope_layers=[1] * 47 + [0])
    arch = architecture_from_hf_config(raw, name="x")
    assert [(g.count, g.chunk_tokens) for g in arch.layers] == [(47, 8192), (1, None)]
