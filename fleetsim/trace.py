"""Trace replay's file side: reading and checking a CSV request trace (fleetsim, Azure or Vidur
columns, optional session_id/turn), bounding its rows without parsing it, and where a run cuts
it. Its own module: the only file I/O of the workload, with its own limits and messages (one
line naming the column and data row, never echoing a line of the file).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass

import numpy as np

from fleetsim.errors import SpecError, shorten, shown
from fleetsim.spec.base import MAX_TOKENS
from fleetsim.spec.workload import TraceArrival, WorkloadSpec
from fleetsim.spec.yaml_file import open_regular_file, read_text

_PATH_FIELD = "workload.arrival.path"


@dataclass(frozen=True)
class TraceTable:
    """A loaded trace: times shifted so the first request is at 0, rows sorted by time."""

    path: str
    format: str  # "fleetsim" | "azure" | "vidur"
    arrival_s: np.ndarray  # float64
    input_tokens: np.ndarray  # int64, >= 1
    output_tokens: np.ndarray  # int64, >= 1
    session_id: np.ndarray | None = None  # int64, from optional session_id/turn columns
    turn: np.ndarray | None = None  # int32

    def __len__(self) -> int:
        return len(self.arrival_s)


# (format name, time column, input column, output column, time is a datetime string)
_TRACE_FORMATS = (
    ("fleetsim", "arrival_s", "input_tokens", "output_tokens", False),
    ("azure", "TIMESTAMP", "ContextTokens", "GeneratedTokens", True),
    ("vidur", "arrived_at", "num_prefill_tokens", "num_decode_tokens", False),
)
#: Optional columns of any format: a request's conversation and its turn in it (whole numbers >= 0).
_SESSION_COLUMNS = ("session_id", "turn")
_TRACE_COLUMNS = frozenset([*(c for fmt in _TRACE_FORMATS for c in fmt[1:4]), *_SESSION_COLUMNS])
#: Largest trace file read, bytes (the Azure 2023 conversation trace is ~1 MB).
MAX_TRACE_BYTES = 1024**3
#: Largest |arrival time| in a seconds column (31.7 million years: epoch seconds fit, spans stay finite).
MAX_TRACE_TIME_S = 1e15
_READ_CHUNK = 1 << 20


def trace_row_bound(path: str | os.PathLike, *, field: str = _PATH_FIELD) -> int:
    """An upper bound on the requests in a trace file, without parsing it: its line count less
    the header (blank lines and quoted line breaks only lower the true count). The file is
    checked as ``load_trace`` checks it (exists, regular, at most MAX_TRACE_BYTES)."""
    lines = 0
    last = b"\n"
    with open_regular_file(path, field, MAX_TRACE_BYTES) as f:
        while chunk := f.read(_READ_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without a newline
    return max(lines - 1, 0)


def load_trace(path: str | os.PathLike, *, field: str = _PATH_FIELD) -> TraceTable:
    """Read a CSV trace and check it; raise SpecError with one line naming ``field`` if it is bad.

    Columns are recognised by name (see ``TraceArrival``); extra columns are ignored. Rows are
    sorted by time (stable) and shifted so the first arrival is at 0. A token count of 0 (a
    request that was cut off) is raised to 1; a count that is negative, not a whole number, or
    above 10,000,000 is an error. Messages name the column and the data row (1 = the first row
    after the header) and never echo a line of the file; a value is echoed capped at 80 chars.
    """
    import io

    import pandas as pd

    where = f"{field}: '{shorten(str(path), 160)}'"
    text = read_text(path, field, MAX_TRACE_BYTES)
    if "\0" in text:
        raise SpecError(f"{where} holds NUL characters; valid: a text CSV file")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
            usecols=lambda c: str(c).strip() in _TRACE_COLUMNS,
        )
    except pd.errors.EmptyDataError:
        raise SpecError(f"{where} has no requests (the file is empty)") from None
    except (pd.errors.ParserError, ValueError, OverflowError, csv.Error) as exc:
        raise SpecError(f"{where} cannot be read as CSV ({_csv_problem(exc)}); valid: a comma-separated file") from None
    del text

    columns = [str(c).strip() for c in frame.columns]
    frame.columns = columns
    for name, time_col, in_col, out_col, is_datetime in _TRACE_FORMATS:  # noqa: B007 (used after the loop)
        if {time_col, in_col, out_col} <= set(columns):
            break
    else:
        # The header is not echoed: it is a line of the file (which may not be a trace at all).
        valid = "; ".join(f"{t},{i},{o}" for _, t, i, o, _ in _TRACE_FORMATS)
        raise SpecError(f"{where}: the header names no known set of trace columns; valid headers: {valid}")
    if len(frame) == 0:
        raise SpecError(f"{where} has no requests (only a header row)")

    if is_datetime:
        times = _parse_datetime_column(frame[time_col].to_numpy(), time_col, where)
    else:
        times = _parse_float_column(frame[time_col].to_numpy(), time_col, where)
    inputs = _parse_token_column(frame[in_col].to_numpy(), in_col, where)
    outputs = _parse_token_column(frame[out_col].to_numpy(), out_col, where)

    sessions = _session_columns(frame, columns, where)

    order = np.argsort(times, kind="stable")
    times = times[order]
    arrival_s = times - times[0]
    return TraceTable(
        path=str(path),
        format=name,
        arrival_s=arrival_s,
        input_tokens=inputs[order],
        output_tokens=outputs[order],
        session_id=None if sessions is None else sessions[0][order],
        turn=None if sessions is None else sessions[1][order],
    )


def _session_columns(frame, columns: list[str], where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The optional session_id and turn columns (both or neither), as whole numbers >= 0."""
    present = [c for c in _SESSION_COLUMNS if c in columns]
    if not present:
        return None
    if len(present) == 1:
        missing = next(c for c in _SESSION_COLUMNS if c not in columns)
        raise SpecError(f"{where}: column {present[0]} needs column {missing} too; valid: both or neither")
    out = []
    for col in _SESSION_COLUMNS:
        values = frame[col].to_numpy()
        as_float, parsed = _as_float(values)
        with np.errstate(invalid="ignore"):
            ok = parsed & np.isfinite(as_float) & (as_float >= 0) & (as_float <= MAX_TRACE_TIME_S)
            ok &= as_float == np.floor(as_float)
        if not ok.all():
            raise _bad_value(where, col, values, ok, "a whole number >= 0")
        out.append(as_float.astype(np.int64))
    return out[0], out[1].astype(np.int32)


