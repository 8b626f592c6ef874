"""`fleetsim run` as a user meets it: output shapes, --set/--seed/--out, and bad scenario files."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_cli_memory import run_in_process

from fleetsim import __version__, gpu_table
from fleetsim import api as fleetsim_api

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "h100_llama3.yaml"


def fleetsim(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", "from fleetsim.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def base() -> dict:
    return yaml.safe_load(SCENARIO.read_text())


def write(tmp_path, data, name="s.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


REQUIRED = {
    "requests": {"arrived", "completed", "rejected", "in_flight"},
    "throughput": {"output_tokens_per_s", "input_tokens_per_s", "requests_per_s"},
    "latency_s": {"ttft", "tpot", "e2e"},
    "concurrency": {"mean_running", "max_running", "max_by_memory", "mean_queued"},
    "kv_cache": {"bytes_per_token", "capacity_tokens_per_replica", "mean_utilization", "preemptions"},
    "power": {"gpu_mean_w", "gpu_peak_w", "it_mean_kw", "facility_mean_kw", "energy_kwh", "joules_per_output_token"},
    "cooling": {"heat_load_kw", "btu_per_h", "tons", "water_l_per_h"},
    "cost": {"usd_per_hour", "usd_per_million_output_tokens", "usd_per_million_tokens"},
    "slo": {"attainment", "met"},
}


def test_json_output_is_one_object_with_every_documented_key(tmp_path):
    r = fleetsim("run", SCENARIO, "--json", "--set", "run.duration_s=20", "--seed", "5", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert {"scenario", "seed", "simulated_s"} <= set(s)
    assert s["seed"] == 5
    for key, sub in REQUIRED.items():
        assert sub <= set(s[key]), key
    for name in ("ttft", "tpot", "e2e"):
        assert set(s["latency_s"][name]) == {"mean", "p50", "p90", "p99"}
    out = tmp_path / "o"
    assert json.loads((out / "summary.json").read_text()) == s
    for f in ("requests.parquet", "timeseries.parquet", "replicas.parquet", "scenario.json", "manifest.json"):
        assert (out / f).stat().st_size > 0
    assert f"wrote {out}/" in r.stderr  # says where it wrote (stdout is the JSON alone)


def test_readable_summary_by_default():
    r = fleetsim("run", SCENARIO, "--set", "run.duration_s=20")
    assert r.returncode == 0, r.stderr
    for word in ("ttft", "tpot", "output tokens/s", "$ per million tokens", "heat load", "SLO"):
        assert word in r.stdout


def test_set_overrides_any_field_by_dotted_path():
    r = fleetsim("run", SCENARIO, "--json", "--set", "run.duration_s=20", "--set", "fleet.replicas=2")
    assert json.loads(r.stdout)["fleet"]["replicas"] == 2


def _trace_scenario(tmp_path, trace_path):
    d = base()
    d["workload"] = {"arrival": {"kind": "trace", "path": str(trace_path)}}
    return write(tmp_path, d)


def _bad_cases(tmp_path):
    cases = {}
    d = base()
    d["fleet"]["replcas"] = 2
    cases["unknown key"] = (write(tmp_path, d, "a.yaml"), "fleet.replcas")
    d = base()
    d["fleet"]["replicas"] = "four"
    cases["wrong type"] = (write(tmp_path, d, "b.yaml"), "fleet.replicas")
    d = base()
    d["workload"]["arrival"]["rate_per_s"] = -3
    cases["negative rate"] = (write(tmp_path, d, "c.yaml"), "rate_per_s")
    d = base()
    d["model"] = "llama-3-70b"
    cases["model does not fit"] = (write(tmp_path, d, "d.yaml"), "tp=2")
    cases["missing trace"] = (_trace_scenario(tmp_path, tmp_path / "nothere.csv"), "nothere.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("arrival_s,input_tokens,output_tokens\n")
    d = base()
    d["workload"] = {"arrival": {"kind": "trace", "path": str(empty)}}
    cases["empty trace"] = (write(tmp_path, d, "f.yaml"), "empty.csv")
    (tmp_path / "g.yaml").write_text("model: [unclosed\n")
    cases["not yaml"] = (tmp_path / "g.yaml", "YAML")
    cases["missing file"] = (tmp_path / "nope.yaml", "nope.yaml")
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "unknown key",
        "wrong type",
        "negative rate",
        "model does not fit",
        "missing trace",
        "empty trace",
        "not yaml",
        "missing file",
    ],
)
def test_bad_scenario_files_give_one_clear_line_and_exit_2(tmp_path, case):
    path, needle = _bad_cases(tmp_path)[case]
    r = fleetsim("run", path)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert needle in lines[0]
    assert r.stdout == ""  # no partial result presented as whole


def test_bad_override_and_bad_tp(tmp_path):
    for args, needle in (
        (["--set", "bogus"], "KEY=VALUE"),
        (["--set", "fleet.tp=3"], "tp"),
        (["--set", "fleet.gpu=h900"], "h900"),
        (["--set", "fleet.router=closest"], "router"),
    ):
        r = fleetsim("run", SCENARIO, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_schema_prints_the_json_schema():
    r = fleetsim("schema")
    schema = json.loads(r.stdout)
    assert "fleet" in schema["properties"] and "workload" in schema["properties"]


# ----------------------------------------------------------------------- --out: checked first, written whole
@pytest.fixture
def in_process(monkeypatch, capsys):
    """`fleetsim ARGS...` through main() in this process (so a test can replace simulate)."""
    return lambda *args: run_in_process(monkeypatch, capsys, *args)


def one_line_error(r, *needles) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _bad_out_dirs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("a user's file")
    cases = {
        "an existing file": (a_file, "is a file"),
        "a path under a file": (a_file / "run", "is a file"),
        "a folder fleetsim did not write": (foreign, "manifest.json"),
    }
    if sys.platform.startswith("linux"):  # no folder can be made there, not even by root
        cases["an unwritable place"] = (Path("/proc/fleetsim-run"), "cannot write")
    return cases


@pytest.mark.parametrize(
    "case", ["an existing file", "a path under a file", "a folder fleetsim did not write", "an unwritable place"]
)
def test_a_bad_out_is_one_line_before_the_simulation_runs(tmp_path, in_process, monkeypatch, case):
    cases = _bad_out_dirs(tmp_path)
    if case not in cases:
        pytest.skip("needs Linux /proc")
    path, needle = cases[case]
    monkeypatch.setattr(fleetsim_api, "simulate", lambda *a, **k: pytest.fail("simulated before --out was checked"))
    one_line_error(in_process("run", SCENARIO, "--out", path), "--out", str(path), needle)
    assert not (tmp_path / "mine" / "summary.json").exists()  # nothing of a user's folder touched


@pytest.mark.parametrize(
    "command, guard",
    [
        (["plan", SCENARIO, "--out"], ("fleetsim.plan", "plan_fleet")),
        (["validate", "--out"], ("fleetsim.validation", "run_validation")),
        (["sweep", SCENARIO, "--grid", "fleet.replicas=1,2", "--out"], ("fleetsim.sweep", "build")),
        (["report", SCENARIO, "-o"], ("fleetsim.report.html", "write_report")),
        (["init"], ("fleetsim.cli.starter", "starter_scenario")),
    ],
)
def test_every_command_that_writes_checks_its_path_before_any_work(tmp_path, in_process, monkeypatch, command, guard):
    import importlib

    monkeypatch.setattr(
        importlib.import_module(guard[0]), guard[1], lambda *a, **k: pytest.fail("work before the check")
    )
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    target = a_file / "below"  # under a file: nothing can be written there
    r = in_process(*command, target)
    one_line_error(r, str(target), "is a file")


def test_a_rerun_replaces_the_folder_whole_and_the_manifest_lists_it(tmp_path):
    out = tmp_path / "runs" / "r"  # parents are created
    first = fleetsim("run", SCENARIO, "--json", "--set", "run.duration_s=10", "--seed", "1", "--out", out)
    assert first.returncode == 0, first.stderr
    (out / "leftover.csv").write_text("a file of an older run\n")
    second = fleetsim("run", SCENARIO, "--json", "--set", "run.duration_s=10", "--seed", "2", "--out", out)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["seed"] == 2 and json.loads((out / "summary.json").read_text()) == summary

    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"]: f["bytes"] for f in manifest["files"]}
    on_disk = {p.name: p.stat().st_size for p in out.iterdir() if p.name != "manifest.json"}
    assert listed == on_disk  # the second run's files, all of them, and nothing else
    assert set(listed) == {
        "summary.json",
        "scenario.json",
        "requests.parquet",
        "timeseries.parquet",
        "replicas.parquet",
    }
    assert manifest["completed"] is True and manifest["fleetsim_version"] == __version__
    scenario = json.loads((out / "scenario.json").read_text())
    canonical = json.dumps(scenario, sort_keys=True, separators=(",", ":"))
    assert manifest["scenario_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert scenario["run"]["seed"] == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]  # no temporary sibling left

    requests = pd.read_parquet(out / "requests.parquet")
    assert len(requests) == summary["requests"]["arrived"] and requests.index.name == "request_id"
    assert (requests["status"] == "completed").sum() == summary["requests"]["completed"]


def test_the_readable_run_says_where_it_wrote(tmp_path):
    r = fleetsim("run", SCENARIO, "--set", "run.duration_s=10", "--out", tmp_path / "r")
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path / 'r'}/ (summary.json" in r.stdout and "requests.parquet" in r.stdout


# ----------------------------------------------------------------------- JSON that parses
def _strict(text: str):
    def reject(name):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=reject)


def test_a_run_with_nothing_completed_says_why_each_value_is_null():
    # Every request is longer than max_model_len = 1 token: all are rejected, nothing is defined.
    args = ("run", SCENARIO, "--set", "scheduler.max_model_len=1", "--set", "run.duration_s=2")
    r = fleetsim(*args, "--json")
    assert r.returncode == 0, r.stderr
    s = _strict(r.stdout)
    assert s["requests"]["completed"] == 0 and s["requests"]["rejected"] == s["requests"]["arrived"] > 0
    cost = s["cost"]
    assert cost["usd_per_million_tokens"] is None
    assert cost["usd_per_million_tokens_reason"] == "no tokens in the measured window"
    assert s["latency_s"]["ttft"]["p99"] is None and "no request completed" in s["latency_s"]["ttft"]["p99_reason"]
    assert s["null_fields"]["cost.usd_per_million_tokens"] == "no tokens in the measured window"
    assert s["null_fields"]["power.joules_per_output_token"] == "no output tokens were generated"
    readable = fleetsim(*args)
    assert readable.returncode == 0 and "- (no tokens in the measured window)" in readable.stdout


def test_a_non_finite_summary_value_is_null_with_a_reason(in_process, monkeypatch):
    real = fleetsim_api.simulate

    def overflowing(*a, **k):
        result = real(*a, **k)
        result.summary["cost"]["usd_per_hour"] = float("inf")
        result.summary["power"]["gpu_mean_w"] = float("nan")
        return result

    monkeypatch.setattr(fleetsim_api, "simulate", overflowing)
    r = in_process("run", SCENARIO, "--json", "--set", "run.duration_s=5")
    assert r.returncode == 0, r.stderr
    s = _strict(r.stdout)
    assert s["cost"]["usd_per_hour"] is None and "not finite" in s["cost"]["usd_per_hour_reason"]
    assert s["power"]["gpu_mean_w"] is None and "NaN" in s["null_fields"]["power.gpu_mean_w"]


@pytest.mark.parametrize("command", ["gpus", "models"])
def test_catalog_json_parses_strictly_and_missing_figures_are_null(command):
    r = fleetsim(command, "--json")
    assert r.returncode == 0, r.stderr
    rows = _strict(r.stdout)
    assert rows and all(isinstance(row, dict) for row in rows)
    if command == "gpus":
        a100 = next(row for row in rows if row["gpu"] == "a100-80gb")
        assert a100["fp8_tflops"] is None and a100["bf16_tflops"] == 312.0  # A100: no fp8 units
        table = gpu_table()
        assert table.loc[table["gpu"] == "a100-80gb", "fp8_tflops"].item() is None


# ----------------------------------------------------------------------- entry points
def test_version_and_python_dash_m(tmp_path):
    for argv in (["-m", "fleetsim", "--version"], ["-m", "fleetsim.cli", "--version"]):
        r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"fleetsim {__version__}"


def test_shell_completion_completes_commands_and_options():
    env = {**os.environ, "_FLEETSIM_COMPLETE": "complete_bash", "COMP_WORDS": "fleetsim run --se", "COMP_CWORD": "2"}
    r = subprocess.run([sys.executable, "-m", "fleetsim"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {"--set", "--seed"}
