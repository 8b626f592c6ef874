"""Power, facility and cost models.

Every expected number is worked out by hand in the test (or cited), never read back from the code.
Figure ids refer to the shared public-figures file (reference/public_figures.yaml).
"""

import math

import numpy as np
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetsim.cost import (
    CostBreakdown,
    capital_recovery_factor,
    hourly_cost_usd,
    split_input_output_cost,
    usd_per_million_tokens,
)
from fleetsim.errors import FleetsimError, SpecError
from fleetsim.facility import (
    FacilityBreakdown,
    facility_breakdown,
    facility_power_kw,
    heat_load,
    it_power_kw,
    provisioned_it_kw,
    server_overhead_w,
    servers_and_racks,
    water_l_per_h,
)
from fleetsim.power import EnergyMeter, gpu_power_w, parked_power_w, utilizations
from fleetsim.spec.economics import CostSpec, FacilitySpec
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import PowerModel

# H100 SXM: 3.35 TB/s, 989.4 TFLOP/s bf16 dense, 700 W (spec_h100_sxm); DGX H100 = 8 GPUs at
# 10.2 kW system power (power_dgx_h100_system); $270,000 per DGX => $33,750 per GPU with its
# server share (capex_dgx_h100); $2.69 per GPU-hour on demand (price_runpod_2026).
H100 = GpuSpec(
    name="h100-sxm",
    vendor="nvidia",
    memory_bytes=80 * 10**9,
    hbm_bandwidth_bytes_per_s=3.35e12,
    peak_flops_per_s={"bf16": 989.4e12, "fp8": 1978.9e12},
    tdp_w=700.0,
    interconnect_bandwidth_bytes_per_s=450e9,
    interconnect="nvlink4",
    gpus_per_server=8,
    server_power_w=10_200.0,
    rental_usd_per_gpu_hour=2.69,
    capex_usd_per_gpu=33_750.0,
)
# MI300X with no prices in the catalog (spec_mi300x: 5.3 TB/s, 750 W).
MI300X = GpuSpec(
    name="mi300x",
    vendor="amd",
    memory_bytes=192 * 10**9,
    hbm_bandwidth_bytes_per_s=5.3e12,
    peak_flops_per_s={"fp16": 1307e12, "fp8": 2615e12},
    tdp_w=750.0,
    interconnect_bandwidth_bytes_per_s=448e9,
    interconnect="infinity-fabric",
)
POWER = PowerModel(idle_w=100.0, compute_w=500.0, memory_w=300.0, cap_w=700.0)


# --- power -----------------------------------------------------------------------------------


def test_power_is_idle_with_no_work_and_linear_below_the_cap():
    assert gpu_power_w(POWER, 0.0, 0.0) == 100.0
    # 100 + 500 x 0.5 + 300 x 0.2 = 100 + 250 + 60 = 410 W
    assert gpu_power_w(POWER, 0.5, 0.2) == pytest.approx(410.0)


def test_power_is_clipped_at_the_cap():
    # 100 + 500 + 300 = 900 W uncapped; the cap is 700 W
    assert gpu_power_w(POWER, 1.0, 1.0) == 700.0


def test_utilisations_are_clipped_to_unit_interval():
    # u_c = 2 -> 1, u_m = -1 -> 0: 100 + 500 = 600 W
    assert gpu_power_w(POWER, 2.0, -1.0) == 600.0


def test_power_on_arrays_matches_power_on_floats():
    u_c = np.array([0.0, 0.5, 1.0])
    u_m = np.array([0.0, 0.2, 1.0])
    np.testing.assert_array_equal(gpu_power_w(POWER, u_c, u_m), [100.0, 410.0, 700.0])
    assert isinstance(gpu_power_w(POWER, 0.5, 0.2), float)


@given(st.floats(-1, 2), st.floats(-1, 2))
def test_scalar_and_array_paths_agree_bit_for_bit(u_c, u_m):
    assert gpu_power_w(POWER, u_c, u_m) == gpu_power_w(POWER, np.array([u_c]), np.array([u_m]))[0]
    scalar = utilizations(u_c * 1e12, u_m * 1e10, 0.01, 989.4e12, 3.35e12)
    array = utilizations(np.array([u_c * 1e12]), np.array([u_m * 1e10]), 0.01, 989.4e12, 3.35e12)
    assert scalar == (array[0][0], array[1][0])


