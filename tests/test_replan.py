"""An arrival that lands in a decode run re-plans it at the boundary of the step in progress
(fleetsim.sim.replica): the edge cases of that re-plan, on one replica fed a two- or three-request
trace."""

import pytest

from fleetsim.simulation import simulate

SCENARIO = "scenarios/h100_llama3.yaml"


def _run(tmp_path, rows, **overrides):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{float(a)!r},{i},{o}\n" for a, i, o in rows))
    spec = {
        "fleet.replicas": 1,
        "run.duration_s": 30,
        "workload.arrival": {"kind": "trace", "path": str(trace)},
        "workload.classes": [{"name": "chat", "weight": 1.0}],
        **overrides,
    }
    return simulate(SCENARIO, spec).requests


@pytest.fixture
def alone(tmp_path):
    """Request A (200 in, 40 out) alone: its decode run is one run of 39 steps from its first
    token to its finish; (first token, finish, mean step time)."""
    a = _run(tmp_path, [(0.0, 200, 40)]).iloc[0]
    return float(a.first_token_s), float(a.finish_s), float(a.finish_s - a.first_token_s) / 39


def test_an_arrival_in_the_runs_last_step_waits_for_the_runs_end(tmp_path, alone):
    first, finish, step = alone
    q = _run(tmp_path, [(0.0, 200, 40), (finish - 0.3 * step, 100, 5)])
    a, b = q.iloc[0], q.iloc[1]
    # A's run is not cut: it ends as planned, and B is scheduled only then (not at its arrival).
    assert a.finish_s == pytest.approx(finish, rel=1e-12)
    assert b.scheduled_s == pytest.approx(finish, rel=1e-12)
    assert b.scheduled_s > b.arrival_s


def test_an_arrival_mid_run_is_prefilled_from_the_boundary_of_the_step_in_progress(tmp_path, alone):
    first, finish, step = alone
    ttft = {}
    for x in (10.1, 10.9):
        q = _run(tmp_path, [(0.0, 200, 40), (first + x * step, 100, 5)])
        a, b = q.iloc[0], q.iloc[1]
        # Admitted on arrival; its prefill iteration is inserted into A's decoding, so A
        # finishes later than alone.
        assert b.scheduled_s == b.arrival_s
        assert a.finish_s > finish
        ttft[x] = b.first_token_s - b.arrival_s
    # The prefill starts at the end of the step in progress: arriving 0.8 of a step earlier in
    # the same step waits 0.8 of a step longer.
    assert ttft[10.1] - ttft[10.9] == pytest.approx(0.8 * step, rel=0.05)


def test_arrivals_at_one_instant_mid_run_are_prefilled_together(tmp_path, alone):
    first, finish, step = alone
    arrival = first + 20.5 * step
    q = _run(tmp_path, [(0.0, 200, 40), (arrival, 100, 5), (arrival, 120, 5)])
    a, b, c = q.iloc[0], q.iloc[1], q.iloc[2]
    # One re-plan for both: they enter the same prefill iteration.
    assert b.scheduled_s == c.scheduled_s
    assert b.first_token_s == c.first_token_s
    assert b.first_token_s - arrival > 0.5 * step  # after the step in progress, then the prefill
    assert a.finish_s > finish


def test_arrivals_at_one_instant_in_the_last_step_are_scheduled_at_the_runs_end(tmp_path, alone):
    first, finish, step = alone
    arrival = finish - 0.2 * step
    q = _run(tmp_path, [(0.0, 200, 40), (arrival, 100, 5), (arrival, 120, 5)])
    a, b, c = q.iloc[0], q.iloc[1], q.iloc[2]
    assert a.finish_s == pytest.approx(finish, rel=1e-12)
    assert b.scheduled_s == c.scheduled_s == pytest.approx(finish, rel=1e-12)


def test_a_full_queue_counts_arrivals_of_one_instant_before_the_replan(tmp_path, alone):
    # scheduler.max_queue = 1: the re-plan that moves the first arrival out of the queue runs after
    # every arrival of that instant is dispatched, so the second finds the queue full.
    first, finish, step = alone
    arrival = first + 20.5 * step
    q = _run(tmp_path, [(0.0, 200, 40), (arrival, 100, 5), (arrival, 120, 5)], **{"scheduler.max_queue": 1})
    assert list(q.status) == ["completed", "completed", "rejected"]
