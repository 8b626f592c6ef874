"""The memory commands as a user runs them: `fleetsim kv`, `fleetsim memory`.

Every command goes through `fleetsim.cli.main()` -- the entry point, where errors become one
line and exit status 2. Most run in this process (sys.argv set, exit status from SystemExit, an
exception escaping main() is what a user would see as a traceback); the error paths that matter
most also run in a fresh process (`python -m fleetsim.cli`, stdin/stdout/stderr not terminals,
no COLUMNS: as in a pipe, a script or CI). Expected figures are closed forms written out here
(see tests/test_memory.py for their sources).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetsim.cli import main

DATA = Path(__file__).parent / "data"
LLAMA_3_8B_PER_TOKEN = 32 * 8 * 128 * 2 * 2  # 131,072 B


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_in_process(monkeypatch, capsys, *args) -> Run:
    """`fleetsim ARGS...` through main() in this process: sys.argv set, the exit status from
    SystemExit; an exception escaping main() is what a user would see as a traceback (exit 1)."""
    monkeypatch.setattr(sys, "argv", ["fleetsim", *map(str, args)])
    capsys.readouterr()
    code, escaped = 0, ""
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # escaped main(): the user would see this traceback, exit 1
        code, escaped = 1, traceback.format_exc()
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err + escaped)


@pytest.fixture
def fleetsim(monkeypatch, capsys):
    """Run `fleetsim ARGS...` through main() in this process."""
    return lambda *args: run_in_process(monkeypatch, capsys, *args)


def fleetsim_process(*args: str) -> Run:
    """Run `fleetsim ARGS...` as a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    r = subprocess.run(
        [sys.executable, "-m", "fleetsim.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return Run(r.returncode, r.stdout, r.stderr)


@pytest.fixture
def ok_json(fleetsim):
    def run(*args: str):
        r = fleetsim(*args, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    return run


def assert_one_line_error(r: Run, *needles: str) -> str:
    """Exit status 2, no traceback, exactly one non-empty line on stderr naming the needles."""
    assert "Traceback" not in r.stderr, f"traceback for bad input:\n{r.stderr}"
    assert r.returncode == 2, f"exit status {r.returncode}, expected 2; stderr:\n{r.stderr}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr must be ONE line, got {len(lines)}:\n{r.stderr}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# ----------------------------------------------------------------------- fleetsim kv
def test_kv_json_has_the_documented_keys_and_context_defaults_to_one(ok_json):
    r = ok_json("kv", "llama-3-8b")
    for key in (
        "model",
        "context_tokens",
        "key_dtype",
        "value_dtype",
        "bytes_per_sequence",
        "bytes_per_token",
        "by_layer_kind",
    ):
        assert key in r, key
    assert r["model"] == "llama-3-8b"
    assert r["context_tokens"] == 1
    assert (r["key_dtype"], r["value_dtype"]) == ("bf16", "bf16")
    assert r["bytes_per_sequence"] == r["bytes_per_token"] == LLAMA_3_8B_PER_TOKEN


def test_kv_json_bytes_per_token_is_bytes_per_sequence_over_context(ok_json):
    r = ok_json("kv", "gemma-3-27b", "--context", "32768", "--key-dtype", "fp8")
    assert r["context_tokens"] == 32_768
    assert r["key_dtype"] == "fp8" and r["value_dtype"] == "bf16"
    assert r["bytes_per_token"] == r["bytes_per_sequence"] / r["context_tokens"]
    kinds = r["by_layer_kind"]
    assert kinds["attention_window"]["layers"] == 52 and kinds["attention_global"]["layers"] == 10
    assert sum(k["bytes"] for k in kinds.values()) == r["bytes_per_sequence"]
    # 16 KV heads x 128 x (1 + 2) B per layer-token; local layers stop at 1,024 tokens
    assert r["bytes_per_sequence"] == 16 * 128 * 3 * (52 * 1024 + 10 * 32_768)


def test_kv_compare_prints_every_model(fleetsim):
    names = ["gpt2-xl", "llama-3-8b", "deepseek-v3", "gemma-3-27b", "mamba-2.8b"]
    r = fleetsim("kv", "--compare", *names, "--context", "4000")
    assert r.returncode == 0, r.stderr
    missing = [n for n in names if n not in r.stdout]
    assert not missing, f"model names missing (truncated?) from the --compare table: {missing}\n{r.stdout}"


def test_kv_compare_json_is_a_list_in_order(ok_json):
    names = ["gpt2-xl", "llama-3-8b", "mamba-2.8b"]
    rows = ok_json("kv", "--compare", *names, "--context", "4000")
    assert [row["model"] for row in rows] == names
    assert rows[0]["bytes_per_sequence"] == 307_200 * 4000
    assert rows[1]["bytes_per_sequence"] == LLAMA_3_8B_PER_TOKEN * 4000


def test_kv_shared_prefix_stored_once_and_compressed(ok_json):
    r = ok_json("kv", "llama-3-8b", "--context", "4096", "--shared-prefix", "1024")
    assert r["shared_prefix_bytes"] == 1024 * LLAMA_3_8B_PER_TOKEN
    assert r["bytes_per_sequence_beyond_shared_prefix"] == 3072 * LLAMA_3_8B_PER_TOKEN
    c = ok_json("kv", "llama-3-8b", "--context", "4096", "--shared-prefix", "1024", "--prefix-compression", "4")
    assert c["shared_prefix_bytes"] == 1024 * LLAMA_3_8B_PER_TOKEN // 4
    assert c["bytes_per_sequence_beyond_shared_prefix"] == 3072 * LLAMA_3_8B_PER_TOKEN


def test_kv_eviction_options_on_the_command_line(ok_json):
    r = ok_json("kv", "llama-3-8b", "--context", "100000", "--eviction", "h2o", "--heavy", "200", "--recent", "200")
    assert r["bytes_per_sequence"] == 400 * LLAMA_3_8B_PER_TOKEN


def test_kv_config_json_by_path_matches_the_catalog(ok_json):
    path = str(DATA / "llama-3-8b.config.json")
    by_path = ok_json("kv", path, "--context", "4096")
    by_name = ok_json("kv", "llama-3-8b", "--context", "4096")
    assert by_path["bytes_per_sequence"] == by_name["bytes_per_sequence"] == 4096 * LLAMA_3_8B_PER_TOKEN
    assert by_path["by_layer_kind"] == by_name["by_layer_kind"]


# ----------------------------------------------------------------------- fleetsim memory
def test_memory_config_json_by_path_matches_the_catalog(ok_json):
    path = str(DATA / "llama-3-8b.config.json")
    assert ok_json("memory", path, "--gpu", "h100-sxm") == ok_json("memory", "llama-3-8b", "--gpu", "h100-sxm")


@pytest.mark.parametrize("runner", ["in_process", "fresh_process"])
def test_llama_3_70b_on_one_h100_fails_in_one_line_naming_tp2(fleetsim, runner):
    # 70,553,706,496 parameters x 2 B = 141 GB of bf16 weights > one 80 GB H100.
    run = fleetsim if runner == "in_process" else fleetsim_process
    r = run("memory", "llama-3-70b", "--gpu", "h100-sxm")
    assert_one_line_error(r, "tp=2")


def test_llama_3_70b_on_two_h100s_plans(ok_json):
    plan = ok_json("memory", "llama-3-70b", "--gpu", "h100-sxm", "--tp", "2")
    for key in ("weights_bytes_per_gpu", "kv_pool_bytes_per_gpu", "kv_capacity_tokens", "max_concurrent_sequences"):
        assert key in plan, key
    assert plan["tp"] == 2
    assert plan["weights_bytes_per_gpu"] == 70_553_706_496  # 141.1 GB / 2
    assert plan["kv_pool_bytes_per_gpu"] > 0 and plan["kv_capacity_tokens"] > 0
    assert plan["max_concurrent_sequences"] >= 1


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize("runner", ["in_process", "fresh_process"])
def test_unknown_model_is_one_line_naming_it(fleetsim, runner):
    run = fleetsim if runner == "in_process" else fleetsim_process
    assert_one_line_error(run("kv", "llama-9-9000b"), "llama-9-9000b")


def test_kv_takes_a_hugging_face_repo_id_offline(ok_json):
    # resolved through the catalog's aliases: no network, no file named meta-llama/...
    r = ok_json("kv", "meta-llama/Llama-3.1-8B-Instruct", "--context", "1000")
    assert r["model"] == "llama-3.1-8b"
    assert r["bytes_per_sequence"] == LLAMA_3_8B_PER_TOKEN * 1000


def test_an_unknown_repo_id_is_one_line_with_the_closest_names(fleetsim):
    line = assert_one_line_error(fleetsim("kv", "meta-llama/Llama-3.1-8B-Instrukt"), "did you mean: llama-3.1-8b")
    assert "no such file" not in line


def test_unknown_key_dtype_is_one_line_naming_it_and_the_valid_ones(fleetsim):
    line = assert_one_line_error(fleetsim("kv", "llama-3-8b", "--key-dtype", "q3"), "q3")
    for valid in ("bf16", "fp8", "int8", "q8_0", "q4_0"):
        assert valid in line


def test_zero_context_is_rejected(fleetsim):
    assert_one_line_error(fleetsim("kv", "llama-3-8b", "--context", "0"), "context")


def test_tp_that_does_not_divide_the_heads_names_the_valid_degrees(fleetsim):
    # Llama 3 8B: 32 query heads, 8 KV heads -> 1, 2, 4, 8 split heads evenly; 3 does not.
    line = assert_one_line_error(fleetsim("memory", "llama-3-8b", "--gpu", "h100-sxm", "--tp", "3"), "3")
    assert "1, 2, 4, 8" in line


@pytest.mark.parametrize("runner", ["in_process", "fresh_process"])
def test_non_integer_context_is_a_usage_error_not_a_traceback(fleetsim, runner):
    # A usage error may carry click's "Usage:" / "Try --help" lines, but never a traceback.
    run = fleetsim if runner == "in_process" else fleetsim_process
    r = run("kv", "llama-3-8b", "--context", "abc")
    assert "Traceback" not in r.stderr, f"traceback for a usage error:\n{r.stderr}"
    assert r.returncode == 2, f"exit status {r.returncode}, expected 2"
    assert "--context" in r.stderr


def test_several_models_without_compare_exit_2(fleetsim):
    assert_one_line_error(fleetsim("kv", "gpt2-xl", "llama-3-8b"), "--compare")


def test_memory_counts_sequences_at_a_typical_request_by_default(ok_json):
    # 2,048 tokens = 128 paged blocks of 16 tokens per sequence: the pool's blocks / 128.
    plan = ok_json("memory", "llama-3-8b", "--gpu", "h100-sxm")
    assert plan["context_tokens"] == 2048
    assert plan["max_concurrent_sequences"] == plan["kv_blocks"] // 128
    # GPT-2 XL stops at 1,024 positions: the default is its limit, 64 blocks per sequence.
    small = ok_json("memory", "gpt2-xl", "--gpu", "h100-sxm")
    assert small["context_tokens"] == 1024
    assert small["max_concurrent_sequences"] == small["kv_blocks"] // 64


def test_memory_shows_the_expert_parallel_layout(monkeypatch, capsys):
    # DeepSeek-V3 fp8 on 8 H200 with EP 8 + DP attention: the routed experts, 256 x 3 x 7168 x
    # 2048 parameters in 58 MoE layers (config.json), one byte each, over 8 GPUs; each GPU holds
    # 1/8 of a sequence's MLA latent, 61 x (512 + 64) x 2 B per token (see tests/test_expert_parallel.py).
    r = run_in_process(
        monkeypatch, capsys, "memory", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--ep", "8", "--dp-attention",
        "--weight-dtype", "fp8", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["ep"], d["dp"], d["tp"]) == (8, 8, 8)
    assert d["block_bytes_per_gpu"] == 16 * 61 * 576 * 2 / 8
    text = run_in_process(
        monkeypatch, capsys, "memory", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--ep", "8", "--dp-attention",
        "--weight-dtype", "fp8",
    ).stdout  # fmt: skip
    assert f"{256 * 3 * 7168 * 2048 * 58 / 8 / 1e9:.2f}" in text and "data-parallel attention ranks" in text
    bad = run_in_process(monkeypatch, capsys, "memory", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--ep", "7")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "does not divide the 256" in bad.stderr


def test_memory_pp_shows_each_stage_of_405b_on_two_h100_servers(ok_json):
    # Llama-3.1-405B: 405,853,388,800 parameters (Hugging Face model card / safetensors index);
    # bf16 over pp 2 x tp 8 = 16 GPUs: 405.853e9 x 2 B / 16 = 50.73 GB per GPU (the embedding on
    # stage 0 and the LM head on stage 1 are the same size, so both stages hold the same bytes).
    d = ok_json("memory", "llama-3.1-405b", "--gpu", "h100-sxm", "--pp", "2", "--tp", "8")
    assert (d["pp"], d["tp"], d["gpus"], d["servers"]) == (2, 8, 16, 2)
    hand = 405_853_388_800 * 2 / 16
    for stage in d["stages"]:
        assert stage["layers"] == 63  # 126 layers / 2
        assert abs(stage["weights_bytes_per_gpu"] / hand - 1) < 0.01


def test_memory_pp_that_does_not_divide_the_layers_is_one_line(fleetsim):
    r = fleetsim("memory", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--pp", "2")
    assert r.returncode == 2
    assert "61 layers" in r.stderr and len(r.stderr.strip().splitlines()) == 1
