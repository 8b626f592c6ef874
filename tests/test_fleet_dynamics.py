"""Autoscaling and failures inside the simulator (fleetsim.sim.lifecycle): every request accounted
for across failures and scale-downs, determinism, the replica count after a step in load against a
hand calculation, the bill of an autoscaled run, and `fleetsim run --period`."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fleetsim
from fleetsim.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]

# Llama 3 8B: 8,030,261,248 parameters (meta-llama/Meta-Llama-3-8B, model.safetensors.index.json
# total_size 16,060,522,496 bytes in bf16).
LLAMA3_8B_BF16_BYTES = 2 * 8_030_261_248


def base(**changes) -> dict:
    d = {
        "name": "dyn",
        "model": "llama-3-8b",
        "fleet": {"gpu": "h100-sxm", "replicas": 4},
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": 20.0},
            "classes": [
                {
                    "name": "chat",
                    "input_tokens": {"kind": "fixed", "tokens": 256},
                    "output_tokens": {"kind": "fixed", "tokens": 64},
                }
            ],
        },
        "run": {"duration_s": 60, "seed": 3},
    }
    d.update(changes)
    return d


def accounted(result) -> dict:
    r = result.summary["requests"]
    assert r["arrived"] == r["completed"] + r["rejected"] + r["in_flight"]
    assert len(result.requests) == r["arrived"]
    assert result.requests.index.is_unique
    return r


# ------------------------------------------------------------------ failures

FAST_FAILURES = {
    # A GPU fails every 30 s on average and is back after 5 s: many outages in a minute.
    "gpu_mtbf_h": 30 / 3600,
    "gpu_repair_h": 5 / 3600,
    "server_mtbf_h": 80000,  # ~1e-5 server failures in a minute
    "repair_distribution": "fixed",
    "compare_without": False,
}


def test_a_failed_replica_hands_back_its_requests_and_none_is_lost():
    result = fleetsim.simulate(base(failures=FAST_FAILURES))
    r = accounted(result)
    f = result.summary["failures"]
    assert f["outages"] > 0
    assert f["requests_requeued"] > 0
    # Counted once per failover: the column sums to the summary's count.
    assert int(result.requests["requeues"].sum()) == f["requests_requeued"]
    assert r["completed"] == r["arrived"]  # drained: every request, re-queued or not, finished
    # A fixed fleet stays billed whole while a replica is down; fewer serve during an outage.
    ts = result.timeseries
    assert (ts["replicas_billed"] == 4).all()
    assert ts["replicas"].min() < 4
    # Per-second billing, one-minute minimum (BillingSpec defaults): each of the 4 rounded up.
    billed_s = max(math.ceil(result.summary["simulated_s"]), 60)
    assert result.summary["bill"]["gpu_hours_billed"] == pytest.approx(4 * billed_s / 3600, rel=1e-12)


def test_failures_are_deterministic_per_seed_and_leave_the_arrivals_unchanged():
    a = fleetsim.simulate(base(failures=FAST_FAILURES))
    b = fleetsim.simulate(base(failures=FAST_FAILURES))
    assert a.summary == b.summary
    assert a.requests.equals(b.requests)
    other = fleetsim.simulate(base(failures=FAST_FAILURES), {"run.seed": 4})
    assert other.summary["failures"] != a.summary["failures"]
    # The failure draws have their own stream: the same arrivals as the run without failures.
    plain = fleetsim.simulate(base())
    assert np.array_equal(plain.requests["arrival_s"].to_numpy(), a.requests["arrival_s"].to_numpy())


def test_a_failure_run_reports_the_attainment_without_failures_beside():
    result = fleetsim.simulate(base(failures={**FAST_FAILURES, "compare_without": True}))
    plain = fleetsim.simulate(base())
    assert result.summary["slo"]["attainment_without_failures"] == plain.summary["slo"]["attainment"]


# ------------------------------------------------------------------ autoscaling: a step in load


def step_trace(tmp_path, output_tokens: int = 16) -> Path:
    """Deterministic arrivals: 1/s at t = 0, 1, ..., 609; 10/s from 610.05 to 1209.95; 1/s from
    1211 on (every time far from a scrape boundary, so each window's count is exact)."""
    t = np.concatenate([np.arange(0, 610) * 1.0, 610.05 + 0.1 * np.arange(6000), 1211.0 + np.arange(0, 290)])
    path = tmp_path / "step.csv"
    lines = ["arrival_s,input_tokens,output_tokens"] + [f"{x!r},128,{output_tokens}" for x in t.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


STEP_AUTOSCALING = {
    "signal": "utilization",
    "capacity_requests_per_s": 5.0,
    "target": 0.5,
    "tolerance": 0.1,
    "scrape_interval_s": 60,
    "scale_down_stabilization_s": 180,
    "min_replicas": 1,
    "max_replicas": 8,
    "provisioning_delay_s": 30,
    "weights_load_bandwidth_bytes_per_s": 1e10,
    "engine_start_s": 10,
    "drain_timeout_s": 600,
}


def step_scenario(tmp_path, output_tokens: int = 16, **auto) -> dict:
    d = base(autoscaling={**STEP_AUTOSCALING, **auto})
    d["fleet"] = {"gpu": "h100-sxm", "replicas": 1}
    d["workload"] = {
        "arrival": {"kind": "trace", "path": str(step_trace(tmp_path, output_tokens))},
        "classes": [{"name": "chat"}],
    }
    d["run"] = {"duration_s": 1500, "seed": 1}
    return d


def test_the_replica_count_follows_a_step_in_load_after_the_scrape_and_the_cold_start(tmp_path):
    result = fleetsim.simulate(step_scenario(tmp_path))
    accounted(result)
    # Hand calculation (HPA: desired = ceil(ready x utilization / target)):
    # - before the step, each 60 s window holds 60 arrivals: 60 / (1 x 5 x 60) = 0.2, ratio 0.4,
    #   desired ceil(0.4) = 1: one replica.
    # - the scrape at 660 s sees 601..609 (9) and 610.05..659.95 (500): 509 / 300 = 1.697,
    #   ratio 3.39, desired ceil(3.39) = 4: three launched at 660 s, serving after the cold start
    #   30 s + 16.06 GB / 10 GB/s + 10 s = 41.606 s, at 701.606 s.
    # - from 720 s: 600 / (4 x 300) = 0.5, ratio 1: no change.
    # - after the step down (1210 s) the windows hold 150 (at 1260 s), then 60: recommendations 1;
    #   the scale-down takes the highest of the last 180 s (scrapes after now - 180), which holds
    #   the 4 of 1200 s until 1380 s: three stop serving at 1380 s.
    cold_s = 30 + LLAMA3_8B_BF16_BYTES / 1e10 + 10
    auto = result.summary["autoscaling"]
    assert auto["cold_start_s"] == pytest.approx(cold_s, rel=1e-9)
    life = result.lifetimes.sort_values(["launched_s", "instance_id"])
    assert life["launched_s"].tolist() == pytest.approx([0.0, 660.0, 660.0, 660.0])
    assert life["ready_s"].tolist() == pytest.approx([0.0] + [660.0 + cold_s] * 3)
    assert sorted(life["stopped_s"].dropna().tolist()) == pytest.approx([1380.0] * 3)
    assert auto["scale_ups"] == 3 and auto["scale_downs"] == 3
    assert auto["peak_replicas"] == 4 and auto["min_replicas"] == 1
    ts = result.timeseries
    t = ts["time_s"]
    assert (ts.loc[t < 660 + cold_s, "replicas"] == 1).all()
    assert (ts.loc[(t >= 660 + cold_s) & (t < 1380), "replicas"] == 4).all()
    assert (ts.loc[t >= 1380, "replicas"] == 1).all()
    # Billed from the launch (660 s), serving from the ready time.
    assert (ts.loc[(t >= 660) & (t < 660 + cold_s), "replicas_billed"] == 4).all()


def test_a_drain_timeout_of_zero_hands_back_what_the_removed_replicas_hold(tmp_path):
    # 400-token answers: at 1 request/s each replica still holds some at the scale-down.
    result = fleetsim.simulate(step_scenario(tmp_path, 400, drain_timeout_s=0))
    accounted(result)
    auto = result.summary["autoscaling"]
    assert auto["scale_downs"] == 3 and auto["drain_timeouts"] >= 1 and auto["requests_requeued"] > 0
    assert int(result.requests["requeues"].sum()) == auto["requests_requeued"]
    assert result.summary["requests"]["completed"] == result.summary["requests"]["arrived"]
    life = result.lifetimes
    stopped = life.dropna(subset=["stopped_s"])
    assert (stopped["released_s"] == stopped["stopped_s"]).all()  # released at the decision


def test_the_bill_of_an_autoscaled_run_is_its_instances_lifetimes(tmp_path):
    result = fleetsim.simulate(step_scenario(tmp_path))
    bill = result.summary["bill"]
    horizon = result.summary["simulated_s"]
    life = result.lifetimes
    span = (life["released_s"].clip(upper=horizon) - life["launched_s"]).to_numpy()
    # Per-second billing with a one-minute minimum (BillingSpec defaults), one GPU a replica.
    billed_s = np.maximum(np.ceil(span), 60.0)
    assert bill["gpu_hours_billed"] == pytest.approx(billed_s.sum() / 3600, rel=1e-12)
    # The step integral of the billed count: +1 at each launch, -1 at each release.
    events = sorted([(s, 1) for s in life["launched_s"]] + [(e, -1) for e in life["released_s"].clip(upper=horizon)])
    area, n, last = 0.0, 0, 0.0
    for time_s, step in events:
        area += n * (time_s - last)
        n, last = n + step, time_s
    area += n * (horizon - last)
    assert bill["replica_hours"] == pytest.approx(area / 3600, rel=1e-9)
    assert result.summary["autoscaling"]["replica_hours"] == pytest.approx(area / 3600, rel=1e-9)
    assert bill["peak_replicas"] == 4
    # kWh: the integral of the power, i.e. the fleet's energy meter at the end.
    assert bill["gpu_kwh"] == pytest.approx(result.replicas["energy_j"].sum() / 3.6e6, rel=1e-9)
    meter = result.timeseries["gpu_energy_j"].to_numpy()
    assert np.all(np.diff(meter) >= -1e-6 * meter[-1])
    assert meter[-1] <= result.replicas["energy_j"].sum() * (1 + 1e-9)  # the last sample may precede the end
    # Rent and own side by side.
    assert bill["rent_usd"]["on_demand_usd"] > 0 and bill["own_usd"]["total_usd"] > 0
    # The lifetimes are saved with the run.
    result.save(tmp_path / "run")
    saved = pd.read_parquet(tmp_path / "run" / "lifetimes.parquet")
    assert saved["released_s"].tolist() == pytest.approx(life["released_s"].tolist())


def test_replicas_still_starting_are_cancelled_when_the_load_falls_back(tmp_path):
    # 10/s only from 610.05 to 661.95: the scrape at 660 s launches 3 (as above), whose cold start
    # is now 100 + 1.606 + 10 s (ready at 771.6 s). The scrape at 720 s sees 610.05..661.95's
    # last 20 and 662..720's 58 (1/s): 78 / 300 = 0.26, ratio 0.52, desired ceil(0.52) = 1; with
    # no scale-down stabilization the three still starting are cancelled at 720 s, never serving.
    t = np.concatenate([np.arange(0, 610) * 1.0, 610.05 + 0.1 * np.arange(520), 662.0 + np.arange(0, 230)])
    path = tmp_path / "blip.csv"
    path.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{x!r},128,16\n" for x in t.tolist()))
    d = step_scenario(tmp_path, provisioning_delay_s=100, scale_down_stabilization_s=0)
    d["workload"]["arrival"]["path"] = str(path)
    d["run"]["duration_s"] = 900
    result = fleetsim.simulate(d)
    accounted(result)
    auto = result.summary["autoscaling"]
    assert auto["scale_ups"] == 3 and auto["cancelled"] == 3 and auto["peak_replicas"] == 1
    cancelled = result.lifetimes[result.lifetimes["launched_s"] > 0]
    assert cancelled["released_s"].tolist() == pytest.approx([720.0] * 3)
    # Billed from the launch to the cancel: 60 s each (the one-minute minimum as well).
    horizon = result.summary["simulated_s"]
    first = max(math.ceil(horizon), 60)
    assert result.summary["bill"]["gpu_hours_billed"] == pytest.approx((first + 3 * 60) / 3600, rel=1e-12)


@pytest.mark.filterwarnings("ignore:.*trace requests arrive after run.duration_s")
def test_with_no_cold_start_the_autoscaled_fleet_approaches_a_fixed_fleet_of_its_peak(tmp_path):
    quick = {
        "provisioning_delay_s": 0,
        "engine_start_s": 0,
        "weights_load_bandwidth_bytes_per_s": 1e13,  # 1.6 ms: the fastest load the spec allows
        "scrape_interval_s": 5,
    }
    d = step_scenario(tmp_path, 64, **quick)
    d["scheduler"] = {"max_running_seqs": 4}  # ~1.5 req/s a replica: one replica cannot take 10/s
    d["run"]["duration_s"] = 1000
    auto = fleetsim.simulate(d)
    peak = auto.summary["autoscaling"]["peak_replicas"]
    assert peak >= 4
    fixed = dict(d, autoscaling=None)
    fixed["fleet"] = {"gpu": "h100-sxm", "replicas": peak}
    fixed_run = fleetsim.simulate(fixed)
    slow = fleetsim.simulate(d, {"autoscaling.provisioning_delay_s": 300})
    # Stated tolerance: within 2 points of attainment; the lag is at most one 5 s scrape.
    a, f = auto.summary["slo"]["attainment"], fixed_run.summary["slo"]["attainment"]
    assert a == pytest.approx(f, abs=0.02)
    assert slow.summary["slo"]["attainment"] < a - 0.02


@pytest.mark.parametrize("router", ["least_outstanding", "round_robin", "random", "most_free_kv", "central_queue"])
def test_no_router_loses_a_request_across_failures(router):
    d = base(failures={**FAST_FAILURES, "gpu_mtbf_h": 10 / 3600, "repair_distribution": "exponential"})
    d["fleet"]["router"] = router
    d["run"]["duration_s"] = 30
    result = fleetsim.simulate(d)
    r = accounted(result)
    assert r["completed"] == r["arrived"] and r["requeued"] > 0
    meter = result.timeseries["gpu_energy_j"].to_numpy()
    assert np.all(np.diff(meter) >= 0)


def test_failures_in_an_autoscaled_fleet(tmp_path):
    d = step_scenario(tmp_path, 400)
    d["failures"] = {**FAST_FAILURES, "gpu_mtbf_h": 120 / 3600, "gpu_repair_h": 30 / 3600}
    result = fleetsim.simulate(d)
    r = accounted(result)
    assert r["completed"] == r["arrived"]
    f = result.summary["failures"]
    assert 0 < f["outages"] <= f["slot_outages"]
    assert int(result.requests["requeues"].sum()) == f["requests_requeued"] > 0
    # The bill follows the instances' lifetimes (a failed instance's ends at its failure).
    life = result.lifetimes
    horizon = result.summary["simulated_s"]
    span = (life["released_s"].clip(upper=horizon) - life["launched_s"]).to_numpy()
    assert result.summary["bill"]["gpu_hours_billed"] == pytest.approx(np.maximum(np.ceil(span), 60).sum() / 3600)


# ------------------------------------------------------------------ defaults, specs, CLI


def test_a_fixed_fleet_has_constant_replica_columns_and_no_requeues():
    result = fleetsim.simulate(base(), {"run.duration_s": 10})
    ts = result.timeseries
    assert (ts["replicas"] == 4).all() and (ts["replicas_billed"] == 4).all()
    assert (result.requests["requeues"] == 0).all()
    assert "autoscaling" not in result.summary and "failures" not in result.summary
    assert result.lifetimes is None


@pytest.mark.parametrize(
    "changes, word",
    [
        ({"autoscaling": {"min_replicas": 5, "max_replicas": 8}}, "fleet.replicas"),
        ({"autoscaling": {"min_replicas": 0}}, "min_replicas"),
        ({"autoscaling": {}, "fleet.pods": 2}, "fleet.pods"),
        ({"failures": {}, "speculative": {"method": "mtp"}}, "speculative"),
        (
            {
                "fleet": {"groups": [{"name": "a", "gpu": "h100-sxm", "replicas": 1}, {"name": "b", "gpu": "l40s"}]},
                "failures": {},
            },
            "fleet.groups",
        ),
    ],
)
def test_dynamics_that_cannot_run_are_refused_in_one_line(changes, word):
    with pytest.raises(SpecError) as err:
        fleetsim.load_scenario(base(), changes)
    assert word in str(err.value) and "\n" not in str(err.value)


def fleetsim_cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from fleetsim.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
    )


def test_run_period_sets_the_duration_and_a_bad_one_exits_2():
    import json

    r = fleetsim_cli("run", ROOT / "scenarios/h100_llama3.yaml", "--period", "0.1m", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["simulated_s"] >= 6.0
    bad = fleetsim_cli("run", ROOT / "scenarios/h100_llama3.yaml", "--period", "two days")
    assert bad.returncode == 2
    assert "--period" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, seconds", [("24h", 86400), ("30m", 1800), ("3600s", 3600), ("1d", 86400), ("90", 90)])
def test_period_units(text, seconds):
    from fleetsim.cli.options import period_s

    assert period_s(text) == seconds
    assert math.isfinite(period_s(text))


def test_the_bill_of_the_shipped_diurnal_day_compressed_to_an_hour():
    # The shipped day with its period (and scrape/stabilization times) scaled to one hour.
    day = ROOT / "scenarios/h100_llama3_autoscaled_day.yaml"
    result = fleetsim.simulate(
        day,
        {
            "workload.arrival.period_s": 3600,
            "workload.arrival.peak_time_s": 2100,
            "workload.arrival.mean_rate_per_s": 6.0,
            "autoscaling.scrape_interval_s": 15,
            "autoscaling.scale_down_stabilization_s": 60,
            "autoscaling.provisioning_delay_s": 30,
            "autoscaling.engine_start_s": 10,
            "run.duration_s": 3600,
        },
    )
    accounted(result)
    s, bill = result.summary, result.summary["bill"]
    assert s["autoscaling"]["scale_ups"] > 0 and s["autoscaling"]["scale_downs"] > 0
    horizon, tp = s["simulated_s"], 4
    life = result.lifetimes
    span = (life["released_s"].clip(upper=horizon) - life["launched_s"]).to_numpy()
    assert bill["gpu_hours_billed"] == pytest.approx(np.maximum(np.ceil(span), 60).sum() * tp / 3600, rel=1e-12)
    assert bill["gpu_hours_used"] == pytest.approx(span.sum() * tp / 3600, rel=1e-9)
    # The sampled time series agrees with the exact integral within a sample interval per change.
    ts = result.timeseries
    t = np.append(ts["time_s"].to_numpy(), horizon)
    sampled = float(np.sum(ts["replicas_billed"].to_numpy() * np.diff(t)))
    changes = 2 * len(life)
    assert sampled == pytest.approx(span.sum(), abs=changes * float(np.diff(t).max()))
    # kWh = the integral of the power: the energy meter at the end.
    assert bill["gpu_kwh"] == pytest.approx(result.replicas["energy_j"].sum() / 3.6e6, rel=1e-9)


@pytest.mark.parametrize(
    "billing, granularity_s, minimum_s",
    [
        ({"billing.provider": "linode"}, 3600, 3600),
        ({"billing.granularity_s": 600, "billing.minimum_charge_s": 0}, 600, 0),
    ],
)
def test_the_scenario_chooses_the_billing_granularity(tmp_path, billing, granularity_s, minimum_s):
    # Each instance's lifetime is rounded up to the granularity, at least the minimum charge:
    # linode bills whole hours (catalog/billing.yaml), or the scenario's own figures.
    result = fleetsim.simulate(step_scenario(tmp_path), billing)
    bill, horizon = result.summary["bill"], result.summary["simulated_s"]
    life = result.lifetimes
    span = (life["released_s"].clip(upper=horizon) - life["launched_s"]).to_numpy()
    billed_s = np.maximum(np.ceil(span / granularity_s) * granularity_s, minimum_s)
    assert (bill["granularity_s"], bill["minimum_charge_s"]) == (granularity_s, minimum_s)
    assert bill["gpu_hours_billed"] == pytest.approx(billed_s.sum() / 3600, rel=1e-12)


def test_an_autoscaled_instance_that_fails_is_terminated_and_replaced(tmp_path):
    # A failed instance is released at its failure (billing ends with it) and the next scrape,
    # seeing one replica fewer, launches a replacement: there are more launches than without
    # failures, and every instance a failure ended has released_s equal to its stop time.
    d = step_scenario(tmp_path, 400)
    plain = fleetsim.simulate(d)
    d["failures"] = {**FAST_FAILURES, "gpu_mtbf_h": 120 / 3600, "gpu_repair_h": 3600 / 3600}
    failing = fleetsim.simulate(d)
    accounted(failing)
    hits = failing.summary["failures"]["outages"]
    assert hits > 0
    assert failing.summary["autoscaling"]["scale_ups"] >= plain.summary["autoscaling"]["scale_ups"] + 1
    # Scale-downs and cancels happen at scrapes (multiples of the interval); a failure does not.
    life = failing.lifetimes
    interval = d["autoscaling"]["scrape_interval_s"]
    stopped = life["stopped_s"].dropna()
    at_failure = stopped[(stopped / interval - (stopped / interval).round()).abs() > 1e-9]
    assert len(at_failure) >= 1
    assert (life.loc[at_failure.index, "released_s"] == at_failure).all()  # billed no longer
