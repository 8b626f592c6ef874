"""Report figures: matplotlib (Agg, no pyplot state) rendered to base64 PNG for embedding.

Each function takes plain data (lists, DataFrames) and returns a `data:image/png;base64,...` URI.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

OK = "#2e7d32"
MISS = "#c62828"
GREY = "#9e9e9e"
BLUE = "#1565c0"
ORANGE = "#ef6c00"
PURPLE = "#6a1b9a"
DPI = 100


def _figure(w: float = 7.5, h: float = 3.6) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    return fig


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax) -> None:
    ax.grid(True, axis="y", alpha=0.3)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def cost_by_option(
    labels: Sequence[str],
    usd_per_mtok: Sequence[float | None],
    met: Sequence[bool | None],
    title: str = "Cost per million tokens by option",
    lo: Sequence[float | None] | None = None,
    hi: Sequence[float | None] | None = None,
) -> str:
    """Horizontal bars (95% intervals as error bars when lo/hi are given). Values spanning more
    than 20x go on a log axis so the small ones stay visible."""
    fig = _figure(7.5, max(2.6, 0.32 * len(labels) + 1.5))
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    vals = [float(v) if _finite(v) else 0.0 for v in usd_per_mtok]
    colors = [OK if m else (MISS if m is not None else GREY) for m in met]
    pos = [v for v in vals if v > 0]
    log = bool(pos) and max(pos) / min(pos) > 20
    ax.barh(y, vals, color=colors)
    if lo is not None and hi is not None:
        err = [
            [max(0.0, v - float(a)) if _finite(a) else 0.0 for v, a in zip(vals, lo)],
            [max(0.0, float(b) - v) if _finite(b) else 0.0 for v, b in zip(vals, hi)],
        ]
        ax.errorbar(vals, y, xerr=err, fmt="none", ecolor="#333333", capsize=3, lw=1)
    if log:
        ax.set_xscale("log")
        ax.set_xlim(left=min(pos) / 2)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    for yi, v, raw in zip(y, vals, usd_per_mtok):
        ax.text(v, yi, f" ${v:,.4g}" if _finite(raw) else " n/a", va="center", fontsize=7)
    ax.set_xlabel("$ per million tokens (input + output)" + (", log scale" if log else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    fig.legend(
        handles=[
            Patch(color=OK, label="SLO met"),
            Patch(color=MISS, label="SLO missed"),
            Patch(color=GREY, label="failed / n/a"),
        ],
        fontsize=7,
        loc="outside lower center",
        ncol=3,
        frameon=False,
    )
    ax.margins(x=0.18)
    return to_data_uri(fig)


def latency_vs_load(
    series: dict[str, pd.DataFrame], ttft_slo_s: float, tpot_slo_s: float, xlabel: str = "arrival rate (requests/s)"
) -> str:
    """series: label -> frame with columns x, ttft_p50, ttft_p90, ttft_p99, tpot_p50, tpot_p99.
    One series: its p50/p90/p99; several: the p99 of each, one legend under the plots."""
    many = len(series) > 1
    fig = _figure(7.5, 3.4 + (0.22 * ((len(series) + 2) // 3) if many else 0))
    ax1, ax2 = fig.subplots(1, 2)
    for i, (label, df) in enumerate(series.items()):
        df = df.sort_values("x")
        c = f"C{i % 10}"
        if many:
            ax1.plot(df["x"], df["ttft_p99"], "o-", color=c, label=label, ms=4)
            ax2.plot(df["x"], df["tpot_p99"], "o-", color=c, ms=4)
            continue
        ax1.plot(df["x"], df["ttft_p99"], "o-", color=c, label="p99")
        ax1.plot(df["x"], df["ttft_p90"], "s--", color=c, alpha=0.7, label="p90")
        ax1.plot(df["x"], df["ttft_p50"], "^:", color=c, alpha=0.6, label="p50")
        ax2.plot(df["x"], df["tpot_p99"], "o-", color=c, label="p99")
        ax2.plot(df["x"], df["tpot_p50"], "^:", color=c, alpha=0.6, label="p50")
    ax1.axhline(ttft_slo_s, color=MISS, lw=1, ls="--", label="SLO target")
    ax2.axhline(tpot_slo_s, color=MISS, lw=1, ls="--", label="" if many else "SLO target")
    ax1.set_yscale("log")
    which = "p99 " if many else ""
    ax1.set_title(f"{which}time to first token", fontsize=10)
    ax2.set_title(f"{which}time per output token", fontsize=10)
    ax1.set_ylabel("seconds")
    for ax in (ax1, ax2):
        ax.set_xlabel(xlabel)
        _style(ax)
        if not many:
            ax.legend(fontsize=7)
    if many:
        fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return to_data_uri(fig)


def latency_distribution(requests: pd.DataFrame, ttft_slo_s: float, tpot_slo_s: float) -> str:
    fig = _figure(7.5, 3.0)
    axes = fig.subplots(1, 3)
    for ax, col, slo, title in zip(
        axes, ("ttft_s", "tpot_s", "e2e_s"), (ttft_slo_s, tpot_slo_s, None), ("TTFT", "TPOT", "end to end")
    ):
        v = np.sort(requests[col].dropna().to_numpy()) if col in requests else np.array([])
        if len(v):
            ax.plot(v, np.arange(1, len(v) + 1) / len(v), color=BLUE)
        if slo is not None:
            ax.axvline(slo, color=MISS, ls="--", lw=1, label="SLO")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"{title} (CDF)", fontsize=10)
        ax.set_xlabel("seconds")
        if len(v) and v[-1] > 20 * max(v[0], 1e-9) and v[0] > 0:
            ax.set_xscale("log")
        _style(ax)
    axes[0].set_ylabel("fraction of requests")
    return to_data_uri(fig)


def power_cooling(
    labels: Sequence[str], it_kw: Sequence[float], facility_kw: Sequence[float], tons: Sequence[float]
) -> str:
    fig = _figure(7.5, 3.2)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(3, 2))
    x = np.arange(len(labels))
    w = 0.4
    ax1.bar(x - w / 2, [v or 0 for v in it_kw], w, color=BLUE, label="IT (mean)")
    ax1.bar(x + w / 2, [v or 0 for v in facility_kw], w, color=ORANGE, label="facility (IT x PUE)")
    ax1.set_ylabel("kW")
    ax1.set_title("power", fontsize=10)
    ax2.bar(x, [v or 0 for v in tons], 0.6, color=PURPLE)
    ax2.set_ylabel("tons of refrigeration")
    ax2.set_title("heat to remove", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xticks(
            x, labels, rotation=30 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center", fontsize=7
        )
        _style(ax)
    ax1.legend(fontsize=7)
    return to_data_uri(fig)


def kv_by_architecture(
    models: Sequence[str],
    attention: Sequence[str],
    bytes_per_token: Sequence[float],
    seqs_per_replica: Sequence[float | None],
    context_tokens: int,
    gpu: str,
) -> str:
    fig = _figure(7.5, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    y = np.arange(len(models))
    labels = [f"{m}\n({a})" for m, a in zip(models, attention)]
    kib = [b / 1024 for b in bytes_per_token]
    ax1.barh(y, kib, color=BLUE)
    ax1.set_yticks(y, labels, fontsize=7)
    ax1.invert_yaxis()
    for yi, v in zip(y, kib):
        ax1.text(v, yi, f" {v:,.1f}", va="center", fontsize=7)
    ax1.set_xlabel(f"KiB per token (mean over a {context_tokens:,}-token sequence)")
    ax1.set_title("KV cache per token", fontsize=10)
    ax1.margins(x=0.25)
    vals = [float(v) if _finite(v) else 0.0 for v in seqs_per_replica]
    ax2.barh(y, vals, color=[OK if _finite(v) else GREY for v in seqs_per_replica])
    ax2.set_yticks(y, [m for m in models], fontsize=7)
    ax2.invert_yaxis()
    for yi, v, raw in zip(y, vals, seqs_per_replica):
        ax2.text(v, yi, f" {v:,.0f}" if _finite(raw) else " does not fit", va="center", fontsize=7)
    ax2.set_xlabel(f"{context_tokens:,}-token sequences per replica")
    ax2.set_title(f"KV capacity on {gpu}", fontsize=10)
    ax2.margins(x=0.3)
    for ax in (ax1, ax2):
        ax.grid(True, axis="x", alpha=0.3)
    return to_data_uri(fig)


def utilization_over_time(ts: pd.DataFrame, replicas: int) -> str:
    fig = _figure(7.5, 4.2)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    t = ts["time_s"]
    ax1.plot(t, ts["running"], color=BLUE, lw=1, label="running sequences")
    ax1.plot(t, ts["queued"], color=MISS, lw=1, label="queued requests")
    ax1.set_ylabel("requests (fleet)")
    ax1.set_ylim(0, max(1.0, float(max(ts["running"].max(), ts["queued"].max()))) * 1.4)
    ax1.legend(fontsize=7, loc="upper left")
    ax1.set_title(f"load over time ({replicas} replica{'s' if replicas != 1 else ''})", fontsize=10)
    ax2.plot(t, 100 * ts["kv_used_fraction"], color=PURPLE, lw=1, label="KV pool used (%)")
    ax2.set_ylabel("KV used (%)")
    ax2.set_ylim(0, max(1.0, 100 * float(ts["kv_used_fraction"].max())) * 1.6)
    ax3 = ax2.twinx()
    ax3.plot(t, ts["power_w"] / 1000.0, color=ORANGE, lw=1, label="GPU power (kW)")
    ax3.set_ylabel("GPU power (kW)")
    ax3.set_ylim(0, max(0.1, float(ts["power_w"].max()) / 1000.0) * 1.6)
    ax2.set_xlabel("simulated time (s)")
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    for ax in (ax1, ax2):
        _style(ax)
    return to_data_uri(fig)


def sensitivity(panels: Sequence[tuple[str, str, Sequence[float], dict[str, Sequence[float | None]]]]) -> str:
    """panels: (title, xlabel, x values, {series label: $/Mtok values})."""
    fig = _figure(7.5, 5.2)
    axes = fig.subplots(2, 2).ravel()
    for ax, (title, xlabel, xs, series) in zip(axes, panels):
        for i, (label, ys) in enumerate(series.items()):
            pts = [(x, y) for x, y in zip(xs, ys) if _finite(y)]
            if pts:
                ax.plot(*zip(*pts), "o-", color=f"C{i}", label=label, ms=4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("$ / million tokens", fontsize=8)
        ax.tick_params(labelsize=7)
        _style(ax)
        if series:
            ax.legend(fontsize=6)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return to_data_uri(fig)


def attainment_vs_replicas(evaluations: pd.DataFrame, target: float) -> str:
    fig = _figure(7.5, 3.2)
    ax = fig.add_subplot()
    for i, ((gpu, tp), df) in enumerate(evaluations.groupby(["gpu", "tp"], sort=False)):
        df = df.sort_values("replicas")
        ax.plot(df["replicas"], 100 * df["slo_attainment"], "o-", color=f"C{i % 10}", label=f"{gpu} tp={tp}", ms=4)
    ax.axhline(100 * target, color=MISS, ls="--", lw=1, label="target")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("replicas (each point one simulation of the search)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title("search for the smallest fleet meeting the SLO", fontsize=10)
    _style(ax)
    ax.legend(fontsize=7)
    return to_data_uri(fig)


def tornado(panels: dict) -> str:
    """panels: {'rental': [(input, $/Mtok low, high)], 'owned': [...], 'base': {mode: $/Mtok}}:
    one horizontal bar per input from its low to its high value, around today's (the line)."""
    modes = [m for m in ("rental", "owned") if panels.get(m)]
    fig = _figure(7.5, 1.2 + 0.32 * max((len(panels[m]) for m in modes), default=1) * max(1, len(modes)))
    axes = fig.subplots(len(modes), 1, squeeze=False).ravel() if modes else []
    for ax, mode in zip(axes, modes):
        base = panels["base"][mode]
        bars = panels[mode]
        y = np.arange(len(bars))
        for yi, (_, lo, hi) in zip(y, bars):
            a, b = (lo if _finite(lo) else base), (hi if _finite(hi) else base)
            ax.barh(yi, max(a, b) - min(a, b), left=min(a, b), color=BLUE if mode == "rental" else ORANGE)
            ax.text(max(a, b), yi, f" \\${min(a, b):,.4g}-\\${max(a, b):,.4g}", va="center", fontsize=7)
        ax.axvline(base, color="#333333", lw=1)
        ax.set_yticks(y, [b[0].replace("$", "\\$") for b in bars], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{mode}: \\$/Mtok today \\${base:,.4g}", fontsize=9)
        ax.margins(x=0.3)
        _style(ax)
    return to_data_uri(fig)
