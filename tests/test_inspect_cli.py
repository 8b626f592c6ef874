"""`fleetsim inspect MODEL`: what fleetsim read from one model, as a table or one JSON object.

Expected figures are closed forms from the models' config.json fields (see tests/test_inspect.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_memory import fleetsim_process, run_in_process

from fleetsim.catalog.inspect import inspect_model

DATA = Path(__file__).parent / "data"
LLAMA_3_8B_PER_TOKEN = 32 * 8 * 128 * 2 * 2  # layers x KV heads x head_dim x (K + V) x bf16 bytes


@pytest.fixture
def fleetsim(monkeypatch, capsys):
    """`fleetsim ARGS...` through main() in this process."""
    return lambda *args: run_in_process(monkeypatch, capsys, *args)


def _strict(text: str):
    def reject(name):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=reject)


def test_json_is_one_object_the_same_as_inspect_model(fleetsim):
    r = fleetsim("inspect", "gemma-3-27b", "--json")
    assert r.returncode == 0, r.stderr
    report = _strict(r.stdout)
    assert report == json.loads(json.dumps(inspect_model("gemma-3-27b")))
    assert report["kv_bf16"]["bytes_per_token"] == 62 * 16 * 128 * 2 * 2


def test_the_table_shows_layers_kv_per_token_and_per_sequence_params_and_moe(fleetsim):
    r = fleetsim("inspect", "llama-3-8b")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith("llama-3-8b: GQA, 32 layers")
    assert "q_heads 32, kv_heads 8, head_dim 128" in text and "depth order: A 0-31" in text
    assert f"KV bytes per token: {LLAMA_3_8B_PER_TOKEN:,}" in text
    for n in (1024, 32_768, 131_072):
        assert f"{n:,}" in text and f"{n * LLAMA_3_8B_PER_TOKEN:,}" in text
    assert "8.03 B" in text and "7.50 B" in text  # total, active (the embedding lookup excluded)
    assert "MoE: none (dense)" in text


def test_a_hybrid_shows_each_kind_of_layer_and_the_depth_order(fleetsim):
    r = fleetsim("inspect", "gemma-3-27b")
    assert r.returncode == 0, r.stderr
    per_layer = 16 * 128 * 2 * 2
    assert "window_tokens 1,024" in r.stdout
    assert f"{52 * per_layer:,}" in r.stdout and f"{10 * per_layer:,}" in r.stdout  # local 52, global 10 layers
    assert "depth order: A 0-4, B 5, A 6-10" in r.stdout and "(21 groups; --json lists each)" in r.stdout


def test_moe_layout_is_shown(fleetsim):
    r = fleetsim("inspect", "mixtral-8x7b")
    assert r.returncode == 0, r.stderr
    assert "MoE: 8 experts, 2 per token, 0 shared, on 32 layers" in r.stdout


def test_an_alias_and_a_config_path(fleetsim):
    r = fleetsim("inspect", "meta-llama/Meta-Llama-3-8B-Instruct")
    assert r.returncode == 0, r.stderr
    assert "is an alias of the catalog model llama-3-8b" in r.stdout
    path = DATA / "llama-3-8b.config.json"
    r = fleetsim("inspect", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert _strict(r.stdout)["resolved_from"] == {
        "typed": str(path),
        "how": "path",
        "catalog_name": None,
        "path": str(path),
    }


@pytest.mark.parametrize("args", [("lama-3-8b",), ("lama-3-8b", "--json")])
def test_a_bad_name_is_the_catalogs_one_line_did_you_mean_and_exit_2(fleetsim, args):
    r = fleetsim("inspect", *args)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: model 'lama-3-8b' is unknown; did you mean: llama-3-8b"), line


def test_a_bad_name_in_a_fresh_process():
    r = fleetsim_process("inspect", "gemma3-27")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "gemma3-27" in line and "fleetsim models" in line
