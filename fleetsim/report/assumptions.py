"""The report's assumptions table: every input quantity (model, GPU data, prices, facility, workload,
SLO) with its value and where it comes from. Its own module: it is the report's provenance, read
from the catalog and the scenario, and carries the sources of fleetsim's defaults as data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetsim.catalog import load_gpu, load_model, model_entry
from fleetsim.errors import FleetsimError
from fleetsim.plan import describe_load
from fleetsim.profile import load_profile
from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.spec.economics import CostSpec, FacilitySpec
from fleetsim.spec.scenario import ScenarioSpec

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


def assumptions_table(spec: ScenarioSpec, gpus: Sequence[str]) -> Table:
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
