"""Measured versus fitted: a table per kernel case and a PNG of it.

The table has one row per case (energy windows averaged over the unthrottled ones, or over all
when every window was throttled): the measured
time and power next to what the profile predicts, their relative errors, the KV memory check
(memory allocated for the cache against the memory model's prediction), throttling, and whether
the case's time was used by the fit. Fitted times are the profile's terms plus the call terms
(launch floor, the reference kernels' fixed times and KV read factor) derived from the same
samples by the fit's loss (fleetsim.calibrate.model.call_terms). The figure is drawn with matplotlib's Agg canvas (no display, no global
backend change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fleetsim.calibrate.fit import TIME_FIT_FAMILIES
from fleetsim.calibrate.model import call_terms, predict_power_w, predict_time_s, usable
from fleetsim.calibrate.samples import samples_frame
from fleetsim.spec.profile import CalibrationProfile

CASE_COLUMNS = (
    "case_id",
    "family",
    "kernel",
    "layout",
    "kv_dtype",
    "compute_dtype",
    "impl",
    "batch",
    "context_tokens",
    "new_tokens",
    "m",
    "n",
    "k",
    "flops",
    "bytes",
)
TABLE_COLUMNS = CASE_COLUMNS + (
    "measured_time_s",
    "fitted_time_s",
    "time_rel_error",
    "measured_power_w",
    "fitted_power_w",
    "power_rel_error",
    "windows",
    "mem_used_bytes",
    "mem_predicted_bytes",
    "mem_ratio",
    "throttled_windows",
    "timing_throttled",
    "used_in_fit",
    "skipped_reason",
)


def comparison_table(
    samples: pd.DataFrame,
    profile: CalibrationProfile,
    gpu=None,
    *,
    fit_families=TIME_FIT_FAMILIES,
) -> pd.DataFrame:
    """One row per case: measured vs fitted time and power, errors, memory check, fit use."""
    frame = samples_frame(samples)
    if frame.empty:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    ran = frame["skipped_reason"] == ""
    time_pred = pd.Series(np.nan, index=frame.index)
    power_pred = pd.Series(np.nan, index=frame.index)
    if ran.any():
        runnable = frame[ran]
        terms = call_terms(frame, profile, gpu)
        time_pred[runnable.index] = predict_time_s(runnable, profile, gpu, terms)
        has_power = runnable[np.isfinite(runnable["mean_power_w"])]
        if not has_power.empty:
            power_pred[has_power.index] = predict_power_w(has_power, profile, gpu)
    good = frame.index.isin(usable(frame).index)
    by = frame["case_id"]
    has_good = pd.Series(good, index=frame.index).groupby(by).transform("any").to_numpy()
    power_from = good | ~has_good  # the unthrottled windows, or every window when all were throttled
    windowed = frame["window"].notna()
    first = frame.drop_duplicates("case_id").set_index("case_id")
    slowed = frame.groupby(by, sort=False)["timing_throttled"].any()

    def per_case(values: pd.Series) -> pd.Series:  # mean of the finite values of each case
        values = values.astype(float).where(lambda v: np.isfinite(v))
        return values.groupby(by, sort=False).mean().reindex(first.index)

    measured_time = first["time_s"].astype(float)
    table = first[list(CASE_COLUMNS[1:])].copy()
    table.insert(0, "case_id", first.index)
    fitted_time = time_pred.groupby(by, sort=False).first().reindex(first.index).where(first["family"] != "idle")
    measured_power = per_case(frame["mean_power_w"].where(power_from))
    fitted_power = per_case(power_pred.where(power_from))
    table["measured_time_s"] = measured_time
    table["fitted_time_s"] = fitted_time
    table["time_rel_error"] = _relative(fitted_time, measured_time)
    table["measured_power_w"] = measured_power
    table["fitted_power_w"] = fitted_power
    table["power_rel_error"] = _relative(fitted_power, measured_power)
    table["windows"] = windowed.groupby(by, sort=False).sum().reindex(first.index).astype(int)
    table["mem_used_bytes"] = first["mem_used_bytes"]
    table["mem_predicted_bytes"] = first["mem_predicted_bytes"]
    table["mem_ratio"] = _relative(first["mem_used_bytes"], first["mem_predicted_bytes"]) + 1.0
    throttled = (frame["throttled"] & windowed).groupby(by, sort=False).sum()
    table["throttled_windows"] = throttled.reindex(first.index).astype(int)
    table["timing_throttled"] = slowed.reindex(first.index).astype(bool)
    table["used_in_fit"] = (
        first["family"].isin(list(fit_families))
        & (first["skipped_reason"] == "")
        & ~table["timing_throttled"]
        & np.isfinite(measured_time)
    )
    table["skipped_reason"] = first["skipped_reason"]
    return table.reset_index(drop=True)[list(TABLE_COLUMNS)]


def plot_comparison(table: pd.DataFrame, out_png: Path, *, title: str = "") -> Path:
    """Three panels: fitted vs measured time (log-log), fitted vs measured power, time error
    per family. Returns the PNG path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(16, 5.2), layout="constrained")
    FigureCanvasAgg(figure)
    ax_time, ax_power, ax_error = figure.subplots(1, 3)
    families = sorted(set(table["family"]) - {"idle"}) if not table.empty else []
    colors = {f: f"C{i % 10}" for i, f in enumerate(sorted(set(table["family"])) if not table.empty else [])}

    timed = table[
        np.isfinite(table["measured_time_s"].astype(float)) & np.isfinite(table["fitted_time_s"].astype(float))
    ]
    for family in families:
        part = timed[timed["family"] == family]
        if part.empty:
            continue
        used = part["used_in_fit"].astype(bool)
        ax_time.scatter(
            part["measured_time_s"][used] * 1e6,
            part["fitted_time_s"][used] * 1e6,
            s=14,
            color=colors[family],
            label=family,
        )
        ax_time.scatter(
            part["measured_time_s"][~used] * 1e6,
            part["fitted_time_s"][~used] * 1e6,
            s=14,
            facecolors="none",
            edgecolors=colors[family],
        )
    _diagonal(ax_time, timed[["measured_time_s", "fitted_time_s"]].to_numpy(dtype=float) * 1e6, log=True)
    ax_time.set(
        xscale="log",
        yscale="log",
        xlabel="measured time (µs)",
        ylabel="fitted time (µs)",
        title="step-time model (hollow: not fitted)",
    )
    if not timed.empty:
        ax_time.legend(fontsize=7)

    powered = table[np.isfinite(table["measured_power_w"].astype(float))]
    for family in sorted(set(powered["family"])):
        part = powered[powered["family"] == family]
        ax_power.scatter(part["measured_power_w"], part["fitted_power_w"], s=18, color=colors[family], label=family)
    _diagonal(ax_power, powered[["measured_power_w", "fitted_power_w"]].to_numpy(dtype=float), log=False)
    ax_power.set(xlabel="measured mean power (W)", ylabel="fitted power (W)", title="power model")
    if not powered.empty:
        ax_power.legend(fontsize=7)

    data = [timed.loc[timed["family"] == f, "time_rel_error"].astype(float) * 100 for f in families]
    data = [d for d in data if len(d)]
    labels = [f for f in families if len(timed.loc[timed["family"] == f])]
    if data:
        if _has_orientation():
            ax_error.boxplot(data, orientation="horizontal")
        else:
            ax_error.boxplot(data, vert=False)
        ax_error.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax_error.axvline(0, color="grey", lw=0.8)
    ax_error.set(xlabel="fitted / measured - 1 (%)", title="time error by family")
    if title:
        figure.suptitle(title)
    figure.savefig(out_png, dpi=110)
    return out_png


def _has_orientation() -> bool:
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return (major, minor) >= (3, 10)


def _diagonal(ax, points: np.ndarray, *, log: bool) -> None:
    values = points[np.isfinite(points)]
    if log:
        values = values[values > 0]
    if values.size == 0:
        return
    low, high = values.min(), values.max()
    if log:
        low, high = low / 1.5, high * 1.5
    else:
        pad = 0.05 * (high - low or 1.0)
        low, high = low - pad, high + pad
    ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")


def _relative(fitted: pd.Series, measured: pd.Series) -> pd.Series:
    """fitted / measured - 1, NaN where either is missing or measured is 0."""
    fitted, measured = fitted.astype(float), measured.astype(float)
    ok = np.isfinite(fitted) & np.isfinite(measured) & (measured != 0)
    return (fitted / measured.where(ok) - 1.0).where(ok)
