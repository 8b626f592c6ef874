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

import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fleetsim.errors import CapacityError, FleetsimError, SpecError
from fleetsim.executors import executor as make_executor
from fleetsim.output import check_output_dir, plain, replacing, summary_null_reasons, write_json
from fleetsim.scenario import apply_overrides, scenario_from_dict
from fleetsim.simulation import build, simulate
from fleetsim.spec.paths import admitted_types, check_field_path
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.spec.yaml_file import read_mapping

__all__ = [
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

_GRID_FORMS = (
    "use KEY=V1,V2,... or KEY=START:STOP:STEP (inclusive range), e.g. fleet.gpu=h100-sxm,h200 or fleet.replicas=4:64:4"
)
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*({_NUMBER})\s*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|\d+))*$")  # list items by index
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


# --------------------------------------------------------------------------- grid keys (the schema)
def check_grid_key(key: str, base: Mapping | None = None) -> None:
    """SpecError (one line, with a did-you-mean) unless key is a field path of a scenario
    (fleetsim.spec.scenario.ScenarioSpec); list items by index (workload.classes.0.weight), which
    must exist in `base` where it is given."""
    check_field_path(key, base, label="--grid")


def _with_point(base: dict, params: Mapping[str, Any]) -> dict:
    """A copy of the base scenario with the point's values set (keys checked by check_grid_key)."""
    return apply_overrides(base, params, prefix="--grid ")


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


def _shown_value(value: Any) -> str:
    return value if isinstance(value, str) else _canonical(value)


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


# --------------------------------------------------------------------------- files
def _write_point(points_dir: Path, record: dict) -> None:
    summary = record.get("summary") or {}
    reasons = {f"summary.{k}": v for k, v in summary_null_reasons(summary).items()} if summary else None
    write_json(points_dir / f"{record['id']}.json", record, reasons=reasons, siblings=False, indent=1)


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
            # a list (e.g. calibration.warnings) is one cell of JSON text, as points.parquet stores it
            row[k] = _canonical(v) if isinstance(v, (list, tuple)) else v
    for k, v in (record.get("intervals") or {}).items():  # --seeds R: interval.<figure>[_lo|_hi]
        row[f"interval.{k}"] = v
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
    with replacing(out_dir / "points.parquet") as tmp:
        _parquet_ready(df).to_parquet(tmp, index=False)


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


# --------------------------------------------------------------------------- display
_DISPLAY_METRICS = (
    "slo.met",
    "latency_s.ttft.p99",
    "latency_s.tpot.p99",
    "throughput.output_tokens_per_s",
    "power.it_mean_kw",
    "cost.usd_per_hour",
    "cost.usd_per_million_tokens",
    "interval.usd_per_million_tokens_lo",
    "interval.usd_per_million_tokens_hi",
    "interval.slo_attainment_lo",
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
