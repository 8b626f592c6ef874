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
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fleetsim.errors import FleetsimError, SpecError
from fleetsim.scenario import apply_overrides, scenario_from_dict
from fleetsim.simulation import build, simulate
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.spec.yaml_file import read_mapping

__all__ = ["display_columns", "flatten_summary", "load_sweep", "parse_grid", "point_id", "read_points", "run_sweep"]

_GRID_FORMS = (
    "use KEY=V1,V2,... or KEY=START:STOP:STEP (inclusive range), e.g. fleet.gpu=h100-sxm,h200 or fleet.replicas=4:64:4"
)
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*({_NUMBER})\s*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_RANGE_VALUES = 100_000

# Bookkeeping columns of the table (everything else is a parameter or a metric).
STATUS_COLUMNS = ("point_id", "status", "error")
BOOK_COLUMNS = ("elapsed_s", "run_id")


# --------------------------------------------------------------------------- the grid
def _grid_error(item: str, why: str) -> SpecError:
    return SpecError(f"--grid '{item}': {why}; {_GRID_FORMS}")


def _scalar(text: str) -> Any:
    """One grid value read as a YAML scalar (numbers, booleans, null, strings)."""
    text = text.strip()
    if ":" in text:  # YAML 1.1 would read 1:30 as the base-60 number 90
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)):
        return text
    return value


def _range(item: str, start: str, stop: str, step: str) -> list:
    integral = all(re.fullmatch(r"[+-]?\d+", s) for s in (start, stop, step))
    try:
        a, b, d = (Decimal(s) for s in (start, stop, step))
    except InvalidOperation:  # pragma: no cover - the regex admits only numbers
        raise _grid_error(item, "range bounds are not numbers") from None
    if d <= 0:
        raise _grid_error(item, f"STEP must be > 0 (got {step})")
    if b < a:
        raise _grid_error(item, f"STOP ({stop}) is below START ({start})")
    n = int((b - a) / d) + 1
    if n > MAX_RANGE_VALUES:
        raise _grid_error(item, f"the range has {n:,} values (at most {MAX_RANGE_VALUES:,})")
    values = [a + i * d for i in range(n)]
    return [int(v) for v in values] if integral else [float(v) for v in values]


