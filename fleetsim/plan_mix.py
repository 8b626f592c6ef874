"""`plan --mix`: the cheapest fleet of two GPU types together that meets the SLO, beside the best
one-type fleet.

1. Each type's one-type plan (fleetsim.plan.plan_fleet: fewest replicas over its tp options).
2. For each count a of the first type from 0 up to its one-type answer, the fewest replicas b of
   the second type (at its plan's tp) for which the mixed fleet, a + b replicas behind the
   capacity_weighted router, meets the SLO: bisection over b in [0, b of the previous a] (more of
   the first type never needs more of the second). a = 0 and a = the first type's answer are the
   one-type fleets themselves, so they are candidates and the mix is never dearer than the best
   one-type fleet.
3. Every candidate is simulated as a mixed fleet (fleet.groups) and priced by that simulation's
   $/hour (rental: GPUs x $/GPU-hour per type, or owned TCO), one basis for all.
The SLO is met on the scenario's seed (as the plan's search); `seeds` > 1 asks every seed to meet it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fleetsim.catalog import load_gpu
from fleetsim.errors import SpecError
from fleetsim.plan import plan_fleet
from fleetsim.scenario import load_scenario
from fleetsim.simulation import simulate
from fleetsim.spec.scenario import FleetSpec, ScenarioSpec

#: The one-type fields a mixed fleet leaves at their defaults (fleet.groups replaces them).
_ONE_TYPE_DEFAULTS = {f"fleet.{k}": FleetSpec.model_fields[k].default for k in ("gpu", "tp", "replicas", "profile")}


@dataclass
class MixPlan:
    scenario: ScenarioSpec
    gpus: tuple[str, str]
    tps: tuple[int, int]
    singles: pd.DataFrame  # the one-type plans (plan_fleet's table)
    candidates: pd.DataFrame  # every mix simulated: a, b, met, attainment, usd_per_hour
    best: dict | None  # the cheapest mix meeting the SLO (a one-type fleet when none is cheaper)
    best_single: dict | None  # the cheapest one-type fleet among the candidates
    notes: list[str] = field(default_factory=list)
    prices: dict[str, float] = field(default_factory=dict)  # $/GPU-hour given for a type (--price)

    @property
    def mix_beats_single(self) -> bool:
        b, s = self.best, self.best_single
        return bool(b and s and b["usd_per_hour"] < s["usd_per_hour"] and b["a"] and b["b"])

    def sentence(self) -> str:
        """One sentence: whether a mix beats the best single type, and by how much."""
        (ga, gb), b, s = self.gpus, self.best, self.best_single
        if b is None:
            return f"No fleet of {ga} and {gb} met the SLO within the one-type plans' counts."
        if s is None:
            return f"The cheapest fleet is {_fleet(self, b)} at ${b['usd_per_hour']:,.2f}/hour; no one-type fleet met the SLO."
        if self.mix_beats_single:
            saved = 1 - b["usd_per_hour"] / s["usd_per_hour"]
            return (
                f"A mix beats one type: {_fleet(self, b)} at ${b['usd_per_hour']:,.2f}/hour, {saved:.1%} less than "
                f"the best one-type fleet ({_fleet(self, s)} at ${s['usd_per_hour']:,.2f}/hour)."
            )
        return (
            f"No mix beats one type: the best one-type fleet ({_fleet(self, s)} at ${s['usd_per_hour']:,.2f}/hour) "
            "is the cheapest meeting the SLO."
        )

    def to_dict(self) -> dict:
        return {
            "gpus": list(self.gpus),
            "tp": list(self.tps),
            "best": self.best,
            "best_single": self.best_single,
            "mix_beats_single": self.mix_beats_single,
            "sentence": self.sentence(),
            "candidates": self.candidates.to_dict(orient="records"),
            "notes": self.notes,
        }

    def groups(self, row: Mapping) -> list[dict]:
        """fleet.groups of a candidate row (the types with replicas)."""
        return mix_groups(self.gpus, self.tps, int(row["a"]), int(row["b"]), self.prices)


def _fleet(plan: MixPlan, row: Mapping) -> str:
    parts = [
        f"{n} x {g}" + (f" (tp {tp})" if tp > 1 else "")
        for n, g, tp in zip((row["a"], row["b"]), plan.gpus, plan.tps)
        if n
    ]
    return " + ".join(parts)


def mix_groups(gpus: tuple[str, str], tps: tuple[int, int], a: int, b: int, prices: Mapping[str, float]) -> list[dict]:
    """fleet.groups of a mix: a of the first type, b of the second (a type with none left out)."""
    out = []
    for n, gpu, tp in zip((a, b), gpus, tps):
        if not n:
            continue
        g: dict[str, Any] = {"name": gpu, "gpu": gpu, "tp": tp, "replicas": n}
        if load_gpu(gpu).name in prices:
            g["rental_usd_per_gpu_hour"] = prices[load_gpu(gpu).name]
        out.append(g)
    return out


def plan_mix(
    scenario: Any,
    gpus: Iterable[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    tp_options: Iterable[int] | None = None,
    seeds: int = 1,
    prices: Mapping[str, float] | None = None,
    max_replicas: int = 256,
) -> MixPlan:
    """The cheapest two-type fleet meeting the SLO, and the best one-type fleet (module docstring)."""
    names = list(dict.fromkeys(gpus))
    if len(names) != 2:
        raise SpecError(f"plan --mix: --gpus names {len(names)} GPU type(s); valid: exactly two (e.g. h100-sxm,l40s)")
    prices = {load_gpu(g).name: float(v) for g, v in (prices or {}).items()}
    # A mixed scenario's own group prices stand unless a price is given for that type.
    for group in load_scenario(scenario, dict(overrides or {})).fleet.groups or ():
        if group.rental_usd_per_gpu_hour is not None:
            prices.setdefault(load_gpu(group.gpu).name, float(group.rental_usd_per_gpu_hour))
    # A scenario that is itself a mixed fleet is planned from its workload and SLO alone.
    one_type = {**dict(overrides or {}), "fleet.groups": None}
    base = load_scenario(scenario, one_type)
    singles = plan_fleet(
        base,
        names,
        progress=False,
        tp_options=tp_options,
        seeds=seeds,
        prices=prices,
        max_replicas=max_replicas,
    ).table
    rows = {str(r["gpu"]): r for r in singles.to_dict(orient="records")}
    answer, tps, notes = [], [], []
    for g in names:
        r = rows.get(g, {})
        if r.get("met"):
            answer.append(int(r["replicas"]))
            tps.append(int(r["tp"]))
        else:
            answer.append(0)
            tps.append(base.fleet.tp)
            notes.append(f"{g}: no one-type fleet met the SLO ({r.get('reason') or 'no row'})")
    ga, gb = names
    pair = (ga, gb)
    tp_pair = (tps[0], tps[1])
    results: dict[tuple[int, int], dict] = {}

    def evaluate(a: int, b: int) -> dict:
        if (a, b) not in results:
            met, att, usd = True, math.inf, 0.0
            for k in range(seeds):
                spec = load_scenario(
                    base,
                    {
                        **_ONE_TYPE_DEFAULTS,
                        "fleet.router": "capacity_weighted",
                        "fleet.groups": mix_groups(pair, tp_pair, a, b, prices),
                        "run.seed": base.run.seed + k,
                    },
                )
                s = simulate(spec).summary
                met = met and bool(s["slo"]["met"])
                att = min(att, float(s["slo"]["attainment"]))
                usd = float(s["cost"]["usd_per_hour"])
            results[(a, b)] = {"a": a, "b": b, "met": met, "slo_attainment": att, "usd_per_hour": usd}
        return results[(a, b)]

    n_a, n_b = answer
    hi = n_b
    for a, b in ((0, n_b), (n_a, 0)):  # the one-type fleets: always candidates
        if a + b:
            evaluate(a, b)
    for a in range(1, n_a):
        lo = 0
        while lo < hi:  # the fewest b in [lo, hi] meeting the SLO with a of the first type
            mid = (lo + hi) // 2
            if evaluate(a, mid)["met"]:
                hi = mid
            else:
                lo = mid + 1
        if hi:
            evaluate(a, hi)
    candidates = pd.DataFrame(
        sorted(results.values(), key=lambda r: (r["a"], r["b"])),
        columns=["a", "b", "met", "slo_attainment", "usd_per_hour"],
    )
    met = [r for r in results.values() if r["met"]]
    key = lambda r: (r["usd_per_hour"], r["a"] + r["b"], -r["a"])  # noqa: E731
    best = min(met, key=key) if met else None
    single = [r for r in met if (r["a"] == 0) != (r["b"] == 0)]
    best_single = min(single, key=key) if single else None
    return MixPlan(base, pair, tp_pair, singles, candidates, best, best_single, notes, prices)
