"""Phi-3 and Granite read from their published config.json files (tests/data).

Expected figures are written out from the config's fields or are published counts cited beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetsim.api import kv_report
from fleetsim.catalog import architecture_from_hf_config

DATA = Path(__file__).parent / "data"
BF16 = 2


def config(name: str) -> dict:
    return json.loads((DATA / f"{name}.config.json").read_text())


def llama_style_total(c: dict, head_dim: int) -> int:
    """Embeddings (+ an untied head), final norm, per layer q/k/v/o + two norms + gated MLP."""
    h, q, kv, i, v, n = (
        c["hidden_size"],
        c["num_attention_heads"],
        c["num_key_value_heads"],
        c["intermediate_size"],
        c["vocab_size"],
        c["num_hidden_layers"],
    )
    layer = h * q * head_dim + 2 * h * kv * head_dim + q * head_dim * h + 2 * h + 3 * h * i
    return v * h * (1 if c["tie_word_embeddings"] else 2) + h + n * layer


def test_phi_3_mini_parameters_are_the_safetensors_total():
    c = config("phi-3-mini-4k")
    head_dim = c["hidden_size"] // c["num_attention_heads"]  # 96; fused qkv/gate_up hold the same weights
    total = llama_style_total(c, head_dim)
    # huggingface.co/microsoft/Phi-3-mini-4k-instruct: 3,821,079,552 parameters (safetensors)
    assert total == 3_821_079_552
    arch = architecture_from_hf_config(c, name="phi-3-mini-4k")
    assert arch.total_params == total
    assert arch.active_params == total - c["vocab_size"] * c["hidden_size"]  # untied token table: a lookup


def test_phi_3_mini_windows_every_layer_at_2047():
    c = config("phi-3-mini-4k")
    per_token = c["num_hidden_layers"] * c["num_key_value_heads"] * (c["hidden_size"] // c["num_attention_heads"])
    per_token *= 2 * BF16
    assert per_token == 32 * 32 * 96 * 4 == 393_216
    assert kv_report("phi-3-mini-4k", 2000)["bytes_per_sequence"] == per_token * 2000
    assert kv_report("phi-3-mini-4k", 4000)["bytes_per_sequence"] == per_token * c["sliding_window"]


def test_granite_3_3_8b_parameters_are_the_safetensors_total():
    c = config("granite-3.3-8b")
    total = llama_style_total(c, c["hidden_size"] // c["num_attention_heads"])
    # 8,170,864,640: the Hugging Face safetensors total of ibm-granite/granite-3.3-8b-instruct
    assert total == 8_170_864_640
    arch = architecture_from_hf_config(c, name="granite")
    assert arch.total_params == arch.active_params == total  # tied: the table is multiplied as the head


def test_granite_kv_bytes():
    c = config("granite-3.3-8b")
    per_token = c["num_hidden_layers"] * c["num_key_value_heads"] * 128 * 2 * BF16
    assert per_token == 163_840
    for n in (1000, 100_000):
        assert kv_report("granite-3.3-8b", n)["bytes_per_sequence"] == per_token * n


@pytest.mark.parametrize("name", ["phi-3-mini-4k", "granite-3.3-8b"])
def test_max_context_comes_from_the_config(name):
    c = config(name)
    assert architecture_from_hf_config(c, name=name).max_context_tokens == c["max_position_embeddings"]