def trace_requests_after(spec: WorkloadSpec, duration_s: float | None, max_requests: int | None = None) -> int:
    """How many requests of a trace workload a run leaves out because they arrive after
    ``duration_s`` (as ``generate_requests`` cuts them; RequestBatch.dropped_after_duration);
    0 for other kinds. Reads the file."""
    arrival = spec.arrival
    if arrival.kind != "trace" or duration_s is None:
        return 0
    return _trace_cut(arrival, load_trace(arrival.path).arrival_s / arrival.speedup, duration_s, max_requests)[1]


def _trace_cut(arrival: TraceArrival, arrival_s: np.ndarray, duration_s, max_requests) -> tuple[int, int]:
    """(requests kept, requests dropped because they arrive after duration_s): the count caps
    (trace.max_requests, run.max_requests) apply first, then the duration."""
    n = len(arrival_s)
    for cap in (arrival.max_requests, max_requests):
        if cap is not None:
            n = min(n, cap)
    if duration_s is None:
        return n, 0
    kept = min(n, int(np.searchsorted(arrival_s, duration_s, side="right")))
    return kept, n - kept


def _csv_problem(exc: Exception) -> str:
    """pandas' reason without any text of the file: 'Expected 3 fields in line 5, saw 4' kept,
    anything quoting the file dropped."""
    text = " ".join(str(exc).split())
    keep = re.search(r"Expected \d+ fields in line \d+, saw \d+", text)
    if keep:
        return keep.group(0)
    return type(exc).__name__


def _bad_value(where: str, column: str, values: np.ndarray, ok: np.ndarray, expected: str) -> SpecError:
    row = int(np.flatnonzero(~ok)[0])
    return SpecError(f"{where} row {row + 1}, column {column}: not {expected} (got {shown(values[row])})")


def _as_float(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Floats of a string column and a mask of the cells that parsed (others are NaN)."""
    try:
        out = values.astype(np.float64)
        return out, np.ones(len(values), dtype=bool)
    except (ValueError, TypeError, OverflowError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    ok = np.ones(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (ValueError, TypeError, OverflowError):
            out[i] = np.nan
            ok[i] = False
    return out, ok


def _parse_float_column(values: np.ndarray, column: str, where: str) -> np.ndarray:
    out, parsed = _as_float(values)
    with np.errstate(invalid="ignore"):
        ok = parsed & np.isfinite(out) & (np.abs(out) <= MAX_TRACE_TIME_S)
    if not ok.all():
        raise _bad_value(where, column, values, ok, f"a finite number of seconds within +-{MAX_TRACE_TIME_S:.0e}")
    return out


def _parse_datetime_column(values: np.ndarray, column: str, where: str) -> np.ndarray:
    """Datetime strings ('2023-11-16 18:15:46.6805900') to float seconds since the earliest."""
    expected = "a datetime like 2023-11-16 18:15:46.68"
    stamps = np.empty(len(values), dtype="datetime64[ns]")
    ok = np.ones(len(values), dtype=bool)
    try:
        stamps[:] = np.array([str(v).strip() for v in values], dtype="datetime64[ns]")
    except (ValueError, TypeError, OverflowError):
        for i, v in enumerate(values):
            try:
                stamps[i] = np.datetime64(str(v).strip(), "ns")
            except (ValueError, TypeError, OverflowError):
                ok[i] = False
    ok &= ~np.isnat(stamps)
    if not ok.all():
        raise _bad_value(where, column, values, ok, expected)
    ns = stamps.astype(np.int64)
    return (ns - ns.min()).astype(np.float64) * 1e-9


def _parse_token_column(values: np.ndarray, column: str, where: str) -> np.ndarray:
    as_float, parsed = _as_float(values)
    with np.errstate(invalid="ignore"):
        ok = parsed & np.isfinite(as_float) & (as_float >= 0) & (as_float <= MAX_TOKENS)
        ok &= as_float == np.floor(as_float)
    if not ok.all():
        raise _bad_value(where, column, values, ok, f"a whole number of tokens from 0 to {MAX_TOKENS:,}")
    return np.maximum(as_float.astype(np.int64), 1)
