"""Which inputs move $/Mtok most: each input set to the low and high end of its range
(catalog/uncertainty.yaml) with the others at today's value, for the recommended fleet, rented and
owned. Recomputed from the runs' throughput and energy (no re-simulation), except load growth,
which reads the re-simulated growth run."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.economics import fleet_economics


@lru_cache(maxsize=1)
def ranges() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[1] / "catalog" / "uncertainty.yaml").read_text())


def tornado(
    spec: ScenarioSpec, gpu: GpuSpec, summaries: list[dict], growth_summary: dict | None
) -> dict[str, list[tuple[str, float | None, float | None]]]:
    """{'rental': [(input words, $/Mtok at low, at high)], 'owned': [...], 'base': {mode: $/Mtok}}
    sorted by swing, widest first."""
    rg = ranges()
    out: dict = {"base": {}}

    def mtok(s: ScenarioSpec, runs: list[dict], mode: str) -> float | None:
        v = fleet_economics(s, gpu, runs)[f"{mode}_usd_per_million_tokens"]
        return None if v is None else float(v)

    for mode in ("rental", "owned"):
        base = mtok(spec, summaries, mode)
        out["base"][mode] = base
        if base is None:
            out[mode] = []
            continue
        bars: list[tuple[str, float | None, float | None]] = []
        lo_f, hi_f = rg["price_factor"]
        if mode == "rental":
            bars.append((f"rental price x{lo_f:g}-x{hi_f:g}", base * lo_f, base * hi_f))
        else:
            cap = spec.cost.capex_usd_per_gpu or gpu.capex_usd_per_gpu or 0.0
            vals = [
                mtok(
                    spec.model_copy(update={"cost": spec.cost.model_copy(update={"capex_usd_per_gpu": cap * f})}),
                    summaries,
                    mode,
                )
                for f in (lo_f, hi_f)
            ]
            bars.append((f"purchase price x{lo_f:g}-x{hi_f:g}", vals[0], vals[1]))
            e = rg["electricity_usd_per_kwh"]
            vals = [
                mtok(
                    spec.model_copy(update={"cost": spec.cost.model_copy(update={"electricity_usd_per_kwh": x})}),
                    summaries,
                    mode,
                )
                for x in e
            ]
            bars.append((f"electricity ${e[0]:g}-${e[1]:g}/kWh", vals[0], vals[1]))
            p = rg["pue"]
            vals = [
                mtok(spec.model_copy(update={"facility": spec.facility.model_copy(update={"pue": x})}), summaries, mode)
                for x in p
            ]
            bars.append((f"PUE {p[0]:g}-{p[1]:g}", vals[0], vals[1]))
            u = rg["utilization"]
            bars.append((f"utilization {u[1]:.0%}-{u[0]:.0%}", base / u[1], base / u[0]))
        err = rg["calibration_throughput_error"]
        bars.append((f"profile calibration error ±{err:.1%} tokens/s", base / (1 + err), base / (1 - err)))
        if growth_summary is not None:
            g = mtok(spec, [growth_summary], mode)
            bars.append((f"load x{rg['load_growth']:g} (same fleet, re-simulated)", g, base))
        bars.sort(key=lambda b: -abs((b[2] or base) - (b[1] or base)))
        out[mode] = bars
    return out
