"""The fleet simulator against closed forms (queueing theory, Little's law) and its own invariants.

Queueing figures come from the textbook formulas written out below, evaluated with service-time
moments measured on the run itself (so they test the queueing dynamics, not the step model).
"""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import fleetsim
from fleetsim.memory import kv_footprint
from fleetsim.perf import StepModel
from fleetsim.simulation import build

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def queue_scenario(
    rate_per_s,
    *,
    replicas=1,
    router="least_outstanding",
    input_tokens=None,
    output_tokens=None,
    max_requests=20000,
    seed=7,
):
    """One request at a time per replica (max_running_seqs = 1): a single-server queue."""
    return {
        "name": "queue",
        "model": "llama-3-8b",
        "fleet": {"gpu": "h100-sxm", "replicas": replicas, "router": router},
        "scheduler": {"max_running_seqs": 1},
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": rate_per_s},
            "classes": [
                {
                    "name": "q",
                    "input_tokens": input_tokens or {"kind": "fixed", "tokens": 64},
                    "output_tokens": output_tokens or {"kind": "fixed", "tokens": 32},
                }
            ],
        },
        "run": {"duration_s": None, "max_requests": max_requests, "seed": seed},
    }


def batch_means_ci(values: np.ndarray, batches: int = 20, level: float = 0.99):
    """Confidence interval of a steady-state mean by the method of batch means."""
    means = np.array([b.mean() for b in np.array_split(values, batches)])
    half = stats.t.ppf(0.5 + level / 2, batches - 1) * means.std(ddof=1) / math.sqrt(batches)
    return means.mean() - half, means.mean() + half


def service_times(req):
    done = req[req["status"] == "completed"]
    return (done["finish_s"] - done["scheduled_s"]).to_numpy()


def steady(req, drop=0.1):
    """Drop the first 10% of requests (the empty-system transient)."""
    return req.iloc[int(len(req) * drop) :]


# ------------------------------------------------------------------ accounting and determinism
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_request_is_accounted_for_in_every_shipped_scenario(path):
    result = fleetsim.simulate(path, {"run.duration_s": 20})
    r = result.summary["requests"]
    assert r["arrived"] > 0
    assert r["arrived"] == r["completed"] + r["rejected"] + r["in_flight"]
    assert len(result.requests) == r["arrived"]


def test_without_drain_requests_in_flight_are_counted():
    result = fleetsim.simulate(ROOT / "scenarios/h100_llama3.yaml", {"run.duration_s": 10, "run.drain": False})
    r = result.summary["requests"]
    assert r["in_flight"] > 0
    assert r["arrived"] == r["completed"] + r["rejected"] + r["in_flight"]


def test_same_scenario_and_seed_give_identical_json_in_two_fresh_processes():
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-c",
        "from fleetsim.cli import main; main()",
        "run",
        str(ROOT / "scenarios/h100_llama3.yaml"),
        "--json",
        "--set",
        "run.duration_s=30",
    ]
    a = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    b = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert a == b
    c = subprocess.run(cmd + ["--seed", "3"], capture_output=True, text=True, check=True).stdout
    assert c != a


def test_littles_law_holds_on_the_runs_own_records():
    result = fleetsim.simulate(ROOT / "scenarios/h100_llama3.yaml", {"run.duration_s": 120})
    s, req = result.summary, result.requests
    T = s["simulated_s"]
    # L: time-average number in system, from the fleet's own level integrals.
    L = s["concurrency"]["mean_running"] + s["concurrency"]["mean_queued"]
    # lambda * W: from the per-request records (every request drained, so W covers all).
    lam = len(req) / T
    W = (req["finish_s"] - req["arrival_s"]).mean()
    assert L == pytest.approx(lam * W, rel=0.01)


# ------------------------------------------------------------------ queueing closed forms
def test_one_request_at_a_time_with_fixed_lengths_is_md1():
    probe = fleetsim.simulate(queue_scenario(1.0, max_requests=50))
    D = service_times(probe.requests).mean()
    rho = 0.7
    lam = rho / D
    result = fleetsim.simulate(queue_scenario(lam))
    S = service_times(result.requests)
    assert S.std() / S.mean() < 1e-6  # deterministic service
    # M/D/1 (Pollaczek-Khinchine with Var S = 0): Wq = rho * D / (2 (1 - rho)).
    wq = rho * D / (2 * (1 - rho))
    lo, hi = batch_means_ci(steady(result.requests)["queue_s"].to_numpy())
    assert lo <= wq <= hi, (lo, wq, hi)