coefficients = st.floats(0, 2000, allow_nan=False)
unit = st.floats(0, 1, allow_nan=False)


@given(coefficients, coefficients, coefficients, st.floats(1, 3000), unit, unit, unit)
def test_power_is_monotone_in_each_utilisation(idle, a_c, a_m, cap, u_lo, u_hi, u_other):
    model = PowerModel(idle_w=idle, compute_w=a_c, memory_w=a_m, cap_w=cap)
    u_lo, u_hi = sorted((u_lo, u_hi))
    assert gpu_power_w(model, u_lo, u_other) <= gpu_power_w(model, u_hi, u_other)
    assert gpu_power_w(model, u_other, u_lo) <= gpu_power_w(model, u_other, u_hi)
    assert gpu_power_w(model, u_hi, u_hi) <= cap


def test_utilizations_of_a_decode_step():
    # An 8B-parameter bf16 model reads 16e9 bytes of weights per decode step. In 10 ms on one
    # H100: 16e9 / (0.010 s x 3.35e12 B/s) = 0.47761 of HBM bandwidth. Compute: 2 FLOP/param x
    # 8e9 params x 64 sequences = 1.024e12 FLOP; 1.024e12 / (0.010 x 989.4e12) = 0.10350.
    u_c, u_m = utilizations(1.024e12, 16e9, 0.010, 989.4e12, 3.35e12)
    assert u_m == pytest.approx(0.47761, rel=1e-4)
    assert u_c == pytest.approx(0.10350, rel=1e-4)


def test_utilizations_clip_and_handle_zero_duration():
    u_c, u_m = utilizations(np.array([1e15, 5.0]), np.array([1e13, 0.0]), np.array([0.001, 0.0]), 989.4e12, 3.35e12)
    np.testing.assert_array_equal(u_c, [1.0, 0.0])  # 1e15 FLOP in 1 ms is above peak; 0 s => 0
    np.testing.assert_array_equal(u_m, [1.0, 0.0])


def test_parked_power_defaults_to_idle():
    assert parked_power_w(POWER) == 100.0
    assert parked_power_w(POWER.model_copy(update={"parked_w": 60.0})) == 60.0


# --- energy ----------------------------------------------------------------------------------


def test_energy_meter_integrates_a_hand_built_sequence():
    meter = EnergyMeter(idle_power_w=80.0)
    meter.add_busy(0.010, 500.0)  # 5.0 J
    meter.add_idle(0.500)  # 0.5 s x 80 W = 40.0 J
    meter.add_busy(0.020, 650.0)  # 13.0 J
    meter.add_busy_many(np.array([0.005, 0.015]), np.array([400.0, 700.0]))  # 2.0 + 10.5 J
    # 5 + 40 + 13 + 2 + 10.5 = 70.5 J over 0.05 s busy + 0.5 s idle
    assert meter.energy_j == pytest.approx(70.5, rel=1e-14)
    assert meter.busy_s == pytest.approx(0.050, rel=1e-14)
    assert meter.idle_s == pytest.approx(0.500, rel=1e-14)
    assert meter.peak_w == 700.0
    assert meter.mean_w() == pytest.approx(70.5 / 0.55, rel=1e-14)
    assert meter.mean_w() * 0.55 == pytest.approx(meter.energy_j, rel=1e-14)
    # Over a longer window (e.g. the whole run) the mean is diluted accordingly.
    assert meter.mean_w(over_s=1.0) == pytest.approx(70.5)


def test_energy_meter_idles_at_the_parked_power():
    meter = EnergyMeter.for_model(POWER.model_copy(update={"parked_w": 60.0}))
    meter.add_idle(10.0)
    assert meter.energy_j == 600.0  # 10 s x 60 W


def test_energy_meter_does_not_drift_on_long_runs():
    # float64 has a spacing of 2 near 1e16, so a plain running `+=` drops each added 1 J.
    meter = EnergyMeter(idle_power_w=0.0)
    meter.add_busy(1.0, 1e16)
    for _ in range(10):
        meter.add_busy(1.0, 1.0)
    assert meter.energy_j == 1e16 + 10


