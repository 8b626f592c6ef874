"""A run's work is estimated before the clock starts; past the limits it is refused in one line."""

import pytest

import fleetsim
from fleetsim.errors import SpecError, WorkBudgetError
from fleetsim.simulation import build
from fleetsim.workbudget import LIMITS, WorkLimits, check_work, estimate_work

BASE = {
    "model": "llama-3-8b",
    "fleet": {"replicas": 4},
    "workload": {
        "arrival": {"kind": "poisson", "rate_per_s": 20.0},
        "classes": [
            {
                "name": "chat",
                "input_tokens": {"kind": "fixed", "tokens": 1000},
                "output_tokens": {"kind": "fixed", "tokens": 200},
            }
        ],
    },
    "run": {"duration_s": 300},
}


def spec(**overrides):
    return fleetsim.load_scenario(BASE, {k.replace("__", "."): v for k, v in overrides.items()})


def test_expected_requests_by_arrival_kind():
    assert estimate_work(spec()).requests == pytest.approx(20 * 300)
    assert estimate_work(spec(run__max_requests=100)).requests == 100
    assert estimate_work(spec(run__duration_s=None, run__max_requests=5000)).requests == 5000
    offline = spec(workload__arrival={"kind": "offline", "requests": 700})
    assert estimate_work(offline).requests == 700
    piecewise = spec(workload__arrival={"kind": "diurnal", "rates_per_s": [10.0, 30.0], "segment_s": 150.0})
    assert estimate_work(piecewise).requests == pytest.approx(10 * 150 + 30 * 150)
    # Closed loop: users x duration / (think + output x the fastest step), plus the first request each.
    closed = spec(workload__arrival={"kind": "closed", "users": 10, "think_time": {"kind": "fixed", "value_s": 1.0}})
    assert estimate_work(closed, step_floor_s=0.005).requests == pytest.approx(10 * (300 / (1.0 + 200 * 0.005) + 1))
    trace = fleetsim.load_scenario(
        {**BASE, "workload": {"arrival": {"kind": "trace", "path": "t.csv", "max_requests": 30}}}
    )
    assert estimate_work(trace, trace_rows=1000).requests == 30
    assert estimate_work(trace, trace_rows=10).requests == 10


def test_samples_and_events():
    e = estimate_work(spec())
    assert e.timeseries_samples == pytest.approx(401)
    assert estimate_work(spec(run__timeseries_interval_s=0.5)).timeseries_samples == pytest.approx(601)
    assert e.prefill_chunks_per_request == 1
    assert estimate_work(spec(scheduler__max_batched_tokens=10)).prefill_chunks_per_request == 100
    assert (
        estimate_work(
            spec(scheduler__chunked_prefill=False, scheduler__max_batched_tokens=10)
        ).prefill_chunks_per_request
        == 1
    )


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"workload.arrival.rate_per_s": 1e6}, "workload.arrival.rate_per_s: about 300,000,000 requests a run"),
        ({"run.duration_s": 3e8}, "valid: at most 50,000,000 (lower the rate or run.duration_s"),
        ({"run.timeseries_interval_s": 1e-7}, "run.timeseries_interval_s: about 3,000,000,001 time-series samples"),
        (
            {"workload.arrival": {"kind": "closed", "users": 1_000_000}, "run.duration_s": 3e7},
            "workload.arrival.users: about",
        ),
        ({"workload.arrival": {"kind": "offline", "requests": 100_000_000}}, "workload.arrival.requests"),
        ({"scheduler.max_batched_tokens": 1, "run.duration_s": 30000}, "scheduler.max_batched_tokens: about"),
        ({"workload.arrival.rate_per_s": 10_000.0, "run.duration_s": 4000}, "GiB"),
    ],
)
def test_runs_past_the_limits_are_refused_before_the_clock_starts(overrides, needle):
    with pytest.raises(WorkBudgetError) as exc:
        build(spec(**{k.replace(".", "__"): v for k, v in overrides.items()}))
    message = str(exc.value)
    assert isinstance(exc.value, SpecError) and "\n" not in message and len(message) < 300
    assert needle in message


def test_limits_can_be_stated():
    e = estimate_work(spec())
    check_work(e)
    with pytest.raises(WorkBudgetError, match="valid: at most 1,000 "):
        check_work(e, WorkLimits(requests=1000))
    assert LIMITS.requests == 50_000_000 and LIMITS.timeseries_samples == 1_000_000


def test_shipped_scenarios_are_within_the_budget():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml")):
        build(fleetsim.load_scenario(path))


def test_a_fleet_in_pods_is_budgeted_per_process():
    """Issue 12's hour: 1,024 replicas at 11,148.8 requests/s for 3,600 s is 40,135,680 requests.
    In one process that is over the 8 GiB limit (250 B a request: 9.35 GiB), and the refusal says
    how to split it; in 2 pods the largest process is the parent holding the merged table
    (200 B a request: 7.48 GiB) and the run is accepted."""
    from fleetsim.workbudget import BYTES_PER_MERGED_REQUEST, BYTES_PER_REQUEST

    hour = {"fleet.replicas": 1024, "workload.arrival.rate_per_s": 11148.8, "run.duration_s": 3600}
    requests = 11148.8 * 3600
    one = estimate_work(spec(**{k.replace(".", "__"): v for k, v in hour.items()}))
    assert one.requests == pytest.approx(requests)
    assert one.memory_bytes > requests * BYTES_PER_REQUEST > LIMITS.memory_bytes
    with pytest.raises(WorkBudgetError, match="split the fleet with fleet.pods"):
        check_work(one)
    two = estimate_work(spec(**{k.replace(".", "__"): v for k, v in {**hour, "fleet.pods": 2}.items()}))
    assert two.pods == 2
    assert requests * BYTES_PER_MERGED_REQUEST < two.memory_bytes < LIMITS.memory_bytes
    check_work(two)
