"""Pinned results: two small runs whose figures were recorded at commit 9cfc2eb (before the
simulator's speed work of issue 12; the same code path as 45da4f6 for these runs) by running
that commit's code, not this one, and re-recorded once on purpose: a decode run interrupted in its
last step used to complete its sequences at the interrupt and start the next iteration there,
overlapping the step still in progress (a replica's busy time could exceed the clock, and the
time series' power read above the cap; tests/test_decode_run.py checks the invariant). The speed
work must not move them: integer counts exactly, floats to a relative 1e-9 (tight enough to catch
a real change, loose enough for the last bits of library arithmetic across numpy/pandas versions)."""

from pathlib import Path

import pytest

import fleetsim

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "h100_llama3.yaml"

CASES = {
    "least_outstanding": (
        {"fleet.replicas": 3, "workload.arrival.rate_per_s": 25.0, "run.duration_s": 40, "run.seed": 3},
        {
            "arrived": 988,
            "completed": 988,
            "replica_counts": [340, 332, 316],
            "ttft_p50": 0.022024788565666142,
            "ttft_p99": 0.13011568675775342,
            "tpot_p50": 0.008624496009515639,
            "e2e_mean": 2.1950802599867414,
            "simulated_s": 48.300000000000416,
            "energy_j": 76937.33640546753,
            "out_tok_per_s": 6663.6614173227445,
            "finish_sum": 22377.35327594489,
        },
    ),
    "central_queue": (
        {
            "fleet.router": "central_queue",
            "fleet.replicas": 3,
            "scheduler.max_running_seqs": 16,
            "workload.arrival.rate_per_s": 25.0,
            "run.duration_s": 40,
            "run.seed": 5,
        },
        {
            "arrived": 1056,
            "completed": 1056,
            "replica_counts": [365, 333, 358],
            "ttft_p50": 3.97632562710365,
            "ttft_p99": 5.891055939222545,
            "tpot_p50": 0.008153678951005718,
            "e2e_mean": 5.497477451420954,
            "simulated_s": 51.800000000000466,
            "energy_j": 83780.26863508779,
            "out_tok_per_s": 5800.306406685187,
            "finish_sum": 26542.919771643865,
        },
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_results_pinned_before_the_speed_work(name):
    overrides, pinned = CASES[name]
    r = fleetsim.simulate(SCENARIO, overrides)
    s, q = r.summary, r.requests
    assert s["requests"]["arrived"] == pinned["arrived"]
    assert s["requests"]["completed"] == pinned["completed"]
    assert q["replica"].value_counts().sort_index().tolist() == pinned["replica_counts"]
    got = {
        "ttft_p50": s["latency_s"]["ttft"]["p50"],
        "ttft_p99": s["latency_s"]["ttft"]["p99"],
        "tpot_p50": s["latency_s"]["tpot"]["p50"],
        "e2e_mean": s["latency_s"]["e2e"]["mean"],
        "simulated_s": s["simulated_s"],
        "energy_j": float(r.replicas["energy_j"].sum()),
        "out_tok_per_s": s["throughput"]["output_tokens_per_s"],
        "finish_sum": float(q["finish_s"].sum()),
    }
    for key, value in got.items():
        assert value == pytest.approx(pinned[key], rel=1e-9), key