# Zero or at least 1 ns (no subnormal durations, whose products underflow).
durations = st.lists(st.just(0.0) | st.floats(1e-9, 10), min_size=1, max_size=50)


@given(durations, st.data())
def test_energy_meter_is_the_exact_sum_however_the_sequence_is_split(ds, data):
    power = st.just(0.0) | st.floats(1e-3, 1000)  # W; no subnormals
    ps = data.draw(st.lists(power, min_size=len(ds), max_size=len(ds)))
    one_by_one, batched = EnergyMeter(50.0), EnergyMeter(50.0)
    for d, p in zip(ds, ps):
        one_by_one.add_busy(d, p)
    cut = data.draw(st.integers(0, len(ds)))
    batched.add_busy_many(np.array(ds[:cut]), np.array(ps[:cut]))
    batched.add_busy_many(np.array(ds[cut:]), np.array(ps[cut:]))
    expected = math.fsum(d * p for d, p in zip(ds, ps))
    # One by one: exact but for the rounding of each product. Batched: float64 pairwise sums
    # within a call (error ~log2(n) ulps).
    assert one_by_one.energy_j == pytest.approx(expected, rel=1e-15, abs=1e-300)
    assert batched.energy_j == pytest.approx(expected, rel=1e-14, abs=1e-300)
    # The mean power lies within [min, max] of the busy powers.
    busy = [p for d, p in zip(ds, ps) if d > 0]
    if busy:
        assert min(busy) * (1 - 1e-12) <= one_by_one.mean_w() <= max(busy) * (1 + 1e-12)


def test_energy_meter_rejects_negative_intervals():
    with pytest.raises(ValueError):
        EnergyMeter(80.0).add_busy(-1.0, 100.0)


# --- facility --------------------------------------------------------------------------------


def test_facility_power_is_it_power_times_pue():
    assert facility_power_kw(100.0, 1.3) == pytest.approx(130.0)


def test_heat_units():
    # 1 W = 3.41214 BTU/h (1 BTU_IT = 1055.05585 J; 3600 / 1055.05585 = 3.412142), so 1 kW = 3412.14
    assert heat_load(1.0)["btu_per_h"] == pytest.approx(3412.14)
    assert heat_load(1.0)["kw"] == 1.0
    # 1 ton of refrigeration = 12,000 BTU/h = 3.517 kW
    assert heat_load(3.517)["tons"] == pytest.approx(1.0)
    assert heat_load(3.517)["btu_per_h"] / 12_000 == pytest.approx(1.0, rel=1e-4)


def test_water_is_wue_times_it_energy():
    # 100 kW for one hour = 100 kWh; at 1.8 L/kWh that is 180 L
    assert water_l_per_h(100.0, 1.8) == pytest.approx(180.0)


def test_servers_and_racks_for_64_h100():
    # 64 / 8 = 8 DGX H100 at 10.2 kW (power_dgx_h100_system); floor(40 / 10.2) = 3 per 40 kW
    # rack; ceil(8 / 3) = 3 racks.
    assert servers_and_racks(64, 8, 10.2, 40.0) == (8, 3)


def test_servers_and_racks_edges():
    assert servers_and_racks(0, 8, 10.2, 40.0) == (0, 0)
    assert servers_and_racks(9, 8, 10.2, 40.0) == (2, 1)  # a partly filled server still counts
    # A server above the rack budget still gets a rack of its own.
    assert servers_and_racks(16, 8, 120.0, 40.0) == (2, 2)
    # Exact ratios stay exact: 0.3 / 0.1 = 3 per rack (not 2.9999999999999996 -> 2), ceil(8/3) = 3.
    assert servers_and_racks(8, 1, 0.1, 0.3) == (8, 3)


def test_server_overhead_from_system_power():
    # 10,200 W per DGX - 8 x 700 W of GPUs = 4,600 W
    assert server_overhead_w(H100) == 4_600.0
    assert server_overhead_w(H100, override_w=1_000.0) == 1_000.0
    assert server_overhead_w(MI300X) == 0.0  # no server power in the catalog entry
    # 64 x 700 W + 8 servers x 4,600 W = 44,800 + 36,800 = 81,600 W = 8 x 10.2 kW
    assert provisioned_it_kw(H100, 64, 4_600.0) == pytest.approx(81.6)
    # GPUs drawing 30 kW in all + 8 x 4.6 kW of servers = 66.8 kW
    assert it_power_kw(30_000.0, 8, 4_600.0) == pytest.approx(66.8)


