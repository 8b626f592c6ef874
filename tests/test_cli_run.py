"""`fleetsim run` as a user meets it: output shapes, --set/--seed/--out, and bad scenario files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
    for f in ("requests.csv", "timeseries.csv", "replicas.csv"):
        assert (out / f).stat().st_size > 0


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
