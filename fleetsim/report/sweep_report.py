"""The report of a sweep directory: every point, the cheapest point meeting the SLO (per load), and
the figures of the cheapest points. Its own module: one builder per kind of report source.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fleetsim.errors import SpecError
from fleetsim.report import plots
from fleetsim.report.sections import common_sections, power_table, report_context, slo_words
from fleetsim.report.tables import Cell, Row, Table, _py, cell
from fleetsim.scenario import scenario_from_dict
from fleetsim.study.reference import reference_runs
from fleetsim.sweep import load_sweep

MAX_ROWS = 400


def _label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())


def from_sweep(directory: Path) -> dict:
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
    ctx = report_context("sweep", base, gpus)
    n, n_ok = len(df), len(ok)
    ctx["title"] = f"Sweep of {base.name}: {n} points over {', '.join(params)}"
    ctx["question"] = (
        f"Which of these {n} configurations (varying {', '.join(params)}) serves {base.model} within "
        f"{slo_words(base)} at the lowest cost per million tokens — and what do they draw in kW and "
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
    ctx["tables"]["power"] = power_table(power_rows[:60], "points")
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
    common_sections(ctx, base, ref, series, xlabel)
    return ctx