def test_facility_breakdown_for_64_h100():
    b = facility_breakdown(FacilitySpec(), H100, num_gpus=64, it_kw=60.0)
    assert isinstance(b, FacilityBreakdown)
    assert (b.servers, b.racks) == (8, 3)
    assert b.facility_kw == pytest.approx(78.0)  # 60 x 1.3
    assert b.heat_btu_per_h == pytest.approx(204_728.4)  # 60 x 3412.14
    assert b.heat_tons == pytest.approx(17.0600, rel=1e-4)  # 60 / 3.517
    assert b.water_l_per_h == pytest.approx(108.0)  # 60 x 1.8
    assert b.provisioned_it_kw == pytest.approx(81.6)
    with pytest.raises(AttributeError):
        b.racks = 4  # frozen


# --- specs -----------------------------------------------------------------------------------


def test_economics_specs_from_yaml_keys():
    facility = FacilitySpec.model_validate({"pue": 1.56, "wue_l_per_kwh": 0.2, "rack_power_kw": 30})
    assert facility.server_overhead_w is None
    cost = CostSpec.model_validate({"mode": "owned", "capex_usd_per_gpu": 30_000, "electricity_usd_per_kwh": 0.0892})
    assert (cost.amortization_years, cost.interest_rate) == (4, 0.08)
    assert CostSpec().mode == "rental"


@pytest.mark.parametrize(
    "cls, data",
    [
        (FacilitySpec, {"pue": 0.9}),
        (FacilitySpec, {"rack_power_kw": 0}),
        (FacilitySpec, {"pue_ratio": 1.3}),  # unknown key
        (CostSpec, {"mode": "leased"}),
        (CostSpec, {"amortization_years": 0}),
        (CostSpec, {"interest_rate": -0.01}),
        (CostSpec, {"electricity_usd_per_kwh": -0.1}),
    ],
)
def test_economics_specs_reject_bad_values(cls, data):
    with pytest.raises(pydantic.ValidationError):
        cls.model_validate(data)


# --- cost ------------------------------------------------------------------------------------


def test_capital_recovery_factor_matches_annuity_tables():
    # 8%, 4 years: 0.08 x 1.08^4 / (1.08^4 - 1) = 0.08 x 1.36049 / 0.36049 = 0.30192
    assert capital_recovery_factor(0.08, 4) == pytest.approx(0.30192, abs=5e-6)
    assert capital_recovery_factor(0.0, 4) == 0.25
    assert capital_recovery_factor(1e-12, 4) == pytest.approx(0.25, rel=1e-9)


@given(st.floats(0, 0.5), st.integers(1, 40))
def test_capital_recovery_factor_repays_the_principal(rate, years):
    # n payments of CRF, discounted at the same rate, are worth exactly the principal (1).
    crf = capital_recovery_factor(rate, years)
    present_value = sum(crf / (1 + rate) ** k for k in range(1, years + 1))
    assert present_value == pytest.approx(1.0, rel=1e-9)


def test_rental_cost_of_64_h100():
    cost = hourly_cost_usd(CostSpec(), H100, num_gpus=64, it_kw_mean=60.0, pue=1.3)
    assert isinstance(cost, CostBreakdown)
    # 64 GPUs x $2.69 = $172.16 per hour; energy and space are in the rental price.
    assert cost.usd_per_hour == pytest.approx(172.16)
    assert cost.rental_usd_per_hour == pytest.approx(172.16)
    assert (cost.energy_usd_per_hour, cost.colocation_usd_per_hour, cost.capex_usd_per_hour) == (0, 0, 0)
    assert cost.usd_per_gpu_hour == pytest.approx(2.69)
    # The scenario's own price wins over the catalog's.
    override = hourly_cost_usd(CostSpec(rental_usd_per_gpu_hour=2.0), H100, 64, 60.0, 1.3)
    assert override.usd_per_hour == pytest.approx(128.0)


