"""The closed-form decode run equals the step-by-step evaluation of the step-time model."""

import numpy as np
import pytest

from fleetsim.catalog import load_gpu, load_model
from fleetsim.memory import kv_footprint
from fleetsim.perf import StepModel
from fleetsim.power import gpu_power_w
from fleetsim.profile import load_profile
from fleetsim.sim.decode_run import DecodeRun
from fleetsim.simulation import simulate
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.kvcache import KvCacheSpec


def engine(overlap: bool, graphs: bool, host_s: float, per_seq_s: float, eager_s: float) -> EngineProfile:
    """An engine profile with the given terms (so every line of the envelope gets its turn)."""
    return EngineProfile.model_validate(
        {
            "engine": "vllm",
            "version": "0.11",
            "released": "2025-10",
            "provenance": {"kind": "prior", "date": "2026-12-01"},
            "host": {"iteration_s": host_s, "per_sequence_s": per_seq_s, "overlap": overlap},
            "launch": {
                "per_layer_eager_s": eager_s,
                "graph_replay_s": 2e-5,
                "cuda_graphs": graphs,
                "graph_max_batch": 256,
            },
            "batching": {"kv_admission": "on_demand"},
        }
    )


ENGINES = {
    "plain": engine(False, True, 1e-3, 0.0, 0.0),
    "host-overlap": engine(True, True, 4e-3, 4e-5, 0.0),
    "eager-floor": engine(True, False, 1e-4, 1e-5, 6e-4),
    "serial-eager": engine(False, False, 5e-4, 2e-5, 3e-4),
}


@pytest.mark.parametrize(
    "model, gpu, tp, kv, eng",
    [
        ("llama-3-8b", "h100-sxm", 1, "bf16", "plain"),
        ("llama-3-8b", "b200", 1, "fp8", "host-overlap"),
        ("llama-3-70b", "h200", 4, "bf16", "eager-floor"),
        ("deepseek-v3", "h200", 8, "bf16", "serial-eager"),
        ("deepseek-v3", "h200", 8, "bf16", "host-overlap"),
    ],
)
def test_closed_form_matches_per_step_sums(model, gpu, tp, kv, eng):
    arch = load_model(model)
    spec = KvCacheSpec(key_dtype=kv, value_dtype=kv)
    prof = load_profile(gpu)
    weights = "fp8" if model == "deepseek-v3" else "bf16"
    sm = StepModel(arch, load_gpu(gpu), prof, ENGINES[eng], tp, weights, spec, kv_footprint(arch, spec, tp))
    rng = np.random.default_rng(1)
    for _ in range(150):
        n = int(rng.integers(1, 512))
        kv0 = float(rng.uniform(0, 6e10))
        growth = float(rng.uniform(0, 3e7))
        k = int(rng.integers(1, 3000))
        t, flops, moved = sm.decode_run(n, kv0, growth, k)
        run = DecodeRun(sm, n, kv0, growth, k)
        cum = np.cumsum(t)
        assert run.total_s == pytest.approx(cum[-1], rel=1e-9)
        s = int(rng.integers(1, k + 1))
        assert run.time_s(s) == pytest.approx(cum[s - 1], rel=1e-9)
        elapsed = float(rng.uniform(0, cum[-1]))
        assert run.steps_started_by(elapsed) == min(int(np.searchsorted(cum, elapsed, side="right")) + 1, k)
        power = gpu_power_w(prof.power, flops / (t * sm.peak_flops), moved / (t * sm.bw))
        energy, peak = run.energy_j(s)
        assert energy == pytest.approx(float(np.dot(power[:s], t[:s])), rel=1e-9)
        assert peak == pytest.approx(float(power[:s].max()), rel=1e-9)
        j = np.arange(s)
        assert run.weighted_index_s(s) == pytest.approx(float(np.dot(j, t[:s])), rel=1e-9, abs=1e-12)
        # The meter mid-run: the steps done at their own powers, the one in progress pro rata.
        done = int(np.searchsorted(cum, elapsed, side="right"))
        before = float(np.dot(power[:done], t[:done]))
        at = before + (elapsed - (cum[done - 1] if done else 0.0)) * power[min(done, k - 1)]
        assert run.energy_by_j(elapsed) == pytest.approx(at, rel=1e-9)
        assert run.energy_by_j(cum[-1]) == pytest.approx(float(np.dot(power, t)), rel=1e-9)


@pytest.mark.parametrize(
    "scenario, overrides, cap_w",
    [
        # Class priorities: a high-priority arrival at the head interrupts decode runs often.
        ("scenarios/h100_two_class_priority.yaml", {}, 700.0),
        # A power limit: every iteration at the limit, so any overlap reads above it.
        ("scenarios/h100_llama3.yaml", {"fleet.power_limit_w": 500, "run.duration_s": 120}, 500.0),
        # An offline batch of long outputs (a shipped validation case: TensorRT-LLM, 128 in, 2,048
        # out): decode runs of tens of seconds whose power falls below the cap as they go.
        ("case:trtllm-8b-h100-sxm-tp1-128-2048", {"run.max_requests": 1500, "workload.arrival.requests": 1500}, 700.0),
    ],
)
def test_no_replica_is_busy_longer_than_the_clock_nor_draws_above_its_cap(scenario, overrides, cap_w):
    # Invariants, not figures: a replica's iterations never overlap, so its busy time is at most
    # the simulated time, and a GPU never draws more than its cap, so the GPU energy of any
    # interval of the time series is at most cap x GPUs x its length (and so is the window's mean).
    if scenario.startswith("case:"):
        scenario = _case_scenario(scenario.removeprefix("case:"))
    r = simulate(scenario, overrides)
    s = r.summary
    gpus = r.scenario.fleet.replicas * r.scenario.fleet.tp
    assert (r.replicas["busy_s"] <= s["simulated_s"] + 1e-9).all()
    ts = r.timeseries
    rate = np.diff(ts["gpu_energy_j"].to_numpy()) / np.diff(ts["time_s"].to_numpy()) / gpus
    assert rate.max() <= cap_w * (1 + 1e-9)
    assert rate.min() >= 0.0  # the meter never runs ahead of what is booked later
    assert s["power"]["gpu_mean_w"] <= cap_w * (1 + 1e-9)


def _case_scenario(case_id: str) -> dict:
    from fleetsim.validation.cases import load_cases, shipped_case_files
    from fleetsim.validation.runner import scenario_data

    for path in shipped_case_files():
        for case in load_cases(path):
            if case.id == case_id:
                return scenario_data(case, path.parent)[0]
    raise KeyError(case_id)
