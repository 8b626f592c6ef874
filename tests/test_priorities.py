"""Class priorities, preemption order and admission control in a run (issue 15, part 4)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import fleetsim
from fleetsim.admission import class_summary
from fleetsim.errors import SpecError
from fleetsim.scenario import load_scenario
from fleetsim.sim.engine import Engine
from fleetsim.sim.replica import Replica
from fleetsim.simulation import build
from fleetsim.workload import RequestBatch, generate_requests

TWO_CLASS = "scenarios/h100_two_class_priority.yaml"


def _scenario(classes=(), admission=None, **scheduler):
    """Llama 3 8B on one H100; classes 'low' (index 0) and 'high' (index 1), fixed lengths."""
    spec = {
        "model": "llama-3-8b",
        "fleet": {"gpu": "h100-sxm", "replicas": 1},
        "scheduler": {"max_running_seqs": 1, **scheduler},
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": 1.0},
            "classes": [
                {
                    "name": "low",
                    "input_tokens": {"kind": "fixed", "tokens": 64},
                    "output_tokens": {"kind": "fixed", "tokens": 8},
                },
                {
                    "name": "high",
                    "input_tokens": {"kind": "fixed", "tokens": 64},
                    "output_tokens": {"kind": "fixed", "tokens": 8},
                },
            ],
        },
        "classes": list(classes),
        "run": {"duration_s": 10.0, "seed": 1},
    }
    if admission is not None:
        spec["admission"] = admission
    return load_scenario(spec)


def _run(scenario, arrival_s, class_index, output_tokens=None):
    """Run `scenario` on a hand-made batch of 64-token prompts."""
    n = len(arrival_s)
    out = np.full(n, 8, dtype=np.int64) if output_tokens is None else np.asarray(output_tokens, dtype=np.int64)
    batch = RequestBatch(
        arrival_s=np.asarray(arrival_s, dtype=np.float64),
        input_tokens=np.full(n, 64, dtype=np.int64),
        output_tokens=out,
        class_index=np.asarray(class_index, dtype=np.int32),
        shared_prefix_tokens=np.zeros(n, dtype=np.int64),
    )
    arch, gpu, profile, engine_profile, plan = build(scenario)
    engine = Engine(scenario, arch, gpu, profile, plan, engine_profile)
    return engine.run(batch, end_s=float(arrival_s[-1]))


PRIORITIES = [{"name": "low", "priority": 0}, {"name": "high", "priority": 5}]


def test_high_priority_overtakes_an_earlier_low_priority_request():
    # Two requests at t = 0, the low-priority one first (id 0), one running slot: by priority the
    # high one is scheduled at once and the low one when it finishes; FCFS the other way round.
    req = _run(_scenario(PRIORITIES), [0.0, 0.0], [0, 1]).requests
    assert req.loc[1, "scheduled_s"] == 0.0
    assert req.loc[0, "scheduled_s"] == req.loc[1, "finish_s"] > 0
    fcfs = _run(_scenario(), [0.0, 0.0], [0, 1]).requests
    assert fcfs.loc[0, "scheduled_s"] == 0.0
    assert fcfs.loc[1, "scheduled_s"] == fcfs.loc[0, "finish_s"] > 0


def test_central_queue_hands_a_freed_slot_to_the_high_priority_request():
    # central_queue, one replica with one slot: request 0 (low) takes it; 1 (low) and 2 (high)
    # wait in the central queue; when 0 finishes, 2 goes first, then 1.
    sc = _scenario(PRIORITIES)
    sc = sc.model_copy(update={"fleet": sc.fleet.model_copy(update={"router": "central_queue"})})
    req = _run(sc, [0.0, 0.0, 0.0], [0, 0, 1]).requests
    assert req.loc[0, "scheduled_s"] == 0.0
    assert req.loc[2, "scheduled_s"] == req.loc[0, "finish_s"]
    assert req.loc[1, "scheduled_s"] == req.loc[2, "finish_s"]


def test_equal_priorities_are_fcfs_bit_for_bit():
    sc = load_scenario(TWO_CLASS, {"run.duration_s": 10.0})
    same = sc.model_copy(update={"classes": tuple(c.model_copy(update={"priority": 7}) for c in sc.classes)})
    none = sc.model_copy(update={"classes": ()})
    a = fleetsim.simulate(same).requests
    b = fleetsim.simulate(none).requests
    pd.testing.assert_frame_equal(a, b)


def test_preemption_victim_lowest_priority_then_the_tail():
    def victim(prefilling, running, classes, priorities=(0, 5)):
        engine = SimpleNamespace(prioritized=True, class_priority=list(priorities), req_class=classes)
        return Replica._victim(SimpleNamespace(engine=engine, prefilling=prefilling, running=running))

    # requests 0..3 of classes low, high, low, high
    classes = [0, 1, 0, 1]
    running = {0: (0, 0.0), 1: (0, 0.0), 2: (0, 0.0), 3: (0, 0.0)}
    assert victim({}, running, classes) == 2  # the last low-priority one, not the tail (3)
    assert victim({3: [10, 0]}, {0: (0, 0.0), 1: (0, 0.0)}, classes) == 0  # a low decoding before a high prefilling
    assert victim({2: [10, 0]}, running, classes) == 2  # within a priority prefilling is the tail
    only_high = {1: (0, 0.0), 3: (0, 0.0)}
    assert victim({}, only_high, classes) == 3  # one priority: vLLM V1's tail


def test_token_bucket_admits_a_hand_counted_number():
    # 20 arrivals every 0.25 s (t = 0 .. 4.75) at a bucket of 1 token/s, burst 2, full at the
    # first: admitted at t = 0 and 0.25 (the burst), then one each time a token has refilled,
    # t = 1, 2, 3, 4: 6 in all = burst + floor(rate x 4.75).
    bucket = {"token_bucket": {"rate_per_s": 1.0, "burst": 2.0}}
    raw = _run(_scenario(admission=bucket, max_running_seqs=256), np.arange(20) * 0.25, [0] * 20)
    req = raw.requests
    admitted = req.index[req["status"] != "rejected"].tolist()
    assert admitted == [0, 1, 4, 8, 12, 16]
    assert raw.rejected_by_reason == {"low": {"rate_limited": 14}}


def test_queue_timeout_rejects_a_request_never_scheduled():
    # One running slot: request 0 decodes 1,000 tokens; request 1 (same t = 0) would wait for it,
    # and is refused at its deadline, 1 s after arrival. Request 2 arrives once the slot is free.
    sc = _scenario(admission={"queue_timeout_s": 1.0})
    raw = _run(sc, [0.0, 0.0, 30.0], [0, 0, 0], output_tokens=[1000, 8, 8])
    req = raw.requests
    assert req.loc[0, "finish_s"] > 1.0  # precondition: request 1 would still be waiting at t = 1
    assert req.loc[1, "status"] == "rejected" and req.loc[1, "finish_s"] == 1.0
    assert math.isnan(req.loc[1, "scheduled_s"])
    assert list(req["status"].astype(str)) == ["completed", "rejected", "completed"]
    assert raw.rejected_by_reason == {"low": {"timeout": 1}}


@pytest.mark.parametrize("pods", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_request_accounted_for(pods, seed):
    # Overloaded, short, no drain: completed, rejected (queue limit, bucket, timeout) and in flight.
    over = {
        "fleet.pods": pods,
        "workload.arrival.rate_per_s": 70.0,
        "run.duration_s": 8.0,
        "run.drain": False,
        "run.seed": seed,
        "scheduler.max_queue": 20,
        "scheduler.max_running_seqs": 16,
        "admission.queue_timeout_s": 1.0,
    }
    sc = load_scenario(TWO_CLASS, over)
    res = fleetsim.simulate(sc, workers=1)
    req = res.requests
    arrived = len(generate_requests(sc.workload, np.random.default_rng(seed), duration_s=8.0))
    counts = req["status"].value_counts()
    assert len(req) == arrived == counts["completed"] + counts["rejected"] + counts["in_flight"]
    assert counts["in_flight"] > 0 and counts["rejected"] > 0
    done = req["status"] == "completed"
    assert req.loc[done, "finish_s"].notna().all() and req.loc[~done, "ttft_s"].isna().all()
    assert req.loc[req["status"] == "in_flight", "finish_s"].isna().all()


def test_rejections_by_reason_add_up_per_class_with_pods():
    from fleetsim.sim.pods import run_pods

    over = {"fleet.pods": 2, "workload.arrival.rate_per_s": 70.0, "run.duration_s": 8.0, "scheduler.max_queue": 20}
    sc = load_scenario(TWO_CLASS, {**over, "scheduler.max_running_seqs": 16, "admission.queue_timeout_s": 1.0})
    raw = run_pods(sc, *build(sc), workers=1)
    rejected = raw.requests[raw.requests["status"] == "rejected"].groupby("class", observed=True).size()
    by_reason = {c: sum(r.values()) for c, r in raw.rejected_by_reason.items()}
    assert by_reason == {str(c): int(n) for c, n in rejected.items()}
    reasons = {k for r in raw.rejected_by_reason.values() for k in r}
    assert {"queue_full", "timeout"} <= reasons <= {"too_large", "queue_full", "rate_limited", "timeout"}


def test_same_seed_same_run():
    sc = load_scenario(TWO_CLASS, {"run.duration_s": 15.0})
    pd.testing.assert_frame_equal(fleetsim.simulate(sc).requests, fleetsim.simulate(sc).requests)


def test_two_class_scenario_serves_chat_faster_than_fcfs():
    sc = load_scenario(TWO_CLASS, {"run.duration_s": 60.0})
    fcfs = sc.model_copy(update={"classes": tuple(c.model_copy(update={"priority": 0}) for c in sc.classes)})
    prio = fleetsim.simulate(sc).requests
    flat = fleetsim.simulate(fcfs).requests

    def chat_ttft(req, q):
        return req.loc[req["class"] == "chat", "ttft_s"].quantile(q)

    assert chat_ttft(prio, 0.99) < chat_ttft(flat, 0.5)  # by priority p99 beats FCFS's median
    chat_preempted = [int(r.loc[r["class"] == "chat", "preemptions"].sum()) for r in (prio, flat)]
    assert chat_preempted[0] < chat_preempted[1]  # batch requests are preempted first
    summary = class_summary(prio, sc)
    assert summary["by_class"]["chat"]["slo_attainment"] > class_summary(flat, sc)["by_class"]["chat"]["slo_attainment"]


def test_class_summary_by_hand():
    sc = _scenario([{"name": "high", "priority": 5, "ttft_s": 0.5, "tpot_s": 0.1}])
    req = pd.DataFrame(
        {
            "class": ["high", "high", "low", "low"],
            "status": ["completed", "rejected", "completed", "completed"],
            "arrival_s": [0.0, 1.0, 2.0, 3.0],
            "ttft_s": [0.4, float("nan"), 1.9, 2.5],  # low: the scenario's slo, TTFT 2 s
            "tpot_s": [0.05, float("nan"), 0.05, 0.05],
            "output_tokens": [10, 20, 30, 40],
        }
    )
    out = class_summary(req, sc, rejected_by_reason={"high": {"timeout": 1}})
    high, low = out["by_class"]["high"], out["by_class"]["low"]
    assert (high["priority"], high["ttft_target_s"], high["met"], high["goodput_tokens"]) == (5, 0.5, 1, 10)
    assert high["slo_attainment"] == 0.5 and high["rejected_by_reason"] == {"timeout": 1}
    assert (low["priority"], low["ttft_target_s"], low["met"], low["goodput_tokens"]) == (0, 2.0, 1, 30)
    assert out["total"]["goodput_tokens"] == 40 and out["total"]["slo_attainment"] == 0.5


@pytest.mark.parametrize(
    ("classes", "field"),
    [([{"name": "nope"}], "nope"), ([{"name": "low"}, {"name": "low", "priority": 3}], "listed twice")],
)
def test_bad_class_policy_is_one_line(classes, field):
    with pytest.raises(SpecError) as err:
        _scenario(classes)
    assert field in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("router", ["least_outstanding", "central_queue"])
def test_in_flight_equals_the_fleet_levels_at_the_end(router):
    # Without drain the requests still pending are exactly those queued or running at the end.
    over = {
        "fleet.router": router,
        "workload.arrival.rate_per_s": 70.0,
        "run.duration_s": 6.0,
        "run.drain": False,
        "scheduler.max_queue": 20,
        "scheduler.max_running_seqs": 16,
        "admission.queue_timeout_s": 1.0,
    }
    sc = load_scenario(TWO_CLASS, over)
    arch, gpu, profile, engine_profile, plan = build(sc)
    engine = Engine(sc, arch, gpu, profile, plan, engine_profile)
    raw = engine.run()
    in_flight = int((raw.requests["status"] == "in_flight").sum())
    assert in_flight > 0
    assert engine.pending == in_flight == engine.fleet.running + engine.fleet.queued
    assert sum(sum(r.values()) for r in raw.rejected_by_reason.values()) == (raw.requests["status"] == "rejected").sum()
