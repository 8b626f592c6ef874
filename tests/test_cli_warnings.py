"""Warnings on the command line are one line, `warning: MESSAGE`; a trace cut at run.duration_s
says so in the summary too (requests.trace_dropped_after_duration)."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from test_cli_memory import run_in_process

import fleetsim
from fleetsim import api as fleetsim_api

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"
CUT = "warning: workload.arrival.path: 139 of 200 trace requests arrive after run.duration_s = 30 s"


def _trace_scenario(tmp_path: Path, duration_s: float = 30) -> Path:
    """200 requests, one every 0.5 s (the trace spans 99.5 s), replayed for duration_s."""
    rows = "".join(f"{i * 0.5},100,20\n" for i in range(200))
    (tmp_path / "t.csv").write_text("arrival_s,input_tokens,output_tokens\n" + rows)
    data = yaml.safe_load(SCENARIO.read_text())
    data["workload"] = {"arrival": {"kind": "trace", "path": "t.csv"}}
    data["run"] = {"duration_s": duration_s, "seed": 1}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _fleetsim(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fleetsim", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_a_cut_trace_warns_in_one_line_and_the_summary_counts_the_dropped_requests(tmp_path):
    r = _fleetsim("run", _trace_scenario(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith(CUT), r.stderr
    assert "FleetsimWarning" not in r.stderr and ".py:" not in r.stderr  # not `file:line: Category: msg`
    requests = json.loads(r.stdout)["requests"]
    assert requests["trace_dropped_after_duration"] == 139 and requests["arrived"] == 61


def test_a_whole_trace_and_other_arrivals_drop_nothing(tmp_path):
    whole = fleetsim.simulate(_trace_scenario(tmp_path, duration_s=120))
    assert whole.summary["requests"]["trace_dropped_after_duration"] == 0
    assert whole.summary["requests"]["arrived"] == 200
    poisson = fleetsim.simulate(SCENARIO, {"run.duration_s": 5})
    assert poisson.summary["requests"]["trace_dropped_after_duration"] == 0
    closed = fleetsim.simulate(SCENARIO, {"run.duration_s": 5, "workload.arrival": {"kind": "closed", "users": 4}})
    assert closed.summary["requests"]["trace_dropped_after_duration"] == 0


def test_any_warning_is_one_line_and_the_hook_is_put_back(monkeypatch, capsys):
    real = fleetsim_api.simulate

    def warning_simulate(*a, **k):
        warnings.warn("a library's\n  two-line remark", DeprecationWarning, stacklevel=1)
        return real(*a, **k)

    monkeypatch.setattr(fleetsim_api, "simulate", warning_simulate)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        r = run_in_process(monkeypatch, capsys, "run", SCENARIO, "--set", "run.duration_s=5", "--json")
        assert warnings.showwarning is before  # main() put the hook back
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["warning: a library's two-line remark"], r.stderr


@pytest.mark.slow
def test_sweep_workers_warn_in_one_line_too(tmp_path):
    r = _fleetsim(
        "sweep", _trace_scenario(tmp_path), "--grid", "fleet.replicas=1,2", "--workers", "2", "--out", tmp_path / "sw"
    )
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith(CUT) for line in lines), r.stderr
    table, _ = fleetsim.load_sweep(tmp_path / "sw")
    assert list(table["requests.trace_dropped_after_duration"]) == [139, 139]
