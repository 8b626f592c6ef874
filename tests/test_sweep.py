"""Sweeps: grid syntax, identical results on a process pool and a Dask cluster, resume after a
kill, and failed points recorded without stopping the sweep."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import fleetsim.sweep
from fleetsim.errors import SpecError
from fleetsim.sweep import display_columns, load_sweep, parse_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "h100_llama3.yaml"
SHORT = {"run.duration_s": 20}
BOOKKEEPING = ["elapsed_s", "run_id"]


# --------------------------------------------------------------------------- grid syntax
def test_parse_grid_lists_and_inclusive_ranges():
    grid = parse_grid(
        [
            "fleet.gpu=h100-sxm,h200,b200",
            "fleet.replicas=4:64:4",
            "scale=0.5:2.0:0.5",
            "kv_cache.key_dtype=fp8",
            "run.drain=true,false",
        ]
    )
    assert grid["fleet.gpu"] == ["h100-sxm", "h200", "b200"]
    assert grid["fleet.replicas"] == list(range(4, 65, 4))
    assert grid["scale"] == [0.5, 1.0, 1.5, 2.0]
    assert grid["kv_cache.key_dtype"] == ["fp8"]
    assert grid["run.drain"] == [True, False]
    assert parse_grid(["x=0.1:0.3:0.1"])["x"] == [0.1, 0.2, 0.3]  # decimal steps land exactly


@pytest.mark.parametrize(
    "item",
    [
        "fleet.replicas",
        "fleet.replicas=",
        "fleet.replicas=4:64",
        "fleet.replicas=8:4:1",
        "fleet.replicas=1:8:0",
        "=4",
        "fleet.replicas=1,,2",
        "fleet.replicas=2,2",
        "fleet.replicas=1:x:2",
    ],
)
def test_parse_grid_rejects_bad_items_in_one_line(item):
    with pytest.raises(SpecError) as exc:
        parse_grid([item])
    msg = str(exc.value)
    assert "\n" not in msg and item in msg and "KEY=V1,V2" in msg and "START:STOP:STEP" in msg


# --------------------------------------------------------------------------- executors agree
def test_dask_local_cluster_gives_the_same_table_as_the_process_pool(tmp_path):
    pytest.importorskip("dask.distributed")
    grid = parse_grid(["fleet.replicas=1:3:1", "workload.arrival.rate_per_s=4,8,12,16", "kv_cache.key_dtype=bf16,fp8"])
    pool = run_sweep(SCENARIO, grid, tmp_path / "pool", overrides=SHORT, workers=2, progress=False)
    dask = run_sweep(SCENARIO, grid, tmp_path / "dask", overrides=SHORT, scheduler="local", workers=2, progress=False)
    assert len(pool) == 24 and (pool["status"] == "ok").all()
    assert pool["point_id"].is_unique
    # Same point ids in the same (grid) order, and the same metrics for each.
    pd.testing.assert_frame_equal(pool.drop(columns=BOOKKEEPING), dask.drop(columns=BOOKKEEPING))
    # Columns: parameters by dotted path, then id/status/error, then flattened summary metrics.
    assert list(pool.columns[:6]) == [
        "fleet.replicas",
        "workload.arrival.rate_per_s",
        "kv_cache.key_dtype",
        "point_id",
        "status",
        "error",
    ]
    for col in (
        "latency_s.ttft.p99",
        "throughput.output_tokens_per_s",
        "cost.usd_per_million_tokens",
        "slo.met",
        "power.it_mean_kw",
        "cooling.tons",
    ):
        assert col in pool.columns
    # The parquet file is the same table, and every point has its own JSON file.
    on_disk = pd.read_parquet(tmp_path / "pool" / "points.parquet")
    pd.testing.assert_frame_equal(on_disk.drop(columns=BOOKKEEPING), pool.drop(columns=BOOKKEEPING), check_dtype=False)
    assert sorted(p.stem for p in (tmp_path / "pool" / "points").glob("*.json")) == sorted(pool["point_id"])
    # More load on the same fleet: more output tokens per second.
    one = pool[(pool["fleet.replicas"] == 1) & (pool["kv_cache.key_dtype"] == "bf16")]
    assert one["throughput.output_tokens_per_s"].is_monotonic_increasing
    assert set(display_columns(pool)) >= {"fleet.replicas", "status", "slo.met", "cost.usd_per_million_tokens"}


# --------------------------------------------------------------------------- resume after a kill
KILLED_SWEEP = textwrap.dedent("""
    import sys
    from fleetsim.sweep import parse_grid, run_sweep
    run_sweep(sys.argv[1], parse_grid(["fleet.replicas=1,2", "workload.arrival.rate_per_s=30:44:2"]), sys.argv[2],
              overrides={"run.duration_s": 300}, workers=2, progress=False)
