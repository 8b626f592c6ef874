"""Pinned results: two small runs whose figures were recorded at commit 9cfc2eb (before the
simulator's speed work of issue 12; the same code path as 45da4f6 for these runs) by running
that commit's code, not this one. The speed work must not move them: integer counts exactly,
floats to a relative 1e-9 (tight enough to catch a real change, loose enough for the last bits
of library arithmetic across numpy/pandas versions)."""

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
            "replica_counts": [328, 347, 313],
            "ttft_p50": 0.021482571458284028,
            "ttft_p99": 0.10853554554393167,
            "tpot_p50": 0.008547317550579293,
            "e2e_mean": 2.1819655282917036,
            "simulated_s": 48.10000000000041,
            "energy_j": 76771.83208290982,
            "out_tok_per_s": 6662.70588235285,
            "finish_sum": 22372.881462388174,
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
            "replica_counts": [352, 361, 343],
            "ttft_p50": 4.000685354553591,
            "ttft_p99": 5.9116431644476055,
            "tpot_p50": 0.008169620375540004,
            "e2e_mean": 5.495915748369589,
            "simulated_s": 51.700000000000465,
            "energy_j": 83073.10101686262,
            "out_tok_per_s": 5799.387186629475,
            "finish_sum": 26540.999506061937,
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
