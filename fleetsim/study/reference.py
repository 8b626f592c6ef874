"""The runs a report looks inside: a reference fleet's run and the same fleet at growing load.

The report renders these; it does not simulate (study/ does).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsim.scenario import load_scenario
from fleetsim.simulation import SimulationResult, simulate
from fleetsim.spec.scenario import ScenarioSpec

GROWTH_FACTORS = (1.0, 1.25, 1.5, 2.0)


def load_growth_overrides(spec: ScenarioSpec, factor: float) -> dict | None:
    """Overrides that multiply the offered load by `factor` (None: the arrival kind has no rate)."""
    a = spec.workload.arrival
    if a.kind in ("poisson", "gamma"):
        return {"workload.arrival.rate_per_s": a.rate_per_s * factor}
    if a.kind == "diurnal":
        if a.is_piecewise:
            return {"workload.arrival.rates_per_s": [r * factor for r in a.rates_per_s or ()]}
        return {"workload.arrival.mean_rate_per_s": float(a.mean_rate_per_s or 0.0) * factor}
    if a.kind == "trace":
        return {"workload.arrival.speedup": a.speedup * factor}
    if a.kind == "closed":
        return {"workload.arrival.users": max(1, round(a.users * factor))}
    if a.kind == "offline":
        return {"workload.arrival.requests": max(1, round(a.requests * factor))}
    return None


def offered_rate(spec: ScenarioSpec) -> float | None:
    a = spec.workload.arrival
    if a.kind in ("poisson", "gamma"):
        return a.rate_per_s
    if a.kind == "diurnal":
        rates = tuple(a.rates_per_s or ())
        return (sum(rates) / len(rates)) if a.is_piecewise and rates else a.mean_rate_per_s
    return None


@dataclass
class Reference:
    """The run the report looks inside (timeseries, latency distribution, sensitivity), re-simulated
    at growing load. overrides are relative to the report's scenario (`spec` = scenario + them)."""

    label: str
    overrides: dict
    result: SimulationResult
    growth: list[tuple[float, dict, dict]]  # (factor, overrides, summary)


def reference_runs(
    base: ScenarioSpec, overrides: dict, label: str, result: SimulationResult | None = None
) -> Reference:
    spec = load_scenario(base, overrides) if overrides else base
    if result is None:
        result = simulate(spec)
    growth = [(1.0, dict(overrides), result.summary)]
    for f in GROWTH_FACTORS[1:]:
        g = load_growth_overrides(spec, f)
        if g is None:
            break
        ov = {**overrides, **g}
        growth.append((f, ov, simulate(load_scenario(base, ov)).summary))
    return Reference(label, dict(overrides), result, growth)
