"""The procurement report: one self-contained HTML file (inline CSS, base64 PNG plots, no scripts,
no external URLs) from a scenario, a sweep directory or a plan directory.

    write_report("scenarios/h100_llama3.yaml", Path("report.html"), {"run.duration_s": 60})
    write_report(Path("out/plan"), Path("plan.html"))

Every number in a table is machine-checkable: each <table> has an id and a data-source naming the
results it was made from, each row a data-row key into those results (a sweep point id, a GPU
type, a dotted summary path, ...), and each numeric cell its column (data-col) and raw value
(data-value; data-scale when the text shows value x scale, e.g. percentages). Rows made by
re-simulating carry the overrides that reproduce them (data-overrides, JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fleetsim.api import kv_table, memory_plan
from fleetsim.catalog import load_gpu, load_model, model_entry
from fleetsim.cost import hourly_cost_usd, usd_per_million_tokens
from fleetsim.errors import CapacityError, FleetsimError, SpecError
from fleetsim.memory import valid_tp_degrees
from fleetsim.plan import describe_load, pipeline_overrides
from fleetsim.profile import load_profile
from fleetsim.report import plots
from fleetsim.report.bill_table import bill_table
from fleetsim.report.tables import Cell, Row, Table, _py, cell
from fleetsim.scenario import load_scenario, scenario_from_dict
from fleetsim.spec.economics import CostSpec, FacilitySpec
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.reference import GROWTH_FACTORS, Reference, load_growth_overrides, offered_rate, reference_runs
from fleetsim.sweep import flatten_summary, load_sweep

__all__ = [
    "write_report",
    "build_report",
    "load_growth_overrides",
    "sensitivity_tables",
    "GROWTH_FACTORS",
    "KV_MODELS",
    "KV_CONTEXT_TOKENS",
]

KV_MODELS = ("gpt2-xl", "llama-3-8b", "llama-3-70b", "gemma-3-27b", "deepseek-v3", "mamba-2.8b")
KV_CONTEXT_TOKENS = 4096
ELECTRICITY_USD_PER_KWH = (0.04, 0.06, 0.10, 0.15, 0.20)
PUES = (1.1, 1.2, 1.4, 1.56, 1.8)
RENTAL_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5)
MAX_ROWS = 400

# Where the defaults of the facility and cost assumptions come from (spec/economics.py).
DEFAULT_SOURCES = {
    "facility.pue": "fleetsim default: pue_new_facilities_2024 (Uptime Institute 2024, newer facilities; "
    "industry average 1.56, hyperscale 1.09)",
    "facility.wue_l_per_kwh": "fleetsim default: industry average 1.8-1.9 L/kWh (The Green Grid WUE; low confidence)",
    "facility.rack_power_kw": "fleetsim default: assumption for a GPU hall (above ~30 kW air-cooling ceiling, "
    "below ~60 kW liquid-cooled HGX racks)",
    "cost.electricity_usd_per_kwh": "fleetsim default: US industrial average 2024, 8.3 c/kWh (EIA; "
    "elec_tco_calculator_assumption)",
    "cost.colocation_usd_per_kw_month": "fleetsim default: mid-point of $140-160/kW-month, Tier 1 markets 2026 "
    "(low confidence)",
    "cost.amortization_years": "fleetsim default: assumption (common 4-5 year server depreciation)",
    "cost.interest_rate": "fleetsim default: assumption (a typical corporate WACC)",
}


# --------------------------------------------------------------------------- sensitivity
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
        xs.append(e), ys_mode.append(m), ys_owned.append(om)
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
        xs.append(p), ys_mode.append(m), ys_owned.append(om)
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
            xs.append(price), ys.append(m)
    else:
        t.note = f"no rental price for {gpu.name} in the catalog or the scenario"
    tables.append(t)
    panels.append(("rental price", "$ per GPU-hour", xs, {"rental": ys}))
    return tables, panels


def _growth_table(ref: Reference, spec: ScenarioSpec) -> tuple[Table, list]:
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
        xs.append(f), ys.append(flat.get("cost.usd_per_million_tokens"))
    if len(ref.growth) == 1:
        t.note = "the arrival process has no rate to scale"
    return t, ("load growth (re-simulated)", "load (x today)", xs, {"same fleet": ys})


# --------------------------------------------------------------------------- assumptions
def _assumptions(spec: ScenarioSpec, gpus: Sequence[str]) -> Table:
    t = Table(
        "t-assumptions",
        "Assumptions and where each comes from",
        "assumptions",
        [("quantity", "quantity"), ("value", "value"), ("unit", "unit"), ("source", "source")],
    )

    def add(key: str, quantity: str, value: Any, unit: str, source: str, kind: str = "num") -> None:
        v = cell("value", value, kind)
        if not v.numeric:
            v.css = (v.css + " wrap").strip()
        t.rows.append(
            Row(key, [Cell(quantity, "quantity", css="wrap"), v, Cell(unit, "unit"), Cell(source, "source", css="src")])
        )

    arch = load_model(spec.model)
    entry = model_entry(spec.model) if "/" not in spec.model and not spec.model.endswith((".json", ".yaml")) else {}
    src = entry.get("source", f"config file {spec.model}")
    add("model", "model", f"{arch.name} ({arch.attention_kind}, {arch.num_layers} layers)", "", src, "text")
    add(
        "model.total_params_b",
        "parameters (total)",
        arch.total_params / 1e9,
        "billion",
        entry.get("params_source", src),
    )
    add("scenario.weight_dtype", "weight precision", spec.weight_dtype, "", "scenario", "text")
    kv = spec.kv_cache
    add(
        "scenario.kv_cache",
        "KV cache",
        f"K {kv.key_dtype} / V {kv.value_dtype}, eviction {kv.eviction.kind}",
        "",
        "scenario",
        "text",
    )
    for g in gpus:
        gs = load_gpu(g)
        s = gs.sources
        add(f"gpu.{g}.memory_gb", f"{g}: memory", gs.memory_bytes / 1e9, "GB", s.get("memory_bytes", ""))
        add(
            f"gpu.{g}.hbm_tb_per_s",
            f"{g}: HBM bandwidth",
            gs.hbm_bandwidth_bytes_per_s / 1e12,
            "TB/s",
            s.get("hbm_bandwidth_bytes_per_s", ""),
        )
        add(
            f"gpu.{g}.bf16_tflops",
            f"{g}: dense BF16 peak",
            gs.peak_flops_per_s.get("bf16", float("nan")) / 1e12,
            "TFLOP/s",
            s.get("peak_flops_per_s", ""),
        )
        add(f"gpu.{g}.tdp_w", f"{g}: TDP", gs.tdp_w, "W", s.get("tdp_w", ""))
        price_src = (
            "scenario (cost.rental_usd_per_gpu_hour)"
            if spec.cost.rental_usd_per_gpu_hour is not None
            else s.get("rental_usd_per_gpu_hour", "not in catalog")
        )
        price = (
            spec.cost.rental_usd_per_gpu_hour
            if spec.cost.rental_usd_per_gpu_hour is not None
            else gs.rental_usd_per_gpu_hour
        )
        add(f"gpu.{g}.rental_usd_per_gpu_hour", f"{g}: rental price", price, "$/GPU-hour", price_src)
        capex_src = (
            "scenario (cost.capex_usd_per_gpu)"
            if spec.cost.capex_usd_per_gpu is not None
            else s.get("capex_usd_per_gpu", "not in catalog")
        )
        capex = spec.cost.capex_usd_per_gpu if spec.cost.capex_usd_per_gpu is not None else gs.capex_usd_per_gpu
        add(f"gpu.{g}.capex_usd_per_gpu", f"{g}: purchase price (owned)", capex, "$/GPU", capex_src)
        try:
            prov = load_profile(g, spec.fleet.profile if g == spec.fleet.gpu else None).provenance
            srcs = list(prov.sources)
            src = "; ".join(srcs[:3]) + (f" (+{len(srcs) - 3} more)" if len(srcs) > 3 else "")
            add(
                f"gpu.{g}.profile",
                f"{g}: calibration profile",
                f"{prov.kind} ({prov.date})",
                "",
                src or prov.notes or "-",
                "text",
            )
        except FleetsimError as exc:
            add(f"gpu.{g}.profile", f"{g}: calibration profile", "none", "", str(exc), "text")
    add(
        "cost.mode",
        "pricing",
        spec.cost.mode,
        "",
        "scenario" if spec.cost.mode != "rental" else "scenario / fleetsim default (rental)",
        "text",
    )
    dfac, dcost = FacilitySpec(), CostSpec()
    for key, quantity, unit in (
        ("facility.pue", "PUE", "facility kW / IT kW"),
        ("cost.electricity_usd_per_kwh", "electricity", "$/kWh"),
        ("facility.wue_l_per_kwh", "water usage effectiveness", "L/kWh"),
        ("facility.rack_power_kw", "power per rack", "kW"),
        ("cost.colocation_usd_per_kw_month", "colocation (owned)", "$/kW-month"),
        ("cost.amortization_years", "amortization (owned)", "years"),
        ("cost.interest_rate", "cost of capital (owned)", "fraction/year"),
    ):
        group, name = key.split(".")
        value = getattr(getattr(spec, group), name)
        default = getattr(dfac if group == "facility" else dcost, name)
        add(key, quantity, value, unit, DEFAULT_SOURCES[key] if value == default else "scenario")
    add("workload.arrival", "arrival process", describe_load(spec), "", "scenario", "text")
    for c in spec.workload.classes:
        lengths = (
            "from the trace"
            if c.input_tokens is None
            else (f"input {_length_text(c.input_tokens)}, output {_length_text(c.output_tokens)}")
        )
        add(
            f"workload.class.{c.name}",
            f"request class '{c.name}' (weight {c.weight:g})",
            lengths,
            "",
            "scenario",
            "text",
        )
    slo = spec.slo
    add("slo.ttft_s", "SLO: time to first token", slo.ttft_s, "s", "scenario")
    add("slo.tpot_s", "SLO: time per output token", slo.tpot_s, "s", "scenario")
    add("slo.attainment_target", "SLO: requests meeting both", slo.attainment_target, "", "scenario", "pct")
    add("run.duration_s", "simulated arrivals", spec.run.duration_s, "s", f"scenario (seed {spec.run.seed})")
    return t


def _length_text(d) -> str:
    if d.kind == "fixed":
        return f"{d.tokens} tokens"
    if d.kind == "lognormal":
        return f"lognormal mean {d.mean_tokens:g} tokens (sigma {d.sigma:g})"
    if d.kind == "uniform":
        return f"uniform {d.min_tokens}-{d.max_tokens} tokens"
    return f"empirical ({len(d.values)} values)"


# --------------------------------------------------------------------------- KV by architecture
def _kv_section(spec: ScenarioSpec) -> tuple[Table, str]:
    models = list(dict.fromkeys([*KV_MODELS, spec.model])) if "/" not in spec.model else list(KV_MODELS)
    gpu = load_gpu(spec.fleet.gpu)
    df = kv_table(models, KV_CONTEXT_TOKENS, spec.kv_cache)
    t = Table(
        "t-kv",
        f"KV cache of one {KV_CONTEXT_TOKENS:,}-token sequence by architecture "
        f"(K {spec.kv_cache.key_dtype} / V {spec.kv_cache.value_dtype}, eviction {spec.kv_cache.eviction.kind}) "
        f"and how many fit in one {gpu.name} replica ({spec.weight_dtype} weights, smallest tp that fits)",
        "kv",
        [
            ("model", "model"),
            ("attention", "attention"),
            ("bytes_per_token", "bytes/token"),
            ("bytes_per_sequence", "MB/sequence"),
            ("tp", "tp"),
            ("max_concurrent_sequences", "sequences/replica"),
        ],
    )
    seqs = []
    for r in df.itertuples(index=False):
        tp, n = None, None
        for deg in valid_tp_degrees(load_model(r.model), limit=gpu.gpus_per_server):
            try:
                plan = memory_plan(
                    r.model,
                    gpu.name,
                    tp=deg,
                    weight_dtype=spec.weight_dtype,
                    kv=spec.kv_cache,
                    context_tokens=KV_CONTEXT_TOKENS,
                    gpu_memory_utilization=spec.fleet.gpu_memory_utilization,
                    block_tokens=spec.scheduler.block_tokens,
                )
            except CapacityError:
                continue
            tp, n = deg, plan.max_concurrent_sequences
            break
        seqs.append(n)
        t.rows.append(
            Row(
                r.model,
                [
                    Cell(r.model, "model"),
                    Cell(r.attention, "attention"),
                    cell("bytes_per_token", r.bytes_per_token),
                    cell("bytes_per_sequence", r.bytes_per_sequence, "mb"),
                    cell("tp", tp, "int") if tp else Cell("does not fit", "tp", css="na"),
                    cell("max_concurrent_sequences", n, "int"),
                ],
            )
        )
    fig = plots.kv_by_architecture(
        list(df["model"]), list(df["attention"]), list(df["bytes_per_token"]), seqs, KV_CONTEXT_TOKENS, gpu.name
    )
    return t, fig


# --------------------------------------------------------------------------- per-source builders
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


def _power_table(rows: list[tuple[str, str, dict, str | None]], source: str) -> Table:
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


def _common_sections(ctx: dict, spec: ScenarioSpec, ref: Reference, latency_series=None, latency_xlabel=None) -> None:
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
    ctx["tables"]["kv"], ctx["figures"]["kv"] = _kv_section(ref_spec)
    bill = bill_table(ref.result.summary, ref.label, ref.overrides)
    if bill is not None:
        ctx["tables"]["bill"] = bill
    sens, panels = sensitivity_tables(ref_spec, ref.result.summary)
    growth, panel = _growth_table(ref, ref_spec)
    ctx["sensitivity"] = [*sens, growth]
    ctx["figures"]["sensitivity"] = plots.sensitivity([*panels, panel])
    ctx["reference_label"] = ref.label


def _slo_words(spec: ScenarioSpec) -> str:
    s = spec.slo
    return f"TTFT ≤ {s.ttft_s:g} s and TPOT ≤ {s.tpot_s:g} s for {s.attainment_target:.0%} of requests"


def _fleet_words(spec: ScenarioSpec) -> str:
    f = spec.fleet
    pp = f" x pp={f.pipeline.stages}" if f.pipeline.stages > 1 else ""
    return f"{f.replicas} × {f.gpu} replica{'s' if f.replicas != 1 else ''} (tp={f.tp}{pp}, {f.replicas * f.gpus_per_replica} GPUs)"


def _from_scenario(path: Any, overrides: dict, study_options: Mapping[str, Any] | None = None) -> dict:
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
    ctx = _context("scenario", base, [base.fleet.gpu, *gpus])
    ctx["title"] = f"{base.name}: {base.model} at {describe_load(base)}"
    ctx["question"] = (
        f"How many of which GPU ({', '.join(gpus)}) are needed to serve {base.model} at {describe_load(base)} "
        f"within {_slo_words(base)} — rented or owned, at what cost per million tokens, how many kW and how much "
        f"cooling? (The scenario's own fleet, {_fleet_words(base)}, is shown for contrast.)"
    )
    add_procurement(ctx, study)
    if study.as_written_summary is not None and base.autoscaling is not None:
        # An autoscaled scenario: the plan sizes a fixed fleet; the scenario's own fleet is billed by
        # its instances' lifetimes, shown beside the recommended fleet's bill.
        own = bill_table(
            study.as_written_summary,
            f"{_fleet_words(base)}, autoscaled",
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
    ctx["tables"]["power"] = _power_table(g_rows, "growth")
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
    _common_sections(ctx, base, ref)
    return ctx


def _label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())


def _from_sweep(directory: Path) -> dict:
    df, meta = load_sweep(directory)
    base_dir = Path(meta["base_dir"]) if meta.get("base_dir") else None
    base = scenario_from_dict(meta["base_scenario"], where=f"{directory}/sweep.json", base=base_dir)
    params = list(meta["grid"])
    ok = df[df["status"] == "ok"]
    met = ok[ok["slo.met"] == True] if "slo.met" in ok else ok.iloc[0:0]  # noqa: E712
    if len(met):
        best = met.sort_values("cost.usd_per_million_tokens", kind="stable").iloc[0]
        verdict = "met"
    elif len(ok):
        best = ok.sort_values("slo.attainment", ascending=False, kind="stable").iloc[0]
        verdict = "missed"
    else:
        raise SpecError(
            f"report: every point of the sweep in {directory} failed; nothing to report "
            f"(first error: {df['error'].iloc[0]})"
        )
    best_params = {k: _py(best[k]) for k in params}
    gpus = list(dict.fromkeys([base.fleet.gpu, *[g for g in ok.get("fleet.gpu", pd.Series(dtype=str)).unique()]]))
    ref = reference_runs(base, best_params, _label(best_params))
    ctx = _context("sweep", base, gpus)
    n, n_ok = len(df), len(ok)
    ctx["title"] = f"Sweep of {base.name}: {n} points over {', '.join(params)}"
    ctx["question"] = (
        f"Which of these {n} configurations (varying {', '.join(params)}) serves {base.model} within "
        f"{_slo_words(base)} at the lowest cost per million tokens — and what do they draw in kW and "
        f"cooling?"
    )
    ctx["verdict"] = verdict
    if verdict == "met":
        ctx["recommendation"] = (
            f"Cheapest point meeting the SLO: {_label(best_params)} at ${best['cost.usd_per_million_tokens']:,.4f} per "
            f"million tokens (${best['cost.usd_per_hour']:,.2f}/hour, {best['slo.attainment']:.2%} attainment, "
            f"{best['power.it_mean_kw']:,.1f} kW IT); {len(met)} of {n_ok} completed points meet the SLO"
            f"{'' if n_ok == n else f', {n - n_ok} failed'}."
        )
    else:
        ctx["recommendation"] = (
            f"No point meets the SLO; the closest is {_label(best_params)} with {best['slo.attainment']:.2%} "
            f"attainment (target {base.slo.attainment_target:.0%})."
        )
    metric_cols = [
        ("slo.met", "SLO met", "bool"),
        ("slo.attainment", "attainment", "pct"),
        ("latency_s.ttft.p99", "TTFT p99 (s)", "num"),
        ("latency_s.tpot.p99", "TPOT p99 (s)", "num"),
        ("throughput.output_tokens_per_s", "output tok/s", "num"),
        ("fleet.gpus", "GPUs", "int"),
        ("cost.usd_per_hour", "$/hour", "num"),
        ("cost.usd_per_million_tokens", "$/Mtok", "num"),
    ]
    comp = Table(
        "t-comparison",
        f"Every point of the sweep ({n_ok} completed, {n - n_ok} failed)",
        "points",
        [
            *[(p, p) for p in params],
            ("status", "status"),
            *[(c, h) for c, h, _ in metric_cols],
            *([("error", "error")] if n_ok < n else []),
        ],
    )
    shown = df.head(MAX_ROWS)
    if len(df) > MAX_ROWS:
        comp.note = f"first {MAX_ROWS} of {len(df)} points shown; all are in points.parquet"
    power_rows = []
    for r in shown.to_dict(orient="records"):
        cells = [cell(p, r[p], "text" if isinstance(_py(r[p]), str) else "num") for p in params]
        cells.append(Cell(r["status"], "status", css="ok" if r["status"] == "ok" else "miss"))
        cells += [cell(c, r.get(c), kind) for c, _, kind in metric_cols]
        if n_ok < n:
            cells.append(Cell(r.get("error") or "", "error", css="src"))
        comp.rows.append(Row(r["point_id"], cells, css="best" if r["point_id"] == best["point_id"] else ""))
        if r["status"] == "ok":
            power_rows.append((r["point_id"], _label({p: r[p] for p in params}), r, None))
    ctx["tables"]["comparison"] = comp
    rate_keys = [p for p in params if p.endswith(("rate_per_s", "mean_rate_per_s"))]
    if rate_keys and len(met):
        rk = rate_keys[0]
        bt = Table(
            "t-best-by-load",
            f"The cheapest point meeting the SLO at each {rk}",
            "points",
            [c for c in comp.columns if c[0] != "error"],
        )
        for _, g in met.groupby(rk, sort=True):
            r = g.sort_values(["cost.usd_per_hour", "cost.usd_per_million_tokens"], kind="stable").iloc[0].to_dict()
            cells = [cell(p, r[p], "text" if isinstance(_py(r[p]), str) else "num") for p in params]
            cells.append(Cell(r["status"], "status", css="ok"))
            cells += [cell(c, r.get(c), kind) for c, _, kind in metric_cols]
            bt.rows.append(Row(r["point_id"], cells))
        ctx["tables"]["best_by_load"] = bt
    ctx["tables"]["power"] = _power_table(power_rows[:60], "points")
    # Figures: the cheapest 30 completed points.
    top = ok.sort_values("cost.usd_per_million_tokens", kind="stable").head(30)
    labels = [_label({p: r[p] for p in params}) for r in top.to_dict(orient="records")]
    ctx["figures"]["cost"] = plots.cost_by_option(
        labels,
        list(top["cost.usd_per_million_tokens"]),
        [bool(v) for v in top["slo.met"]],
        "Cost per million tokens by point (cheapest 30)",
    )
    pw = ok.head(20)
    ctx["figures"]["power"] = plots.power_cooling(
        [_label({p: r[p] for p in params}) for r in pw.to_dict(orient="records")],
        list(pw["power.it_mean_kw"]),
        list(pw["power.facility_mean_kw"]),
        list(pw["cooling.tons"]),
    )
    series = xlabel = None
    if rate_keys and ok[rate_keys[0]].nunique() > 1:
        rk = rate_keys[0]
        others = [p for p in params if p != rk]
        series = {}
        groups = ok.groupby(others, sort=False) if others else [((), ok)]
        for key, g in list(groups)[:8]:
            key = key if isinstance(key, tuple) else (key,)
            label = _label(dict(zip(others, key))) or base.name
            series[label] = pd.DataFrame(
                {
                    "x": g[rk],
                    "ttft_p50": g["latency_s.ttft.p50"],
                    "ttft_p90": g["latency_s.ttft.p90"],
                    "ttft_p99": g["latency_s.ttft.p99"],
                    "tpot_p50": g["latency_s.tpot.p50"],
                    "tpot_p99": g["latency_s.tpot.p99"],
                }
            )
        xlabel = f"{rk} (requests/s)"
    _common_sections(ctx, base, ref, series, xlabel)
    return ctx


def _from_plan(directory: Path) -> dict:
    data = json.loads((directory / "plan.json").read_text())
    spec_path = directory / "scenario.yaml"
    if not spec_path.is_file():
        raise SpecError(f"report: {directory} has plan.json but no scenario.yaml (written by fleetsim plan --out)")
    base = load_scenario(spec_path)
    rows = data["rows"]
    best = data.get("best")
    gpus = [r["gpu"] for r in rows]
    ctx = _context("plan", base, gpus)
    ctx["title"] = f"Procurement plan: {base.model} at {describe_load(base)}"
    ctx["question"] = (
        f"How many of which GPU ({', '.join(gpus)}) are needed to serve {base.model} at "
        f"{describe_load(base)} within {_slo_words(base)} — and what does each option cost per million "
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
    ref = reference_runs(base, ov, _fleet_words(load_scenario(base, ov)))
    _common_sections(ctx, base, ref)
    return ctx


def _context(kind: str, spec: ScenarioSpec, gpus: Sequence[str]) -> dict:
    from fleetsim import __version__

    return {
        "kind": kind,
        "version": __version__,
        "scenario": spec,
        "tables": {},
        "figures": {},
        "assumptions": _assumptions(spec, list(dict.fromkeys(gpus))),
        "sensitivity": [],
        "slo_words": _slo_words(spec),
    }


# --------------------------------------------------------------------------- entry points
def _source_kind(source: Path) -> tuple[str, Path]:
    if source.is_dir():
        if (source / "plan.json").is_file():
            return "plan", source
        if (source / "sweep.json").is_file() or (source / "points.parquet").is_file():
            return "sweep", source
        raise SpecError(
            f"report: {source} is neither a plan directory (plan.json) nor a sweep directory "
            "(sweep.json, points.parquet)"
        )
    if source.is_file():
        if source.name == "plan.json":
            return "plan", source.parent
        if source.name in ("points.parquet", "sweep.json"):
            return "sweep", source.parent
        return "scenario", source
    raise SpecError(f"report: '{source}' does not exist")


def build_report(
    source: str | Path, overrides: Mapping[str, Any] | None = None, study_options: Mapping[str, Any] | None = None
) -> dict:
    """The report's content (tables, figures, text) from a scenario, sweep or plan. study_options
    (a scenario source): procurement_study's gpus, seeds, prices, spares, size_for_peak, tp_options."""
    kind, path = _source_kind(Path(source))
    overrides = dict(overrides or {})
    if kind != "scenario" and (overrides or study_options):
        raise SpecError(
            f"report: --set, --gpus, --seeds, --price, --spares and --peak apply to a scenario source; {source} is a "
            f"{kind} directory (its results were computed with their own settings)"
        )
    if kind == "scenario":
        ctx = _from_scenario(path, overrides, study_options)
    else:
        ctx = _from_sweep(path) if kind == "sweep" else _from_plan(path)
    _cite_sources(ctx)
    return ctx


