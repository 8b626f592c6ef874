"""The report's lead for a scenario: the right-sized recommendation, the GPU comparison with
intervals, rent vs own side by side, the facility on peak power, and the one-table slide summary.
Rendering only: everything comes from a ProcurementStudy (fleetsim.study.procurement)."""

from __future__ import annotations

from typing import Any

from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.study.procurement import ProcurementStudy

OPTION_COLS = (
    ("gpu", "GPU", "text"),
    ("rank", "rank", "int"),
    ("tp", "tp", "int"),
    ("replicas", "replicas", "int"),
    ("gpus", "GPUs", "int"),
    ("servers", "servers", "num"),
    ("usd_per_million_tokens", "$/Mtok", "num"),
    ("usd_per_million_tokens_lo", "$/Mtok 95% low", "num"),
    ("usd_per_million_tokens_hi", "$/Mtok 95% high", "num"),
    ("slo_attainment", "attainment", "pct"),
    ("slo_attainment_lo", "attainment 95% low", "pct"),
    ("ttft_at_percentile_s", "TTFT at SLO pct (s)", "num"),
    ("tpot_at_percentile_s", "TPOT at SLO pct (s)", "num"),
    ("slo_attainment_one_fewer", "one fewer: attainment", "pct"),
)
RENT_OWN_COLS = (
    ("gpu", "GPU", "text"),
    ("rental_provider", "rent from", "text"),
    ("rental_instances", "instances", "int"),
    ("rental_gpus_per_instance", "GPUs per instance", "int"),
    ("rental_usd_per_hour", "rent $/hour", "num"),
    ("rental_usd_per_million_tokens", "rent $/Mtok", "num"),
    ("rental_usd_per_million_tokens_lo", "rent 95% low", "num"),
    ("rental_usd_per_million_tokens_hi", "rent 95% high", "num"),
    ("servers", "own: servers", "num"),
    ("owned_billed_gpus", "own: GPUs bought", "int"),
    ("owned_capex_usd", "own: capex $", "num"),
    ("owned_usd_per_hour", "own $/hour (TCO)", "num"),
    ("owned_usd_per_million_tokens", "own $/Mtok", "num"),
    ("owned_usd_per_million_tokens_lo", "own 95% low", "num"),
    ("owned_usd_per_million_tokens_hi", "own 95% high", "num"),
    ("break_even_utilization", "break-even utilization", "pct"),
    ("break_even_months", "break-even horizon (months)", "num"),
)
FACILITY_COLS = (
    ("gpu", "GPU", "text"),
    ("it_kw", "IT kW (mean)", "num"),
    ("it_peak_kw", "IT kW (peak)", "num"),
    ("facility_peak_kw", "facility kW (peak)", "num"),
    ("cooling_tons", "cooling tons (peak)", "num"),
    ("cooling_tons_at_mean", "tons at mean", "num"),
    ("cooling_class", "cooling", "text"),
    ("racks", "racks", "int"),
    ("water_l_per_h", "water L/h", "num"),
    ("carbon_g_per_million_tokens", "g CO2/Mtok", "num"),
    ("tokens_per_s_per_mw", "tokens/s per MW", "num"),
    ("rack_warning", "warning", "note"),
)