def test_exponential_service_is_mm1():
    # Geometric output lengths (mean 100) and a 1-token prompt give service times that are
    # exponential to within the discreteness of tokens: M/M/1, Wq = rho / (mu - lambda).
    p = 1 / 100
    values = np.arange(1, 1500)
    weights = (1 - p) ** (values - 1) * p
    out = {"kind": "empirical", "values": values.tolist(), "weights": weights.tolist()}
    inp = {"kind": "fixed", "tokens": 1}
    probe = fleetsim.simulate(queue_scenario(0.5, input_tokens=inp, output_tokens=out, max_requests=3000))
    mean_s = service_times(probe.requests).mean()
    rho = 0.6
    lam = rho / mean_s
    result = fleetsim.simulate(queue_scenario(lam, input_tokens=inp, output_tokens=out, max_requests=30000))
    S = service_times(result.requests)
    mu = 1 / S.mean()
    rho_run = lam / mu
    wq_mm1 = rho_run / (mu - lam)
    lo, hi = batch_means_ci(steady(result.requests)["queue_s"].to_numpy())
    assert lo <= wq_mm1 <= hi, (lo, wq_mm1, hi)


def erlang_c_wait(lam, mu, c):
    """M/M/c mean wait in queue (Erlang C)."""
    a = lam / mu
    rho = a / c
    s = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / (math.factorial(c) * (1 - rho))
    p_wait = top / (s + top)
    return p_wait / (c * mu - lam)


def test_several_exponential_servers_with_a_central_queue_are_mmc():
    p = 1 / 100
    values = np.arange(1, 1500)
    weights = (1 - p) ** (values - 1) * p
    out = {"kind": "empirical", "values": values.tolist(), "weights": weights.tolist()}
    inp = {"kind": "fixed", "tokens": 1}
    c = 4
    probe = fleetsim.simulate(queue_scenario(0.5, input_tokens=inp, output_tokens=out, max_requests=3000))
    mean_s = service_times(probe.requests).mean()
    lam = 0.75 * c / mean_s
    result = fleetsim.simulate(
        queue_scenario(lam, replicas=c, router="central_queue", input_tokens=inp, output_tokens=out, max_requests=40000)
    )
    mu = 1 / service_times(result.requests).mean()
    wq = erlang_c_wait(lam, mu, c)
    lo, hi = batch_means_ci(steady(result.requests)["queue_s"].to_numpy())
    assert lo <= wq <= hi, (lo, wq, hi)


# ------------------------------------------------------------------ arrivals as simulated
def test_poisson_arrivals_have_mean_gap_one_over_rate():
    rate = 40.0
    result = fleetsim.simulate(
        ROOT / "scenarios/h100_llama3.yaml", {"workload.arrival.rate_per_s": rate, "run.duration_s": 500}
    )
    gaps = np.diff(np.concatenate([[0.0], result.requests["arrival_s"].to_numpy()]))
    n = len(gaps)
    # Exponential gaps: the mean has standard error (1/rate)/sqrt(n); 99.9% two-sided band.
    assert abs(gaps.mean() - 1 / rate) < 3.29 * (1 / rate) / math.sqrt(n)


def test_gamma_arrivals_match_their_cv():
    result = fleetsim.simulate(
        ROOT / "scenarios/h100_llama3.yaml",
        {"workload.arrival": {"kind": "gamma", "rate_per_s": 30.0, "cv": 3.0}, "run.duration_s": 600},
    )
    gaps = np.diff(result.requests["arrival_s"].to_numpy())
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)
    assert gaps.mean() == pytest.approx(1 / 30.0, rel=0.1)


