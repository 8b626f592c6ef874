"""The study layer: confidence intervals (coverage checked against repeated seeds and against a
closed form), buyable units (whole rental instances, whole servers, a rack-scale fraction) and the
rent-vs-own break-even, each against an independent hand calculation."""

import math

import numpy as np
import pytest

import fleetsim
from fleetsim.catalog import load_gpu
from fleetsim.cost import (
    RentalOffer,
    break_even_hours,
    break_even_utilization,
    capital_recovery_factor,
    owned_fleet_cost,
    rental_fleet_cost,
)
from fleetsim.errors import SpecError
from fleetsim.facility import density_class, provisioned_it_kw
from fleetsim.server_power import servers_for
from fleetsim.spec.economics import CostSpec
from fleetsim.study import replicate, t_interval, wilson_interval
from fleetsim.study.sources import cite, parse_prices, reference_list

SCENARIO = "scenarios/h100_llama3.yaml"
TINY = {"run.duration_s": 10, "fleet.replicas": 1, "workload.arrival.rate_per_s": 4}


def test_student_t_interval_covers_a_normal_mean_95_percent_of_the_time():
    # Closed form: for i.i.d. normal draws the t interval covers the mean with probability 0.95.
    rng = np.random.default_rng(7)
    hits = 0
    trials = 4000
    for _ in range(trials):
        iv = t_interval(rng.normal(3.0, 2.0, 5))
        hits += iv.lo <= 3.0 <= iv.hi
    # binomial sd at 4,000 trials: sqrt(.95 x .05 / 4000) = 0.0034; allow 4 sd
    assert abs(hits / trials - 0.95) < 0.014
    # t(0.975, 4) = 2.7764 (statistical tables)
    iv = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert iv.half_width == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), rel=1e-4)


def test_wilson_interval_matches_the_textbook_case():
    # Wilson (1927) score interval by hand, 95% (z = 1.959964, z^2 = 3.841459), 8 of 10:
    # centre = (0.8 + z^2/20) / (1 + z^2/10) = 0.716735; half = z sqrt(0.016 + z^2/400) / 1.384146 = 0.226574.
    iv = wilson_interval(8, 10)
    assert iv.lo == pytest.approx(0.4902, abs=1e-4) and iv.hi == pytest.approx(0.9433, abs=1e-4)


def test_seed_interval_covers_the_many_seed_mean_of_a_small_scenario():
    """50 runs of a one-replica scenario: the 95% interval of each group of 5 seeds should contain
    the mean over all 50 (the reference, sqrt(10) times tighter) about 95% of the time."""
    reps = replicate(SCENARIO, TINY, seeds=50)
    for col in ("tokens_per_s", "ttft_at_percentile_s"):
        vals = reps.frame[col].to_numpy(float)
        truth = vals.mean()
        groups = vals.reshape(10, 5)
        covered = sum(t_interval(g).lo <= truth <= t_interval(g).hi for g in groups)
        # P(covered <= 7 | n=10, p=0.95) = 0.0115 for a correct interval
        assert covered >= 8, (col, covered)
    iv = reps.interval("tokens_per_s")
    assert iv.n == 50 and iv.lo < iv.mean < iv.hi and iv.method == "student-t over seeds"
    # seed i is run.seed + i: the first one is the scenario's own run
    own = fleetsim.simulate(SCENARIO, TINY).summary
    assert reps.summaries[0] == own


def test_rental_is_billed_in_whole_instances():
    node = RentalOffer("h100-sxm", "8-GPU nodes only", 8, 39.33)
    c = rental_fleet_cost(2, node)
    assert (c.instances, c.billed_gpus, c.usd_per_hour) == (1, 8, 39.33)
    assert rental_fleet_cost(9, node).usd_per_hour == pytest.approx(2 * 39.33)
    assert rental_fleet_cost(3, RentalOffer("h100-sxm", "per GPU", 1, 2.10)).usd_per_hour == pytest.approx(6.30)


def test_gb200_fleet_of_8_takes_a_fraction_of_an_nvl72_rack():
    gb = load_gpu("gb200")
    assert servers_for(8, gb) == pytest.approx(8 / 72)
    # NVL72 rack 120 kW (power_gb200_nvl72_rack) - 72 x 1200 W GPUs = 33.6 kW of non-GPU power;
    # 8 GPUs carry 8/72 of it: 8 x 1.2 + 33.6 x 8 / 72 = 13.333 kW provisioned.
    overhead_w = 120_000 - 72 * 1200
    assert provisioned_it_kw(gb, 8, overhead_w) == pytest.approx(8 * 1.2 + 33.6 * 8 / 72)
    owned = owned_fleet_cost(CostSpec(mode="owned"), gb, 8, 10.0, 1.3, overhead_w)
    assert owned.billed_gpus == 8 and owned.capex_usd == pytest.approx(8 * 41667)
    # HGX: 2 H100 SXM are bought as one 8-GPU server
    h = load_gpu("h100-sxm")
    assert servers_for(2, h) == 1.0
    assert owned_fleet_cost(CostSpec(mode="owned"), h, 2, 5.0, 1.3, 4600).billed_gpus == 8