def parse_grid(items: Iterable[str]) -> dict[str, list]:
    """['fleet.gpu=h100-sxm,h200', 'fleet.replicas=4:64:4'] -> {'fleet.gpu': ['h100-sxm', 'h200'],
    'fleet.replicas': [4, 8, ..., 64]}. Ranges are inclusive; floats allowed (0.5:2.0:0.5).
    Bad syntax raises SpecError (one line naming the item and the valid forms)."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise _grid_error(item, "no '='")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not _KEY.match(key):
            raise _grid_error(item, f"'{key}' is not a dotted field path")
        if key in grid:
            raise _grid_error(item, f"'{key}' is given twice")
        m = _RANGE.match(raw)
        if m:
            values = _range(item, *m.groups())
        else:
            parts = [p.strip() for p in raw.split(",")]
            if not raw.strip() or any(p == "" for p in parts):
                raise _grid_error(item, "empty value")
            if len(parts) == 1 and re.fullmatch(rf"\s*{_NUMBER}\s*:.*", raw):
                raise _grid_error(item, f"'{raw}' is not a START:STOP:STEP range of three numbers")
            values = [_scalar(p) for p in parts]
        if len(set(map(_canonical, values))) != len(values):
            raise _grid_error(item, "a value is repeated")
        grid[key] = values
    if not grid:
        raise SpecError(f"--grid: no grid given; {_GRID_FORMS}")
    return grid


# --------------------------------------------------------------------------- points and ids
def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _base_data(scenario: Any) -> tuple[dict, Path | None]:
    """The base scenario as a plain mapping (its content, for hashing) and its directory."""
    if isinstance(scenario, ScenarioSpec):
        return scenario.model_dump(mode="json"), None
    if isinstance(scenario, Mapping):
        return json.loads(_canonical(dict(scenario))), None
    path = Path(scenario)
    data = read_mapping(path, "scenario")
    return data, path.parent.resolve()


def point_id(base: Mapping, params: Mapping[str, Any]) -> str:
    """Stable id of a point: a hash of the base scenario's content (with the sweep's overrides
    applied) and the point's values."""
    text = _canonical({"base": base, "point": dict(params)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _points(grid: Mapping[str, list]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


# --------------------------------------------------------------------------- the worker
def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


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
        record["summary"] = _json_safe(simulate(spec).summary)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded, the sweep goes on
        record["status"] = "error"
        record["error"] = _error_text(exc)
        if not isinstance(exc, FleetsimError):
            record["traceback"] = traceback.format_exc(limit=8)
    record["elapsed_s"] = time.perf_counter() - t0
    return record


# --------------------------------------------------------------------------- files
def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_point(points_dir: Path, record: dict) -> None:
    _write_atomic(points_dir / f"{record['id']}.json", (json.dumps(_json_safe(record), indent=1) + "\n").encode())


def _read_point(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def read_points(out_dir: str | Path) -> list[dict]:
    """Every point record under OUT/points (any sweep that wrote there), in no set order."""
    records = []
    for p in sorted((Path(out_dir) / "points").glob("*.json")):
        r = _read_point(p)
        if r is not None:
            records.append(r)
    return records


def load_sweep(out_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """(the table, sweep.json) of a sweep directory: the points of its grid that have finished,
    in grid order (read from OUT/points; OUT/points.parquet when the per-point files are gone)."""
    out = Path(out_dir)
    meta_path = out / "sweep.json"
    if not meta_path.is_file():
        raise SpecError(f"{out}: no sweep.json here (not a directory written by fleetsim sweep)")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise SpecError(f"{meta_path}: not valid JSON ({exc})") from None
    params = list(meta["grid"])
    records = [
        r
        for r in (_read_point(out / "points" / f"{i}.json") for i in dict.fromkeys(meta["point_ids"]))
        if r is not None
    ]
    if records:
        return _table(records, params), meta
    if (out / "points.parquet").is_file():
        return pd.read_parquet(out / "points.parquet"), meta
    raise SpecError(f"{out}: the sweep has no finished points yet")


def flatten_summary(d: Mapping, prefix: str = "") -> dict:
    """{'latency_s': {'ttft': {'p99': x}}} -> {'latency_s.ttft.p99': x} (the table's column names)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_summary(v, key + "."))
        else:
            out[key] = v
    return out


def _row(record: dict) -> dict:
    row = dict(record["params"])
    row.update({"point_id": record["id"], "status": record["status"], "error": record.get("error")})
    for k, v in flatten_summary(record.get("summary") or {}).items():
        if k != "scenario" and k not in row:  # a parameter wins over the metric it sets
            row[k] = v
    row["elapsed_s"] = record.get("elapsed_s")
    row["run_id"] = record.get("run_id")
    return row


def _table(records: list[dict], params: list[str]) -> pd.DataFrame:
    rows = [_row(r) for r in records]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*params, *STATUS_COLUMNS, *BOOK_COLUMNS])
    metrics = [c for c in df.columns if c not in params and c not in STATUS_COLUMNS and c not in BOOK_COLUMNS]
    return df[[*params, *STATUS_COLUMNS, *metrics, *BOOK_COLUMNS]].reset_index(drop=True)


def _parquet_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that mix types (a grid of 1 and 'auto') are stored as text."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            kinds = {type(v) for v in out[c] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool}):
                out[c] = [
                    None
                    if v is None or (isinstance(v, float) and math.isnan(v))
                    else (v if isinstance(v, str) else _canonical(v))
                    for v in out[c]
                ]
    return out


def _write_table(out_dir: Path, df: pd.DataFrame) -> None:
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".points.parquet.", suffix=".tmp")
    os.close(fd)
    try:
        _parquet_ready(df).to_parquet(tmp, index=False)
        os.replace(tmp, out_dir / "points.parquet")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- executors
class _Serial:
    """Runs tasks in this process (workers=1): same worker function, no pool."""

    def run(self, tasks):
        for t in tasks:
            yield _run_point(t)

    def close(self):
        pass


class _Pool:
    def __init__(self, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: safe with threads (progress bar, Jupyter), identical on every platform.
        self.ex = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, tasks):
        from concurrent.futures import as_completed

        futures = [self.ex.submit(_run_point, t) for t in tasks]
        for f in as_completed(futures):
            yield f.result()

    def close(self):
        self.ex.shutdown(wait=True, cancel_futures=True)


class _Dask:
    def __init__(self, scheduler: str, workers: int | None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - dask is an optional dependency
            raise SpecError("--scheduler needs dask[distributed]: pip install 'fleetsim[dask]'") from None
        import logging

        self.cluster = None
        if scheduler == "local":
            self.cluster = LocalCluster(
                n_workers=workers or 2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = Client(self.cluster)
        elif scheduler.startswith("tcp://"):
            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise SpecError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        else:
            raise SpecError(f"--scheduler: '{scheduler}' is not 'local' or tcp://HOST:PORT")

    def run(self, tasks):
        from dask.distributed import as_completed

        futures = [self.client.submit(_run_point, t, pure=False) for t in tasks]
        self._futures = futures
        for f in as_completed(futures):
            yield f.result()

    def close(self):
        for f in getattr(self, "_futures", ()):
            f.cancel()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _executor(scheduler: str | None, workers: int | None, n_tasks: int):
    if scheduler:
        return _Dask(scheduler, workers)
    n = max(1, min(workers or os.cpu_count() or 1, n_tasks))
    return _Serial() if n == 1 else _Pool(n)


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
) -> pd.DataFrame:
    """Simulate every point of the grid's cartesian product; one row per point, in grid order.

    scenario: a YAML path, a mapping or a ScenarioSpec; overrides apply to every point (a grid key
    wins over an override of the same path). Points whose OUT/points/<id>.json exists are read,
    not rerun (retry_failed=True reruns those that failed). Invalid points (a bad value, a model
    that does not fit) are recorded with their error before anything runs.
    """
    if not grid:
        raise SpecError("sweep: the grid is empty; give at least one --grid KEY=VALUES")
    grid = {k: list(v) for k, v in grid.items()}
    for k, v in grid.items():
        if not v:
            raise SpecError(f"sweep: grid key '{k}' has no values")
    base, base_dir = _base_data(scenario)
    base = apply_overrides(base, dict(overrides or {}))
    out = Path(out_dir)
    points_dir = out / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    params = list(grid)
    points = _points(grid)
    ids = [point_id(base, p) for p in points]
    _write_atomic(
        out / "sweep.json",
        (
            json.dumps(
                _json_safe(
                    {
                        "grid": grid,
                        "overrides": dict(overrides or {}),
                        "base_scenario": base,
                        "base_dir": None if base_dir is None else str(base_dir),
                        "point_ids": ids,
                    }
                ),
                indent=1,
            )
            + "\n"
        ).encode(),
    )

    # Resume: what is already on disk; then validate every remaining point before running any.
    done: dict[str, dict] = {}
    tasks: list[dict] = []
    for pid, p in zip(ids, points):
        if pid in done:
            continue
        existing = _read_point(points_dir / f"{pid}.json")
        if existing is not None and not (retry_failed and existing["status"] != "ok"):
            done[pid] = existing
            continue
        try:
            spec = scenario_from_dict(base, p, where=f"point {_canonical(p)}", base=base_dir)
            build(spec)  # capacity errors surface here, before any simulation starts
        except Exception as exc:  # noqa: BLE001
            record = {
                "id": pid,
                "params": p,
                "run_id": run_id,
                "status": "error",
                "error": _error_text(exc),
                "summary": None,
                "elapsed_s": 0.0,
            }
            _write_point(points_dir, record)
            done[pid] = record
            continue
        tasks.append({"id": pid, "params": p, "run_id": run_id, "scenario": spec.model_dump(mode="json")})

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
    batch = max(8, 2 * (workers or os.cpu_count() or 1))
    try:
        if tasks:
            executor = _executor(scheduler, workers, len(tasks))
            for i, record in enumerate(executor.run(tasks), 1):
                _write_point(points_dir, record)
                done[record["id"]] = record
                if bar is not None:
                    bar.advance(task_bar)
                if i % batch == 0 and i < len(tasks):
                    _write_table(out, table())
    except BaseException as exc:
        if bar is not None:
            bar.stop()
            bar = None
        n = len([i for i in set(ids) if i in done])
        _write_table(out, table())
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped ({_error_text(exc)})"
        sys.stderr.write(
            f"sweep {what}: {n} of {len(set(ids))} points are written to {points_dir}; "
            "run the same command again to resume (finished points are not rerun)\n"
        )
        raise
    finally:
        if bar is not None:
            bar.stop()
        if executor is not None:
            executor.close()
    df = table()
    _write_table(out, df)
    return df


# --------------------------------------------------------------------------- display
_DISPLAY_METRICS = (
    "slo.met",
    "latency_s.ttft.p99",
    "latency_s.tpot.p99",
    "throughput.output_tokens_per_s",
    "power.it_mean_kw",
    "cost.usd_per_hour",
    "cost.usd_per_million_tokens",
)


def display_columns(df: pd.DataFrame) -> list[str]:
    """A readable subset for a terminal: the parameters, status, the headline metrics, and the
    error column when some point failed."""
    first_status = list(df.columns).index("point_id") if "point_id" in df.columns else len(df.columns)
    params = list(df.columns[:first_status])
    cols = params + ["status"]
    cols += [c for c in _DISPLAY_METRICS if c in df.columns and c not in params]
    if "error" in df.columns and (df["status"] != "ok").any():
        cols.append("error")
    return [c for c in cols if c in df.columns]
