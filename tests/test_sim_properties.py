"""Property tests: whatever the configuration, the simulator conserves requests and keeps time order."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fleetsim


def scenario(rate, replicas, max_seqs, util, inp, out, router, prefix, chunked):
    return {
        "model": "llama-3-8b",
        "fleet": {"gpu": "h100-sxm", "replicas": replicas, "gpu_memory_utilization": util, "router": router},
        "scheduler": {"max_running_seqs": max_seqs, "max_batched_tokens": 2048, "chunked_prefill": chunked},
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": rate},
            "classes": [
                {
                    "name": "a",
                    "input_tokens": {"kind": "uniform", "min_tokens": max(prefix + 1, 1), "max_tokens": inp},
                    "output_tokens": {"kind": "uniform", "min_tokens": 1, "max_tokens": out},
                    "shared_prefix_tokens": prefix,
                }
            ],
        },
        "run": {"duration_s": 15, "seed": 1},
    }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.floats(1, 60),
    replicas=st.integers(1, 3),
    max_seqs=st.integers(1, 64),
    util=st.floats(0.25, 0.95),
    inp=st.integers(200, 3000),
    out=st.integers(1, 400),
    router=st.sampled_from(["round_robin", "random", "least_outstanding", "most_free_kv", "central_queue"]),
    prefix=st.sampled_from([0, 100]),
    chunked=st.booleans(),
)
def test_requests_are_conserved_and_times_ordered(rate, replicas, max_seqs, util, inp, out, router, prefix, chunked):
    r = fleetsim.simulate(scenario(rate, replicas, max_seqs, util, inp, out, router, prefix, chunked))
    s, req = r.summary, r.requests
    assert (
        s["requests"]["arrived"] == s["requests"]["completed"] + s["requests"]["rejected"] + s["requests"]["in_flight"]
    )
    done = req[req["status"] == "completed"]
    assert (done["scheduled_s"] >= done["arrival_s"] - 1e-12).all()
    assert (done["first_token_s"] >= done["scheduled_s"] - 1e-12).all()
    assert (done["finish_s"] >= done["first_token_s"] - 1e-12).all()
    assert s["concurrency"]["max_running"] <= replicas * max_seqs
    assert 0.0 <= s["kv_cache"]["mean_utilization"] <= 1.0 + 1e-9
    assert np.isfinite(s["power"]["gpu_mean_w"]) and s["power"]["gpu_peak_w"] <= 700.0 + 1e-9
