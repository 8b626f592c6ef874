"""The sections every report has (the reference run's table, latency, utilization, KV, bill,
sensitivity), the power table and the wording shared by the per-source builders; and the
empty report context they fill. Its own module: scenario, sweep and plan reports all use it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from fleetsim.report import plots
from fleetsim.report.assumptions import assumptions_table
from fleetsim.report.bill_table import bill_table
from fleetsim.report.kv_capacity import kv_section
from fleetsim.report.sensitivity import growth_table, sensitivity_tables
from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.reference import Reference, offered_rate
from fleetsim.sweep import flatten_summary

_RUN_METRICS = (
    ("slo.met", "SLO met", "bool"),
    ("slo.attainment", "SLO attainment", "pct"),
    ("requests.arrived", "requests arrived", "int"),
    ("requests.completed", "requests completed", "int"),
    ("latency_s.ttft.p50", "TTFT p50 (s)", "num"),
    ("latency_s.ttft.p99", "TTFT p99 (s)", "num"),
    ("latency_s.tpot.p50", "TPOT p50 (s)", "num"),
    ("latency_s.tpot.p99", "TPOT p99 (s)", "num"),
    ("latency_s.e2e.p99", "end-to-end p99 (s)", "num"),
    ("throughput.output_tokens_per_s", "output tokens/s", "num"),
    ("throughput.input_tokens_per_s", "input tokens/s", "num"),
    ("concurrency.mean_running", "mean running sequences", "num"),
    ("kv_cache.mean_utilization", "KV pool mean utilization", "pct"),
    ("kv_cache.preemptions", "preemptions", "int"),
    ("power.gpu_mean_w", "GPU mean power (W)", "num"),
    ("power.it_mean_kw", "IT power (kW)", "num"),
    ("power.facility_mean_kw", "facility power (kW)", "num"),
    ("power.joules_per_output_token", "GPU J per output token", "num"),
    ("cooling.tons", "heat load (tons of refrigeration)", "num"),
    ("cooling.btu_per_h", "heat load (BTU/h)", "num"),
    ("cooling.water_l_per_h", "water (L/h)", "num"),
    ("fleet.gpus", "GPUs", "int"),
    ("fleet.servers", "servers", "int"),
    ("fleet.racks", "racks", "int"),
    ("cost.usd_per_hour", "cost ($/hour)", "num"),
    ("cost.usd_per_million_tokens", "$ per million tokens", "num"),
    ("cost.usd_per_million_output_tokens", "$ per million output tokens", "num"),
)

_POWER_COLS = (
    ("power.it_mean_kw", "IT kW"),
    ("power.facility_mean_kw", "facility kW"),
    ("cooling.heat_load_kw", "heat kW"),
    ("cooling.btu_per_h", "BTU/h"),
    ("cooling.tons", "tons"),
    ("cooling.water_l_per_h", "water L/h"),
    ("fleet.servers", "servers"),
    ("fleet.racks", "racks"),
    ("fleet.provisioned_it_kw", "provisioned IT kW"),
)


def _run_table(ref: Reference) -> Table:
    flat = flatten_summary(ref.result.summary)
    t = Table(
        "t-run",
        f"The reference run: {ref.label}",
        "summary",
        [("metric", "metric"), ("value", "value")],
        overrides=json.dumps(ref.overrides, sort_keys=True),
    )
    for key, label, kind in _RUN_METRICS:
        t.rows.append(Row(key, [Cell(label, "metric"), cell(key, flat.get(key), kind)]))
    return t


def power_table(rows: Sequence[tuple[str, str, dict, str | None]], source: str) -> Table:
    """rows: (row key, label, flat metrics, overrides JSON)."""
    t = Table("t-power", "Power, heat and space", source, [("option", "option"), *_POWER_COLS])
    for key, label, flat, ov in rows:
        cells = [Cell(label, "option")] + [
            cell(c, flat.get(c), "int" if c.startswith("fleet.") and c != "fleet.provisioned_it_kw" else "num")
            for c, _ in _POWER_COLS
        ]
        t.rows.append(Row(key, cells, overrides=ov))
    return t


def _latency_from_growth(ref: Reference, spec: ScenarioSpec) -> dict[str, pd.DataFrame]:
    rate = offered_rate(spec)
    rows = []
    for f, _, s in ref.growth:
        lat = s["latency_s"]
        rows.append(
            {
                "x": rate * f if rate else f,
                "ttft_p50": lat["ttft"]["p50"],
                "ttft_p90": lat["ttft"]["p90"],
                "ttft_p99": lat["ttft"]["p99"],
                "tpot_p50": lat["tpot"]["p50"],
                "tpot_p99": lat["tpot"]["p99"],
            }
        )
    return {ref.label: pd.DataFrame(rows)}


def common_sections(ctx: dict, spec: ScenarioSpec, ref: Reference, latency_series=None, latency_xlabel=None) -> None:
    """Sections every report has: the reference run, latency, utilization, KV, sensitivity."""
    ref_spec = ref.result.scenario
    slo = ref_spec.slo
    ctx["tables"]["run"] = _run_table(ref)
    if latency_series is None:
        latency_series = _latency_from_growth(ref, ref_spec)
        latency_xlabel = "offered load (requests/s)" if offered_rate(ref_spec) else "load (x today)"
    ctx["figures"]["latency_load"] = plots.latency_vs_load(latency_series, slo.ttft_s, slo.tpot_s, latency_xlabel)
    ctx["figures"]["latency_dist"] = plots.latency_distribution(ref.result.requests, slo.ttft_s, slo.tpot_s)
    ctx["figures"]["utilization"] = plots.utilization_over_time(ref.result.timeseries, ref_spec.fleet.replicas)
    ctx["tables"]["kv"], ctx["figures"]["kv"] = kv_section(ref_spec)
    bill = bill_table(ref.result.summary, ref.label, ref.overrides)
    if bill is not None:
        ctx["tables"]["bill"] = bill
    sens, panels = sensitivity_tables(ref_spec, ref.result.summary)
    growth, panel = growth_table(ref, ref_spec)
    ctx["sensitivity"] = [*sens, growth]
    ctx["figures"]["sensitivity"] = plots.sensitivity([*panels, panel])
    ctx["reference_label"] = ref.label


def slo_words(spec: ScenarioSpec) -> str:
    s = spec.slo
    return f"TTFT ≤ {s.ttft_s:g} s and TPOT ≤ {s.tpot_s:g} s for {s.attainment_target:.0%} of requests"


def fleet_words(spec: ScenarioSpec) -> str:
    f = spec.fleet
    pp = f" x pp={f.pipeline.stages}" if f.pipeline.stages > 1 else ""
    return f"{f.replicas} × {f.gpu} replica{'s' if f.replicas != 1 else ''} (tp={f.tp}{pp}, {f.replicas * f.gpus_per_replica} GPUs)"


def report_context(kind: str, spec: ScenarioSpec, gpus: Sequence[str]) -> dict:
    from fleetsim import __version__

    return {
        "kind": kind,
        "version": __version__,
        "scenario": spec,
        "tables": {},
        "figures": {},
        "assumptions": assumptions_table(spec, list(dict.fromkeys(gpus))),
        "sensitivity": [],
        "slo_words": slo_words(spec),
    }