# ------------------------------------------------------------------ bounds from the step model
def _step_model(scenario_path, overrides=None):
    sc = fleetsim.load_scenario(scenario_path, overrides)
    arch, gpu, profile, engine, plan = build(sc)
    return sc, StepModel(
        arch,
        gpu,
        profile,
        engine,
        sc.fleet.tp,
        sc.weight_dtype,
        sc.kv_cache,
        kv_footprint(arch, sc.kv_cache, sc.fleet.tp),
    )


def test_throughput_never_exceeds_what_the_step_model_allows():
    path = ROOT / "scenarios/h100_llama3.yaml"
    sc, sm = _step_model(path)
    result = fleetsim.simulate(path, {"workload.arrival.rate_per_s": 400, "run.duration_s": 60})
    # Every iteration takes at least the time of a 1-token step and yields at most
    # max_running_seqs output tokens per replica.
    t_min = sm.iteration(1, 0.0).time_s
    bound = sc.fleet.replicas * sc.scheduler.max_running_seqs / t_min
    tps = result.summary["throughput"]["output_tokens_per_s"]
    assert 0 < tps <= bound


def test_at_low_load_ttft_approaches_the_single_request_prefill_time():
    path = ROOT / "scenarios/h100_llama3.yaml"
    prompt = 2000
    over = {
        "workload.classes": [
            {
                "name": "c",
                "input_tokens": {"kind": "fixed", "tokens": prompt},
                "output_tokens": {"kind": "fixed", "tokens": 16},
            }
        ],
        "workload.arrival.rate_per_s": 0.05,
        "run.duration_s": 2000,
    }
    sc, sm = _step_model(path, over)
    fp = sm.footprint
    prefill = sm.iteration(0, 0.0, prompt, prompt * float(fp.bytes_per_rank(prompt / 2))).time_s
    result = fleetsim.simulate(path, over)
    ttft = result.requests["ttft_s"].median()
    assert ttft == pytest.approx(prefill, rel=0.05)


def test_closed_loop_never_has_more_than_n_requests_in_the_system():
    users = 12
    result = fleetsim.simulate(
        ROOT / "scenarios/h100_llama3.yaml",
        {
            "workload.arrival": {
                "kind": "closed",
                "users": users,
                "think_time": {"kind": "exponential", "mean_s": 0.5},
            },
            "fleet.replicas": 1,
            "run.duration_s": 60,
        },
    )
    req = result.requests
    events = np.concatenate(
        [np.stack([req["arrival_s"], np.ones(len(req))], 1), np.stack([req["finish_s"], -np.ones(len(req))], 1)]
    )
    # Departures before arrivals at equal times (a user's next request follows its completion).
    order = np.lexsort((events[:, 1], events[:, 0]))
    in_system = np.cumsum(events[order, 1])
    assert in_system.max() <= users
    assert in_system.max() == users  # with short think times every user is busy at some point
    assert result.summary["concurrency"]["max_running"] <= users


def test_offline_workload_starts_everything_at_zero_and_finishes():
    result = fleetsim.simulate(
        ROOT / "scenarios/h100_llama3.yaml",
        {
            "workload.arrival": {"kind": "offline", "requests": 2000},
            "fleet.replicas": 2,
            "run.duration_s": None,
            "run.max_requests": 2000,
        },
    )
    assert (result.requests["arrival_s"] == 0).all()
    assert result.summary["requests"]["completed"] == 2000


def test_kv_pressure_preempts_and_still_completes_everything():
    # A tiny KV pool (utilization 0.3 leaves ~9 GB) and long outputs force preemption by recompute.
    result = fleetsim.simulate(
        ROOT / "scenarios/h100_llama3.yaml",
        {
            "fleet.gpu_memory_utilization": 0.3,
            "fleet.replicas": 1,
            "workload.arrival": {"kind": "offline", "requests": 600},
            "workload.classes": [
                {
                    "name": "long",
                    "input_tokens": {"kind": "fixed", "tokens": 2000},
                    "output_tokens": {"kind": "fixed", "tokens": 1500},
                }
            ],
            "run.duration_s": None,
            "run.max_requests": 600,
        },
    )
    s = result.summary
    assert s["kv_cache"]["preemptions"] > 0
    assert s["requests"]["completed"] == 600
    assert s["kv_cache"]["mean_utilization"] <= 1.0


