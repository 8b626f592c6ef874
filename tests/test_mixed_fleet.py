"""Mixed fleets (fleet.groups): several replica groups, each its own GPU type and tp, behind one router."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_cli_memory import run_in_process

from fleetsim import simulate
from fleetsim.catalog import load_model
from fleetsim.errors import SpecError
from fleetsim.groups import kv_scale
from fleetsim.memory import kv_footprint

ROOT = Path(__file__).resolve().parents[1]
MIXED = ROOT / "scenarios" / "h100_l40s_mixed.yaml"
# The catalog's H100 SXM rental price (fleetsim/catalog/gpus/h100-sxm.yaml: RunPod on-demand $2.69/GPU-h).
H100_USD_PER_GPU_HOUR = 2.69


def scenario(fleet: dict, rate_per_s: float = 8.0, duration_s: float = 20.0, **extra) -> dict:
    return {
        "name": "mixed-test",
        "model": "llama-3-8b",
        "fleet": fleet,
        "workload": {
            "arrival": {"kind": "poisson", "rate_per_s": rate_per_s},
            "classes": [
                {
                    "name": "chat",
                    "input_tokens": {"kind": "uniform", "min_tokens": 100, "max_tokens": 600},
                    "output_tokens": {"kind": "uniform", "min_tokens": 20, "max_tokens": 120},
                }
            ],
        },
        "run": {"duration_s": duration_s, "seed": 3},
        **{"cost": {"mode": "rental"}, **extra},
    }


def group(name: str, gpu: str, replicas: int, tp: int = 1, **kw) -> dict:
    return {"name": name, "gpu": gpu, "replicas": replicas, "tp": tp, **kw}


def conserved(result) -> None:
    r = result.summary["requests"]
    assert r["arrived"] == r["completed"] + r["rejected"] + r["in_flight"] == len(result.requests)
    assert sum(g["requests_completed"] for g in result.summary["groups"]) == r["completed"]


@pytest.mark.parametrize("mode", ["rental", "owned"])
def test_two_identical_groups_are_one_group_of_the_summed_replicas(mode):
    # Same GPU, same tp: the groups' replicas are the one-group fleet's, in the same order, so the
    # same router makes the same picks and every request is served alike; the groups share servers.
    one = simulate(scenario({"gpu": "h100-sxm", "replicas": 4}, cost={"mode": mode}))
    two = simulate(scenario({"groups": [group("a", "h100-sxm", 2), group("b", "h100-sxm", 2)]}, cost={"mode": mode}))
    a, b = one.requests, two.requests
    assert (a["replica"].to_numpy() == b["replica"].to_numpy()).all()
    assert (a["status"] == b["status"]).all()
    np.testing.assert_allclose(b["finish_s"], a["finish_s"], rtol=1e-12)
    s1, s2 = one.summary, two.summary
    assert s2["fleet"]["gpus"] == s1["fleet"]["gpus"] == 4
    for block, key in [("power", "gpu_energy_kwh"), ("power", "it_mean_kw"), ("cost", "usd_per_hour")]:
        assert s2[block][key] == pytest.approx(s1[block][key], rel=1e-9)
    assert s2["bill"]["rent_usd"]["on_demand_usd"] == pytest.approx(s1["bill"]["rent_usd"]["on_demand_usd"], rel=1e-9)
    assert s2["bill"]["own_usd"]["total_usd"] == pytest.approx(s1["bill"]["own_usd"]["total_usd"], rel=1e-9)
    assert s2["fleet"]["servers"] == s1["fleet"]["servers"]
    conserved(two)


def test_a_group_at_another_tp_is_scaled_exactly():
    # llama-3-8b has 8 KV heads: at tp 2 a GPU holds half a sequence's KV bytes of tp 1 (exact ratio 1/2).
    arch = load_model("llama-3-8b")
    assert kv_scale(kv_footprint(arch, tp=2), kv_footprint(arch, tp=1), 1) == 0.5
    # A tp-2 group behind a tp-1 reference group (empty) runs as a tp-2 fleet does.
    ref = simulate(scenario({"gpu": "h100-sxm", "tp": 2, "replicas": 2}, rate_per_s=12))
    mixed = simulate(
        scenario({"groups": [group("ref", "h100-sxm", 0), group("tp2", "h100-sxm", 2, tp=2)]}, rate_per_s=12)
    )
    np.testing.assert_allclose(mixed.requests["finish_s"], ref.requests["finish_s"], rtol=1e-9)
    assert mixed.summary["power"]["gpu_energy_kwh"] == pytest.approx(ref.summary["power"]["gpu_energy_kwh"], rel=1e-9)
    assert mixed.summary["groups"][1]["gpus"] == 4


def test_footprints_without_one_ratio_are_refused():
    # Qwen3-Next: 2 KV heads replicate past tp 2 while its linear-attention state splits on.
    arch = load_model("qwen3-next-80b-a3b")
    with pytest.raises(SpecError, match=r"fleet\.groups\[1\]\.tp"):
        kv_scale(kv_footprint(arch, tp=4), kv_footprint(arch, tp=1), 1)


def test_power_cost_and_bill_sum_over_the_groups():
    l40s_price = 0.86  # the group's own price (the catalog has none for the L40S)
    fleet = {
        "router": "capacity_weighted",
        "groups": [
            group("h100", "h100-sxm", 1, tp=2),
            group("l40s", "l40s", 3, rental_usd_per_gpu_hour=l40s_price),
        ],
    }
    res = simulate(scenario(fleet, rate_per_s=10))
    s = res.summary
    h100_gpus, l40s_gpus = 1 * 2, 3 * 1
    assert s["fleet"]["gpus"] == h100_gpus + l40s_gpus
    assert s["fleet"]["gpu"] == "h100-sxm+l40s"
    assert s["fleet"]["tp"] is None  # the groups differ
    # Rental $/hour: GPUs x price per group, by hand.
    assert s["cost"]["usd_per_hour"] == pytest.approx(h100_gpus * H100_USD_PER_GPU_HOUR + l40s_gpus * l40s_price)
    by = {g["name"]: g for g in s["groups"]}
    assert by["h100"]["usd_per_hour"] == pytest.approx(h100_gpus * H100_USD_PER_GPU_HOUR)
    # Energy: each group's per-GPU mean power times its GPUs adds up to the fleet's.
    total_w = sum(g["gpu_mean_w"] * g["gpus"] for g in s["groups"])
    assert total_w == pytest.approx(s["power"]["gpu_mean_w"] * s["fleet"]["gpus"], rel=1e-9)
    assert sum(g["it_mean_kw"] for g in s["groups"]) == pytest.approx(s["power"]["it_mean_kw"])
    assert s["power"]["gpu_energy_kwh"] == pytest.approx(res.replicas["energy_j"].sum() / 3.6e6)
    # Both GPUs idle no lower than their profiles' idle power, peak at most their TDP (700 W, 350 W).
    assert by["h100"]["gpu_peak_w"] <= 700 and by["l40s"]["gpu_peak_w"] <= 350
    # The bill: billed GPU-hours (default: per-second billing with a 60 s minimum) x each group's price.
    hours = s["simulated_s"] / 3600.0
    billed_h = max(math.ceil(s["simulated_s"]), 60) / 3600
    bill = s["bill"]
    assert bill["gpu_hours_used"] == pytest.approx((h100_gpus + l40s_gpus) * hours)
    assert bill["replica_hours"] == pytest.approx(4 * hours)
    assert bill["rent_usd"]["on_demand_usd"] == pytest.approx(
        billed_h * (h100_gpus * H100_USD_PER_GPU_HOUR + l40s_gpus * l40s_price), rel=1e-9
    )
    assert bill["gpu_kwh"] == pytest.approx(s["power"]["gpu_energy_kwh"], rel=1e-6)
    assert list(res.replicas["group"]) == ["h100", "l40s", "l40s", "l40s"]
    assert list(res.replicas["gpu"]) == ["h100-sxm", "l40s", "l40s", "l40s"]
    conserved(res)


def test_capacity_weighted_router_splits_a_batch_by_capacity():
    # An offline batch arrives at t = 0, before anything finishes: the router hands replica i a
    # count n_i with (n_i + 1) / w_i balanced, i.e. n_i within one of N w_i / sum(w).
    n = 400
    fleet = {"router": "capacity_weighted", "groups": [group("fast", "h100-sxm", 1), group("slow", "l40s", 2)]}
    sc = scenario(fleet)
    sc["workload"]["arrival"] = {"kind": "offline", "requests": n}
    sc["run"] = {"max_requests": n, "seed": 1}
    sc["fleet"]["groups"][1]["rental_usd_per_gpu_hour"] = 1.0
    res = simulate(sc)
    g = {x["name"]: x for x in res.summary["groups"]}
    w_fast, w_slow = g["fast"]["capacity_tokens_per_s_per_replica"], g["slow"]["capacity_tokens_per_s_per_replica"]
    assert w_fast > 2 * w_slow  # 3.35 TB/s of HBM against 0.86: decode is memory-bound
    counts = res.requests["replica"].value_counts().sort_index().to_numpy()
    total_w = w_fast + 2 * w_slow
    expected = np.array([n * w_fast / total_w, n * w_slow / total_w, n * w_slow / total_w])
    assert np.all(np.abs(counts - expected) <= 1.0 + 1e-9), (counts, expected)
    conserved(res)


def test_shipped_mixed_scenario_is_deterministic_and_conserves_requests():
    a = simulate(MIXED)
    b = simulate(MIXED)
    assert a.to_json() == b.to_json()
    conserved(a)
    s = a.summary
    assert [g["gpu"] for g in s["groups"]] == ["h100-sxm", "l40s"]
    assert all(g["requests_completed"] > 0 for g in s["groups"])


def test_a_request_too_large_for_one_group_goes_to_the_other():
    # The L40S (48 GB) holds far fewer KV tokens than the H100 (80 GB): a prompt between the two
    # capacities must be served by the H100, never rejected, never routed to the L40S.
    fleet = {
        "router": "round_robin",
        "groups": [group("small", "l40s", 1, rental_usd_per_gpu_hour=1.0), group("big", "h100-sxm", 1)],
    }
    sc = scenario(fleet, rate_per_s=2.0, duration_s=10.0)
    res0 = simulate(sc)
    small_tokens = res0.summary["groups"][0]["capacity_tokens_per_replica"]
    big_tokens = res0.summary["groups"][1]["capacity_tokens_per_replica"]
    assert small_tokens < big_tokens
    prompt = (small_tokens + big_tokens) // 2
    sc["scheduler"] = {"max_model_len": big_tokens, "max_batched_tokens": 8192}
    sc["model"] = "llama-3.1-8b"  # 128k context
    sc["workload"]["classes"][0]["input_tokens"] = {"kind": "fixed", "tokens": prompt}
    sc["workload"]["classes"][0]["output_tokens"] = {"kind": "fixed", "tokens": 4}
    res = simulate(sc)
    assert res.summary["requests"]["rejected"] == 0
    assert (res.requests["replica"] == 1).all()


BAD = [
    ({"gpu": "h200", "groups": [group("a", "h100-sxm", 1)]}, "fleet: gpu"),
    ({"groups": [group("a", "h100-sxm", 1), group("a", "l40s", 1)]}, "groups[1].name"),
    ({"groups": [group("a", "h100-sxm", 0)]}, "groups: 0 replicas"),
    ({"groups": [group("a", "h100-sxm", 1), group("b", "nope-gpu", 1)]}, "nope-gpu"),
    ({"groups": [group("a", "h100-sxm", 1), group("b", "h100-sxm", 1, tp=3)]}, "fleet.groups[1].tp"),
    ({"pods": 2, "groups": [group("a", "h100-sxm", 2)]}, "pods"),
    ({"groups": [group("a", "h100-sxm", 1), group("b", "l40s", 1)]}, "fleet.groups[1].rental_usd_per_gpu_hour"),
    ({"router": "prefix_aware", "groups": [group("a", "h100-sxm", 2)]}, "block prefix cache"),
]


@pytest.mark.parametrize("fleet,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_groups_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, fleet, needle):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(scenario(fleet)))
    r = run_in_process(monkeypatch, capsys, "run", p, "--json")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]


def test_a_group_whose_model_does_not_fit_names_its_field(tmp_path, monkeypatch, capsys):
    fleet = {"groups": [group("a", "h100-sxm", 1, tp=4), group("b", "l40s", 1, tp=1)]}
    sc = scenario(fleet)
    sc["model"] = "llama-3-70b"
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(sc))
    r = run_in_process(monkeypatch, capsys, "run", p, "--json")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "fleet.groups[1]" in r.stderr, r.stderr


def test_plan_mix_is_never_dearer_than_one_type_and_its_fleet_meets_the_slo():
    from fleetsim.plan_mix import plan_mix

    l40s_price = 0.86
    sc = scenario({"gpu": "h100-sxm"}, rate_per_s=150, duration_s=10)
    plan = plan_mix(sc, ["h100-sxm", "l40s"], tp_options=[1], prices={"l40s": l40s_price})
    best, single = plan.best, plan.best_single
    assert best is not None and single is not None
    assert best["usd_per_hour"] <= single["usd_per_hour"]
    # Priced by hand: GPUs x $/GPU-hour of each type (tp 1).
    assert best["usd_per_hour"] == pytest.approx(best["a"] * H100_USD_PER_GPU_HOUR + best["b"] * l40s_price)
    # The one-type plans' own answers are among the candidates.
    table = {r["gpu"]: r for r in plan.singles.to_dict(orient="records")}
    assert {(int(table["h100-sxm"]["replicas"]), 0), (0, int(table["l40s"]["replicas"]))} <= {
        (int(a), int(b)) for a, b in zip(plan.candidates["a"], plan.candidates["b"])
    }
    # An independent check: the chosen fleet, simulated on its own, meets the SLO.
    check = dict(sc, fleet={"router": "capacity_weighted", "groups": plan.groups(best)})
    assert simulate(check).summary["slo"]["met"]
    assert plan.sentence().startswith("A mix beats") == plan.mix_beats_single
    assert len(plan.candidates) > 2  # mixes were searched, not only the one-type fleets


def test_plan_mix_needs_two_gpu_types(tmp_path, monkeypatch, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(scenario({"gpu": "h100-sxm"})))
    r = run_in_process(monkeypatch, capsys, "plan", p, "--gpus", "h100-sxm", "--mix")
    assert r.returncode == 2 and "exactly two" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_capacity_weighted_on_one_gpu_type_is_least_outstanding():
    a = simulate(scenario({"gpu": "h100-sxm", "replicas": 3, "router": "least_outstanding"}))
    b = simulate(scenario({"gpu": "h100-sxm", "replicas": 3, "router": "capacity_weighted"}))
    assert (a.requests["replica"] == b.requests["replica"]).all()
    assert a.summary["throughput"] == b.summary["throughput"]


def test_a_one_type_override_on_a_mixed_fleet_is_refused():
    # Even at its default value (a plan or sweep over fleet.gpu), it would be silently replaced by the groups.
    with pytest.raises(SpecError, match=r"fleet\.gpu: set on a mixed fleet"):
        simulate(MIXED, {"fleet.gpu": "h100-sxm"})
    one = simulate(MIXED, {"fleet.groups": None, "fleet.gpu": "l40s", "cost.rental_usd_per_gpu_hour": 1.0})
    assert one.summary["fleet"]["gpu"] == "l40s" and "groups" not in one.summary


@pytest.mark.parametrize("router", ["round_robin", "random", "least_outstanding", "most_free_kv", "central_queue"])
def test_every_router_works_on_a_mixed_fleet(router):
    fleet = {
        "router": router,
        "groups": [group("h100", "h100-sxm", 1), group("l40s", "l40s", 2, rental_usd_per_gpu_hour=1.0)],
    }
    res = simulate(scenario(fleet, rate_per_s=20, duration_s=10))
    conserved(res)
    assert res.summary["requests"]["completed"] == res.summary["requests"]["arrived"]
    # (most_free_kv and central_queue favour the H100: its pool is larger, its index lower)


def test_plan_mix_reads_the_scenarios_own_group_prices():
    # scenarios/h100_l40s_mixed.yaml prices its L40S group at $0.86/GPU-hour (an assumed figure, as
    # the file says); without --price for that type the plan uses it, not "no rental price".
    from fleetsim.plan_mix import plan_mix

    mix = plan_mix(ROOT / "scenarios" / "h100_l40s_mixed.yaml", ["h100-sxm", "l40s"], overrides={"run.duration_s": 10})
    assert mix.prices["l40s"] == 0.86
    assert not [n for n in mix.notes if "l40s" in n and "price" in n]
