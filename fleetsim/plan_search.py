"""The replica search of one configuration (exponential then bisection to the smallest count
meeting the SLO) and the candidate's evaluation: the found fleet confirmed over seeds, and its
row with one replica fewer beside it. Its own module: the simulations a plan runs live here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fleetsim.catalog import load_gpu
from fleetsim.scenario import load_scenario
from fleetsim.simulation import simulate
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.economics import fleet_economics
from fleetsim.study.replicates import replicate


class ReplicaSearch:
    """Smallest replica count meeting the SLO for one configuration (exponential + bisection)."""

    def __init__(
        self, base: ScenarioSpec, config: dict, max_replicas: int, evaluations: list, note: Callable[[str], None]
    ):
        self.base, self.config, self.max_replicas = base, config, max_replicas
        self.evaluations, self.note = evaluations, note
        self.results: dict[int, dict] = {}
        self.gpu = load_gpu(config["fleet.gpu"])
        self.seed_runs = 0  # runs at other seeds than the scenario's (intervals)

    def replicate(self, replicas: int, seeds: int):
        cache = {self.base.run.seed: self.results[replicas]} if replicas in self.results else {}
        self.seed_runs += seeds - len(cache)
        self.note(f"{self.config['fleet.gpu']} tp={self.config['fleet.tp']}: {replicas} replica(s) x {seeds} seeds")
        reps = replicate(self.spec(replicas), seeds=seeds, cache=cache)
        self.results.setdefault(replicas, reps.summaries[0])
        return reps

    def spec(self, replicas: int) -> ScenarioSpec:
        return load_scenario(self.base, {**self.config, "fleet.replicas": replicas})

    def usd_per_hour(self, replicas: int) -> float:
        """The buyable fleet's cost per hour (whole instances or servers) of a simulated count."""
        c = fleet_economics(self.spec(replicas), self.gpu, [self.results[replicas]])["usd_per_hour"]
        return math.inf if c is None else float(c)

    def evaluate(self, replicas: int) -> dict:
        if replicas not in self.results:
            self.note(f"{self.config['fleet.gpu']} tp={self.config['fleet.tp']}: {replicas} replica(s)")
            spec = load_scenario(self.base, {**self.config, "fleet.replicas": replicas})
            s = simulate(spec).summary
            self.results[replicas] = s
            self.evaluations.append(
                {
                    "gpu": self.config["fleet.gpu"],
                    "tp": self.config["fleet.tp"],
                    "weight_dtype": self.config["weight_dtype"],
                    "key_dtype": self.config["kv_cache.key_dtype"],
                    "value_dtype": self.config["kv_cache.value_dtype"],
                    "replicas": replicas,
                    "seed": s["seed"],
                    "met": s["slo"]["met"],
                    "slo_attainment": s["slo"]["attainment"],
                    "usd_per_hour": s["cost"]["usd_per_hour"],
                    "usd_per_million_tokens": s["cost"]["usd_per_million_tokens"],
                    "ttft_p99_s": s["latency_s"]["ttft"]["p99"],
                    "tpot_p99_s": s["latency_s"]["tpot"]["p99"],
                }
            )
        return self.results[replicas]

    def run(self, lower_bound_usd: Callable[[int], float], best_usd: float) -> tuple[int | None, str]:
        """(smallest replicas meeting the SLO, note). None when none up to max_replicas does, or
        when every fleet that might is dearer than best_usd (then the note says so)."""
        lo, r = 0, 1  # lo: largest count known to miss (0: none simulated)
        while True:
            if lower_bound_usd(r) >= best_usd:
                return None, "dearer than a cheaper configuration before it meets the SLO"
            s = self.evaluate(r)
            if s["slo"]["met"]:
                hi = r
                break
            if self.usd_per_hour(r) >= best_usd:
                return None, "dearer than a cheaper configuration before it meets the SLO"
            lo = r
            if r >= self.max_replicas:
                att = s["slo"]["attainment"]
                return None, (
                    f"SLO missed up to {self.max_replicas} replicas (attainment {att:.2%} at {self.max_replicas})"
                )
            r = min(2 * r, self.max_replicas)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.evaluate(mid)["slo"]["met"]:
                hi = mid
            else:
                lo = mid
        return hi, ""


def _confirm(search: ReplicaSearch, replicas: int, seeds: int) -> tuple[int, Any]:
    """Re-run the found fleet over `seeds` seeds (the search's run is seed 0); while the lower
    bound of attainment's interval misses the target, add a replica (up to max_replicas)."""
    while True:
        reps = search.replicate(replicas, seeds)
        if reps.met_with_confidence() or replicas >= search.max_replicas:
            return replicas, reps
        replicas += 1


def row_from(search: ReplicaSearch, replicas: int, seeds: int, spares: int) -> dict:
    replicas, reps = _confirm(search, replicas, seeds)
    s = reps.summaries[0]
    fewer_reps = None
    if replicas > 1:
        fewer_reps = search.replicate(replicas - 1, seeds)
    econ = fleet_economics(search.spec(replicas), search.gpu, reps.summaries, spares=spares)
    iv = reps.columns()
    fewer_att = fewer_reps.interval("slo_attainment") if fewer_reps else None
    return {
        **econ,
        "met": True,
        "seeds": seeds,
        "met_with_confidence": reps.met_with_confidence(),
        "replicas": replicas,
        "gpus": s["fleet"]["gpus"],
        "slo_attainment": iv["slo_attainment"],
        "slo_attainment_lo": iv["slo_attainment_lo"],
        "slo_attainment_hi": iv["slo_attainment_hi"],
        "ttft_at_percentile_s": iv["ttft_at_percentile_s"],
        "ttft_at_percentile_s_lo": iv["ttft_at_percentile_s_lo"],
        "ttft_at_percentile_s_hi": iv["ttft_at_percentile_s_hi"],
        "tpot_at_percentile_s": iv["tpot_at_percentile_s"],
        "tpot_at_percentile_s_lo": iv["tpot_at_percentile_s_lo"],
        "tpot_at_percentile_s_hi": iv["tpot_at_percentile_s_hi"],
        "replicas_one_fewer": replicas - 1,
        # Zero replicas serve nothing: attainment 0 by definition.
        "slo_attainment_one_fewer": fewer_att.mean if fewer_att else 0.0,
        "slo_attainment_one_fewer_hi": fewer_att.hi if fewer_att else 0.0,
        "met_one_fewer": bool(fewer_reps.met_with_confidence()) if fewer_reps else False,
        "reason": "",
    }
