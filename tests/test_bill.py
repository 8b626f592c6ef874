"""The bill: GPU-hours as the integral of the replica count rounded per instance lifetime, kWh as
the integrated power, facility/water/carbon, rent (on-demand, reserved, spot) and own, per class,
a month and a year, and the bill of a shipped scenario's simulate() result."""

import math

import numpy as np
import pandas as pd
import pytest

import fleetsim
from fleetsim.autoscaler import follow_load, replica_series
from fleetsim.bill import bill, bill_of, instance_lifetimes
from fleetsim.catalog import load_gpu
from fleetsim.errors import SpecError
from fleetsim.spec.dynamics import AutoscalingSpec, BillingSpec
from fleetsim.spec.economics import CostSpec, FacilitySpec

H100 = load_gpu("h100-sxm")
SERIES = pd.DataFrame({"time_s": [0.0, 100.0, 1000.0, 1800.0], "replicas": [2, 5, 3, 4]})


def flat_power(watts: float) -> pd.DataFrame:
    return pd.DataFrame({"time_s": [0.0], "power_w": [watts]})


def run_bill(billing=BillingSpec(), series=SERIES, power=None, **kw):
    return bill(
        series,
        power if power is not None else flat_power(1000.0),
        horizon_s=kw.pop("horizon_s", 3600.0),
        gpu=H100,
        tp=kw.pop("tp", 2),
        cost=kw.pop("cost", CostSpec()),
        facility=kw.pop("facility", FacilitySpec()),
        billing=billing,
        **kw,
    )


def test_lifetimes_last_in_first_out():
    life = instance_lifetimes(SERIES, 3600.0)
    got = sorted(zip(life["launched_s"], life["released_s"]))
    # 2 from 0 to the end; 3 at 100, of which the 2 newest leave at 1000; 1 more at 1800.
    assert got == [(0.0, 3600.0)] * 2 + [(100.0, 1000.0)] * 2 + [(100.0, 3600.0), (1800.0, 3600.0)]


def test_gpu_hours_are_the_integral_rounded_per_instance():
    # Independent step integral: 2 x 100 + 5 x 900 + 3 x 800 + 4 x 1800 = 14,300 replica-seconds.
    t = SERIES["time_s"].to_numpy()
    integral = float(np.sum(SERIES["replicas"].to_numpy() * np.diff(np.append(t, 3600.0))))
    assert integral == 14300.0
    exact = run_bill(BillingSpec(granularity_s=1.0, minimum_charge_s=0.0))
    assert exact.gpu_hours_used == pytest.approx(2 * integral / 3600)
    assert exact.gpu_hours_billed == pytest.approx(2 * integral / 3600)
    # Per minute: the 3,500 s lifetime bills 3,540 s (59 minutes); the others are whole minutes.
    minute = run_bill(BillingSpec(granularity_s=60.0, minimum_charge_s=60.0))
    assert minute.gpu_hours_billed == pytest.approx(2 * (integral + 40) / 3600)
    # Per hour: every one of the 6 lifetimes is one started hour.
    hourly = run_bill(BillingSpec(provider="linode"))
    assert hourly.gpu_hours_billed == pytest.approx(2 * 6.0)
    assert (hourly.granularity_s, hourly.minimum_charge_s) == (3600.0, 3600.0)
    # A lifetime under the minimum charge bills the minimum: 30 s at a 60 s minimum.
    short = pd.DataFrame({"time_s": [0.0, 30.0], "replicas": [1, 0]})
    assert run_bill(BillingSpec(), series=short, tp=1).gpu_hours_billed == pytest.approx(60 / 3600)


def test_kwh_is_the_integrated_power():
    rng = np.random.default_rng(5)
    t = np.sort(np.append(0.0, rng.uniform(0, 3600, 200)))
    p = rng.uniform(300, 5600, len(t))
    power = pd.DataFrame({"time_s": t, "power_w": p})
    step = run_bill(power=power)
    assert step.gpu_kwh == pytest.approx(float(np.sum(p * np.diff(np.append(t, 3600.0)))) / 3.6e6, rel=1e-12)
    trap = run_bill(power=power, power_interpolation="trapezoid")
    grid = np.append(t, 3600.0)
    values = np.append(p, p[-1])  # held flat past the last sample
    assert trap.gpu_kwh == pytest.approx(float(np.trapezoid(values, grid)) / 3.6e6, rel=1e-12)


def test_facility_water_carbon_rent_and_own_by_hand():
    # One TP-8 replica (one DGX H100: 10,200 W, 8 x 700 W GPUs -> 4,600 W of server overhead, set
    # explicitly) at 4,000 W of GPU power for one hour, $2.69/GPU-hour rented or $32,500 a GPU owned.
    one = pd.DataFrame({"time_s": [0.0], "replicas": [1]})
    billing = BillingSpec(spot_interruptions_per_instance_hour=0.5)
    b = run_bill(
        billing,
        series=one,
        power=flat_power(4000.0),
        tp=8,
        cold_start_s=600.0,
        cost=CostSpec(rental_usd_per_gpu_hour=2.69, capex_usd_per_gpu=32500.0),
        facility=FacilitySpec(server_overhead_w=4600.0),
    )
    assert b.gpu_kwh == pytest.approx(4.0)
    assert b.it_kwh == pytest.approx(8.6)
    assert b.facility_kwh == pytest.approx(8.6 * 1.3)
    assert b.water_l == pytest.approx(8.6 * 1.8)
    assert b.carbon_kg == pytest.approx(8.6 * 1.3 * 0.367)
    price = 2.69
    assert b.rent_usd["on_demand_usd"] == pytest.approx(8 * price)
    assert b.rent_usd["reserved_usd"] == pytest.approx(8 * price * 0.65)
    # Spot: 8 GPU-hours at 40% of the price, plus 0.5 interruptions x 600 s of 8 GPUs re-billed.
    assert b.rent_usd["spot_usd"] == pytest.approx(8 * price * 0.4 * (1 + 0.5 * 600 / 3600))
    r, n = 0.08, 4
    crf = r * (1 + r) ** n / ((1 + r) ** n - 1)
    assert b.own_usd["capex_usd"] == pytest.approx(8 * 32500 * crf / 8760)
    assert b.own_usd["energy_usd"] == pytest.approx(8.6 * 1.3 * 0.083)
    assert b.own_usd["colocation_usd"] == pytest.approx(10.2 * 150 / 730)


