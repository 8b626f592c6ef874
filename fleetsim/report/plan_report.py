"""The report of a plan directory: the cheapest fleet per GPU type, every configuration tried and
the search, with the best (or closest) fleet re-simulated as the reference run. Its own module:
one builder per kind of report source.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.plan import describe_load, pipeline_overrides
from fleetsim.report import plots
from fleetsim.report.sections import common_sections, fleet_words, report_context, slo_words
from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.scenario import load_scenario
from fleetsim.study.reference import reference_runs


def from_plan(directory: Path) -> dict:
    data = json.loads((directory / "plan.json").read_text())
    spec_path = directory / "scenario.yaml"
    if not spec_path.is_file():
        raise SpecError(f"report: {directory} has plan.json but no scenario.yaml (written by fleetsim plan --out)")
    base = load_scenario(spec_path)
    rows = data["rows"]
    best = data.get("best")
    gpus = [r["gpu"] for r in rows]
    ctx = report_context("plan", base, gpus)
    ctx["title"] = f"Procurement plan: {base.model} at {describe_load(base)}"
    ctx["question"] = (
        f"How many of which GPU ({', '.join(gpus)}) are needed to serve {base.model} at "
        f"{describe_load(base)} within {slo_words(base)} — and what does each option cost per million "
        f"tokens, how many kW does it draw and how much heat must be removed?"
    )
    ctx["verdict"] = "met" if best else "missed"
    ctx["recommendation"] = data["recommendation"]
    cols = [
        ("gpu", "GPU", "text"),
        ("met", "SLO met", "bool"),
        ("tp", "tp", "int"),
        ("replicas", "replicas", "int"),
        ("gpus", "GPUs", "int"),
        ("servers", "servers", "int"),
        ("racks", "racks", "int"),
        ("usd_per_hour", "$/hour", "num"),
        ("usd_per_million_tokens", "$/Mtok", "num"),
        ("slo_attainment", "attainment", "pct"),
        ("replicas_one_fewer", "one fewer: replicas", "int"),
        ("slo_attainment_one_fewer", "one fewer: attainment", "pct"),
        ("reason", "note", "note"),
    ]
    comp = Table(
        "t-comparison",
        "The cheapest fleet of each GPU type (and the same fleet with one replica fewer)",
        "plan",
        [(c, h) for c, h, _ in cols],
    )
    power_rows = []
    for r in rows:
        cells = [cell(c, r.get(c), kind) for c, _, kind in cols]
        if not r.get("met") and not r.get("simulations"):
            cells[1] = Cell("not simulated", "met", css="na")  # its reason is in the note, not a red "no"
        comp.rows.append(Row(r["gpu"], cells, css="best" if best and r["gpu"] == best["gpu"] else ""))
    ctx["tables"]["comparison"] = comp
    pcols = [
        ("it_kw", "IT kW", "num"),
        ("facility_kw", "facility kW", "num"),
        ("cooling_tons", "tons", "num"),
        ("servers", "servers", "int"),
        ("racks", "racks", "int"),
    ]
    pt = Table(
        "t-power", "Power, heat and space of each option", "plan", [("gpu", "GPU"), *[(c, h) for c, h, _ in pcols]]
    )
    for r in rows:
        if r.get("met"):
            pt.rows.append(Row(r["gpu"], [Cell(r["gpu"], "gpu")] + [cell(c, r.get(c), k) for c, _, k in pcols]))
            power_rows.append(r)
    ctx["tables"]["power"] = pt
    ocols = [
        ("gpu", "GPU", "text"),
        ("tp", "tp", "int"),
        ("weight_dtype", "weights", "text"),
        ("key_dtype", "K", "text"),
        ("value_dtype", "V", "text"),
        ("replicas", "replicas", "int"),
        ("met", "SLO met", "bool"),
        ("usd_per_hour", "$/hour", "num"),
        ("usd_per_million_tokens", "$/Mtok", "num"),
        ("simulations", "simulations", "int"),
        ("reason", "note", "note"),
    ]
    ot = Table("t-options", "Every configuration tried", "plan:options", [(c, h) for c, h, _ in ocols])
    for i, r in enumerate(data.get("options", [])):
        cells = [cell(c, r.get(c), kind) for c, _, kind in ocols]
        if not r.get("met") and not r.get("simulations"):
            cells[6] = Cell("not simulated", "met", css="na")
        ot.rows.append(Row(str(i), cells))
    ctx["tables"]["options"] = ot
    labels = [r["gpu"] for r in rows]
    ctx["figures"]["cost"] = plots.cost_by_option(
        labels,
        [r.get("usd_per_million_tokens") for r in rows],
        [True if r.get("met") else (False if r.get("simulations") else None) for r in rows],
        "Cost per million tokens of the cheapest fleet per GPU type",
        [r.get("usd_per_million_tokens_lo") for r in rows],
        [r.get("usd_per_million_tokens_hi") for r in rows],
    )
    if power_rows:
        ctx["figures"]["power"] = plots.power_cooling(
            [r["gpu"] for r in power_rows],
            [r["it_kw"] for r in power_rows],
            [r["facility_kw"] for r in power_rows],
            [r["cooling_tons"] for r in power_rows],
        )
    ev = pd.DataFrame(data.get("evaluations", []))
    if len(ev):
        ctx["figures"]["search"] = plots.attainment_vs_replicas(ev, base.slo.attainment_target)
    ref_row = best
    if ref_row is None and len(ev):  # nothing met the SLO: look inside the closest fleet tried
        ref_row = ev.sort_values(["slo_attainment", "replicas"], ascending=[False, False]).iloc[0].to_dict()
    if ref_row is None:
        raise SpecError(
            f"report: the plan in {directory} simulated no fleet (nothing fits): "
            + "; ".join(f"{r['gpu']}: {r['reason']}" for r in rows)
        )
    ov = {
        "fleet.gpu": str(ref_row["gpu"]),
        "fleet.tp": int(ref_row["tp"]),
        **pipeline_overrides(base.model, ref_row),
        "fleet.replicas": int(ref_row["replicas"]),
        "weight_dtype": str(ref_row["weight_dtype"]),
        "kv_cache.key_dtype": str(ref_row["key_dtype"]),
        "kv_cache.value_dtype": str(ref_row["value_dtype"]),
    }
    ref = reference_runs(base, ov, fleet_words(load_scenario(base, ov)))
    common_sections(ctx, base, ref)
    return ctx