""")


def test_a_killed_sweep_rerun_completes_every_point_exactly_once(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SWEEP, str(SCENARIO), str(out)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    points = out / "points"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if points.is_dir() and len(list(points.glob("*.json"))) >= 3:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its pool workers, mid-run
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = {p.name: p.read_bytes() for p in points.glob("*.json")}
    assert 3 <= len(before) < 16, "the sweep should have been killed midway"

    calls = []
    real = fleetsim.sweep.simulate
    monkeypatch.setattr(fleetsim.sweep, "simulate", lambda *a, **k: calls.append(1) or real(*a, **k))
    df = run_sweep(
        SCENARIO,
        parse_grid(["fleet.replicas=1,2", "workload.arrival.rate_per_s=30:44:2"]),
        out,
        overrides={"run.duration_s": 300},
        workers=1,
        progress=False,
    )

    assert len(df) == 16 and df["point_id"].is_unique and (df["status"] == "ok").all()
    assert len(calls) == 16 - len(before)  # only the missing points ran
    for name, data in before.items():  # finished points were not touched
        assert (points / name).read_bytes() == data
    rerun_ids = set(df.loc[~df["point_id"].isin([n[:-5] for n in before]), "run_id"])
    assert len(rerun_ids) == 1 and rerun_ids.isdisjoint(json.loads(d)["run_id"] for d in before.values())
    assert sorted(p.stem for p in points.glob("*.json")) == sorted(df["point_id"])
    # A third run has nothing left to do.
    calls.clear()
    again = run_sweep(
        SCENARIO,
        parse_grid(["fleet.replicas=1,2", "workload.arrival.rate_per_s=30:44:2"]),
        out,
        overrides={"run.duration_s": 300},
        workers=1,
        progress=False,
    )
    assert calls == [] and again["point_id"].tolist() == df["point_id"].tolist()


# --------------------------------------------------------------------------- failures are data
def test_failed_points_are_recorded_and_the_rest_complete(tmp_path, monkeypatch):
    real = fleetsim.sweep.simulate

    def flaky(spec, *a, **k):
        if spec.fleet.replicas == 3:
            raise RuntimeError("solver blew up")
        return real(spec, *a, **k)

    monkeypatch.setattr(fleetsim.sweep, "simulate", flaky)
    grid = {"model": ["llama-3-8b", "llama-3-70b"], "fleet.replicas": [1, 0, 3]}
    df = run_sweep(SCENARIO, grid, tmp_path, overrides=SHORT, workers=1, progress=False)
    assert len(df) == 6
    by = {(r["model"], r["fleet.replicas"]): r for r in df.to_dict(orient="records")}
    assert by[("llama-3-8b", 1)]["status"] == "ok" and by[("llama-3-8b", 1)]["slo.met"] in (True, False)
    # A model that does not fit (found before anything runs, with the numbers).
    err = by[("llama-3-70b", 1)]["error"]
    assert by[("llama-3-70b", 1)]["status"] == "error" and "does not fit" in err and "GB" in err
    # An invalid value.
    assert by[("llama-3-8b", 0)]["status"] == "error" and "fleet.replicas" in by[("llama-3-8b", 0)]["error"]
    # An exception inside the simulation.
    assert by[("llama-3-8b", 3)]["error"] == "RuntimeError: solver blew up"
    assert pd.isna(by[("llama-3-8b", 3)]["cost.usd_per_hour"])
    # Failed points are results too: a rerun does not repeat them.
    monkeypatch.setattr(fleetsim.sweep, "simulate", lambda *a, **k: pytest.fail("nothing should rerun"))
    again = run_sweep(SCENARIO, grid, tmp_path, overrides=SHORT, workers=1, progress=False)
    pd.testing.assert_frame_equal(again, df)
    assert "error" in display_columns(df)


def test_point_ids_depend_on_the_base_scenario_and_the_point(tmp_path):
    grid = {"fleet.replicas": [1, 2]}
    a = run_sweep(SCENARIO, grid, tmp_path / "a", overrides=SHORT, workers=1, progress=False)
    b = run_sweep(SCENARIO, grid, tmp_path / "b", overrides={"run.duration_s": 25}, workers=1, progress=False)
    c = run_sweep(SCENARIO, grid, tmp_path / "c", overrides=SHORT, workers=1, progress=False)
    assert a["point_id"].tolist() == c["point_id"].tolist()
    assert set(a["point_id"]).isdisjoint(b["point_id"])
    table, meta = load_sweep(tmp_path / "a")
    assert table["point_id"].tolist() == a["point_id"].tolist() and meta["grid"] == {"fleet.replicas": [1, 2]}


# --------------------------------------------------------------------------- the command
def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "fleetsim.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_cli_sweep_json_and_bad_grid(tmp_path):
    r = _cli(
        "sweep",
        str(SCENARIO),
        "--grid",
        "fleet.replicas=1:2:1",
        "--set",
        "run.duration_s=20",
        "--out",
        str(tmp_path),
        "--workers",
        "1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["fleet.replicas"] for row in rows] == [1, 2] and all(row["status"] == "ok" for row in rows)
    r = _cli("sweep", str(SCENARIO), "--grid", "fleet.replicas=4:64", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: --grid 'fleet.replicas=4:64'")
