"""The procurement study a report leads with: right-size the fleet over the scenario's GPU and the
catalog's comparable GPUs (plan over R seeds), the scenario's own fleet as written for contrast,
rent vs own of every option, and the runs the report looks inside. Data only; report/ renders it.

    study = procurement_study("scenarios/h100_llama3.yaml", gpus=["h100-sxm", "h200"], seeds=5)
    study.best, study.runner_up, study.margin, study.as_written
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetsim.catalog import gpu_names, load_gpu
from fleetsim.plan import PlanResult, plan_fleet
from fleetsim.scenario import load_scenario
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.economics import fleet_economics
from fleetsim.study.intervals import t_interval
from fleetsim.study.reference import Reference, reference_runs
from fleetsim.study.replicates import DEFAULT_SEEDS, replicate
from fleetsim.study.sources import rental_offers
from fleetsim.study.tornado import ranges, tornado


def comparable_gpus(spec: ScenarioSpec, prices: Mapping[str, float] | None = None) -> list[str]:
    """The scenario's GPU first, then every catalog GPU with a price in the scenario's cost mode
    (a rental offer or --price for rental, a purchase price for owned)."""
    prices = dict(prices or {})
    out = [load_gpu(spec.fleet.gpu).name]
    for name in gpu_names():
        g = load_gpu(name)
        if spec.cost.mode == "rental":
            priced = name in prices or bool(rental_offers(g, spec.cost.rental_usd_per_gpu_hour))
        else:
            priced = spec.cost.capex_usd_per_gpu is not None or g.capex_usd_per_gpu is not None
        if priced and name not in out:
            out.append(name)
    return out


@dataclass
class ProcurementStudy:
    scenario: ScenarioSpec  # the scenario + overrides the study ran
    overrides: dict
    plan: PlanResult
    as_written: dict  # the scenario's own fleet over the same seeds: interval and economics columns
    reference: Reference  # the recommended fleet (or the scenario's, if nothing met) and its growth runs
    seeds: int
    tornado: dict  # study.tornado.tornado of the recommended fleet ({} when nothing met)
    as_written_summary: dict | None = None  # the scenario's own fleet at its seed (run.seed): its bill
    as_written_overrides: dict | None = None  # relative to `scenario`: the price given for its GPU, if any

    @property
    def best(self) -> dict | None:
        return self.plan.best()

    @property
    def runner_up(self) -> dict | None:
        return self.plan.runner_up()

    @property
    def margin(self) -> dict | None:
        """Runner-up minus best, in $/Mtok and as a fraction of the best; tie when the intervals overlap."""
        b, r = self.best, self.runner_up
        if b is None or r is None:
            return None
        d = r["usd_per_million_tokens"] - b["usd_per_million_tokens"]
        out = {
            "usd_per_million_tokens": d,
            "fraction": d / b["usd_per_million_tokens"] if b["usd_per_million_tokens"] else None,
            "tie": bool(r.get("tie_with_best")),
            "paired_lo": None,
            "paired_hi": None,
        }
        # Both options ran on the same seeds (the same arrivals and request sizes): the per-seed
        # difference has a much tighter interval than the two intervals side by side.
        xs, ys = b.get("usd_per_million_tokens_by_seed"), r.get("usd_per_million_tokens_by_seed")
        if xs and ys and len(xs) == len(ys) and len(xs) > 1:
            iv = t_interval([y - x for x, y in zip(xs, ys)])
            out["paired_lo"], out["paired_hi"] = iv.lo, iv.hi
        return out


def procurement_study(
    scenario: Any,
    overrides: Mapping[str, Any] | None = None,
    *,
    gpus: Iterable[str] | None = None,
    seeds: int = DEFAULT_SEEDS,
    prices: Mapping[str, float] | None = None,
    spares: int = 0,
    size_for_peak: bool = False,
    tp_options: Iterable[int] | None = None,
    max_replicas: int = 256,
    progress: bool = False,
) -> ProcurementStudy:
    overrides = dict(overrides or {})
    base = load_scenario(scenario, overrides)
    gpu_list = list(gpus) if gpus is not None else comparable_gpus(base, prices)
    plan = plan_fleet(
        base,
        gpu_list,
        progress=progress,
        tp_options=tp_options,
        max_replicas=max_replicas,
        seeds=seeds,
        prices=prices,
        spares=spares,
        size_for_peak=size_for_peak,
    )
    price = (prices or {}).get(load_gpu(base.fleet.gpu).name)
    own_ov = {} if price is None else {"cost.rental_usd_per_gpu_hour": price}
    own_spec = load_scenario(base, own_ov)
    reps = replicate(own_spec, seeds=seeds)
    as_written = {
        **fleet_economics(own_spec, load_gpu(own_spec.fleet.gpu), reps.summaries),
        **reps.columns(),
        "gpu": own_spec.fleet.gpu,
        "tp": own_spec.fleet.tp,
        "replicas": own_spec.fleet.replicas,
        "gpus": own_spec.fleet.replicas * own_spec.fleet.gpus_per_replica,
        "met_with_confidence": reps.met_with_confidence(),
    }
    best = plan.best()
    if best is not None:
        ov = {k: v for k, v in plan.fleet_overrides(best).items() if k not in plan.overrides}
        if price is not None or best["gpu"] in (prices or {}):
            ov["cost.rental_usd_per_gpu_hour"] = (prices or {})[best["gpu"]]
        spec = load_scenario(base, ov)
        f = spec.fleet
        label = f"{f.replicas} × {f.gpu} replica{'s' if f.replicas != 1 else ''} (tp={f.tp}, {f.replicas * f.tp} GPUs)"
        ref = reference_runs(base, ov, label)
        growth = next((g for fct, _, g in ref.growth if fct == ranges()["load_growth"]), None)
        bars = tornado(spec, load_gpu(spec.fleet.gpu), [ref.result.summary], growth)
    else:
        bars = {}
        f = base.fleet
        ref = reference_runs(base, own_ov, f"{f.replicas} × {f.gpu} (the scenario's fleet)")
    return ProcurementStudy(base, overrides, plan, as_written, ref, seeds, bars, reps.summaries[0], own_ov)
