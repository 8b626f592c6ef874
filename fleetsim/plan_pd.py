"""The cheapest prefill:decode ratio meeting the SLO, for a P/D scenario's pool GPUs and TPs.

For each prefill replica count p = 1, 2, ... the fewest decode replicas d meeting the SLO
(exponential search up from d = 1, or down from the previous p's answer, then bisection): more
prefill replicas never need more decode replicas to meet a TTFT target, so the previous answer
is where the next search starts. A p whose SLO fails on TTFT with the decode side within its
TPOT target is prefill-bound: more decode replicas cannot help, the next p is tried; one that
misses up to max_decode_replicas otherwise is decode-bound and ends the search. The search
stops at max_prefill_replicas, or once the cheapest fleet with p prefill replicas (p x tp_prefill
+ 1 x tp_decode GPUs, each pool at the lowest cost per GPU-hour seen for it) costs at least the
best found.
The answer comes with its evidence: the runs with one decode and one prefill replica fewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.scenario import load_scenario
from fleetsim.simulation import simulate
from fleetsim.spec.scenario import ScenarioSpec

MAX_PREFILL_REPLICAS = 64
MAX_DECODE_REPLICAS = 256


@dataclass
class PdPlanResult:
    scenario: ScenarioSpec
    best: dict | None  # the cheapest (p, d) meeting the SLO, or None
    evidence: list[dict]  # (p, d - 1) and (p - 1, d): one fewer of each misses
    per_prefill: list[dict]  # per p: the fewest d meeting the SLO (or why none)
    evaluations: list[dict] = field(default_factory=list)  # every simulation run

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario.name,
            "best": self.best,
            "evidence": self.evidence,
            "per_prefill": self.per_prefill,
            "evaluations": self.evaluations,
        }

    def table(self) -> pd.DataFrame:
        """Per prefill count: the fewest decode replicas meeting the SLO, its cost and latencies."""
        df = pd.DataFrame(self.per_prefill)
        q = f"{self.scenario.slo.percentile:g}"
        cols = ["prefill_replicas", "decode_replicas", "met", "gpus", "usd_per_hour", "slo_attainment"]
        cols += [f"ttft_p{q}_s", f"tpot_p{q}_s", "note"]
        return df[[c for c in cols if c in df]]

    def recommendation(self) -> str:
        slo = self.scenario.slo
        target = f"TTFT <= {slo.ttft_s:g} s and TPOT <= {slo.tpot_s:g} s for {slo.attainment_target:.0%}"
        b = self.best
        if b is None:
            return f"No P:D ratio meets the SLO ({target}) within the search bounds."
        fewer = "; ".join(f"{e['ratio']}: attainment {e['slo_attainment']:.2%}, met={e['met']}" for e in self.evidence)
        return (
            f"Cheapest P:D: {b['ratio']} ({b['prefill_replicas']} prefill x tp{b['prefill_tp']}, "
            f"{b['decode_replicas']} decode x tp{b['decode_tp']}: {b['gpus']} GPUs) for "
            f"${b['usd_per_hour']:,.2f}/hour, meeting {target} with {b['slo_attainment']:.2%} attainment"
            + (f" (one fewer: {fewer})." if fewer else ".")
        )


class _PdSearch:
    def __init__(self, base: ScenarioSpec, max_decode: int):
        self.base, self.max_decode = base, max_decode
        spec = base.disaggregation
        assert spec is not None
        self.tp_p, self.tp_d = spec.prefill.tp, spec.decode.tp
        self.runs: dict[tuple[int, int], dict] = {}
        self.evaluations: list[dict] = []

    def evaluate(self, p: int, d: int) -> dict:
        if (p, d) not in self.runs:
            spec = load_scenario(self.base, {"disaggregation.prefill.replicas": p, "disaggregation.decode.replicas": d})
            s = simulate(spec).summary
            slo = s["slo"]
            q = f"{slo['percentile']:g}"
            row = {
                "ratio": f"{p}:{d}",
                "prefill_replicas": p,
                "decode_replicas": d,
                "prefill_tp": self.tp_p,
                "decode_tp": self.tp_d,
                "gpus": p * self.tp_p + d * self.tp_d,
                "met": bool(slo["met"]),
                "slo_attainment": slo["attainment"],
                "usd_per_hour": s["cost"]["usd_per_hour"],
                "usd_per_million_tokens": s["cost"]["usd_per_million_tokens"],
                # Each pool's cost per GPU-hour (the summary's groups: the pools), for the cost floor.
                **{f"{g['name']}_usd_per_gpu_hour": g["usd_per_hour"] / g["gpus"] for g in s["groups"]},
                f"ttft_p{q}_s": slo[f"ttft_p{q}_s"],
                f"tpot_p{q}_s": slo[f"tpot_p{q}_s"],
                # The SLO fails on TTFT while the decode side is within its TPOT target: more
                # decode replicas cannot help.
                "prefill_bound": (not slo["met"])
                and (slo[f"tpot_p{q}_s"] or 0.0) <= slo["tpot_s"]
                and (slo[f"ttft_p{q}_s"] is None or slo[f"ttft_p{q}_s"] > slo["ttft_s"]),
            }
            self.runs[(p, d)] = row
            self.evaluations.append(row)
        return self.runs[(p, d)]

    def fewest_decode(self, p: int, start: int) -> tuple[int | None, str]:
        """(fewest d meeting the SLO with p prefill replicas, note)."""
        lo, hi = 0, None  # lo: largest d known to miss
        d = start
        while hi is None:
            row = self.evaluate(p, d)
            if row["met"]:
                hi = d
            elif row["prefill_bound"]:
                return None, f"prefill-bound at {p}:{d} (TTFT misses, TPOT within target)"
            elif d >= self.max_decode:
                return None, f"SLO missed up to {self.max_decode} decode replicas"
            else:
                lo, d = d, min(2 * d, self.max_decode)
        # Known: hi meets. Below the start nothing was run: search (lo, hi) by bisection.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            row = self.evaluate(p, mid)
            if row["met"]:
                hi = mid
            else:
                lo = mid
        return hi, ""


def plan_pd(
    scenario: Any,
    *,
    overrides: Mapping[str, Any] | None = None,
    max_prefill_replicas: int = MAX_PREFILL_REPLICAS,
    max_decode_replicas: int = MAX_DECODE_REPLICAS,
) -> PdPlanResult:
    """The cheapest (prefill replicas, decode replicas) of the scenario's P/D topology meeting its
    SLO at its load, with the runs of one fewer of each as evidence."""
    base = load_scenario(scenario, dict(overrides or {}))
    if base.disaggregation is None:
        raise SpecError("plan --pd: the scenario has no disaggregation section; valid: a P/D scenario")
    for name, v, top in (
        ("max_prefill_replicas", max_prefill_replicas, MAX_PREFILL_REPLICAS),
        ("max_decode_replicas", max_decode_replicas, MAX_DECODE_REPLICAS),
    ):
        if not 1 <= v <= top:
            raise SpecError(f"plan --pd: {name} {v} is not valid; valid: 1 to {top}")
    search = _PdSearch(base, max_decode_replicas)
    best: dict | None = None
    per_prefill: list[dict] = []
    start = 1
    for p in range(1, max_prefill_replicas + 1):
        if best is not None:
            # The cheapest fleet of p prefill replicas: one decode replica, each pool at the lowest
            # cost per GPU-hour seen for it.
            rows = search.evaluations
            floor = p * search.tp_p * min(r["prefill_usd_per_gpu_hour"] for r in rows) + search.tp_d * min(
                r["decode_usd_per_gpu_hour"] for r in rows
            )
            if floor >= best["usd_per_hour"]:
                break
        d, note = search.fewest_decode(p, start)
        if d is None:
            per_prefill.append({"prefill_replicas": p, "decode_replicas": None, "met": False, "note": note})
            if not note.startswith("prefill-bound"):
                break  # decode-bound up to the bound: more prefill replicas cannot help
            continue
        row = search.runs[(p, d)]
        per_prefill.append({**row, "note": ""})
        start = d
        if best is None or row["usd_per_hour"] < best["usd_per_hour"]:
            best = row
        if d == 1 and best is row:
            break  # fewer decode replicas are impossible; more prefill only costs more
    evidence = []
    if best is not None:
        p, d = best["prefill_replicas"], best["decode_replicas"]
        evidence = [search.evaluate(p2, d2) for p2, d2 in ((p, d - 1), (p - 1, d)) if p2 >= 1 and d2 >= 1]
    return PdPlanResult(base, best, evidence, per_prefill, search.evaluations)
