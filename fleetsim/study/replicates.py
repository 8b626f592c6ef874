"""One fleet run over R seeds: the headline figures per seed and their confidence intervals.

    reps = replicate("scenarios/h100_llama3.yaml", {"fleet.replicas": 2}, seeds=5)
    reps.interval("slo_attainment")       # Interval(mean, lo, hi, n=5, ...)
    reps.frame                            # one row per seed

Seed i runs with run.seed = the scenario's seed + i, so seeds=1 is the scenario's own run and a
larger R only adds runs. DEFAULT_SEEDS = 5: measured on the shipped h100_llama3 scenario (300 s,
~6,000 requests a run; fleetsim plan, 2026-12-01) it gives 1 x H100 $0.02983/Mtok with a 95%
interval of $0.02948-0.03018 (+-1.2%), and H200 $0.03982 (0.03935-0.04029): options more than
~2.5% apart separate, closer ones are called ties (see intervals.py for which interval and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.scenario import load_scenario
from fleetsim.simulation import simulate
from fleetsim.study.intervals import DEFAULT_CONFIDENCE, Interval, t_interval, wilson_interval

DEFAULT_SEEDS = 5
MAX_SEEDS = 1000

# The figures every replicated run reports with an interval: column -> (summary path, unit words).
HEADLINE = {
    "slo_attainment": "fraction of requests within both SLO targets",
    "ttft_at_percentile_s": "TTFT at the SLO percentile, s",
    "tpot_at_percentile_s": "TPOT at the SLO percentile, s",
    "usd_per_million_tokens": "$ per million tokens (scenario's cost mode)",
    "it_kw": "mean IT power, kW",
    "gpu_peak_w": "peak GPU power, W",
    "tokens_per_s": "input + output tokens per second",
}


def headline(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of one run's summary (None where the run has none)."""
    slo = summary["slo"]
    q = slo["percentile"]
    thr = summary["throughput"]
    return {
        "seed": summary["seed"],
        "slo_attainment": slo["attainment"],
        "ttft_at_percentile_s": slo.get(f"ttft_p{q:g}_s"),
        "tpot_at_percentile_s": slo.get(f"tpot_p{q:g}_s"),
        "usd_per_million_tokens": summary["cost"]["usd_per_million_tokens"],
        "it_kw": summary["power"]["it_mean_kw"],
        "gpu_peak_w": summary["power"]["gpu_peak_w"],
        "tokens_per_s": thr["output_tokens_per_s"] + thr["input_tokens_per_s"],
        "met": bool(slo["met"]),
    }


@dataclass
class Replicates:
    """R runs of one fleet that differ only in the seed."""

    overrides: dict
    summaries: list[dict]
    confidence: float = DEFAULT_CONFIDENCE
    frame: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.frame = pd.DataFrame([headline(s) for s in self.summaries])

    @property
    def seeds(self) -> int:
        return len(self.summaries)

    def interval(self, column: str) -> Interval | None:
        """Student-t interval over seeds of a headline column (None: no finite value). Attainment
        that every seed gives alike (e.g. 100% each time) has no spread to estimate: its interval
        is then Wilson's over every judged request of every seed, which says how many it rests on."""
        vals = [v for v in self.frame[column].tolist() if v is not None and v == v]
        if not vals:
            return None
        iv = t_interval(vals, self.confidence)
        if column == "slo_attainment" and iv.n > 1 and iv.hi == iv.lo:
            n = sum(judged_requests(s) for s in self.summaries)
            ok = sum(round(s["slo"]["attainment"] * judged_requests(s)) for s in self.summaries)
            if n > 0:
                w = wilson_interval(ok, n, self.confidence)
                return Interval(iv.mean, w.lo, w.hi, iv.n, self.confidence, "wilson over requests (seeds agree)")
        return iv

    def met_with_confidence(self) -> bool:
        """The SLO is met when the lower bound of attainment's interval reaches the target."""
        att = self.interval("slo_attainment")
        target = self.summaries[0]["slo"]["attainment_target"]
        return att is not None and att.lo >= target

    def columns(self) -> dict[str, Any]:
        """Flat interval columns: <figure>, <figure>_lo, <figure>_hi for every headline figure, and seeds."""
        out: dict[str, Any] = {"seeds": self.seeds}
        for c in HEADLINE:
            iv = self.interval(c)
            out[c] = iv.mean if iv else None
            out[f"{c}_lo"] = iv.lo if iv else None
            out[f"{c}_hi"] = iv.hi if iv else None
        return out


def judged_requests(summary: Mapping[str, Any]) -> int:
    """Requests SLO attainment was judged over: arrivals in the steady-state window (offered rate x
    window length), or every arrival when the run has no window."""
    w, thr = summary["window"], summary["throughput"]
    if w.get("basis") == "steady_state" and thr.get("offered_requests_per_s") is not None:
        return round(thr["offered_requests_per_s"] * (w["end_s"] - w["start_s"]))
    return int(summary["requests"]["arrived"])


def check_seeds(seeds: int) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise SpecError(f"seeds: {seeds!r} is not valid; give a whole number of seeds from 1 to {MAX_SEEDS}")
    return seeds


def replicate(
    scenario: Any,
    overrides: Mapping[str, Any] | None = None,
    *,
    seeds: int = DEFAULT_SEEDS,
    confidence: float = DEFAULT_CONFIDENCE,
    cache: dict | None = None,
) -> Replicates:
    """Run `scenario` + `overrides` at seeds base, base+1, ..., base+R-1. `cache` (seed -> summary)
    holds runs already made (the planner's search run is seed 0) so they are not repeated."""
    check_seeds(seeds)
    spec = load_scenario(scenario, dict(overrides or {}))
    base_seed = spec.run.seed
    summaries = []
    for i in range(seeds):
        seed = base_seed + i
        if cache is not None and seed in cache:
            summaries.append(cache[seed])
            continue
        s = simulate(load_scenario(spec, {"run.seed": seed})).summary
        if cache is not None:
            cache[seed] = s
        summaries.append(s)
    return Replicates(dict(overrides or {}), summaries, confidence)
