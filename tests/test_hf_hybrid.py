"""Qwen3-Next, Qwen3.5 and Nemotron-H read from their published config.json files (tests/data).

Expected figures are written out from the config's fields -- the tensor shapes of the family's
modules -- or are the publisher's stated counts, cited beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetsim.api import kv_report, memory_plan
from fleetsim.catalog import architecture_from_hf_config, load_model
from fleetsim.errors import CatalogError, SpecError
from fleetsim.spec.kvcache import KvCacheSpec

DATA = Path(__file__).parent / "data"
BF16 = 2


def raw(name: str) -> dict:
    return json.loads((DATA / f"{name}.config.json").read_text())


def config(name: str) -> dict:
    r = raw(name)
    return r.get("text_config", r)


def kv_bytes(model: str, context: int, **spec) -> int:
    return kv_report(model, context, KvCacheSpec(**spec))["bytes_per_sequence"]


# ------------------------------------------------------------------ Gated DeltaNet (Qwen)
def gdn_shapes(c: dict) -> dict:
    kh, vh, dk, dv = (
        c["linear_num_key_heads"],
        c["linear_num_value_heads"],
        c["linear_key_head_dim"],
        c["linear_value_head_dim"],
    )
    return {
        "keys": kh * dk,
        "values": vh * dv,
        "value_heads": vh,
        "dk": dk,
        "dv": dv,
        "kernel": c["linear_conv_kernel_dim"],
    }


def gdn_params(c: dict) -> int:
    """in_proj for q, k, v and the gate z; beta and alpha per value head; the depthwise conv over
    q, k, v; dt_bias and A_log; the gated RMSNorm; out_proj."""
    h, s = c["hidden_size"], gdn_shapes(c)
    conv_channels = 2 * s["keys"] + s["values"]
    return (
        h * (2 * s["keys"] + 2 * s["values"])
        + h * 2 * s["value_heads"]
        + conv_channels * s["kernel"]
        + 2 * s["value_heads"]
        + s["dv"]
        + s["values"] * h
    )


def gated_attention_params(c: dict) -> int:
    """q_proj also yields the sigmoid output gate (2 x q_heads x head_dim); q/k RMSNorm per head."""
    h, q, kv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    return h * 2 * q * hd + 2 * h * kv * hd + q * hd * h + 2 * hd


def gdn_state_bytes(c: dict, state_bytes: int = BF16) -> int:
    """One sequence, one layer: conv state (kernel - 1) x (q, k, v channels) + the recurrent state
    value_heads x key_dim x value_dim."""
    s = gdn_shapes(c)
    conv = (s["kernel"] - 1) * (2 * s["keys"] + s["values"])
    return (conv + s["value_heads"] * s["dk"] * s["dv"]) * state_bytes


def qwen_hybrid_counts(c: dict) -> tuple[int, int, int, int]:
    """(total, active, full-attention layers, linear layers)."""
    h, v, n = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
    full = n // c["full_attention_interval"]
    linear = n - full
    mixers = full * gated_attention_params(c) + linear * gdn_params(c)
    total = 2 * v * h + h + n * 2 * h + mixers
    idle = 0
    if "num_experts" in c:  # routed experts + a shared expert with its sigmoid gate
        e, k = c["num_experts"], c["num_experts_per_tok"]
        expert = 3 * h * c["moe_intermediate_size"]
        total += n * (e * expert + h * e + 3 * h * c["shared_expert_intermediate_size"] + h)
        idle = n * (e - k) * expert
    else:
        total += n * 3 * h * c["intermediate_size"]
    return total, total - v * h - idle, full, linear


@pytest.mark.parametrize(
    ("name", "published_total"),
    [
        ("qwen3-next-80b-a3b", 80e9),  # Qwen3-Next model card: "80B in total"
        ("qwen3.5-35b-a3b", 35e9),  # the model's name (text decoder; the vision tower is ~0.4B)
        ("qwen3.5-27b", 27e9),
    ],
)
def test_qwen_hybrid_parameters(name, published_total):
    total, active, full, linear = qwen_hybrid_counts(config(name))
    arch = architecture_from_hf_config(raw(name), name=name)
    assert (arch.total_params, arch.active_params) == (total, active)
    assert total == pytest.approx(published_total, rel=0.02)
    assert (arch.count_layers("attention"), arch.count_layers("linear_attention")) == (full, linear)


def test_qwen3_next_active_against_its_rounded_3b():
    # "3B activated" (model card) is rounded: 10 of 512 experts, the shared expert, the mixers and
    # the 0.31B LM head come to 3.56B; without the LM head, 3.25B.
    c = config("qwen3-next-80b-a3b")
    _, active, _, _ = qwen_hybrid_counts(c)
    assert 2.5e9 < active - c["vocab_size"] * c["hidden_size"] < 3.5e9


@pytest.mark.parametrize("name", ["qwen3-next-80b-a3b", "qwen3.5-35b-a3b", "qwen3.5-27b"])
def test_qwen_hybrid_kv_is_full_layers_plus_a_fixed_state(name):
    c = config(name)
    full, linear = c["num_hidden_layers"] // 4, c["num_hidden_layers"] - c["num_hidden_layers"] // 4
    per_token = full * c["num_key_value_heads"] * c["head_dim"] * 2 * BF16
    state = linear * gdn_state_bytes(c)
    for n in (1000, 100_000):
        assert kv_bytes(name, n) == per_token * n + state
    report = kv_report(name, 1000)["by_layer_kind"]
    assert report["linear_attention"] == {"layers": linear, "bytes": state}
    # the state follows ssm_state_dtype (vLLM keeps Qwen3.5's recurrent state in fp32), not the KV dtype
    assert kv_bytes(name, 1000, ssm_state_dtype="fp32") == per_token * 1000 + linear * gdn_state_bytes(c, 4)
    assert kv_bytes(name, 1000, key_dtype="fp8", value_dtype="fp8") == per_token // 2 * 1000 + state


def test_qwen3_next_state_is_39_mb_per_sequence():
    c = config("qwen3-next-80b-a3b")
    # 36 linear layers x ((4 - 1) x (2 x 16 x 128 + 32 x 128) + 32 x 128 x 128) x 2 bytes
    assert 36 * gdn_state_bytes(c) == 36 * (3 * 8192 + 524_288) * 2 == 39_518_208


def test_gated_deltanet_flops_and_tp():
    arch = load_model("qwen3-next-80b-a3b")
    g = next(g for g in arch.layers if g.kind == "linear_attention")
    c = config("qwen3-next-80b-a3b")
    s = gdn_shapes(c)
    per_layer = 7 * s["value_heads"] * s["dk"] * s["dv"] + 2 * (2 * s["keys"] + s["values"]) * s["kernel"]
    assert g.state_flops_per_token() == per_layer * g.count
    assert g.attention_flops_per_context_token() == 0
    # the state splits by head over TP: 16 key heads allow tp 16, not 32
    assert memory_plan("qwen3-next-80b-a3b", "h200", tp=16).tp == 16
    with pytest.raises(SpecError, match="16 linear-attention key heads"):
        memory_plan("qwen3-next-80b-a3b", "h200", tp=32)


def test_qwen_layer_types_must_name_every_layer():
    c = dict(config("qwen3-next-80b-a3b"), layer_types=["linear_attention", "full_attention"])
    with pytest.raises(CatalogError, match="'layer_types' has 2 entries"):
        architecture_from_hf_config(c, name="bad")


# ------------------------------------------------------------------------------- Nemotron-H
def nemotron_counts(c: dict) -> tuple[int, int]:
    h, v, pattern = c["hidden_size"], c["vocab_size"], c["hybrid_override_pattern"]
    heads, head_dim = c["mamba_num_heads"], c["mamba_head_dim"]
    d_inner = heads * head_dim
    conv_dim = d_inner + 2 * c["n_groups"] * c["ssm_state_size"]
    # in_proj (z, xBC, dt), conv1d with bias, dt_bias / A_log / D, gated norm, out_proj
    mamba = (
        h * (d_inner + conv_dim + heads) + conv_dim * c["conv_kernel"] + conv_dim + 3 * heads + d_inner + d_inner * h
    )
    q, kv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or c["attention_head_dim"]
    attention = h * q * hd + 2 * h * kv * hd + q * hd * h
    total = 2 * v * h + h + len(pattern) * h  # embeddings, norm_f, one pre-norm per block
    total += pattern.count("M") * mamba + pattern.count("*") * attention
    total += pattern.count("-") * 2 * h * c["intermediate_size"]  # squared-ReLU MLP: up, down
    idle = 0
    if "E" in pattern:
        e, k = c["n_routed_experts"], c["num_experts_per_tok"]
        expert = 2 * h * c["moe_intermediate_size"]
        shared = 2 * h * c["moe_shared_expert_intermediate_size"]
        total += pattern.count("E") * (e * expert + shared + h * e + e)  # router + its score bias
        idle = pattern.count("E") * (e - k) * expert
    return total, total - v * h - idle


def test_nemotron_3_nano_parameters():
    c = config("nemotron-3-nano-30b-a3b")
    total, active = nemotron_counts(c)
    arch = architecture_from_hf_config(c, name="nano")
    assert (arch.total_params, arch.active_params) == (total, active)
    # NVIDIA: 31.6B total, 3.2B active per token, 3.6B including embeddings
    assert total == pytest.approx(31.6e9, rel=0.02)
    assert active == pytest.approx(3.2e9, rel=0.02)
    assert active + c["vocab_size"] * c["hidden_size"] == pytest.approx(3.6e9, rel=0.02)
    p = c["hybrid_override_pattern"]
    assert (p.count("M"), p.count("E"), p.count("*")) == (23, 23, 6)
    assert (arch.moe.num_experts, arch.moe.experts_per_token, arch.moe.moe_layers, arch.moe.shared_experts) == (
        128,
        6,
        23,
        1,
    )


def test_nemotron_h_56b_parameters():
    c = config("nemotron-h-56b")
    total, active = nemotron_counts(c)
    arch = architecture_from_hf_config(c, name="56b")
    assert (arch.total_params, arch.active_params) == (total, active)
    assert total == pytest.approx(56e9, rel=0.02)  # Nemotron-H paper (arXiv 2504.03624): 56B
    assert arch.moe is None


@pytest.mark.parametrize("name", ["nemotron-3-nano-30b-a3b", "nemotron-h-56b"])
def test_nemotron_h_kv_is_attention_layers_plus_mamba_state(name):
    c = config(name)
    p = c["hybrid_override_pattern"]
    hd = c.get("head_dim") or c["attention_head_dim"]
    per_token = p.count("*") * c["num_key_value_heads"] * hd * 2 * BF16
    d_inner = c["mamba_num_heads"] * c["mamba_head_dim"]
    conv = (c["conv_kernel"] - 1) * (d_inner + 2 * c["n_groups"] * c["ssm_state_size"])
    state = p.count("M") * (conv + d_inner * c["ssm_state_size"]) * BF16
    arch = architecture_from_hf_config(c, name=name)
    assert arch.count_layers("ssm") == p.count("M") and arch.count_layers("attention") == p.count("*")
    if name == "nemotron-3-nano-30b-a3b":
        assert per_token == 6 * 2 * 128 * 4 and state == 23 * (3 * 6144 + 4096 * 128) * 2
        for n in (1000, 200_000):
            assert kv_bytes(name, n) == per_token * n + state


def test_nemotron_pattern_names_each_layer():
    c = dict(config("nemotron-3-nano-30b-a3b"), hybrid_override_pattern="MEM")
    with pytest.raises(CatalogError, match="'hybrid_override_pattern' has 3 entries"):
        architecture_from_hf_config(c, name="bad")
    c = dict(config("nemotron-3-nano-30b-a3b"))
    c["hybrid_override_pattern"] = "X" + c["hybrid_override_pattern"][1:]
    with pytest.raises(CatalogError, match=r"'hybrid_override_pattern\[0\]' = 'X'"):
        architecture_from_hf_config(c, name="bad")
