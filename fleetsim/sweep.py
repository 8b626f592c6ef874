"""Sweeps: the cartesian product of a grid of what-ifs, one simulation per point.

    df = run_sweep("scenarios/h100_llama3.yaml",
                   parse_grid(["fleet.replicas=2:8:2", "kv_cache.key_dtype=bf16,fp8"]),
                   "out/sweep", overrides={"run.duration_s": 60})

Every point is the base scenario + `overrides` + the point's values (dotted paths). Each point has
a stable id (a hash of the point's values and the base scenario's content); its result is written
to OUT/points/<id>.json the moment it finishes (atomically), and the whole table to
OUT/points.parquet after each batch and at the end. Run the same sweep again and the points whose
file exists are not rerun: a sweep killed midway completes with every point exactly once.

Execution: a local process pool (default), a dask.distributed LocalCluster (scheduler="local"),
or an existing Dask cluster (scheduler="tcp://HOST:PORT"). All three run the same worker function
on the same validated scenario, so they give the same table.

This module runs the sweep (validating every point first, the worker, interrupts); the grid and
point ids are fleetsim.sweep_grid, the files and the table fleetsim.sweep_table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fleetsim.errors import CapacityError, FleetsimError, SpecError
from fleetsim.executors import executor as make_executor
from fleetsim.output import check_output_dir, plain, write_json
from fleetsim.scenario import apply_overrides, scenario_from_dict
from fleetsim.simulation import build, simulate
from fleetsim.spec.paths import admitted_types
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.sweep_grid import (
    MAX_RANGE_VALUES,
    _base_data,
    _canonical,
    _points,
    _shown_value,
    _with_point,
    check_grid_key,
    parse_grid,
    point_id,
)
from fleetsim.sweep_table import (
    BOOK_COLUMNS,
    STATUS_COLUMNS,
    _read_point,
    _table,
    _write_point,
    _write_table,
    display_columns,
    flatten_summary,
    load_sweep,
    read_points,
)

__all__ = [
    "BOOK_COLUMNS",
    "MAX_RANGE_VALUES",
    "STATUS_COLUMNS",
    "SweepInterrupted",
    "admitted_types",
    "check_grid_key",
    "display_columns",
    "flatten_summary",
    "load_sweep",
    "parse_grid",
    "point_id",
    "read_points",
    "run_sweep",
]


# --------------------------------------------------------------------------- the worker
def _error_text(exc: BaseException) -> str:
    if isinstance(exc, FleetsimError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _run_point(task: dict) -> dict:
    """Simulate one validated point. The same function runs in-process, in a process pool and
    on Dask workers; it never raises (a failure is the point's result)."""
    t0 = time.perf_counter()
    record = {
        "id": task["id"],
        "params": task["params"],
        "run_id": task["run_id"],
        "status": "ok",
        "error": None,
        "summary": None,
    }
    try:
        spec = ScenarioSpec.model_validate(task["scenario"])
        record["summary"] = plain(simulate(spec).summary)
        seeds = int(task.get("seeds") or 1)
        if seeds > 1:  # run.seed + 1 .. R-1 as well: headline figures with 95% Student-t intervals
            from fleetsim.study.replicates import replicate

            reps = replicate(spec, seeds=seeds, cache={spec.run.seed: record["summary"]})
            record["intervals"] = plain(reps.columns())
    except Exception as exc:  # noqa: BLE001 - any failure is recorded, the sweep goes on
        record["status"] = "error"
        record["error"] = _error_text(exc)
        if not isinstance(exc, FleetsimError):
            record["traceback"] = traceback.format_exc(limit=8)
    record["elapsed_s"] = time.perf_counter() - t0
    return record


# --------------------------------------------------------------------------- interrupts
class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a sweep; the finished points are kept. `message` is one line for
    the user, `exit_status` what the command exits with (128 + the signal)."""

    def __init__(self, message: str, exit_status: int = 130):
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so the sweep stops the same way."""


def _raise_terminated(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_stops_the_sweep() -> Iterator[None]:
    """While a sweep runs in the main thread, SIGTERM stops it like Ctrl-C (workers are ended,
    finished points kept); a handler the application installed is left alone."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --------------------------------------------------------------------------- validating every point first
def _failed(pid: str, params: dict, run_id: str, exc: BaseException) -> dict:
    return {
        "id": pid,
        "params": params,
        "run_id": run_id,
        "status": "error",
        "error": _error_text(exc),
        "summary": None,
        "elapsed_s": 0.0,
    }


def _bad_value(grid: Mapping[str, list], points: list[dict], invalid: dict[int, str]) -> str | None:
    """One line for the first grid value none of whose points is valid (a typo, an out-of-range
    value), preferring a key the error names; None where every invalid point is a combination."""
    blamed = []
    for key, values in grid.items():
        for value in values:
            with_it = [i for i, p in enumerate(points) if p[key] is value]
            if with_it and all(i in invalid for i in with_it):
                blamed.append((key, value, invalid[with_it[0]]))
    if not blamed:
        return None
    key, value, error = next((b for b in blamed if b[0] in b[2] or b[0].rsplit(".", 1)[-1] in b[2]), blamed[0])
    return f"--grid {key}={_shown_value(value)}: no point with this value is valid: {error}"


# --------------------------------------------------------------------------- the sweep
def run_sweep(
    scenario: Any,
    grid: Mapping[str, list],
    out_dir: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    seeds: int = 1,
) -> pd.DataFrame:
    """Simulate every point of the grid's cartesian product; one row per point, in grid order.

    seeds > 1: each point also runs at run.seed + 1 .. R-1 and its row carries interval.<figure>,
    interval.<figure>_lo and _hi (95% Student-t over the seeds) for the headline figures (SLO
    attainment, TTFT/TPOT at the SLO percentile, $/Mtok, IT kW, peak GPU W, tokens/s).

    scenario: a YAML path, a mapping or a ScenarioSpec; overrides apply to every point (a grid key
    wins over an override of the same path). Before anything runs: every grid key must be a field
    of the scenario schema and every point is built; a value with which no point is valid (a typo,
    a value out of range) raises SpecError naming it, while a point that is not valid only in
    combination (a TP degree one of the models cannot use) or does not fit (CapacityError) is
    recorded as failed. Points whose OUT/points/<id>.json exists are read, not rerun
    (retry_failed=True reruns those that failed). Ctrl-C or SIGTERM ends the workers, keeps the
    finished points and raises SweepInterrupted.
    """
    if not grid:
        raise SpecError("sweep: the grid is empty; give at least one --grid KEY=VALUES")
    grid = {k: list(v) for k, v in grid.items()}
    for k, v in grid.items():
        if not v:
            raise SpecError(f"sweep: grid key '{k}' has no values")
    out = check_output_dir(out_dir, "--out", replace=False)
    base, base_dir = _base_data(scenario)
    base = apply_overrides(base, dict(overrides or {}))
    for key in grid:
        check_grid_key(key, base)
    from fleetsim.study.replicates import check_seeds

    check_seeds(seeds)
    run_id = uuid.uuid4().hex[:12]
    params = list(grid)
    points = _points(grid)
    ids = [point_id(base, p) + (f"-r{seeds}" if seeds > 1 else "") for p in points]
    points_dir = out / "points"

    # Resume: what is already on disk; then build every remaining point before running any.
    done: dict[str, dict] = {}
    invalid: dict[int, str] = {}
    tasks: list[dict] = []
    seen: set[str] = set()
    for i, (pid, p) in enumerate(zip(ids, points)):
        if pid in seen:
            continue
        seen.add(pid)
        existing = _read_point(points_dir / f"{pid}.json")
        if existing is not None and not (retry_failed and existing["status"] != "ok"):
            done[pid] = existing
            continue
        where = f"point {_canonical(p)}"
        try:
            spec = scenario_from_dict(_with_point(base, p), where=where, base=base_dir)
            build(spec)  # capacity errors surface here, before any simulation starts
        except CapacityError as exc:
            done[pid] = _failed(pid, p, run_id, exc)
            continue
        except FleetsimError as exc:
            invalid[i] = str(exc).removeprefix(f"{where}: ")
            continue
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is the point's result
            done[pid] = _failed(pid, p, run_id, exc)
            continue
        tasks.append(
            {"id": pid, "params": p, "run_id": run_id, "scenario": spec.model_dump(mode="json"), "seeds": seeds}
        )
    bad = _bad_value(grid, points, invalid)
    if bad is not None:
        raise SpecError(bad)

    points_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "sweep.json",
        {
            "grid": grid,
            "overrides": dict(overrides or {}),
            "base_scenario": base,
            "base_dir": None if base_dir is None else str(base_dir),
            "point_ids": ids,
        },
        indent=1,
    )
    for i, why in invalid.items():  # valid values, an invalid combination: a result
        done[ids[i]] = _failed(ids[i], points[i], run_id, SpecError(f"point {_canonical(points[i])}: {why}"))
    for record in done.values():
        if record["run_id"] == run_id:
            _write_point(points_dir, record)

    def table() -> pd.DataFrame:
        return _table([done[i] for i in dict.fromkeys(ids) if i in done], params)

    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        task_bar = bar.add_task("sweep", total=len(set(ids)), completed=len(done))
        bar.start()
    executor = None
    interrupted = False
    batch = max(8, 2 * (workers or os.cpu_count() or 1))
    try:
        with _sigterm_stops_the_sweep():
            if tasks:
                executor = make_executor(scheduler, workers, len(tasks))
                for i, record in enumerate(executor.as_completed(_run_point, tasks), 1):
                    _write_point(points_dir, record)
                    done[record["id"]] = record
                    if bar is not None:
                        bar.advance(task_bar)
                    if i % batch == 0 and i < len(tasks):
                        _write_table(out, table())
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        if bar is not None:
            bar.stop()
            bar = None
        if executor is not None:
            executor.close(interrupted=interrupted)
            executor = None
        n = len([i for i in set(ids) if i in done])
        _write_table(out, table())
        kept = f"{n} of {len(set(ids))} points kept in {out} (run the same command again to resume)"
        if interrupted:
            status = 128 + signal.SIGTERM if isinstance(exc, _Terminated) else 130
            raise SweepInterrupted(f"sweep interrupted; {kept}", status) from None
        sys.stderr.write(f"sweep stopped ({_error_text(exc)}); {kept}\n")
        raise
    finally:
        if bar is not None:
            bar.stop()
        if executor is not None:
            executor.close()
    df = table()
    _write_table(out, df)
    return df