def test_per_class_by_tokens_and_by_gpu_time_and_the_year():
    req = pd.DataFrame(
        {
            "class": ["a", "a", "b", "b"],
            "status": ["completed", "completed", "completed", "rejected"],
            "input_tokens": [100, 300, 600, 5000],
            "output_tokens": [50, 50, 900, 5000],
            "scheduled_s": [0.0, 1.0, 2.0, np.nan],
            "finish_s": [3.0, 2.0, 4.0, np.nan],
        }
    )
    by_tokens = run_bill(BillingSpec(growth_per_month=0.05), requests=req)
    assert by_tokens.by_class["a"]["share"] == pytest.approx(500 / 2000)
    assert by_tokens.by_class["b"]["on_demand_usd"] == pytest.approx(0.75 * by_tokens.rent_usd["on_demand_usd"])
    by_time = run_bill(BillingSpec(attribution="gpu_time"), requests=req)
    assert by_time.by_class["a"]["share"] == pytest.approx(4 / 6)  # (3 + 1) of (3 + 1 + 2) s
    # A month is the hour x 730; a year at 5%/month growth the geometric sum of 12 months.
    month = by_tokens.rent_usd["on_demand_usd"] * 730
    assert by_tokens.month["on_demand_usd"] == pytest.approx(month)
    assert by_tokens.year["on_demand_usd"] == pytest.approx(month * (1.05**12 - 1) / 0.05)


def test_autoscaled_lifetimes_bill_their_own_rounding():
    spec = AutoscalingSpec(target=0.5, tolerance=0.0, scale_down_stabilization_s=60.0, drain_timeout_s=30.0)
    scaler = follow_load(
        spec, lambda t: 60.0 if 600 <= t < 1800 else 20.0, 10.0, 3600.0, initial_replicas=4, cold_start_s=90.0
    )
    life = scaler.lifetimes(3600.0)
    series = replica_series(life, 3600.0)
    b = run_bill(BillingSpec(granularity_s=60.0, minimum_charge_s=60.0), series=series, lifetimes=life, tp=1)
    spans = (life["released_s"] - life["launched_s"]).to_numpy()
    assert b.gpu_hours_billed == pytest.approx(sum(max(60.0, math.ceil(s / 60) * 60) for s in spans) / 3600)
    assert b.gpu_hours_used == pytest.approx(spans.sum() / 3600)


def test_bad_input_is_one_line():
    with pytest.raises(SpecError, match="billing.provider"):
        run_bill(BillingSpec(provider="nope"))
    with pytest.raises(SpecError, match="replicas series"):
        run_bill(series=pd.DataFrame({"time_s": [5.0], "replicas": [1]}))


def test_bill_of_a_fixed_fleet_run_of_the_shipped_scenario():
    r = fleetsim.simulate("scenarios/h100_llama3.yaml", {"run.duration_s": 60})
    b = bill_of(r)
    sim_s = r.summary["simulated_s"]
    gpus = r.summary["fleet"]["gpus"]
    # Per-second billing: 4 instances for the whole run, each rounded up to a whole second.
    assert b.gpu_hours_used == pytest.approx(gpus * sim_s / 3600)
    assert b.gpu_hours_billed == pytest.approx(gpus * math.ceil(sim_s) / 3600)
    # The run's own GPU energy meter, and the rental rate of the run summary.
    assert b.gpu_kwh == pytest.approx(r.summary["power"]["gpu_energy_kwh"], rel=1e-9)
    assert b.rent_usd["on_demand_usd"] == pytest.approx(r.summary["cost"]["usd_per_hour"] * math.ceil(sim_s) / 3600)
    assert set(b.by_class) == {"chat"} and b.by_class["chat"]["share"] == 1.0


def test_a_gpu_without_prices_still_gets_its_energy_and_gpu_hours():
    bare = H100.model_copy(update={"rental_usd_per_gpu_hour": None, "capex_usd_per_gpu": None})
    b = bill(SERIES, flat_power(1000.0), horizon_s=3600.0, gpu=bare, tp=2, cost=CostSpec(), facility=FacilitySpec())
    assert b.rent_usd == {} and b.own_usd == {}
    assert "cost.rental_usd_per_gpu_hour" in b.unpriced["rent"] and "cost.capex_usd_per_gpu" in b.unpriced["own"]
    assert b.gpu_kwh == pytest.approx(1.0) and "on_demand_usd" not in b.month
