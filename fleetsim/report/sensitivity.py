"""The report's sensitivity tables: cost per million tokens as one price or efficiency assumption
moves (recomputed from a run's energy and throughput, no re-simulation), and the load-growth table
(re-simulated). Its own module: the what-if arithmetic is apart from how a report is assembled.
"""

from __future__ import annotations

import json
import math

from fleetsim.catalog import load_gpu
from fleetsim.cost import hourly_cost_usd, usd_per_million_tokens
from fleetsim.errors import FleetsimError
from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.spec.economics import CostSpec
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.reference import Reference, offered_rate
from fleetsim.sweep import flatten_summary

ELECTRICITY_USD_PER_KWH = (0.04, 0.06, 0.10, 0.15, 0.20)
PUES = (1.1, 1.2, 1.4, 1.56, 1.8)
RENTAL_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5)


def sensitivity_tables(spec: ScenarioSpec, summary: dict) -> tuple[list[Table], list]:
    """Cost per million tokens recomputed (no re-simulation) from a run's energy and throughput
    while one price or efficiency assumption moves. Returns tables and the plot panels."""
    gpu = load_gpu(spec.fleet.gpu)
    n = int(summary["fleet"]["gpus"])
    it_kw = float(summary["power"]["it_mean_kw"])
    tps = float(summary["throughput"]["output_tokens_per_s"]) + float(summary["throughput"]["input_tokens_per_s"])
    overhead = spec.facility.server_overhead_w

    def per_mtok(cost: CostSpec, pue: float) -> tuple[float | None, float | None]:
        try:
            usd_h = hourly_cost_usd(cost, gpu, n, it_kw, pue, server_overhead_w=overhead).usd_per_hour
        except FleetsimError:
            return None, None
        m = usd_per_million_tokens(usd_h, tps)
        return usd_h, (m if math.isfinite(m) else None)

    owned = spec.cost.model_copy(update={"mode": "owned"})
    mode = spec.cost.mode
    pue0 = spec.facility.pue
    tables, panels = [], []

    # electricity price
    e0 = spec.cost.electricity_usd_per_kwh
    t = Table(
        "t-sens-electricity",
        f"Electricity price (PUE {pue0:g}); rental prices include energy, so only the owned (TCO) cost moves",
        "derived:electricity",
        [
            ("electricity_usd_per_kwh", "$/kWh"),
            ("usd_per_million_tokens", f"$/Mtok ({mode})"),
            ("owned_usd_per_hour", "owned $/hour"),
            ("owned_usd_per_million_tokens", "owned $/Mtok"),
        ],
    )
    xs, ys_mode, ys_owned = [], [], []
    for e in sorted({*ELECTRICITY_USD_PER_KWH, e0}):
        _, m = per_mtok(spec.cost.model_copy(update={"electricity_usd_per_kwh": e}), pue0)
        oh, om = per_mtok(owned.model_copy(update={"electricity_usd_per_kwh": e}), pue0)
        t.rows.append(
            Row(
                repr(e),
                [
                    cell("electricity_usd_per_kwh", e),
                    cell("usd_per_million_tokens", m),
                    cell("owned_usd_per_hour", oh),
                    cell("owned_usd_per_million_tokens", om),
                ],
                css="base" if e == e0 else "",
            )
        )
        xs.append(e)
        ys_mode.append(m)
        ys_owned.append(om)
    tables.append(t)
    panels.append(("electricity price", "$/kWh", xs, {mode: ys_mode, "owned (TCO)": ys_owned}))

    # PUE
    t = Table(
        "t-sens-pue",
        f"Power usage effectiveness (electricity ${e0:g}/kWh)",
        "derived:pue",
        [
            ("pue", "PUE"),
            ("facility_kw", "facility kW"),
            ("usd_per_million_tokens", f"$/Mtok ({mode})"),
            ("owned_usd_per_hour", "owned $/hour"),
            ("owned_usd_per_million_tokens", "owned $/Mtok"),
        ],
    )
    xs, ys_mode, ys_owned = [], [], []
    for p in sorted({*PUES, pue0}):
        _, m = per_mtok(spec.cost, p)
        oh, om = per_mtok(owned, p)
        t.rows.append(
            Row(
                repr(p),
                [
                    cell("pue", p),
                    cell("facility_kw", it_kw * p),
                    cell("usd_per_million_tokens", m),
                    cell("owned_usd_per_hour", oh),
                    cell("owned_usd_per_million_tokens", om),
                ],
                css="base" if p == pue0 else "",
            )
        )
        xs.append(p)
        ys_mode.append(m)
        ys_owned.append(om)
    tables.append(t)
    panels.append(("PUE", "facility power / IT power", xs, {mode: ys_mode, "owned (TCO)": ys_owned}))

    # rental price
    price0 = (
        spec.cost.rental_usd_per_gpu_hour
        if spec.cost.rental_usd_per_gpu_hour is not None
        else gpu.rental_usd_per_gpu_hour
    )
    t = Table(
        "t-sens-rental",
        f"Rental price per GPU-hour ({n} GPUs)",
        "derived:rental",
        [
            ("rental_usd_per_gpu_hour", "$/GPU-hour"),
            ("usd_per_hour", "$/hour"),
            ("usd_per_million_tokens", "$/Mtok (rental)"),
        ],
    )
    xs, ys = [], []
    if price0 is not None:
        rental = spec.cost.model_copy(update={"mode": "rental"})
        for f in RENTAL_FACTORS:
            price = price0 * f
            h, m = per_mtok(rental.model_copy(update={"rental_usd_per_gpu_hour": price}), pue0)
            t.rows.append(
                Row(
                    repr(price),
                    [
                        cell("rental_usd_per_gpu_hour", price),
                        cell("usd_per_hour", h),
                        cell("usd_per_million_tokens", m),
                    ],
                    css="base" if f == 1.0 else "",
                )
            )
            xs.append(price)
            ys.append(m)
    else:
        t.note = f"no rental price for {gpu.name} in the catalog or the scenario"
    tables.append(t)
    panels.append(("rental price", "$ per GPU-hour", xs, {"rental": ys}))
    return tables, panels


