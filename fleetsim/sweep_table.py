"""A sweep's results as files and a table: the per-point JSON records under OUT/points, the
points.parquet table (summary flattened to dotted columns), reading a sweep directory back, and
the columns shown in a terminal. Its own module: the table is read by reports without running.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.output import replacing, summary_null_reasons, write_json
from fleetsim.sweep_grid import _canonical

# Bookkeeping columns of the table (everything else is a parameter or a metric).
STATUS_COLUMNS = ("point_id", "status", "error")
BOOK_COLUMNS = ("elapsed_s", "run_id")


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
