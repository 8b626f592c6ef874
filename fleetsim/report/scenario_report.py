"""The report of a scenario source: the procurement study's recommended fleet at today's and growing
load, beside the scenario's own fleet. Its own module: one builder per kind of report source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fleetsim.errors import SpecError
from fleetsim.plan import describe_load
from fleetsim.report import plots
from fleetsim.report.bill_table import bill_table
from fleetsim.report.sections import common_sections, fleet_words, power_table, report_context, slo_words
from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.scenario import load_scenario
from fleetsim.sweep import flatten_summary


def from_scenario(path: Any, overrides: dict, study_options: Mapping[str, Any] | None = None) -> dict:
    from fleetsim.report.procurement import add_procurement
    from fleetsim.study.procurement import procurement_study

    base = load_scenario(path, overrides)
    if base.fleet.groups:
        raise SpecError(
            "report: a mixed fleet (fleet.groups) has no procurement report yet; valid: a one-type scenario "
            "(or fleetsim run / fleetsim plan --mix for the mixed fleet)"
        )
    study = procurement_study(base, **dict(study_options or {}))
    ref = study.reference
    gpus = [str(g) for g in study.plan.table["gpu"]]
    ctx = report_context("scenario", base, [base.fleet.gpu, *gpus])
    ctx["title"] = f"{base.name}: {base.model} at {describe_load(base)}"
    ctx["question"] = (
        f"How many of which GPU ({', '.join(gpus)}) are needed to serve {base.model} at {describe_load(base)} "
        f"within {slo_words(base)} — rented or owned, at what cost per million tokens, how many kW and how much "
        f"cooling? (The scenario's own fleet, {fleet_words(base)}, is shown for contrast.)"
    )
    add_procurement(ctx, study)
    if study.as_written_summary is not None and base.autoscaling is not None:
        # An autoscaled scenario: the plan sizes a fixed fleet; the scenario's own fleet is billed by
        # its instances' lifetimes, shown beside the recommended fleet's bill.
        own = bill_table(
            study.as_written_summary,
            f"{fleet_words(base)}, autoscaled",
            dict(study.as_written_overrides or {}),
            "t-bill-written",
            "the scenario's own fleet as written",
        )
        if own is not None:
            ctx["tables"]["bill_written"] = own
    g_rows = [(f"{f:g}", f"{f:g}× load", flatten_summary(g), json.dumps(ov, sort_keys=True)) for f, ov, g in ref.growth]
    comp = Table(
        "t-comparison",
        f"The recommended fleet ({ref.label}) at today's load and at growing load (re-simulated)",
        "growth",
        [
            ("option", "load"),
            ("slo.met", "SLO met"),
            ("slo.attainment", "attainment"),
            ("latency_s.ttft.p99", "TTFT p99 (s)"),
            ("latency_s.tpot.p99", "TPOT p99 (s)"),
            ("throughput.output_tokens_per_s", "output tok/s"),
            ("cost.usd_per_hour", "$/hour"),
            ("cost.usd_per_million_tokens", "$/Mtok"),
        ],
    )
    for key, label, flat, ov in g_rows:
        comp.rows.append(
            Row(
                key,
                [Cell(label, "option")]
                + [cell(c, flat.get(c), "pct" if c == "slo.attainment" else "num") for c, _ in comp.columns[1:]],
                overrides=ov,
            )
        )
    ctx["tables"]["comparison"] = comp
    ctx["tables"]["power"] = power_table(g_rows, "growth")
    prow = study.plan.to_dict()["rows"]
    ctx["figures"]["cost"] = plots.cost_by_option(
        [r["gpu"] for r in prow],
        [r.get("usd_per_million_tokens") for r in prow],
        [True if r.get("met") else (False if r.get("simulations") else None) for r in prow],
        f"Cost per million tokens of the cheapest fleet per GPU type (95% intervals, {study.seeds} seeds)",
        [r.get("usd_per_million_tokens_lo") for r in prow],
        [r.get("usd_per_million_tokens_hi") for r in prow],
    )
    ctx["figures"]["power"] = plots.power_cooling(
        [r[1] for r in g_rows],
        [r[2]["power.it_mean_kw"] for r in g_rows],
        [r[2]["power.facility_mean_kw"] for r in g_rows],
        [r[2]["cooling.tons"] for r in g_rows],
    )
    common_sections(ctx, base, ref)
    return ctx
