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
    assert parse_grid(["workload.classes.0.weight=1,2"]) == {"workload.classes.0.weight": [1, 2]}


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
    grid = {"model": ["llama-3-8b", "llama-3-70b"], "fleet.replicas": [1, 3]}
    df = run_sweep(SCENARIO, grid, tmp_path, overrides=SHORT, workers=1, progress=False)
    assert len(df) == 4
    by = {(r["model"], r["fleet.replicas"]): r for r in df.to_dict(orient="records")}
    assert by[("llama-3-8b", 1)]["status"] == "ok" and by[("llama-3-8b", 1)]["slo.met"] in (True, False)
    # A model that does not fit (found before anything runs, with the numbers).
    err = by[("llama-3-70b", 1)]["error"]
    assert by[("llama-3-70b", 1)]["status"] == "error" and "does not fit" in err and "GB" in err
    # An exception inside the simulation.
    assert by[("llama-3-8b", 3)]["error"] == "RuntimeError: solver blew up"
    assert pd.isna(by[("llama-3-8b", 3)]["cost.usd_per_hour"])
    # Failed points are results too: a rerun does not repeat them.
    monkeypatch.setattr(fleetsim.sweep, "simulate", lambda *a, **k: pytest.fail("nothing should rerun"))
    again = run_sweep(SCENARIO, grid, tmp_path, overrides=SHORT, workers=1, progress=False)
    pd.testing.assert_frame_equal(again, df)
    assert "error" in display_columns(df)


class _Summary:
    """A stand-in for a simulation result: the sweep only reads .summary."""

    summary = {"slo": {"met": True}, "cost": {"usd_per_hour": 1.0, "usd_per_million_tokens": float("inf")}}


def _no_simulation(monkeypatch):
    monkeypatch.setattr(fleetsim.sweep, "simulate", lambda *a, **k: pytest.fail("nothing should run"))


# --------------------------------------------------------------------------- caught before anything runs
@pytest.mark.parametrize(
    "key, needle",
    [
        ("fleet.replica", "did you mean fleet.replicas?"),
        ("replicas", "did you mean fleet.replicas?"),
        ("workload.arrival.rate", "did you mean workload.arrival.rate_per_s?"),
        ("fleet.gpu.name", "'fleet.gpu' is a value"),
        ("workload.classes.x.weight", "must be an item index"),
        ("workload.classes.5.weight", "has 1 item(s) in the scenario; index 5 is out of range"),
        ("workload.classes." + "9" * 5000 + ".weight", "must be an item index"),  # the key is cut in the line
    ],
)
def test_a_grid_key_that_is_not_a_scenario_field_is_one_line_before_anything_runs(tmp_path, monkeypatch, key, needle):
    _no_simulation(monkeypatch)
    with pytest.raises(SpecError) as exc:
        run_sweep(SCENARIO, {key: [2, 4]}, tmp_path / "s", workers=1, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"--grid {key[:30]}") and needle in msg and len(msg) < 1000
    assert not (tmp_path / "s").exists()  # nothing written


