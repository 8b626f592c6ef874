"""The closed-form decode run equals the step-by-step evaluation of the step-time model."""

import numpy as np
import pytest

from fleetsim.catalog import load_gpu, load_model
from fleetsim.memory import kv_footprint
from fleetsim.perf import StepModel
from fleetsim.power import gpu_power_w
from fleetsim.profile import load_profile
from fleetsim.sim.decode_run import DecodeRun
from fleetsim.spec.kvcache import KvCacheSpec


@pytest.mark.parametrize(
    "model, gpu, tp, kv",
    [
        ("llama-3-8b", "h100-sxm", 1, "bf16"),
        ("llama-3-8b", "b200", 1, "fp8"),
        ("llama-3-70b", "h200", 4, "bf16"),
        ("deepseek-v3", "h200", 8, "bf16"),
    ],
)
def test_closed_form_matches_per_step_sums(model, gpu, tp, kv):
    arch = load_model(model)
    spec = KvCacheSpec(key_dtype=kv, value_dtype=kv)
    prof = load_profile(gpu)
    sm = StepModel(
        arch, load_gpu(gpu), prof, tp, "fp8" if model == "deepseek-v3" else "bf16", spec, kv_footprint(arch, spec, tp)
    )
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