def test_trace_replay_of_the_azure_conversation_trace():
    trace = ROOT.parent / "shared" / "traces" / "AzureLLMInferenceTrace_conv.csv"
    if not trace.exists():
        pytest.skip("shared traces not present")
    result = fleetsim.simulate(
        ROOT / "scenarios/h100_llama3.yaml",
        {"workload.arrival": {"kind": "trace", "path": str(trace)}, "workload.classes": [], "run.duration_s": 120},
    )
    req = result.requests
    assert len(req) > 0 and req["arrival_s"].iloc[0] == 0.0
    assert req["arrival_s"].max() <= 120


def test_python_api_returns_frames_and_summary():
    result = fleetsim.simulate(ROOT / "scenarios/h100_llama3.yaml", run__duration_s=10)
    for key in (
        "scenario",
        "seed",
        "simulated_s",
        "requests",
        "throughput",
        "latency_s",
        "concurrency",
        "kv_cache",
        "power",
        "cooling",
        "cost",
        "slo",
    ):
        assert key in result.summary
    assert {"arrival_s", "ttft_s", "tpot_s", "e2e_s"} <= set(result.requests.columns)
    assert {"time_s", "running", "queued", "kv_used_fraction", "power_w"} <= set(result.timeseries.columns)


def test_energy_is_power_integrated_over_time():
    result = fleetsim.simulate(ROOT / "scenarios/h100_llama3.yaml", {"run.duration_s": 60})
    p = result.summary["power"]
    gpus = result.summary["fleet"]["gpus"]
    # GPU energy = mean GPU power x GPUs x simulated time (whole run); the steady-state window's
    # mean power is the metered energy between its ends, inside [idle, cap].
    assert p["gpu_energy_kwh"] * 3.6e6 == pytest.approx(
        p["whole_run_gpu_mean_w"] * gpus * result.summary["simulated_s"], rel=1e-9
    )
    ts = result.timeseries
    assert ts["gpu_energy_j"].is_monotonic_increasing
    assert ts["gpu_energy_j"].iloc[-1] <= p["gpu_energy_kwh"] * 3.6e6 * (1 + 1e-9)
    prof = fleetsim.profile.load_profile("h100-sxm")
    assert prof.power.idle_w <= p["gpu_mean_w"] <= prof.power.cap_w
    fleetsim.load_scenario(ROOT / "scenarios/h100_llama3.yaml")
    assert p["gpu_peak_w"] <= 700.0  # H100 SXM cap (TDP)


def test_prompt_cache_hits_skip_prefill_and_share_the_prompt_kv():
    base = {
        "workload.classes": [
            {
                "name": "c",
                "input_tokens": {"kind": "fixed", "tokens": 4000},
                "output_tokens": {"kind": "fixed", "tokens": 50},
            }
        ],
        "workload.arrival.rate_per_s": 10,
        "run.duration_s": 60,
        "fleet.replicas": 1,
    }
    hit = dict(base)
    hit["workload.classes"] = [dict(base["workload.classes"][0], prompt_cache_hit_fraction=0.75)]
    a = fleetsim.simulate(ROOT / "scenarios/h100_llama3.yaml", base)
    b = fleetsim.simulate(ROOT / "scenarios/h100_llama3.yaml", hit)
    cached = b.requests["cached_prompt_tokens"]
    # Binomial check of the hit fraction (99.9% band) and what a hit caches: the prompt but one token.
    n = len(cached)
    frac = (cached > 0).mean()
    assert abs(frac - 0.75) < 3.29 * math.sqrt(0.75 * 0.25 / n)
    assert set(cached.unique()) <= {0, 3999}
    hits = b.requests[cached > 0]
    misses = b.requests[cached == 0]
    assert hits["ttft_s"].median() < 0.5 * misses["ttft_s"].median()
    assert b.summary["kv_cache"]["mean_utilization"] < a.summary["kv_cache"]["mean_utilization"]
    # Without prefix caching nothing is a hit.
    c = fleetsim.simulate(ROOT / "scenarios/h100_llama3.yaml", {**hit, "kv_cache.prefix_caching": False})
    assert (c.requests["cached_prompt_tokens"] == 0).all()