@pytest.mark.parametrize(
    "grid, needle",
    [
        ({"fleet.replicas": [1, 0]}, "--grid fleet.replicas=0"),
        ({"fleet.gpu": ["h100-sxm", "h900"], "fleet.replicas": [1, 2]}, "--grid fleet.gpu=h900"),
        ({"kv_cache.key_dtype": ["bf16", "fp7"]}, "--grid kv_cache.key_dtype=fp7"),
    ],
)
def test_a_value_no_point_can_use_is_one_line_before_anything_runs(tmp_path, monkeypatch, grid, needle):
    _no_simulation(monkeypatch)
    with pytest.raises(SpecError) as exc:
        run_sweep(SCENARIO, grid, tmp_path / "s", workers=1, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(needle), msg
    assert not (tmp_path / "s").exists()


def test_a_combination_that_is_invalid_is_a_failed_point_not_a_bad_value(tmp_path, monkeypatch):
    # GPT-2 XL has 25 attention heads: TP 2 cannot split them; Llama 3 8B (32 heads) can.
    monkeypatch.setattr(fleetsim.sweep, "simulate", lambda spec, *a, **k: _Summary())
    grid = {"model": ["llama-3-8b", "gpt2-xl"], "fleet.tp": [1, 2]}
    df = run_sweep(SCENARIO, grid, tmp_path, workers=1, progress=False)
    status = {(r["model"], r["fleet.tp"]): (r["status"], r["error"]) for r in df.to_dict(orient="records")}
    assert [s for s, _ in status.values()].count("ok") == 3
    assert status[("gpt2-xl", 2)][0] == "error" and "tp" in status[("gpt2-xl", 2)][1]
    # The worker's summary went through the JSON writer: infinite is null, with the reason noted.
    record = json.loads((tmp_path / "points" / f"{df['point_id'][0]}.json").read_text())
    assert record["summary"]["cost"]["usd_per_million_tokens"] is None
    assert df["cost.usd_per_million_tokens"].isna().all()


def test_a_list_item_by_index_is_a_grid_key(tmp_path):
    grid = {"workload.classes.0.output_tokens": [{"kind": "fixed", "tokens": 16}, {"kind": "fixed", "tokens": 64}]}
    df = run_sweep(SCENARIO, grid, tmp_path, overrides=SHORT, workers=1, progress=False)
    assert (df["status"] == "ok").all()
    short, long = df["latency_s.e2e.mean"]
    assert long > short  # four times the output tokens take longer


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


def test_cli_a_typo_in_a_key_is_one_line_and_exit_2(tmp_path):
    r = _cli("sweep", str(SCENARIO), "--grid", "fleet.replica=2,4", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: --grid fleet.replica:") and "did you mean fleet.replicas?" in line


def test_cli_exit_1_when_every_point_failed_and_0_with_a_count_when_some_did(tmp_path):
    # Llama 3 70B (141 GB of bf16 weights) fits on no single H100: every point fails before running.
    r = _cli(
        "sweep",
        str(SCENARIO),
        "--grid",
        "model=llama-3-70b",
        "--grid",
        "fleet.replicas=1,2",
        "--out",
        str(tmp_path / "a"),
    )
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: sweep: all 2 points failed") and "does not fit" in line
    r = _cli(
        "sweep",
        str(SCENARIO),
        "--grid",
        "model=llama-3-8b,llama-3-70b",
        "--set",
        "run.duration_s=10",
        "--out",
        str(tmp_path / "b"),
        "--workers",
        "1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert [row["status"] for row in json.loads(r.stdout)] == ["ok", "error"]
    assert "sweep: 1 of 2 points failed" in r.stderr


# --------------------------------------------------------------------------- stopping a sweep
LONG_SWEEP = ["--grid", "workload.arrival.rate_per_s=30:60:2", "--set", "run.duration_s=300", "--workers", "2"]


def _start_sweep(out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "fleetsim", "sweep", str(SCENARIO), *LONG_SWEEP, "--out", str(out), *extra],
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # Ctrl-C as a terminal delivers it, even when this test runs under nohup or in a background
        # job (which start children with SIGINT ignored, so Python would install no handler).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_points(proc, out, n, timeout_s=240):
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "points").glob("*.json"))) >= n:
            return
        time.sleep(0.05)
    pytest.fail(f"the sweep wrote fewer than {n} points: {proc.stderr.read() if proc.poll() is not None else ''}")


@pytest.mark.parametrize(
    "how, scheduler",
    [("SIGTERM to the sweep", None), ("Ctrl-C to the process group", None), ("Ctrl-C to the process group", "local")],
)
def test_stopping_a_sweep_ends_its_workers_keeps_its_points_and_says_so_in_one_line(tmp_path, how, scheduler):
    psutil = pytest.importorskip("psutil")
    if scheduler:
        pytest.importorskip("dask.distributed")
    out = tmp_path / "s"
    proc = _start_sweep(out, *(["--scheduler", scheduler] if scheduler else []))
    try:
        _wait_for_points(proc, out, 1)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the sweep runs in worker processes"
        if how.startswith("SIGTERM"):
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        stderr = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"workers left running: {alive}"
    assert proc.returncode == (128 + signal.SIGTERM if how.startswith("SIGTERM") else 130), stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    kept = len(list((out / "points").glob("*.json")))
    assert lines[0].startswith(f"sweep interrupted; {kept} of 16 points kept in {out}") and kept >= 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux")
def test_pool_workers_die_with_a_sweep_killed_outright(tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "s"
    proc = _start_sweep(out)
    try:
        _wait_for_points(proc, out, 1)
        workers = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)  # no handler runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"workers outlived the sweep: {alive}"


def test_seeds_give_each_point_interval_columns_from_its_seed_runs(tmp_path):
    tiny = {"run.duration_s": 10, "workload.arrival.rate_per_s": 4}
    df = run_sweep(
        SCENARIO, {"fleet.replicas": [1, 2]}, tmp_path / "s", overrides=tiny, workers=1, progress=False, seeds=3
    )
    assert (df["status"] == "ok").all() and (df["interval.seeds"] == 3).all()
    for col in ("usd_per_million_tokens", "slo_attainment", "ttft_at_percentile_s", "it_kw"):
        assert (df[f"interval.{col}_lo"] <= df[f"interval.{col}"]).all()
        assert (df[f"interval.{col}"] <= df[f"interval.{col}_hi"]).all()
    # the interval is over run.seed + 0..2: recompute the mean TTFT of the 2-replica point by hand
    import fleetsim

    seed0 = fleetsim.load_scenario(SCENARIO, tiny).run.seed
    q = [
        fleetsim.simulate(SCENARIO, {**tiny, "fleet.replicas": 2, "run.seed": seed0 + i}).summary["slo"]["ttft_p99_s"]
        for i in range(3)
    ]
    row = df[df["fleet.replicas"] == 2].iloc[0]
    assert row["interval.ttft_at_percentile_s"] == pytest.approx(sum(q) / 3)
    assert "interval.usd_per_million_tokens_lo" in display_columns(df)
