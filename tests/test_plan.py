"""Procurement: the cheapest fleet per GPU type meets the SLO, and one replica fewer does not."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import fleetsim
from fleetsim.errors import CatalogError, SpecError
from fleetsim.plan import plan_fleet

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "h100_llama3.yaml"
# 60 requests/s of chat traffic needs a few H100s; 60 s of arrivals keeps each simulation short.
LOAD = {"run.duration_s": 60, "workload.arrival.rate_per_s": 60}


def _fleet(row: dict) -> dict:
    return {
        **LOAD,
        "fleet.gpu": row["gpu"],
        "fleet.tp": row["tp"],
        "fleet.replicas": row["replicas"],
        "weight_dtype": row["weight_dtype"],
        "kv_cache.key_dtype": row["key_dtype"],
        "kv_cache.value_dtype": row["value_dtype"],
    }


def test_cli_plan_finds_a_fleet_that_meets_the_slo_and_one_fewer_misses(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetsim.cli",
            "plan",
            str(SCENARIO),
            "--gpus",
            "h100-sxm",
            "--set",
            "run.duration_s=60",
            "--set",
            "workload.arrival.rate_per_s=60",
            "--seeds",
            "1",  # the search's own run: compared below with one simulation (seeds: the tie test)
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    (row,) = plan["rows"]
    assert row["gpu"] == "h100-sxm" and row["met"] is True and row["replicas"] >= 2
    assert row["met_one_fewer"] is False and row["replicas_one_fewer"] == row["replicas"] - 1
    assert row["slo_attainment_one_fewer"] < plan["slo"]["attainment_target"] <= row["slo_attainment"]

    # Independently: simulate the fleet found, and the same fleet with one replica fewer.
    found = fleetsim.simulate(SCENARIO, _fleet(row))
    fewer = fleetsim.simulate(SCENARIO, {**_fleet(row), "fleet.replicas": row["replicas"] - 1})
    assert found.summary["slo"]["met"] is True
    assert fewer.summary["slo"]["met"] is False
    assert found.summary["cost"]["usd_per_hour"] == pytest.approx(row["usd_per_hour"])
    assert found.summary["cost"]["usd_per_million_tokens"] == pytest.approx(row["usd_per_million_tokens"])
    assert found.summary["fleet"]["gpus"] == row["gpus"] == row["replicas"] * row["tp"]
    # Cooling is sized on peak IT power: every GPU at the highest power a replica reached, plus the
    # DGX H100's non-GPU power (10,200 W - 8 x 700 W = 4,600 W, power_dgx_h100_system) per server.
    p = found.summary["power"]
    peak_kw = (row["gpus"] * max(p["gpu_peak_w"], p["gpu_mean_w"]) + 4600 * row["servers"]) / 1000
    assert row["cooling_tons"] == pytest.approx(peak_kw / 3.517)
    assert row["cooling_tons"] >= found.summary["cooling"]["tons"] * (1 - 1e-9)

    # The plan's files: JSON, the table as CSV, and the scenario it planned for.
    assert (tmp_path / "plan.json").is_file() and json.loads((tmp_path / "plan.json").read_text()) == plan
    csv = pd.read_csv(tmp_path / "plan.csv")
    assert csv.loc[0, "replicas"] == row["replicas"]
    used = fleetsim.load_scenario(tmp_path / "scenario.yaml")
    assert used == fleetsim.load_scenario(SCENARIO, LOAD)
    assert "h100-sxm" in plan["recommendation"] and "per million tokens" in plan["recommendation"]


def test_search_brackets_then_bisects_instead_of_gridding():
    result = plan_fleet(SCENARIO, ["h100-sxm"], overrides=LOAD, progress=False, tp_options=[1])
    row = result.table.iloc[0]
    ev = result.evaluations
    n = int(row["replicas"])
    # Exponential steps 1, 2, 4, ... up to the first success, then bisection: O(log n) simulations.
    assert len(ev) <= 2 * math.ceil(math.log2(max(n, 2))) + 1
    assert ev["replicas"].is_unique
    met = dict(zip(ev["replicas"], ev["met"]))
    assert met[n] and not met[n - 1]
    assert all(met[r] for r in met if r > n) and not any(met[r] for r in met if r < n)
    assert row["simulations"] == len(ev)


def test_gpu_types_that_cannot_serve_are_rows_with_a_reason_not_errors():
    # DeepSeek-V3 in bf16 (~1.34 TB) does not fit 8 x A100 40GB at any tp, nor over 2 or 4 such
    # servers (pipeline stages plan tries for a model no server holds: 42 GB a GPU at 4 x 8).
    over = {**LOAD, "model": "deepseek-v3", "weight_dtype": "bf16"}
    result = plan_fleet(SCENARIO, ["a100-40gb"], overrides=over, progress=False)
    row = result.table.iloc[0]
    assert not row["met"] and "does not fit" in row["reason"] and pd.isna(row["replicas"])
    assert result.best() is None and "No GPU type meets the SLO" in result.recommendation()

    # Too few replicas allowed for the load: the SLO is missed up to the cap.
    result = plan_fleet(SCENARIO, ["h100-sxm"], overrides=LOAD, progress=False, tp_options=[1], max_replicas=2)
    row = result.table.iloc[0]
    assert not row["met"] and row["reason"].startswith("SLO missed up to 2 replicas")
    d = result.to_dict()
    json.dumps(d)  # JSON-ready
    assert d["rows"][0]["met"] is False and d["best"] is None


def test_cheapest_configuration_wins_across_tp_and_kv_precision():
    result = plan_fleet(
        SCENARIO, ["h100-sxm"], overrides=LOAD, progress=False, tp_options=[1, 2], kv_dtypes=["bf16", "fp8"]
    )
    opts = result.options[result.options["met"]]
    best = result.best()
    assert best["usd_per_hour"] == opts["usd_per_hour"].min()
    assert set(result.options["key_dtype"]) == {"bf16", "fp8"} and set(result.options["tp"]) == {1, 2}
    shown = result.display_table()
    assert list(shown["gpu"]) == ["h100-sxm"] and "$/Mtok" in shown.columns
    assert result.title().startswith("Cheapest fleet per GPU type: llama-3-8b")


def test_bad_input_is_one_clear_error():
    with pytest.raises(CatalogError):
        plan_fleet(SCENARIO, ["h100-sxmm"], overrides=LOAD, progress=False)
    with pytest.raises(SpecError, match="KV precision 'fp9'"):
        plan_fleet(SCENARIO, ["h100-sxm"], overrides=LOAD, progress=False, kv_dtypes=["fp9"])
    with pytest.raises(SpecError, match="no GPU types"):
        plan_fleet(SCENARIO, [], overrides=LOAD, progress=False)


def test_options_within_each_others_interval_are_a_tie_and_plan_json_carries_the_intervals():
    # One H100 and one H200 each serve 20 req/s of chat; priced a cent apart per GPU-hour they
    # cost the same per million tokens within noise (a tie); at $8.00 the H200 is plainly dearer.
    short = {"run.duration_s": 15}
    tie = plan_fleet(
        SCENARIO,
        ["h100-sxm", "h200"],
        overrides=short,
        progress=False,
        tp_options=[1],
        seeds=3,
        prices={"h100-sxm": 2.69, "h200": 2.70},
    )
    d = tie.to_dict()
    rows = {r["gpu"]: r for r in d["rows"]}
    for r in rows.values():
        assert (
            r["seeds"] == 3
            and r["usd_per_million_tokens_lo"] <= r["usd_per_million_tokens"] <= r["usd_per_million_tokens_hi"]
        )
        assert r["slo_attainment_lo"] <= r["slo_attainment"] <= r["slo_attainment_hi"]
    assert d["ties"] and "Tie" in d["recommendation"] and "95%" in d["interval"]
    apart = plan_fleet(
        SCENARIO,
        ["h100-sxm", "h200"],
        overrides=short,
        progress=False,
        tp_options=[1],
        seeds=3,
        prices={"h200": 8.00},
    )
    assert apart.ties() == [] and apart.best()["gpu"] == "h100-sxm" and "Tie" not in apart.recommendation()
    assert apart.runner_up()["gpu"] == "h200"
    # Same seeds, same runs: the H100 rows of both plans agree.
    assert apart.best()["usd_per_million_tokens"] == pytest.approx(rows["h100-sxm"]["usd_per_million_tokens"])


def test_every_catalog_gpu_is_a_row_and_one_without_a_price_says_how_to_give_one():
    r = plan_fleet(
        SCENARIO,
        None,
        overrides={"run.duration_s": 10, "workload.arrival.rate_per_s": 5},
        progress=False,
        tp_options=[1],
        max_replicas=1,
    )
    assert sorted(r.table["gpu"]) == sorted(fleetsim.gpu_table()["gpu"])
    row = r.table.set_index("gpu").loc["a100-80gb"]
    assert not row["met"] and "--price a100-80gb=" in row["reason"]


def test_spares_are_priced_on_top_and_a_diurnal_load_can_be_sized_for_its_peak():
    r = plan_fleet(SCENARIO, ["h100-sxm"], overrides={"run.duration_s": 15}, progress=False, tp_options=[1], spares=1)
    row = r.best()
    n = row["replicas"]
    assert row["replicas_with_spares"] == n + 1 and row["gpus_with_spares"] == n + 1
    # RunPod's per-GPU H100 offer (catalog/offers.yaml): $2.69 per GPU-hour, spares included
    assert row["rental_usd_per_hour"] == pytest.approx(2.69 * (n + 1))
    from fleetsim.plan import peak_overrides

    spec = fleetsim.load_scenario(
        SCENARIO,
        {"workload.arrival": {"kind": "diurnal", "mean_rate_per_s": 20.0, "peak_to_mean": 1.5, "period_s": 60.0}},
    )
    # sinusoidal rate: mean x peak_to_mean at the peak = 30 req/s
    assert peak_overrides(spec) == {"workload.arrival": {"kind": "poisson", "rate_per_s": 30.0}}
    assert peak_overrides(fleetsim.load_scenario(SCENARIO)) == {}