def test_rack_density_class_warns_when_a_system_exceeds_the_rack_budget():
    cls, warn = density_class(load_gpu("gb200"), 33_600, 40.0)
    assert cls == "liquid" and "120.0 kW" in warn and "40 kW" in warn
    cls, warn = density_class(load_gpu("h100-sxm"), 4_600, 40.0)  # DGX H100 10.2 kW
    assert cls == "air" and warn == ""


def test_break_even_utilization_and_horizon_by_hand():
    spec = CostSpec(mode="owned", capex_usd_per_gpu=30_000, electricity_usd_per_kwh=0.10, colocation_usd_per_kw_month=0)
    h = load_gpu("h100-sxm")
    o = owned_fleet_cost(spec, h, 8, 10.0, 1.0, 4600)
    capex_h = 8 * 30_000 * capital_recovery_factor(0.08, 4) / 8760
    assert o.capex_usd_per_hour == pytest.approx(capex_h) and o.energy_usd_per_hour == pytest.approx(1.0)
    rent = 8 * 2.5
    # rent x u = capex_h + energy x u
    assert break_even_utilization(rent, o) == pytest.approx(capex_h / (rent - 1.0))
    assert break_even_hours(rent, o) == pytest.approx(240_000 / (rent - 1.0))
    assert break_even_utilization(0.5, o) is None


def test_prices_on_the_command_line_and_citations():
    assert parse_prices(["h100-sxm=2.10", "h200=3,b200=5.5"]) == {"h100-sxm": 2.1, "h200": 3.0, "b200": 5.5}
    for bad in ("h100-sxm", "h100-sxm=abc", "h100-sxm=0"):
        with pytest.raises(SpecError, match="--price"):
            parse_prices([bad])
    refs: dict = {}
    text = cite("default from price_runpod_2026; also pue_uptime_2024 and price_runpod_2026", refs)
    assert text == "default from [1]; also [2] and [1]"
    (first, second) = reference_list(refs)
    assert first["url"].startswith("https://deploybase.ai") and first["title"] and first["date"]
    assert second["key"] == "pue_uptime_2024"


def test_tornado_moves_one_input_at_a_time_by_hand():
    from fleetsim.study.tornado import tornado

    spec = fleetsim.load_scenario(SCENARIO, TINY)
    s = fleetsim.simulate(spec).summary
    bars = tornado(spec, load_gpu("h100-sxm"), [s], None)
    tps = s["throughput"]["output_tokens_per_s"] + s["throughput"]["input_tokens_per_s"]
    base = 2.69 * 1e6 / (tps * 3600)  # one H100 rented at RunPod's $2.69/GPU-h (catalog/offers.yaml)
    assert bars["base"]["rental"] == pytest.approx(base)
    rental = {name: (lo, hi) for name, lo, hi in bars["rental"]}
    assert rental["rental price x0.75-x1.25"] == pytest.approx((0.75 * base, 1.25 * base))
    # 6.7%: hold-out median error of predicted tokens/s (README validation table)
    assert rental["profile calibration error ±6.7% tokens/s"] == pytest.approx((base / 1.067, base / 0.933))
    owned = {name.split(" ")[0]: (lo, hi) for name, lo, hi in bars["owned"]}
    assert owned["utilization"] == pytest.approx((bars["base"]["owned"], 2 * bars["base"]["owned"]))
    assert owned["electricity"][0] < bars["base"]["owned"] < owned["electricity"][1]


def test_attainment_every_seed_gives_alike_falls_back_to_wilson_over_the_pooled_requests():
    reps = replicate(SCENARIO, TINY, seeds=3)
    assert set(reps.frame["slo_attainment"]) == {1.0}  # a lightly loaded replica: every request on time
    iv = reps.interval("slo_attainment")
    from fleetsim.study.replicates import judged_requests

    n = sum(judged_requests(s) for s in reps.summaries)
    # Wilson at p = 1: lower bound n / (n + z^2), z = 1.959964 (closed form)
    assert iv.method.startswith("wilson") and iv.hi == 1.0
    assert iv.lo == pytest.approx(n / (n + 1.959964**2), rel=1e-6)
