"""inspect_model: what fleetsim read from a model, as JSON-safe data (for `fleetsim inspect MODEL`).

Expected figures are closed forms from the models' config.json fields (see tests/test_hf_*.py
and tests/test_memory.py for their derivations).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetsim.catalog import model_names
from fleetsim.catalog.inspect import SEQUENCE_LENGTHS, inspect_model
from fleetsim.errors import CatalogError

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", model_names())
def test_every_catalog_model_inspects_to_json_without_nan(name):
    report = inspect_model(name)
    text = json.dumps(report, allow_nan=False)  # raises on NaN or infinity
    assert json.loads(text) == report
    assert report["name"] == name
    assert sum(g["count"] for g in report["layer_groups"]) == report["num_layers"]
    assert sum(k["layers"] for k in report["layer_summary"]) == report["num_layers"]
    assert [s["context_tokens"] for s in report["kv_bf16"]["per_sequence"]] == list(SEQUENCE_LENGTHS)


def test_how_the_name_resolved():
    assert inspect_model("llama-3-8b")["resolved_from"]["how"] == "name"
    alias = inspect_model("meta-llama/Meta-Llama-3-8B-Instruct")["resolved_from"]
    assert (alias["how"], alias["catalog_name"], alias["path"]) == ("alias", "llama-3-8b", None)
    path = DATA / "llama-3-8b.config.json"
    by_path = inspect_model(str(path))
    assert by_path["resolved_from"]["how"] == "path" and by_path["resolved_from"]["path"] == str(path)
    assert by_path["name"] == "llama-3-8b"  # the file name less .config.json
    assert by_path["params"]["counted_as"] == "estimated from the config"


def test_model_type_is_the_text_models():
    assert inspect_model("gemma-3-27b")["model_type"] == "gemma3_text"
    assert inspect_model("qwen3.5-35b-a3b")["model_type"] == "qwen3_5_moe_text"
    assert inspect_model("deepseek-v3.2")["model_type"] == "deepseek_v32"


def test_gemma_3_windows_show_in_the_per_sequence_bytes():
    kv = inspect_model("gemma-3-27b")["kv_bf16"]
    per_layer = 16 * 128 * 2 * 2  # 16 KV heads x head_dim 128 x (K + V) x bf16
    assert kv["bytes_per_token"] == 62 * per_layer
    assert kv["bytes_per_token_beyond_windows"] == 10 * per_layer  # only the global layers keep growing
    one_k, thirty_two_k, _ = kv["per_sequence"]
    assert one_k["bytes"] == 62 * per_layer * 1024  # the window is 1024: every layer holds all
    assert thirty_two_k["bytes"] == 52 * per_layer * 1024 + 10 * per_layer * 32_768


def test_llama_4_scout_chunks_show():
    report = inspect_model("llama-4-scout")
    kinds = {(k["kind"], k["chunk_tokens"]): k["layers"] for k in report["layer_summary"]}
    assert kinds == {("attention", 8192): 36, ("attention", None): 12}
    per_layer = 8 * 128 * 4
    thirty_two_k = report["kv_bf16"]["per_sequence"][1]
    assert thirty_two_k["bytes"] == 12 * per_layer * 32_768 + 36 * per_layer * 8192


def test_state_sizes_of_fixed_state_layers():
    report = inspect_model("qwen3-next-80b-a3b")
    # 36 Gated DeltaNet layers: ((4 - 1) x (2 x 16 x 128 + 32 x 128) + 32 x 128 x 128) x 2 bytes each
    assert report["kv_bf16"]["state_bytes_per_sequence"] == 36 * (3 * 8192 + 524_288) * 2
    linear = [g for g in report["layer_groups"] if g["kind"] == "linear_attention"]
    assert sum(g["state_bytes_per_sequence_bf16"] for g in linear) == 36 * (3 * 8192 + 524_288) * 2
    assert all(g["kv_bytes_per_token_bf16"] == 0 for g in linear)
    assert {(g["key_heads"], g["value_heads"], g["key_head_dim"], g["conv_kernel"]) for g in linear} == {
        (16, 32, 128, 4)
    }
    assert report["flops"]["state_per_token"] > 0
    nano = inspect_model("nemotron-3-nano-30b-a3b")  # 23 Mamba-2 + 6 attention layers of 52 blocks
    assert (nano["num_layers"], nano["config_num_hidden_layers"]) == (29, 52)


def test_parameters_and_moe():
    report = inspect_model("gpt-oss-120b")
    params = report["params"]
    assert (params["total"], params["published_active"]) == (116_830_000_000, 5_130_000_000)  # the model card's
    assert params["active"] == pytest.approx(params["estimated_active"], rel=1e-3)  # one rule for every model
    assert params["counted_as"] == "published" and "model card" in params["published_source"].lower()
    assert params["estimated_total"] == pytest.approx(116.83e9, abs=0.006e9)
    assert "embedding lookups excluded" in params["active_rule"]
    moe = report["moe"]
    assert (moe["num_experts"], moe["experts_per_token"], moe["shared_experts"], moe["moe_layers"]) == (128, 4, 0, 36)
    assert report["quantization"]["quant_method"] == "mxfp4"
    assert inspect_model("qwen3-next-80b-a3b")["params"]["counted_as"] == "estimated from the config"
    assert inspect_model("llama-3-8b")["moe"] is None


def test_sequences_beyond_the_context_limit_are_flagged():
    per_sequence = inspect_model("phi-3-mini-4k")["kv_bf16"]["per_sequence"]  # 4,096 positions
    assert [s["within_max_context"] for s in per_sequence] == [True, False, False]
    assert inspect_model("phi-3-mini-4k")["max_context_tokens"] == 4096


def test_an_unknown_name_is_the_catalog_error():
    with pytest.raises(CatalogError, match="did you mean"):
        inspect_model("gpt-oss-12b")
