"""Request streams: arrival times and token lengths, drawn from a WorkloadSpec.

Everything is vectorised numpy and takes an explicit ``numpy.random.Generator``; the same spec,
arguments and seed give the same batch, bit for bit.

- ``generate_requests`` draws a whole open-loop stream (poisson, gamma, diurnal, trace, offline).
- ``LengthSampler`` and ``think_time_sampler`` serve the closed loop, one request at a time.
- ``mean_arrival_rate_per_s`` and ``mean_lengths`` give the analytic means (for sizing and tests).
- ``load_trace`` reads and checks a CSV trace (the only I/O here).

Exactness notes:
- Renewal processes (poisson, gamma) are drawn in blocks of inter-arrival gaps until the clock
  passes ``duration_s`` (or ``max_requests`` are in hand), then cut: no request before the end is
  missing and none after it is kept, so counts have no truncation bias. The process starts at
  t = 0 with the first arrival one gap later.
- Sinusoidal diurnal is a non-homogeneous Poisson process drawn by thinning a homogeneous one at
  the peak rate; piecewise diurnal maps a unit-rate Poisson process through the inverse of the
  integrated rate. Both are exact.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fleetsim.errors import FleetsimWarning, SpecError, shorten, shown
from fleetsim.spec.base import MAX_TOKENS
from fleetsim.spec.workload import (
    DiurnalArrival,
    EmpiricalLength,
    FixedLength,
    LengthDistribution,
    LognormalLength,
    TraceArrival,
    UniformLength,
    WorkloadSpec,
)
from fleetsim.spec.yaml_file import open_regular_file, read_text

_PATH_FIELD = "workload.arrival.path"
_BLOCK = 4096


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RequestBatch:
    """Requests as equal-length numpy columns, sorted by ``arrival_s``.

    ``class_index`` points into ``WorkloadSpec.classes``. ``shared_prefix_tokens`` of a request
    are the leading part of its ``input_tokens`` shared with every request of its class.
    ``dropped_after_duration`` counts the trace requests left out because they arrive after
    ``duration_s`` (0 for every other kind; a FleetsimWarning says so when it is not 0).
    ``session_id`` and ``turn`` place a request in a multi-turn conversation (session ids from 0,
    turns from 0); a request outside any session has session_id -1 and turn 0.
    """

    arrival_s: np.ndarray  # float64, seconds from the start of the run, non-decreasing
    input_tokens: np.ndarray  # int64, >= 1
    output_tokens: np.ndarray  # int64, >= 1
    class_index: np.ndarray  # int32
    shared_prefix_tokens: np.ndarray  # int64, 0 <= prefix < input_tokens
    dropped_after_duration: int = 0
    session_id: np.ndarray | None = None  # int64, -1: no session (filled in when not given)
    turn: np.ndarray | None = None  # int32, 0-based turn within the session

    def __post_init__(self):
        n = len(self.arrival_s)
        # Outside any session: one value seen n times (a read-only view, no memory per request).
        if self.session_id is None:
            object.__setattr__(self, "session_id", np.broadcast_to(np.int64(-1), n))
        if self.turn is None:
            object.__setattr__(self, "turn", np.broadcast_to(np.int32(0), n))
        for name in ("input_tokens", "output_tokens", "class_index", "shared_prefix_tokens", "session_id", "turn"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RequestBatch.{name} has {len(getattr(self, name))} rows, not {n}")

    def __len__(self) -> int:
        return len(self.arrival_s)


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


# --------------------------------------------------------------------------- traces

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


# --------------------------------------------------------------------------- arrivals


def _check_limits(duration_s: float | None, max_requests: int | None) -> None:
    if duration_s is not None and not (duration_s >= 0 and math.isfinite(duration_s)):
        raise SpecError(f"duration_s={duration_s} is not valid; give a finite number >= 0")
    if max_requests is not None and max_requests < 0:
        raise SpecError(f"max_requests={max_requests} is not valid; give an integer >= 0")


def _first_block_size(rate_per_s: float, cv: float, duration_s, max_requests) -> int:
    """Gaps to draw first: enough to pass duration_s with high probability, at most max_requests."""
    n = math.inf
    if duration_s is not None:
        expected = rate_per_s * duration_s
        n = expected + 6.0 * max(cv, 1.0) * math.sqrt(expected) + 64
    if max_requests is not None:
        n = min(n, max_requests)
    return max(int(n), 1)


def _renewal_times(
    draw_gaps: Callable[[int], np.ndarray],
    first_block: int,
    duration_s: float | None,
    max_requests: int | None,
) -> np.ndarray:
    """Cumulative sums of gap blocks until past duration_s or max_requests drawn, then cut."""
    chunks = []
    clock_s = 0.0
    drawn = 0
    block = first_block
    while True:
        times = clock_s + np.cumsum(draw_gaps(block))
        chunks.append(times)
        drawn += block
        clock_s = float(times[-1])
        if max_requests is not None and drawn >= max_requests:
            break
        if duration_s is not None and clock_s > duration_s:
            break
        block = max(first_block // 4, _BLOCK)
        if max_requests is not None:
            block = min(block, max_requests - drawn)
    times = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    if duration_s is not None:
        times = times[: np.searchsorted(times, duration_s, side="right")]
    if max_requests is not None:
        times = times[:max_requests]
    return times


def _poisson_times(rate_per_s, rng, duration_s, max_requests) -> np.ndarray:
    scale_s = 1.0 / rate_per_s
    return _renewal_times(
        lambda n: rng.exponential(scale_s, n),
        _first_block_size(rate_per_s, 1.0, duration_s, max_requests),
        duration_s,
        max_requests,
    )


def _gamma_times(rate_per_s, cv, rng, duration_s, max_requests) -> np.ndarray:
    shape = 1.0 / cv**2
    scale_s = cv**2 / rate_per_s
    return _renewal_times(
        lambda n: rng.gamma(shape, scale_s, n),
        _first_block_size(rate_per_s, cv, duration_s, max_requests),
        duration_s,
        max_requests,
    )


def sinusoidal_rate_per_s(arrival: DiurnalArrival, t_s: np.ndarray | float) -> np.ndarray | float:
    """Instantaneous rate of a sinusoidal diurnal profile at time(s) t_s."""
    phase = 2.0 * np.pi * (np.asarray(t_s) - arrival.peak_time_s) / arrival.period_s
    return arrival.mean_rate_per_s * (1.0 + arrival.amplitude * np.cos(phase))


def integrated_rate(arrival: DiurnalArrival, t_s: np.ndarray | float) -> np.ndarray | float:
    """Expected number of arrivals in [0, t_s] of a diurnal profile (the integrated rate)."""
    t = np.asarray(t_s, dtype=np.float64)
    if arrival.is_piecewise:
        rates = np.asarray(arrival.rates_per_s, dtype=np.float64)
        seg_s = arrival.segment_s
        period_s = seg_s * len(rates)
        cum = np.concatenate(([0.0], np.cumsum(rates * seg_s)))
        cycles = np.floor(t / period_s)
        rest_s = t - cycles * period_s
        i = np.minimum((rest_s // seg_s).astype(np.int64), len(rates) - 1)
        return cycles * cum[-1] + cum[i] + rates[i] * (rest_s - i * seg_s)
    omega = 2.0 * np.pi / arrival.period_s
    a = arrival.amplitude
    return arrival.mean_rate_per_s * (
        t + a / omega * (np.sin(omega * (t - arrival.peak_time_s)) - np.sin(-omega * arrival.peak_time_s))
    )


def _diurnal_times(arrival: DiurnalArrival, rng, duration_s, max_requests) -> np.ndarray:
    if arrival.is_piecewise:
        return _piecewise_times(arrival, rng, duration_s, max_requests)
    # Thinning: candidates at the peak rate, each kept with probability rate(t) / peak rate.
    peak_per_s = arrival.mean_rate_per_s * (1.0 + arrival.amplitude)
    chunks = []
    kept = 0
    clock_s = 0.0
    block = _first_block_size(
        peak_per_s,
        1.0,
        duration_s,
        None if max_requests is None else int(max_requests * (1.0 + arrival.amplitude) + 64),
    )
    while True:
        times = clock_s + np.cumsum(rng.exponential(1.0 / peak_per_s, block))
        clock_s = float(times[-1])
        accept = rng.random(block) * peak_per_s < sinusoidal_rate_per_s(arrival, times)
        chunk = times[accept]
        chunks.append(chunk)
        kept += len(chunk)
        if max_requests is not None and kept >= max_requests:
            break
        if duration_s is not None and clock_s > duration_s:
            break
        block = max(block // 4, _BLOCK)
    times = np.concatenate(chunks)
    if duration_s is not None:
        times = times[: np.searchsorted(times, duration_s, side="right")]
    if max_requests is not None:
        times = times[:max_requests]
    return times


def _piecewise_times(arrival: DiurnalArrival, rng, duration_s, max_requests) -> np.ndarray:
    # Unit-rate Poisson "operational time" E, mapped through the inverse integrated rate.
    rates = np.asarray(arrival.rates_per_s, dtype=np.float64)
    seg_s = arrival.segment_s
    period_s = seg_s * len(rates)
    cum = np.concatenate(([0.0], np.cumsum(rates * seg_s)))
    per_period = cum[-1]
    horizon = None if duration_s is None else float(integrated_rate(arrival, duration_s))
    ops = _renewal_times(
        lambda n: rng.exponential(1.0, n),
        _first_block_size(1.0, 1.0, horizon, max_requests),
        horizon,
        max_requests,
    )
    cycles = np.floor(ops / per_period)
    rest = np.clip(ops - cycles * per_period, 0.0, np.nextafter(per_period, 0.0))
    i = np.minimum(np.searchsorted(cum, rest, side="right") - 1, len(rates) - 1)
    times = cycles * period_s + i * seg_s + (rest - cum[i]) / rates[i]
    times = np.maximum.accumulate(times) if len(times) else times
    if duration_s is not None:
        times = times[: np.searchsorted(times, duration_s, side="right")]
    return times


# --------------------------------------------------------------------------- lengths


def _sample_lengths(dist: LengthDistribution, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(dist, FixedLength):
        return np.full(n, dist.tokens, dtype=np.int64)
    if isinstance(dist, UniformLength):
        return rng.integers(dist.min_tokens, dist.max_tokens, size=n, endpoint=True, dtype=np.int64)
    if isinstance(dist, LognormalLength):
        x = np.rint(rng.lognormal(dist.mu, dist.sigma, n))
        hi = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
        return np.clip(x, dist.min_tokens, hi).astype(np.int64)
    if isinstance(dist, EmpiricalLength):
        values = np.asarray(dist.values, dtype=np.int64)
        if dist.weights is None:
            return values[rng.integers(0, len(values), size=n)]
        p = np.asarray(dist.weights, dtype=np.float64)
        return rng.choice(values, size=n, p=p / p.sum())
    raise TypeError(f"unknown length distribution {type(dist).__name__}")


def _sample_classes(spec: WorkloadSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    if len(spec.classes) == 1:
        return np.zeros(n, dtype=np.int32)
    return rng.choice(len(spec.classes), size=n, p=np.asarray(spec.class_weights)).astype(np.int32)


def _prefix_column(spec: WorkloadSpec, class_index: np.ndarray) -> np.ndarray:
    prefixes = np.asarray([c.shared_prefix_tokens for c in spec.classes], dtype=np.int64)
    return prefixes[class_index]


def _sample_requests(spec: WorkloadSpec, rng: np.random.Generator, n: int):
    """Class, input, output and shared-prefix columns of n requests (lengths from the classes)."""
    class_index = _sample_classes(spec, rng, n)
    inputs = np.empty(n, dtype=np.int64)
    outputs = np.empty(n, dtype=np.int64)
    if len(spec.classes) == 1:
        c = spec.classes[0]
        inputs[:] = _sample_lengths(c.input_tokens, rng, n)
        outputs[:] = _sample_lengths(c.output_tokens, rng, n)
    else:
        for k, c in enumerate(spec.classes):
            rows = np.flatnonzero(class_index == k)
            inputs[rows] = _sample_lengths(c.input_tokens, rng, len(rows))
            outputs[rows] = _sample_lengths(c.output_tokens, rng, len(rows))
    return inputs, outputs, class_index, _prefix_column(spec, class_index)


# --------------------------------------------------------------------------- public API


def generate_requests(
    spec: WorkloadSpec,
    rng: np.random.Generator,
    *,
    duration_s: float | None = None,
    max_requests: int | None = None,
) -> RequestBatch:
    """Draw an open-loop request stream, cut at duration_s or max_requests, whichever comes first.

    poisson, gamma and diurnal need at least one of the two limits; trace and offline have their
    own length and are only cut further by them. A closed workload raises SpecError: the
    simulator drives it with ``LengthSampler`` and ``think_time_sampler``.

    For a trace, lengths come from the file; each request is given a class drawn by weight, and
    its shared prefix is the class's ``shared_prefix_tokens`` capped at input_tokens - 1.
    """
    _check_limits(duration_s, max_requests)
    arrival = spec.arrival
    kind = arrival.kind
    if kind == "closed":
        raise SpecError(
            "workload.arrival.kind: 'closed' is driven by the simulator, not generate_requests; "
            "open-loop kinds are poisson, gamma, diurnal, trace, offline"
        )
    if kind in ("poisson", "gamma", "diurnal") and duration_s is None and max_requests is None:
        raise SpecError(f"workload.arrival.kind: '{kind}' is unbounded; give duration_s or max_requests")

    if kind == "trace":
        return _trace_requests(spec, arrival, rng, duration_s, max_requests)
    if kind == "poisson":
        arrival_s = _poisson_times(arrival.rate_per_s, rng, duration_s, max_requests)
    elif kind == "gamma":
        arrival_s = _gamma_times(arrival.rate_per_s, arrival.cv, rng, duration_s, max_requests)
    elif kind == "diurnal":
        arrival_s = _diurnal_times(arrival, rng, duration_s, max_requests)
    elif kind == "offline":
        n = arrival.requests if max_requests is None else min(arrival.requests, max_requests)
        arrival_s = np.zeros(n, dtype=np.float64)
    else:  # pragma: no cover - the spec union is closed
        raise SpecError(f"workload.arrival.kind: '{kind}' is not supported")

    inputs, outputs, class_index, prefix = _sample_requests(spec, rng, len(arrival_s))
    if any(c.session is not None for c in spec.classes):
        from fleetsim.sessions import expand_sessions

        return expand_sessions(spec, rng, arrival_s, inputs, outputs, class_index, duration_s, max_requests)
    return RequestBatch(arrival_s, inputs, outputs, class_index, prefix)


def _trace_requests(spec, arrival: TraceArrival, rng, duration_s, max_requests) -> RequestBatch:
    table = load_trace(arrival.path)
    arrival_s = table.arrival_s / arrival.speedup
    n, dropped = _trace_cut(arrival, arrival_s, duration_s, max_requests)
    if dropped:
        warnings.warn(
            f"{_PATH_FIELD}: {dropped:,} of {dropped + n:,} trace requests arrive after "
            f"run.duration_s = {duration_s:g} s and are left out (the trace spans "
            f"{float(arrival_s[dropped + n - 1]):g} s at speedup {arrival.speedup:g}); "
            "raise run.duration_s, or set it to null to replay the whole trace",
            FleetsimWarning,
            stacklevel=3,
        )
    inputs = table.input_tokens[:n].copy()
    class_index = _sample_classes(spec, rng, n)
    prefix = np.minimum(_prefix_column(spec, class_index), inputs - 1)
    return RequestBatch(
        arrival_s[:n].copy(),
        inputs,
        table.output_tokens[:n].copy(),
        class_index,
        prefix,
        dropped_after_duration=dropped,
        session_id=None if table.session_id is None else table.session_id[:n].copy(),
        turn=None if table.turn is None else table.turn[:n].copy(),
    )


class LengthSampler:
    """Draws one request's (input_tokens, output_tokens, class_index, shared_prefix_tokens) at a time.

    Pre-draws blocks of ``block`` requests with the vectorised samplers, so a call costs a list
    index. For closed-loop clients; a trace workload has no length distributions and raises.
    """

    def __init__(self, spec: WorkloadSpec, rng: np.random.Generator, *, block: int = _BLOCK):
        if spec.arrival.kind == "trace":
            raise SpecError(
                "workload.arrival.kind: 'trace' takes lengths from the file; "
                "LengthSampler needs classes with input_tokens and output_tokens"
            )
        self._spec = spec
        self._rng = rng
        self._block = block
        self._rows: list[tuple[int, int, int, int]] = []
        self._next = 0

    def next(self) -> tuple[int, int, int, int]:
        if self._next == len(self._rows):
            columns = _sample_requests(self._spec, self._rng, self._block)
            self._rows = list(zip(*(c.tolist() for c in columns)))
            self._next = 0
        row = self._rows[self._next]
        self._next += 1
        return row


def think_time_sampler(spec: WorkloadSpec, rng: np.random.Generator) -> Callable[[], float]:
    """A callable returning one think time in seconds per call (0.0 when none is specified)."""
    think = getattr(spec.arrival, "think_time", None)
    if think is None:
        return lambda: 0.0
    if think.kind == "fixed":
        value_s = float(think.value_s)
        return lambda: value_s
    mean_s = think.mean_s
    state = {"draws": [], "next": 0}

    def draw() -> float:
        if state["next"] == len(state["draws"]):
            state["draws"] = rng.exponential(mean_s, _BLOCK).tolist()
            state["next"] = 0
        value = state["draws"][state["next"]]
        state["next"] += 1
        return value

    return draw


def mean_arrival_rate_per_s(spec: WorkloadSpec) -> float | None:
    """Long-run mean arrival rate; None for closed (set by the loop) and offline (all at t = 0).

    Diurnal: the mean over a whole period. Trace: 1 / mean inter-arrival time after speedup
    (None for a single-request or zero-span trace); this reads the file. Classes that open
    multi-turn sessions bring E[turns] requests per arrival (fleetsim.sessions).
    """
    rate = _arrival_rate_per_s(spec)
    if rate is not None and any(c.session is not None for c in spec.classes):
        from fleetsim.sessions import session_mean_lengths

        return rate * session_mean_lengths(spec)[0]
    return rate


def _arrival_rate_per_s(spec: WorkloadSpec) -> float | None:
    arrival = spec.arrival
    if arrival.kind in ("poisson", "gamma"):
        return float(arrival.rate_per_s)
    if arrival.kind == "diurnal":
        if arrival.is_piecewise:
            return float(np.mean(arrival.rates_per_s))
        return float(arrival.mean_rate_per_s)
    if arrival.kind == "trace":
        table = load_trace(arrival.path)
        arrival_s = table.arrival_s
        if arrival.max_requests is not None:
            arrival_s = arrival_s[: arrival.max_requests]
        span_s = float(arrival_s[-1]) / arrival.speedup
        if len(arrival_s) < 2 or span_s <= 0:
            return None
        return (len(arrival_s) - 1) / span_s
    return None


def mean_lengths(spec: WorkloadSpec) -> tuple[float, float]:
    """Expected (input_tokens, output_tokens) of one request, mixed over classes by weight.

    Exact for fixed, uniform and empirical, and for lognormal with rounding and clipping (summed
    over whole tokens up to 2,000,000 above min_tokens; a continuous closed form past that).
    A trace returns the file's means (this reads the file). With multi-turn sessions: the means
    over requests, prompts grown by the conversation (fleetsim.sessions.session_mean_lengths).
    """
    if spec.arrival.kind == "trace":
        table = load_trace(spec.arrival.path)
        n = len(table) if spec.arrival.max_requests is None else spec.arrival.max_requests
        return float(np.mean(table.input_tokens[:n])), float(np.mean(table.output_tokens[:n]))
    if any(c.session is not None for c in spec.classes):
        from fleetsim.sessions import session_mean_lengths

        return session_mean_lengths(spec)[1:]
    weights = spec.class_weights
    mean_in = sum(w * length_mean(c.input_tokens) for w, c in zip(weights, spec.classes))
    mean_out = sum(w * length_mean(c.output_tokens) for w, c in zip(weights, spec.classes))
    return float(mean_in), float(mean_out)


def length_mean(dist: LengthDistribution, *, exact: bool = True) -> float:
    """Expected tokens of one draw from a length distribution. ``exact=False`` takes the
    continuous clipped-lognormal mean for a lognormal (O(1), within half a token; for estimates)."""
    if isinstance(dist, FixedLength):
        return float(dist.tokens)
    if isinstance(dist, UniformLength):
        return 0.5 * (dist.min_tokens + dist.max_tokens)
    if isinstance(dist, EmpiricalLength):
        values = np.asarray(dist.values, dtype=np.float64)
        if dist.weights is None:
            return float(values.mean())
        p = np.asarray(dist.weights, dtype=np.float64)
        return float(np.dot(values, p) / p.sum())
    if isinstance(dist, LognormalLength):
        if not exact:
            high = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
            return _clipped_lognormal_mean(dist.mu, dist.sigma, dist.min_tokens, high)
        return _rounded_clipped_lognormal_mean(dist)
    raise TypeError(f"unknown length distribution {type(dist).__name__}")


_EXACT_SUM_TOKENS = 2_000_000


def _rounded_clipped_lognormal_mean(dist: LognormalLength) -> float:
    """E[clip(rint(X), a, b)] = a + sum_{k=a}^{b-1} P(X >= k + 1/2), X ~ lognormal(mu, sigma)."""
    from scipy.special import ndtr  # imported on use: scipy.special costs ~0.2 s at start-up

    mu, sigma = dist.mu, dist.sigma
    a = dist.min_tokens
    b = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
    stop = int(min(b, a + _EXACT_SUM_TOKENS))
    k = np.arange(a, stop, dtype=np.float64)
    mean = a + float(ndtr(-(np.log(k + 0.5) - mu) / sigma).sum())
    if stop < b:
        # sum_{k>=stop}^{b-1} P(X >= k + 1/2) ~ integral_{stop}^{b} P(X > x) dx (midpoint rule).
        mean += _clipped_lognormal_mean(mu, sigma, stop, b) - stop
    return mean


def length_estimate(dist: LengthDistribution) -> float:
    """``length_mean(dist, exact=False)`` with the normal CDF from math.erfc instead of scipy's
    (the same to ~1e-15 relative, without importing scipy.special: ~0.2 CPU s of every
    `fleetsim run`); for estimates (fleetsim.workbudget), not for results."""
    if isinstance(dist, LognormalLength):
        high = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
        return _clipped_lognormal_mean(dist.mu, dist.sigma, dist.min_tokens, high, _erfc_normal_cdf)
    return length_mean(dist)


def _erfc_normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _clipped_lognormal_mean(mu: float, sigma: float, lo: float, hi: float, ndtr=None) -> float:
    """E[clip(X, lo, hi)] for continuous X ~ lognormal(mu, sigma), 0 < lo <= hi <= inf; `ndtr`
    the standard normal CDF (default scipy's)."""
    if ndtr is None:
        from scipy.special import ndtr  # imported on use: scipy.special costs ~0.2 s at start-up

    m = math.exp(mu + 0.5 * sigma**2)
    alpha = (math.log(lo) - mu) / sigma
    if math.isinf(hi):
        return lo * float(ndtr(alpha)) + m * float(ndtr(sigma - alpha))
    beta = (math.log(hi) - mu) / sigma
    return lo * float(ndtr(alpha)) + m * float(ndtr(beta - sigma) - ndtr(alpha - sigma)) + hi * float(ndtr(-beta))