def growth_table(ref: Reference, spec: ScenarioSpec) -> tuple[Table, tuple]:
    t = Table(
        "t-sens-load",
        "Load growth: the same fleet re-simulated at a higher arrival rate",
        "growth",
        [
            ("factor", "load x"),
            ("offered_rate_per_s", "offered req/s"),
            ("slo.met", "SLO met"),
            ("slo.attainment", "attainment"),
            ("latency_s.ttft.p99", "TTFT p99 (s)"),
            ("latency_s.tpot.p99", "TPOT p99 (s)"),
            ("throughput.output_tokens_per_s", "output tok/s"),
            ("power.it_mean_kw", "IT kW"),
            ("cost.usd_per_million_tokens", "$/Mtok"),
        ],
    )
    xs, ys = [], []
    base_rate = offered_rate(spec)
    for f, ov, s in ref.growth:
        flat = flatten_summary(s)
        rate = None if base_rate is None else base_rate * f
        cells = [Cell(f"{f:g}x", "factor"), cell("offered_rate_per_s", rate)]
        for col, _ in t.columns[2:]:
            cells.append(cell(col, flat.get(col), "pct" if col == "slo.attainment" else "num"))
        t.rows.append(Row(f"{f:g}", cells, overrides=json.dumps(ov, sort_keys=True), css="base" if f == 1.0 else ""))
        xs.append(f)
        ys.append(flat.get("cost.usd_per_million_tokens"))
    if len(ref.growth) == 1:
        t.note = "the arrival process has no rate to scale"
    return t, ("load growth (re-simulated)", "load (x today)", xs, {"same fleet": ys})