def _money(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"${x:,.{digits}f}"


def _ci(r: dict, col: str, digits: int = 4) -> str:
    lo, hi = r.get(f"{col}_lo"), r.get(f"{col}_hi")
    if lo is None or hi is None or (r.get("seeds") or 1) < 2:
        return ""
    return f" (95% CI {_money(lo, digits)}–{_money(hi, digits)})"


def _paired(m: dict) -> str:
    if m.get("paired_lo") is None:
        return ""
    return f" (same seeds, paired 95% CI of the difference {_money(m['paired_lo'])}–{_money(m['paired_hi'])}/Mtok)"


def _lower_bound(r: dict) -> str:
    if (r.get("seeds") or 1) < 2 or r.get("slo_attainment_lo") is None:
        return ""
    return f" (95% lower bound {r['slo_attainment_lo']:.2%}, {r['seeds']} seeds)"


def _fleet_words(r: dict) -> str:
    n, g = int(r["gpus"]), r["gpu"]
    servers = float(r.get("servers") or 0)
    if 0 < servers < 1 or not servers.is_integer():
        return f"{n} × {g} ({servers:.3g} of a rack-scale system)"
    return f"{n} × {g} (in {servers:g} server{'s' if servers != 1 else ''})"


def recommendation(study: ProcurementStudy) -> tuple[str, str]:
    """(verdict css, the lead sentence(s))."""
    b, runner, m, mine = study.best, study.runner_up, study.margin, study.as_written
    spec = study.scenario
    if b is None:
        why = "; ".join(f"{r.gpu}: {r.reason}" for r in study.plan.table.itertuples())
        return "missed", f"No GPU type compared meets the SLO ({study.plan.slo_text()}): {why}."
    verb = "Rent" if spec.cost.mode == "rental" else "Buy"
    text = (
        f"{verb} {_fleet_words(b)}, at {_money(b['usd_per_million_tokens'])}/Mtok{_ci(b, 'usd_per_million_tokens')}, "
        f"{b['it_kw']:,.1f} kW IT ({b['it_peak_kw']:,.1f} kW peak), {b['cooling_tons']:,.2f} tons of cooling (peak)"
        f" — meeting the SLO with {b['slo_attainment']:.2%} attainment"
        f"{_lower_bound(b)}."
    )
    if b.get("rental_usd_per_million_tokens") is not None and b.get("owned_usd_per_million_tokens") is not None:
        text += (
            f" Rent {_money(b['rental_usd_per_million_tokens'])}/Mtok vs own "
            f"{_money(b['owned_usd_per_million_tokens'])}/Mtok"
        )
        u, months = b.get("break_even_utilization"), b.get("break_even_months")
        if u is None:
            text += "; renting is cheaper at any utilization."
        elif u > 1:
            text += f"; owning would need {u:.0%} utilization (more than all hours): rent."
        else:
            text += f"; owning pays above {u:.0%} utilization" + (
                f", after {months:,.0f} months of continuous use." if months is not None else "."
            )
    if runner is not None and m is not None:
        text += (
            f" Runner-up: {_fleet_words(runner)} at {_money(runner['usd_per_million_tokens'])}/Mtok"
            f"{_ci(runner, 'usd_per_million_tokens')}, {m['fraction']:+.1%}{_paired(m)} "
            + ("— a tie within the intervals (noise, not a difference)." if m["tie"] else "— outside the intervals.")
        )
    fewer = mine["gpus"] - int(b["gpus"])
    if mine["gpu"] == b["gpu"] and fewer > 0:
        text += f" The scenario's own {mine['gpus']} × {mine['gpu']} is {fewer} GPU{'s' if fewer != 1 else ''} more than needed."
    return "met", text


def _rows(study: ProcurementStudy) -> list[dict]:
    return [r for r in study.plan.to_dict()["rows"]]


def options_table(study: ProcurementStudy) -> Table:
    cols = [(c, h) for c, h, _ in OPTION_COLS] + [("status", "status")]
    t = Table(
        "t-options-gpu",
        f"GPU types compared (each its cheapest fleet meeting the SLO; 95% Student-t over {study.seeds} seeds)",
        "plan",
        cols,
    )
    best = study.best
    for r in _rows(study):
        if r["met"]:
            status = Cell("tie with the best" if r.get("tie_with_best") and r.get("rank") != 1 else "", "status")
            cells = [cell(c, r.get(c), k) for c, _, k in OPTION_COLS] + [status]
            t.rows.append(Row(r["gpu"], cells, css="best" if best and r["gpu"] == best["gpu"] else ""))
        else:  # never simulated, or no fleet met the SLO: the reason, not a red "no"
            simulated = (r.get("simulations") or 0) > 0
            word = "SLO missed: " if simulated else "not simulated: "
            cells = [cell("gpu", r["gpu"], "text")] + [Cell("", c, css="na") for c, _, _ in OPTION_COLS[1:]]
            cells.append(Cell(word + str(r.get("reason") or ""), "status", css="src"))
            t.rows.append(Row(r["gpu"], cells))
    t.note = (
        "Options whose $/Mtok intervals overlap the best one's are ties: the difference is within run-to-run noise. "
        "A GPU type without a price is not simulated; give one with --price GPU=USD_PER_GPU_HOUR."
    )
    return t


def _met_table(study: ProcurementStudy, tid: str, caption: str, cols) -> Table:
    t = Table(tid, caption, "plan", [(c, h) for c, h, _ in cols])
    best = study.best
    for r in _rows(study):
        if r["met"]:
            t.rows.append(
                Row(
                    r["gpu"],
                    [cell(c, r.get(c), k) for c, _, k in cols],
                    css="best" if best and r["gpu"] == best["gpu"] else "",
                )
            )
    return t


def rent_own_table(study: ProcurementStudy) -> Table:
    t = _met_table(study, "t-rent-own", "Rent vs own, in buyable units", RENT_OWN_COLS)
    t.note = (
        "Rent: whole instances of the cheapest offer (a provider that rents only 8-GPU nodes bills 8). Own: whole "
        "servers (a fraction of a rack-scale system), capex x capital-recovery factor + energy x PUE + colocation. "
        "Break-even utilization: the share of hours the fleet must be needed for owning to cost no more than renting "
        "only then; horizon: months of continuous use until the purchase is repaid by not renting."
    )
    return t


def facility_table(study: ProcurementStudy) -> Table:
    fac = study.scenario.facility
    t = _met_table(study, "t-facility", "The building: power and cooling provisioned on peak IT power", FACILITY_COLS)
    t.note = (
        f"Cooling and facility power are sized on peak IT power (every GPU at the highest power a replica reached, plus "
        f"non-GPU power per server); 1 ton = 3.517 kW. Racks are {fac.rack_power_kw:g} kW (facility.rack_power_kw); "
        f"air-cooled up to ~40 kW, rack-scale systems liquid-cooled. Carbon: facility energy x "
        f"{fac.grid_carbon_g_per_kwh:g} g CO2/kWh (location-based, facility.grid_carbon_g_per_kwh). Water: WUE "
        f"{fac.wue_l_per_kwh:g} L/kWh x IT energy."
    )
    return t


def split_table(study: ProcurementStudy) -> Table:
    cols = (
        ("gpu", "GPU", "text"),
        ("usd_per_million_input_tokens_by_gpu_time", "$/M input tokens", "num"),
        ("usd_per_million_output_tokens_by_gpu_time", "$/M output tokens", "num"),
        ("usd_per_million_tokens", "$/M tokens (all)", "num"),
    )
    t = _met_table(study, "t-split", "Input vs output $/Mtok", cols)
    t.note = (
        "Attribution: the fleet's cost split in proportion to GPU time spent in prefill (input) vs decode (output), "
        "then divided by each kind's tokens."
    )
    return t


def slide_table(study: ProcurementStudy) -> Table:
    """One table ready for a slide: the recommendation, the runner-up and the scenario's own fleet."""
    cols = [
        ("option", "option"),
        ("fleet", "fleet"),
        ("usd_per_million_tokens", "$/Mtok"),
        ("ci", "95% CI"),
        ("it_kw", "IT kW"),
        ("cooling_tons", "tons (peak)"),
        ("slo_attainment", "SLO attainment"),
    ]
    t = Table("t-slide", "Summary for a slide", "plan", cols)

    def add(key: str, label: str, r: dict[str, Any] | None) -> None:
        if r is None:
            return
        ci = _ci(r, "usd_per_million_tokens").replace(" (95% CI ", "").rstrip(")")
        t.rows.append(
            Row(
                key,
                [
                    Cell(label, "option"),
                    Cell(_fleet_words(r), "fleet"),
                    cell("usd_per_million_tokens", r.get("usd_per_million_tokens")),
                    Cell(ci, "ci"),
                    cell("it_kw", r.get("it_kw")),
                    cell("cooling_tons", r.get("cooling_tons")),
                    cell("slo_attainment", r.get("slo_attainment"), "pct"),
                ],
            )
        )

    add("best", "recommended", study.best)
    add("runner_up", "runner-up", study.runner_up)
    add("as_written", "the scenario's fleet", study.as_written)
    return t


def add_procurement(ctx: dict, study: ProcurementStudy) -> None:
    ctx["verdict"], ctx["recommendation"] = recommendation(study)
    for t in (
        slide_table(study),
        options_table(study),
        rent_own_table(study),
        split_table(study),
        facility_table(study),
    ):
        ctx["tables"][t.id.removeprefix("t-")] = t
    ctx["lead_tables"] = ["slide", "options-gpu", "rent-own", "split", "facility"]
    if study.tornado:
        from fleetsim.report import plots

        ctx["figures"]["tornado"] = plots.tornado(study.tornado)
