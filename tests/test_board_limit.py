"""Same-die parts at a lower board limit (H100 NVL and PCIe, H200 NVL): the die's energy per unit of
work, and the card's TDP applied through the clock model by default (profile power.board_limit_w)."""

import warnings

import pytest

from fleetsim import load_scenario, simulate
from fleetsim.calibrate.published.params import priors, transferred_values
from fleetsim.catalog import load_gpu, load_model
from fleetsim.errors import FleetsimWarning
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.replica_model import replica_model

SCENARIO = "scenarios/h100_llama3.yaml"
SHORT = {"run.duration_s": 20, "workload.arrival.rate_per_s": 6, "cost.rental_usd_per_gpu_hour": 2.0}


def _step(gpu: str, **fleet):
    s = load_scenario(SCENARIO, {"fleet.gpu": gpu, **{f"fleet.{k}": v for k, v in fleet.items()}})
    return replica_model(s, load_model(s.model), load_gpu(gpu), load_profile(gpu), load_engine_profile(s.engine))


def _prefill(sm, tokens=8192):
    pair = tokens * sm.footprint.full_bytes_per_token_per_rank * tokens / 2
    return (0, 0.0, tokens, pair, 1)


def test_a_same_die_transfer_keeps_the_dies_energy_per_flop_and_byte():
    sxm = load_profile("h100-sxm").power
    nvl = load_profile("h100-nvl").power
    # By hand from the catalog: bf16 peaks 835.5 / 989.4 TFLOP/s, HBM 3.9 / 3.35 TB/s, TDP 400 / 700 W.
    assert nvl.compute_w == pytest.approx(sxm.compute_w * 835.5 / 989.4, rel=1e-3)
    assert nvl.memory_w == pytest.approx(sxm.memory_w * 3.9 / 3.35, rel=1e-3)
    assert nvl.idle_w == pytest.approx(sxm.idle_w * 400 / 700, rel=1e-3)
    assert (nvl.cap_w, nvl.board_limit_w) == (700.0, 400.0)
    # A part on another die keeps the TDP-scaled coefficients and no board limit.
    l40s = transferred_values({"idle_w": 100.0, "compute_w": 1600.0, "memory_w": 500.0}, "h100-sxm", "l40s", priors())
    assert l40s["compute_w"] == pytest.approx(1600.0 * 350 / 700) and "board_limit_w" not in l40s


def test_a_board_limited_card_runs_a_compute_bound_prefill_at_the_clock_that_fits_its_tdp():
    nvl = _step("h100-nvl").step_model
    assert nvl.clock is not None and nvl.clock.limit_w == 400.0
    args = _prefill(nvl)
    cost = nvl.iteration(*args)
    power_w = nvl.power.idle_w + nvl.power.compute_w * cost.flops / (cost.time_s * nvl.peak_flops)
    power_w += nvl.power.memory_w * cost.bytes / (cost.time_s * nvl.bw)
    assert min(nvl.power.cap_w, power_w) == pytest.approx(400.0, rel=1e-6)
    # A 400 W card running an 8k prefill that would draw the die's 700 W at its boost clock runs
    # slower than the boost clock allows: clock fraction below 1.
    assert nvl.clock_fraction(*args) < 0.95


def test_a_user_limit_above_the_board_limit_warns_and_changes_nothing():
    base = simulate(SCENARIO, {**SHORT, "fleet.gpu": "h100-nvl"}).summary
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        above = simulate(SCENARIO, {**SHORT, "fleet.gpu": "h100-nvl", "fleet.power_limit_w": 400}).summary
    assert above["latency_s"] == base["latency_s"]
    assert not [w for w in caught if issubclass(w.category, FleetsimWarning)]
    assert base["power"]["gpu_peak_w"] <= 400.0 + 1e-6
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _step("h100-nvl", power_limit_w=450)
    assert any("board limit" in str(w.message) and "400" in str(w.message) for w in caught)
    lower = _step("h100-nvl", power_limit_w=360).step_model
    assert lower.clock.limit_w == 360.0
