"""Request streams: arrival times and token lengths, drawn from a WorkloadSpec.

Everything is vectorised numpy and takes an explicit ``numpy.random.Generator``; the same spec,
arguments and seed give the same batch, bit for bit.

- ``generate_requests`` draws a whole open-loop stream (poisson, gamma, diurnal, trace, offline).
- ``LengthSampler`` and ``think_time_sampler`` serve the closed loop, one request at a time.
- ``mean_arrival_rate_per_s`` and ``mean_lengths`` give the analytic means (for sizing and tests).
- ``load_trace`` reads and checks a CSV trace (the only I/O of the workload).

This module composes the request stream and re-exports the pieces it is made of: arrival times
(fleetsim.arrivals), token lengths (fleetsim.lengths) and trace files (fleetsim.trace).

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

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fleetsim.arrivals import (
    _BLOCK,
    _diurnal_times,
    _gamma_times,
    _poisson_times,
    integrated_rate,
    sinusoidal_rate_per_s,
)
from fleetsim.errors import FleetsimWarning, SpecError
from fleetsim.lengths import _prefix_column, _sample_classes, _sample_requests, length_estimate, length_mean
from fleetsim.spec.workload import TraceArrival, WorkloadSpec
from fleetsim.trace import (
    _PATH_FIELD,
    MAX_TRACE_BYTES,
    MAX_TRACE_TIME_S,
    TraceTable,
    _trace_cut,
    load_trace,
    trace_requests_after,
    trace_row_bound,
)

__all__ = [
    "MAX_TRACE_BYTES",
    "MAX_TRACE_TIME_S",
    "LengthSampler",
    "RequestBatch",
    "TraceTable",
    "generate_requests",
    "integrated_rate",
    "length_estimate",
    "length_mean",
    "load_trace",
    "mean_arrival_rate_per_s",
    "mean_lengths",
    "sinusoidal_rate_per_s",
    "think_time_sampler",
    "trace_requests_after",
    "trace_row_bound",
]


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


def _check_limits(duration_s: float | None, max_requests: int | None) -> None:
    if duration_s is not None and not (duration_s >= 0 and math.isfinite(duration_s)):
        raise SpecError(f"duration_s={duration_s} is not valid; give a finite number >= 0")
    if max_requests is not None and max_requests < 0:
        raise SpecError(f"max_requests={max_requests} is not valid; give an integer >= 0")


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