def test_owned_cost_of_64_h100():
    spec = CostSpec(mode="owned")  # 8%, 4 years, $0.083/kWh, $150/kW-month
    cost = hourly_cost_usd(spec, H100, num_gpus=64, it_kw_mean=60.0, pue=1.3)
    # capex: 64 x $33,750 = $2,160,000; x CRF 0.3019208 = $652,148.94 a year; / 8760 h
    assert cost.capex_usd_per_hour == pytest.approx(74.44623, rel=1e-6)
    # energy: 60 kW x 1.3 x $0.083 = $6.474 per hour
    assert cost.energy_usd_per_hour == pytest.approx(6.474)
    # colocation on provisioned IT kW: 81.6 kW x $150 / 730 h = $16.76712 per hour
    assert cost.provisioned_it_kw == pytest.approx(81.6)
    assert cost.colocation_usd_per_hour == pytest.approx(16.76712, rel=1e-6)
    assert cost.usd_per_hour == pytest.approx(74.44623 + 6.474 + 16.76712, rel=1e-6)
    assert cost.rental_usd_per_hour == 0


def test_owned_cost_uses_the_facility_server_overhead_override():
    # No server overhead: 64 x 0.7 kW = 44.8 kW provisioned; 44.8 x 150 / 730 = $9.20548 per hour
    cost = hourly_cost_usd(CostSpec(mode="owned"), H100, 64, 60.0, 1.3, server_overhead_w=0.0)
    assert cost.colocation_usd_per_hour == pytest.approx(9.20548, rel=1e-6)


def test_usd_per_million_tokens_worked_by_hand():
    # $172.16 per hour at 20,000 tokens/s: 20,000 x 3,600 = 72,000,000 tokens per hour,
    # so $172.16 / 72 = $2.39111 per million tokens.
    assert usd_per_million_tokens(172.16, 20_000.0) == pytest.approx(2.391111, rel=1e-6)
    assert usd_per_million_tokens(172.16, 0.0) == math.inf


def test_split_input_output_cost_by_gpu_time():
    # $100 over 30 GPU-s of prefill and 70 GPU-s of decode: $30 to input, $70 to output.
    assert split_input_output_cost(100.0, 30.0, 70.0) == pytest.approx((30.0, 70.0))
    assert split_input_output_cost(100.0, 0.0, 0.0) == (0.0, 100.0)


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 1e6))
def test_split_conserves_the_total(usd, prefill_s, decode_s):
    input_usd, output_usd = split_input_output_cost(usd, prefill_s, decode_s)
    assert input_usd + output_usd == pytest.approx(usd)
    assert input_usd >= 0 and output_usd >= 0


@pytest.mark.parametrize("mode, field", [("rental", "rental_usd_per_gpu_hour"), ("owned", "capex_usd_per_gpu")])
def test_missing_price_names_the_field(mode, field):
    with pytest.raises(SpecError) as err:
        hourly_cost_usd(CostSpec(mode=mode), MI300X, 8, 5.0, 1.3)
    assert str(err.value) == f"cost.{field}: no price for gpu 'mi300x'; set cost.{field}"
    assert isinstance(err.value, FleetsimError)
    # Setting the price in the scenario fixes it.
    priced = CostSpec(mode=mode, **{field: 3.0})
    assert hourly_cost_usd(priced, MI300X, 8, 5.0, 1.3).usd_per_hour > 0


def test_water_follows_the_cooling_type_unless_wue_is_given():
    # The Green Grid WUE: litres of site water = WUE x IT kWh. A closed liquid loop on dry coolers
    # evaporates nothing; air-cooled plants 0.2 L/kWh; cooling towers 1.8 (catalog/cooling.yaml).
    from fleetsim.facility import water_l_per_h
    from fleetsim.spec.economics import FacilitySpec

    assert FacilitySpec().wue_l_per_kwh == 1.8  # evaporative, the default: today's figure
    assert water_l_per_h(10.0, FacilitySpec(cooling="liquid_closed_loop").wue_l_per_kwh) == 0.0
    assert water_l_per_h(10.0, FacilitySpec(cooling="air_cooled").wue_l_per_kwh) == pytest.approx(2.0)
    assert FacilitySpec(cooling="air_cooled", wue_l_per_kwh=0.5).wue_l_per_kwh == 0.5  # a given WUE wins
