"""The procurement report: one self-contained HTML file (inline CSS, base64 PNG plots, no scripts,
no external URLs) from a scenario, a sweep directory or a plan directory.

    write_report("scenarios/h100_llama3.yaml", Path("report.html"), {"run.duration_s": 60})
    write_report(Path("out/plan"), Path("plan.html"))

Every number in a table is machine-checkable: each <table> has an id and a data-source naming the
results it was made from, each row a data-row key into those results (a sweep point id, a GPU
type, a dotted summary path, ...), and each numeric cell its column (data-col) and raw value
(data-value; data-scale when the text shows value x scale, e.g. percentages). Rows made by
re-simulating carry the overrides that reproduce them (data-overrides, JSON).

This module is the entry point (which kind of source, render, write); the sections live beside it:
sensitivity, assumptions, kv_capacity, sections, and one builder per source (scenario_report,
sweep_report, plan_report).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetsim.errors import SpecError
from fleetsim.report.kv_capacity import KV_CONTEXT_TOKENS, KV_MODELS
from fleetsim.report.plan_report import from_plan
from fleetsim.report.scenario_report import from_scenario
from fleetsim.report.sensitivity import sensitivity_tables
from fleetsim.report.sweep_report import from_sweep
from fleetsim.report.tables import Table
from fleetsim.study.reference import GROWTH_FACTORS, load_growth_overrides

__all__ = [
    "write_report",
    "build_report",
    "load_growth_overrides",
    "sensitivity_tables",
    "GROWTH_FACTORS",
    "KV_MODELS",
    "KV_CONTEXT_TOKENS",
]


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
        ctx = from_scenario(path, overrides, study_options)
    else:
        ctx = from_sweep(path) if kind == "sweep" else from_plan(path)
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