def _all_tables(ctx: dict) -> list[Table]:
    return [ctx["assumptions"], *ctx["tables"].values(), *ctx.get("sensitivity", [])]


def _cite_sources(ctx: dict) -> None:
    """Citation keys in source cells become [n], listed with title, URL or repository path and date."""
    from fleetsim.study.sources import cite, reference_list

    refs: dict[str, int] = {}
    for t in _all_tables(ctx):
        for r in t.rows:
            for c in r.cells:
                if isinstance(c.text, str) and (c.col == "source" or "src" in c.css):
                    c.text = cite(c.text, refs)
    ctx["references"] = reference_list(refs)


def render(ctx: dict) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("fleetsim.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    ctx.setdefault("lead_tables", [])
    ctx.setdefault("references", [])
    return env.get_template("report.html.j2").render(**ctx)


def write_report(
    source: str | Path,
    output: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    study_options: Mapping[str, Any] | None = None,
    csv_dir: str | Path | None = None,
) -> Path:
    """Write the self-contained HTML report of a scenario YAML, a sweep directory or a plan
    directory; csv_dir: every table also as <csv_dir>/<table id>.csv."""
    ctx = build_report(source, overrides, study_options)
    ctx["source"] = str(source)
    ctx["overrides"] = json.dumps(dict(overrides or {}), sort_keys=True)
    out = Path(output)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(ctx), encoding="utf-8")
    if csv_dir is not None:
        from fleetsim.report.tables import write_csv

        d = Path(csv_dir)
        d.mkdir(parents=True, exist_ok=True)
        for t in _all_tables(ctx):
            write_csv(t, d / f"{t.id}.csv")
    return out
