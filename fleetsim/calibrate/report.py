"""Measured versus fitted: a table per kernel case and a PNG of it.

The table has one row per case (energy windows averaged over the unthrottled ones, or over all
when every window was throttled): the measured
time and power next to what the profile predicts, their relative errors, the KV memory check
(memory allocated for the cache against the memory model's prediction), throttling, and whether
the case's time was used by the fit. The figure is drawn with matplotlib's Agg canvas (no display, no global
backend change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fleetsim.calibrate.fit import TIME_FIT_FAMILIES, predict_power_w, predict_time_s, usable
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
    good = usable(frame)
    ran = frame["skipped_reason"] == ""
    time_pred = pd.Series(np.nan, index=frame.index)
    power_pred = pd.Series(np.nan, index=frame.index)
    if ran.any():
        runnable = frame[ran]
        time_pred[runnable.index] = predict_time_s(runnable, profile, gpu)
        has_power = runnable[np.isfinite(runnable["mean_power_w"])]
        if not has_power.empty:
            power_pred[has_power.index] = predict_power_w(has_power, profile, gpu)
    frame = frame.assign(_fitted_time=time_pred, _fitted_power=power_pred, _good=frame.index.isin(good.index))

    rows = []
    for _case_id, group in frame.groupby("case_id", sort=False):
        first = group.iloc[0]
        kept = group[group["_good"]]
        power_from = kept if not kept.empty else group
        measured_power = _mean(power_from["mean_power_w"])
        fitted_power = _mean(power_from["_fitted_power"])
        measured_time = float(first["time_s"])
        fitted_time = float(first["_fitted_time"]) if first["family"] != "idle" else np.nan
        slowed = bool(group["timing_throttled"].any())
        used = bool(
            first["family"] in fit_families
            and first["skipped_reason"] == ""
            and not slowed
            and np.isfinite(measured_time)
        )
        row = {column: first[column] for column in CASE_COLUMNS}
        row.update(
            measured_time_s=measured_time,
            fitted_time_s=fitted_time,
            time_rel_error=_relative(fitted_time, measured_time),
            measured_power_w=measured_power,
            fitted_power_w=fitted_power,
            power_rel_error=_relative(fitted_power, measured_power),
            windows=int(group["window"].notna().sum()),
            mem_used_bytes=first["mem_used_bytes"],
            mem_predicted_bytes=first["mem_predicted_bytes"],
            mem_ratio=_ratio(first["mem_used_bytes"], first["mem_predicted_bytes"]),
            throttled_windows=int((group["throttled"] & group["window"].notna()).sum()),
            timing_throttled=slowed,
            used_in_fit=used,
            skipped_reason=first["skipped_reason"],
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


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


def _mean(values: pd.Series) -> float:
    values = values.astype(float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else np.nan


def _relative(fitted: float, measured: float) -> float:
    if not (np.isfinite(fitted) and np.isfinite(measured)) or measured == 0:
        return np.nan
    return fitted / measured - 1.0


def _ratio(used, predicted) -> float:
    used, predicted = float(used), float(predicted)
    if not (np.isfinite(used) and np.isfinite(predicted)) or predicted == 0:
        return np.nan
    return used / predicted
