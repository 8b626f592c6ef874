"""How much work a run will be, estimated before the clock starts, and the limits past which
fleetsim refuses to start it (one line: the estimate, the limit, the field to change).

A run costs memory per request (the engine keeps ~15 columns per request as Python lists, then a
request frame), per time-series sample and per replica, and time per scheduler event (an
arrival, a prefill chunk, a decode run, a completion). The estimate is a pure function of the
scenario and two numbers ``build()`` knows (the trace's row count, the fastest possible decode
step); it is an expectation, not a bound, except where it says "at least".

Limits (``LIMITS``): 50,000,000 requests; 1,000,000 time-series samples; 250,000,000 scheduler
events (at ~100k events/s, about 40 minutes); 8 GiB of estimated memory in any one process. At
250 bytes a request the memory limit binds near 34 million requests in one process; a fleet in
pods (`fleet.pods`) puts its pods in processes of their own and the parent holds ~200 bytes a
request of the merged table, so about 40 million requests fit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fleetsim.errors import WorkBudgetError
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.workload import integrated_rate, length_estimate, trace_row_bound

#: Memory per request: ~150 B measured from 1M to 3M requests (the engine's typed columns, then
#: the request table that takes them over; README "Memory per request"), rounded up.
BYTES_PER_REQUEST = 250
#: The parent of a fleet in pods, per request of the merged table: 171 B measured (its growth from
#: 60 to 120 simulated s of 1,024 H100s in 2 pods; README "Simulator speed"), rounded up.
BYTES_PER_MERGED_REQUEST = 200
#: One time-series row (a tuple of five numbers in a list, then a frame row).
BYTES_PER_SAMPLE = 250
#: One replica (its state, queues, counters): ~4.5 KB measured, rounded up.
BYTES_PER_REPLICA = 8192
#: Reading a trace: each row held as three strings while it is parsed.
BYTES_PER_TRACE_ROW = 300
#: Events per request besides prefill chunks: arrival, admission, decode run, completion.
EVENTS_PER_REQUEST = 4
#: A time-series sample reads every replica; ~1/100 of an event's cost each.
SAMPLE_READS_PER_EVENT = 100
#: No serving iteration of an LLM is faster than this (a floor when the decode floor is unknown).
MIN_STEP_S = 1e-4


@dataclass(frozen=True)
class WorkLimits:
    requests: int = 50_000_000
    timeseries_samples: int = 1_000_000
    scheduler_events: int = 250_000_000
    memory_bytes: int = 8 * 1024**3


LIMITS = WorkLimits()


@dataclass(frozen=True)
class WorkEstimate:
    """What a run is expected to take. ``requests_basis`` says how the request count was reached,
    ``requests_field`` which field sets it and ``requests_hint`` what to change."""

    requests: float
    requests_basis: str
    requests_field: str
    requests_hint: str
    simulated_s: float
    timeseries_interval_s: float
    timeseries_samples: float
    prefill_chunks_per_request: float
    scheduler_events: float
    replicas: int
    memory_bytes: float  # of the run's largest process (see _largest_process_bytes)
    pods: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def _requests(scenario: ScenarioSpec, trace_rows: int | None, cycle_s: float) -> tuple[float, str, str, str, float]:
    """(expected requests, how they were counted, the field that sets them, what to change,
    seconds over which they arrive or 0)."""
    wl, run = scenario.workload, scenario.run
    a = wl.arrival
    duration = run.duration_s
    cap = run.max_requests
    capped = (float(cap or 0), f"run.max_requests = {cap or 0:,}", "run.max_requests", "run.max_requests")
    if a.kind in ("poisson", "gamma", "diurnal"):
        if duration is None:
            n, how, field, hint = capped
            return n, how, field, hint, n / _mean_rate(a)
        if a.kind == "diurnal":
            n = float(integrated_rate(a, duration))
            how, field = f"the diurnal rate integrated over {duration:g} s", "workload.arrival"
        else:
            n, how, field = (
                a.rate_per_s * duration,
                f"{a.rate_per_s:g}/s x {duration:g} s",
                "workload.arrival.rate_per_s",
            )
        if cap is not None and cap < n:
            n, how, field, hint = capped
            return n, how, field, hint, duration
        return n, how, field, "the rate or run.duration_s, or set run.max_requests", duration
    if a.kind == "closed":
        if duration is None:  # the engine refuses this itself
            return float(a.users), f"{a.users:,} users", "workload.arrival.users", "workload.arrival.users", 0.0
        n = a.users * (duration / cycle_s + 1)
        how = f"{a.users:,} users x {duration:g} s / {cycle_s:.3g} s a cycle, at least"
        return n, how, "workload.arrival.users", "workload.arrival.users or run.duration_s, or add think time", duration
    if a.kind == "offline":
        if cap is not None and cap < a.requests:
            n, how, field, hint = capped
            return n, how, field, hint, 0.0
        return float(a.requests), f"{a.requests:,} offline requests", "workload.arrival.requests", "it", 0.0
    # trace: the file's rows (an upper bound), cut by the count caps
    n = trace_rows if trace_rows is not None else 0
    for c in (a.max_requests, cap):
        if c is not None:
            n = min(n, c)
    span = duration if duration is not None else 0.0
    return float(n), f"{n:,} trace rows", "workload.arrival.path", "set workload.arrival.max_requests", span


def _mean_rate(arrival) -> float:
    if arrival.kind == "diurnal":
        if arrival.is_piecewise:
            return max(sum(arrival.rates_per_s) / len(arrival.rates_per_s), 1e-300)
        return float(arrival.mean_rate_per_s)
    return float(arrival.rate_per_s)


def _mean_tokens(scenario: ScenarioSpec) -> tuple[float, float]:
    """Mean (input, output) tokens of a request, cheaply (1, 1 for a trace: lengths are in the file)."""
    wl = scenario.workload
    if wl.arrival.kind == "trace":
        return 1.0, 1.0
    weights = wl.class_weights
    mean_in = sum(w * length_estimate(c.input_tokens) for w, c in zip(weights, wl.classes))
    mean_out = sum(w * length_estimate(c.output_tokens) for w, c in zip(weights, wl.classes))
    return float(mean_in), float(mean_out)


def _mean_think_s(arrival) -> float:
    think = getattr(arrival, "think_time", None)
    if think is None:
        return 0.0
    return float(think.value_s if think.kind == "fixed" else think.mean_s)


def estimate_work(
    scenario: ScenarioSpec, *, trace_rows: int | None = None, step_floor_s: float = MIN_STEP_S
) -> WorkEstimate:
    """The expected requests, simulated seconds, time-series samples, scheduler events and
    memory of a run, from the scenario alone (pure; no file is read). ``trace_rows`` is the row
    count of a trace workload's file; ``step_floor_s`` the fastest decode iteration possible
    (the weights read once at full HBM bandwidth: ``decode_step_floor_s``)."""
    step_s = max(step_floor_s, MIN_STEP_S)
    mean_in, mean_out = _mean_tokens(scenario)
    arrival = scenario.workload.arrival
    cycle_s = _mean_think_s(arrival) + mean_out * step_s
    requests, basis, field, hint, span_s = _requests(scenario, trace_rows, cycle_s)

    # Simulated time: the arrival span, or at least the decode work spread over every slot.
    slots = scenario.fleet.replicas * scenario.scheduler.max_running_seqs
    busy_s = requests * mean_out * step_s / slots
    simulated_s = max(span_s, busy_s)
    end_s = scenario.run.duration_s if scenario.run.duration_s is not None else span_s
    interval_s = scenario.run.timeseries_interval_s or max(end_s / 400.0, 1e-3)
    samples = simulated_s / interval_s + 1

    s = scenario.scheduler
    chunks = max(1.0, mean_in / s.max_batched_tokens) if s.chunked_prefill else 1.0
    events = requests * (EVENTS_PER_REQUEST + chunks) + samples * scenario.fleet.replicas / SAMPLE_READS_PER_EVENT
    memory = _largest_process_bytes(requests, samples, scenario.fleet.replicas, scenario.fleet.pods, trace_rows or 0)
    return WorkEstimate(
        requests=requests,
        requests_basis=basis,
        requests_field=field,
        requests_hint=hint,
        simulated_s=simulated_s,
        timeseries_interval_s=interval_s,
        timeseries_samples=samples,
        prefill_chunks_per_request=chunks,
        scheduler_events=events,
        replicas=scenario.fleet.replicas,
        memory_bytes=memory,
        pods=scenario.fleet.pods,
    )


def _largest_process_bytes(requests: float, samples: float, replicas: int, pods: int, trace_rows: int) -> float:
    """Memory of the run's largest process. One pod: the run itself. Pods run in processes of their
    own (local pool or Dask workers), each with its share of requests and replicas, and the parent
    holds the merged table; the limit applies per process, so a fleet split in pods can be larger
    than one process could hold (the machine must still hold every local pod at once)."""
    if pods <= 1:
        return (
            requests * BYTES_PER_REQUEST
            + samples * BYTES_PER_SAMPLE
            + replicas * BYTES_PER_REPLICA
            + trace_rows * BYTES_PER_TRACE_ROW
        )
    parent = requests * BYTES_PER_MERGED_REQUEST + samples * BYTES_PER_SAMPLE + trace_rows * BYTES_PER_TRACE_ROW
    pod = (
        requests / pods * BYTES_PER_REQUEST
        + samples * BYTES_PER_SAMPLE
        + math.ceil(replicas / pods) * BYTES_PER_REPLICA
    )
    return max(parent, pod)


def _count(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) and x < 1e15 else f"{x:.3g}"


def check_work(estimate: WorkEstimate, limits: WorkLimits = LIMITS) -> None:
    """WorkBudgetError (one line: the estimate, the limit, the field to change) past any limit."""
    e = estimate
    if not e.requests <= limits.requests:
        raise WorkBudgetError(
            f"{e.requests_field}: about {_count(e.requests)} requests a run ({e.requests_basis}); "
            f"valid: at most {limits.requests:,} (lower {e.requests_hint})"
        )
    if not e.timeseries_samples <= limits.timeseries_samples:
        raise WorkBudgetError(
            f"run.timeseries_interval_s: about {_count(e.timeseries_samples)} time-series samples "
            f"({e.simulated_s:.4g} s simulated / {e.timeseries_interval_s:.3g} s); valid: at most "
            f"{limits.timeseries_samples:,} samples (raise run.timeseries_interval_s)"
        )
    if not e.scheduler_events <= limits.scheduler_events:
        raise WorkBudgetError(
            f"scheduler.max_batched_tokens: about {_count(e.scheduler_events)} scheduler events "
            f"({_count(e.requests)} requests x {e.prefill_chunks_per_request:.3g} prefill chunks each + "
            f"{EVENTS_PER_REQUEST}); valid: at most {limits.scheduler_events:,} (raise "
            f"scheduler.max_batched_tokens, or lower {e.requests_field})"
        )
    if not e.memory_bytes <= limits.memory_bytes:
        gib = 1024**3
        per_request = (
            f"{BYTES_PER_MERGED_REQUEST} B in the parent of {e.pods} pods" if e.pods > 1 else f"{BYTES_PER_REQUEST} B"
        )
        raise WorkBudgetError(
            f"{e.requests_field}: an estimated {e.memory_bytes / gib:,.1f} GiB for {_count(e.requests)} requests "
            f"({e.requests_basis}) x {per_request}, {_count(e.timeseries_samples)} samples and "
            f"{e.replicas:,} replicas; valid: at most {limits.memory_bytes / gib:g} GiB a process (lower "
            f"{e.requests_hint}{'' if e.pods > 1 else ', or split the fleet with fleet.pods'})"
        )


def decode_step_floor_s(arch, gpu, plan) -> float:
    """The fastest a decode iteration can be: the weights one token reads (MoE: the active share),
    per GPU, at the GPU's full HBM bandwidth."""
    active = arch.active_params / arch.total_params
    return plan.weights_bytes_per_gpu * active / gpu.hbm_bandwidth_bytes_per_s


def check_run(scenario: ScenarioSpec, arch, gpu, plan, limits: WorkLimits = LIMITS) -> WorkEstimate:
    """Estimate a run (counting a trace's rows, without parsing it) and refuse it past `limits`."""
    a = scenario.workload.arrival
    rows = trace_row_bound(a.path) if a.kind == "trace" else None
    estimate = estimate_work(scenario, trace_rows=rows, step_floor_s=decode_step_floor_s(arch, gpu, plan))
    check_work(estimate, limits)
    return estimate
