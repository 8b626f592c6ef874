"""Fit a CalibrationProfile to measured samples, with the simulator's own step-time and power models.

Step time of a row (one kernel call), as perf.py computes a scheduler iteration:

    t = overhead_s + max((flops + compute.half_work) / (compute.eta_max * peak_flops[dtype]),
                         (bytes - bytes_kv + bytes_kv / kv_eff[kv_dtype] + memory.half_work)
                         / (memory.eta_max * hbm_bw))

(a term is 0 when its work is 0). One robust least-squares fit (scipy's least_squares, soft-L1
loss on log(t_model / t_measured), so a few odd cases cannot drag it) over:

- the launch floor (no work: t = overhead_s), which pins overhead_s apart from the half_work
  latencies;
- memory-bound kernels: decode attention and decode-shaped (skinny) GEMMs -> memory curve and
  kv_read_efficiency per KV dtype (relative to bf16 = 1: the dequantization cost per byte);
- compute-bound kernels: prefill-shaped GEMMs -> compute curve.

KV append and prefill attention are not fitted: their errors under the fitted model are reported
(fit_residuals) so a user sees how far the simulator's roofline is from those kernels.

Power per GPU, as power.py computes it: P = min(cap_w, idle_w + compute_w * u_compute +
memory_w * u_memory), u_compute = flops / (t * peak_flops), u_memory = bytes / (t * hbm_bw), with
t the time per repetition inside the energy window. idle_w is the median idle-window power;
compute_w and memory_w are a non-negative robust least-squares fit of the windows below the cap.
cap_w is the GPU's enforced power limit (from NVML, in the samples) unless given.

Skipped rows are never fitted; timings taken under a thermal or hardware slowdown are left out of
the time fit, energy windows under any power or thermal throttling out of the power fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, nnls

from fleetsim.calibrate.samples import samples_frame
from fleetsim.errors import SpecError
from fleetsim.spec.profile import CalibrationProfile, EfficiencyCurve, PowerModel, Provenance

TIME_FIT_FAMILIES = ("launch", "decode_attention", "gemm_decode", "gemm_prefill")
MEMORY_FAMILIES = ("decode_attention", "gemm_decode")
COMPUTE_FAMILIES = ("gemm_prefill",)
REFERENCE_KV_DTYPE = "bf16"
POWER_KEY = "power"  # fit_residuals key of the power model's RMS relative error

_ETA_MIN = 1e-3
_KV_EFF_MIN = 1e-2


# ---------------------------------------------------------------------------------------------
# rows and peaks


def usable(samples: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran and whose energy window (or timing) was not throttled."""
    frame = samples_frame(samples)
    return frame[(frame["skipped_reason"] == "") & ~frame["throttled"]]


def timing_rows(samples: pd.DataFrame, families: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per timed case (not skipped, not slowed down while timed), optionally of some
    families only."""
    frame = samples_frame(samples)
    frame = frame[(frame["skipped_reason"] == "") & ~frame["timing_throttled"]]
    frame = frame[np.isfinite(frame["time_s"]) & (frame["time_s"] > 0)]
    if families is not None:
        frame = frame[frame["family"].isin(list(families))]
    return frame.drop_duplicates("case_id").reset_index(drop=True)


def power_rows(samples: pd.DataFrame) -> pd.DataFrame:
    """Energy windows (not throttled) with a mean power."""
    frame = usable(samples)
    frame = frame[np.isfinite(frame["mean_power_w"]) & (frame["mean_power_w"] > 0)]
    return frame.reset_index(drop=True)


def row_peaks(frame: pd.DataFrame, gpu=None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: peak FLOP/s of its compute dtype and HBM bandwidth (from the columns, else `gpu`)."""
    peak = frame["peak_flops_per_s"].to_numpy(dtype=float, na_value=np.nan).copy()
    bw = frame["hbm_bandwidth_bytes_per_s"].to_numpy(dtype=float, na_value=np.nan).copy()
    if gpu is not None:
        dtypes = frame["compute_dtype"].tolist()
        for i in np.flatnonzero(~np.isfinite(peak)):
            peak[i] = _gpu_peak(gpu, dtypes[i] or "bf16")
        bw[~np.isfinite(bw)] = _gpu_value(gpu, "hbm_bandwidth_bytes_per_s")
    flops = frame["flops"].to_numpy(dtype=float, na_value=0.0)
    work_bytes = frame["bytes"].to_numpy(dtype=float, na_value=0.0)
    peak[~np.isfinite(peak) & (flops <= 0)] = 1.0  # unused: no FLOPs
    bw[~np.isfinite(bw) & (work_bytes <= 0)] = 1.0
    if not (np.all(np.isfinite(peak)) and np.all(np.isfinite(bw))):
        raise SpecError("samples: some rows have no peak_flops_per_s / hbm_bandwidth_bytes_per_s; pass the GPU spec")
    return peak, bw


def _gpu_value(gpu, key: str):
    if isinstance(gpu, Mapping):
        return gpu[key]
    return getattr(gpu, key)


def _gpu_peak(gpu, dtype: str) -> float:
    if not isinstance(gpu, Mapping) and callable(getattr(gpu, "peak_flops", None)):
        return float(gpu.peak_flops(dtype))
    peaks = _gpu_value(gpu, "peak_flops_per_s")
    return float(peaks[dtype] if dtype in peaks else peaks["bf16"])


# ---------------------------------------------------------------------------------------------
# the models


def _model_time(work, peak, bw, kv_eff, overhead_s, eta_m, half_m, eta_c, half_c) -> np.ndarray:
    flops, work_bytes, bytes_kv = work
    effective = work_bytes - bytes_kv + bytes_kv / kv_eff
    t_compute = np.where(flops > 0, (flops + half_c) / (eta_c * peak), 0.0)
    t_memory = np.where(work_bytes > 0, (effective + half_m) / (eta_m * bw), 0.0)
    return overhead_s + np.maximum(t_compute, t_memory)


def _work(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        frame["flops"].to_numpy(dtype=float, na_value=0.0),
        frame["bytes"].to_numpy(dtype=float, na_value=0.0),
        frame["bytes_kv"].to_numpy(dtype=float, na_value=0.0),
    )


def _kv_eff_rows(frame: pd.DataFrame, kv_eff: Mapping[str, float]) -> np.ndarray:
    return np.array([kv_eff.get(d, 1.0) for d in frame["kv_dtype"]], dtype=float)


def predict_time_s(samples: pd.DataFrame, profile: CalibrationProfile, gpu=None) -> np.ndarray:
    """The step time the profile predicts for each row's work (the simulator's formula)."""
    frame = samples_frame(samples)
    peak, bw = row_peaks(frame, gpu)
    return _model_time(
        _work(frame),
        peak,
        bw,
        np.array([profile.kv_efficiency(d) for d in frame["kv_dtype"]], dtype=float),
        profile.overhead_s,
        profile.memory.eta_max,
        profile.memory.half_work,
        profile.compute.eta_max,
        profile.compute.half_work,
    )


def utilization(samples: pd.DataFrame, gpu=None) -> tuple[np.ndarray, np.ndarray]:
    """(u_compute, u_memory) of each row, from its time per repetition in the energy window
    (window_s / reps), else its CUDA-event median; clipped to [0, 1] as power.py clips them."""
    frame = samples_frame(samples)
    peak, bw = row_peaks(frame, gpu)
    flops, work_bytes, _ = _work(frame)
    reps = frame["reps"].to_numpy(dtype=float, na_value=np.nan)
    window = frame["window_s"].to_numpy(dtype=float, na_value=np.nan)
    per_rep = np.where(reps > 0, window / np.where(reps > 0, reps, 1.0), frame["time_s"].to_numpy(dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        u_compute = np.where(flops > 0, flops / (per_rep * peak), 0.0)
        u_memory = np.where(work_bytes > 0, work_bytes / (per_rep * bw), 0.0)
    return np.clip(u_compute, 0.0, 1.0), np.clip(u_memory, 0.0, 1.0)


def predict_power_w(samples: pd.DataFrame, profile: CalibrationProfile, gpu=None) -> np.ndarray:
    """The power the profile predicts for each row at its measured FLOP and byte rates."""
    u_compute, u_memory = utilization(samples, gpu)
    p = profile.power
    return np.minimum(p.cap_w, p.idle_w + p.compute_w * u_compute + p.memory_w * u_memory)


# ---------------------------------------------------------------------------------------------
# fitting


def fit_time_model(
    samples: pd.DataFrame,
    gpu=None,
    *,
    overhead_s: float | None = None,
    families: Sequence[str] = TIME_FIT_FAMILIES,
    kv_reference: Literal["bf16", "weights"] = "bf16",
) -> tuple[float, EfficiencyCurve, EfficiencyCurve, dict[str, float]]:
    """(overhead_s, memory curve, compute curve, kv_read_efficiency) by robust least squares.

    kv_reference="bf16": kv_read_efficiency is relative to bf16 KV (bf16 = 1), and bf16 decode
    attention shares the memory curve with the skinny GEMMs. kv_reference="weights": every KV
    dtype, bf16 included, gets an efficiency relative to weight streaming (the memory curve then
    comes from the GEMMs alone) - the choice when the attention kernel measured is much less
    efficient per byte than the GEMMs (see calibration/README.md).
    """
    if kv_reference not in ("bf16", "weights"):
        raise SpecError(f"kv_reference: '{kv_reference}' is not valid; choose bf16 or weights")
    reference = REFERENCE_KV_DTYPE if kv_reference == "bf16" else None
    rows = timing_rows(samples, families)
    memory_rows = rows[rows["family"].isin(MEMORY_FAMILIES)]
    compute_rows = rows[rows["family"].isin(COMPUTE_FAMILIES)]
    launch_rows = rows[rows["family"] == "launch"]
    if memory_rows.empty:
        raise SpecError(f"samples: no usable memory-bound rows (families {', '.join(MEMORY_FAMILIES)}) to fit")
    if compute_rows.empty:
        raise SpecError(f"samples: no usable compute-bound rows (families {', '.join(COMPUTE_FAMILIES)}) to fit")

    peak, bw = row_peaks(rows, gpu)
    work = _work(rows)
    flops, work_bytes, bytes_kv = work
    measured = rows["time_s"].to_numpy(dtype=float)
    kv_dtypes = sorted({d for d, b in zip(rows["kv_dtype"], bytes_kv) if b > 0 and d and d != reference})
    kv_index = [kv_dtypes.index(d) if (b > 0 and d in kv_dtypes) else -1 for d, b in zip(rows["kv_dtype"], bytes_kv)]
    kv_index = np.array(kv_index)

    # Starting point, staged: overhead from the launch floor; each curve from its own rows.
    if overhead_s is not None:
        o0 = overhead_s
    elif not launch_rows.empty:
        o0 = float(launch_rows["time_s"].median())
    else:
        o0 = 0.0
    is_memory = rows["family"].isin(MEMORY_FAMILIES).to_numpy() & (kv_index < 0)
    is_compute = rows["family"].isin(COMPUTE_FAMILIES).to_numpy()
    eta_m0, half_m0 = _curve_start(work_bytes[is_memory], measured[is_memory] - o0, bw[is_memory])
    eta_c0, half_c0 = _curve_start(flops[is_compute], measured[is_compute] - o0, peak[is_compute])

    fit_overhead = overhead_s is None and not launch_rows.empty
    # Parameters in units of similar size: overhead in us, half_work in MB and GFLOP.
    names = (["overhead_us"] if fit_overhead else []) + ["eta_m", "half_m_mb", "eta_c", "half_c_gflop"]
    names += [f"kv:{d}" for d in kv_dtypes]
    lower = {"overhead_us": 0.0, "eta_m": _ETA_MIN, "half_m_mb": 0.0, "eta_c": _ETA_MIN, "half_c_gflop": 0.0}
    upper = {"overhead_us": 1e6, "eta_m": 1.0, "half_m_mb": 1e6, "eta_c": 1.0, "half_c_gflop": 1e7}

    def unpack(x):
        values = dict(zip(names, x))
        o = values["overhead_us"] * 1e-6 if fit_overhead else (overhead_s if overhead_s is not None else 0.0)
        kv = np.ones(len(rows))
        if kv_dtypes:
            effs = np.array([values[f"kv:{d}"] for d in kv_dtypes])
            kv = np.where(kv_index >= 0, effs[np.maximum(kv_index, 0)], 1.0)
        return o, values["eta_m"], values["half_m_mb"] * 1e6, values["eta_c"], values["half_c_gflop"] * 1e9, kv, values

    def residuals(x):
        o, eta_m, half_m, eta_c, half_c, kv, _ = unpack(x)
        return np.log(_model_time(work, peak, bw, kv, o, eta_m, half_m, eta_c, half_c) / measured)

    lo = np.array([lower.get(n, _KV_EFF_MIN) for n in names])
    hi = np.array([upper.get(n, 1.0) for n in names])
    best = None
    for scale_eta, scale_half in ((1.0, 1.0), (1.0, 0.0), (0.8, 2.0)):
        start = {
            "overhead_us": o0 * 1e6,
            "eta_m": eta_m0 * scale_eta,
            "half_m_mb": half_m0 * scale_half / 1e6,
            "eta_c": eta_c0 * scale_eta,
            "half_c_gflop": half_c0 * scale_half / 1e9,
        }
        x0 = np.clip([start.get(n, 0.8) for n in names], lo, hi)
        x0 = np.where(x0 >= hi, hi - 1e-9 * np.maximum(1.0, np.abs(hi)), x0)
        result = least_squares(
            residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, x_scale="jac", max_nfev=2000
        )
        if best is None or result.cost < best.cost:
            best = result
    o, eta_m, half_m, eta_c, half_c, _, values = unpack(best.x)
    kv_eff = {reference: 1.0} if reference in set(rows["kv_dtype"]) else {}
    kv_eff.update({d: _sig(min(1.0, values[f"kv:{d}"])) for d in kv_dtypes})
    return (
        _sig(o),
        EfficiencyCurve(eta_max=_sig(min(1.0, eta_m)), half_work=_sig(half_m)),
        EfficiencyCurve(eta_max=_sig(min(1.0, eta_c)), half_work=_sig(half_c)),
        kv_eff,
    )


def _curve_start(work: np.ndarray, busy_s: np.ndarray, peak: np.ndarray) -> tuple[float, float]:
    """eta from the largest cases' achieved rate, half_work from the smallest ones' shortfall."""
    keep = (work > 0) & (busy_s > 0)
    work, busy_s, peak = work[keep], busy_s[keep], peak[keep]
    if len(work) == 0:
        return 0.5, 0.0
    order = np.argsort(work)
    achieved = work / (busy_s * peak)
    eta = float(np.clip(np.median(achieved[order[-max(1, len(order) // 4) :]]), 0.02, 0.99))
    small = order[: max(1, len(order) // 4)]
    half = float(np.median(np.maximum(busy_s[small] * eta * peak[small] - work[small], 0.0)))
    return eta, half


def fit_power_model(
    samples: pd.DataFrame,
    gpu=None,
    *,
    cap_w: float | None = None,
    intercept: Literal["idle", "fit"] = "idle",
) -> PowerModel:
    """idle_w, compute_w, memory_w and cap_w of the power model from the energy windows.

    intercept="idle": idle_w is the median power of the idle windows (the brief's definition);
    intercept="fit": idle_w is the fitted intercept of the active windows and parked_w the idle
    windows' median (a busy GPU at near-zero utilisation runs at higher clocks than a rested one).
    """
    rows = power_rows(samples)
    cap = _cap_w(samples, gpu, cap_w)
    idle = rows[rows["family"] == "idle"]
    u_compute, u_memory = utilization(rows, gpu)
    power = rows["mean_power_w"].to_numpy(dtype=float)
    has_work = ((rows["flops"] > 0) | (rows["bytes"] > 0)).to_numpy() & (rows["family"] != "idle").to_numpy()
    active = has_work & np.isfinite(u_compute) & np.isfinite(u_memory) & (power < 0.98 * cap)
    if active.sum() < 2:
        raise SpecError("samples: fewer than 2 usable energy windows with work below the power cap; cannot fit power")
    design = np.column_stack([u_compute[active], u_memory[active]])
    target = power[active]
    idle_power = float(idle["mean_power_w"].median()) if not idle.empty else math.nan

    if intercept == "idle" and math.isfinite(idle_power):
        above = target - idle_power
        x0, _ = nnls(design, above)

        def residuals(x):
            return (design @ x - above) / target

        result = least_squares(residuals, x0, bounds=(0.0, np.inf), loss="soft_l1", f_scale=0.05)
        idle_w, (compute_w, memory_w), parked_w = idle_power, result.x, None
    else:
        with_intercept = np.column_stack([np.ones(len(target)), design])
        x0, _ = nnls(with_intercept, target)

        def residuals(x):
            return (with_intercept @ x - target) / target

        result = least_squares(residuals, x0, bounds=(0.0, np.inf), loss="soft_l1", f_scale=0.05)
        idle_w, compute_w, memory_w = result.x
        parked_w = idle_power if math.isfinite(idle_power) else None
    return PowerModel(
        idle_w=_sig(idle_w),
        compute_w=_sig(compute_w),
        memory_w=_sig(memory_w),
        cap_w=_sig(cap),
        parked_w=None if parked_w is None else _sig(parked_w),
    )


def _cap_w(samples: pd.DataFrame, gpu, cap_w: float | None) -> float:
    if cap_w is not None and math.isfinite(cap_w) and cap_w > 0:
        return float(cap_w)
    limits = samples_frame(samples)["power_limit_w"]
    limits = limits[np.isfinite(limits) & (limits > 0)]
    if not limits.empty:
        return float(limits.median())
    tdp = None
    if gpu is not None:
        tdp = gpu.get("tdp_w") if isinstance(gpu, Mapping) else getattr(gpu, "tdp_w", None)
    if tdp:
        return float(tdp)
    raise SpecError("samples: no power_limit_w recorded and no cap_w or GPU TDP given; cannot set cap_w")


def residuals_by_family(samples: pd.DataFrame, profile: CalibrationProfile, gpu=None) -> dict[str, float]:
    """RMS relative error of the fitted model per kernel family (time), and of power ('power')."""
    out: dict[str, float] = {}
    rows = timing_rows(samples)
    rows = rows[rows["family"] != "idle"]
    if not rows.empty:
        relative = predict_time_s(rows, profile, gpu) / rows["time_s"].to_numpy(dtype=float) - 1.0
        for family, errors in pd.Series(relative).groupby(rows["family"].to_numpy()):
            out[str(family)] = _sig(float(np.sqrt(np.mean(np.square(errors)))), 4)
    windows = power_rows(samples)
    if not windows.empty:
        relative = predict_power_w(windows, profile, gpu) / windows["mean_power_w"].to_numpy(dtype=float) - 1.0
        out[POWER_KEY] = _sig(float(np.sqrt(np.mean(np.square(relative)))), 4)
    return out


def fit_profile(
    samples: pd.DataFrame,
    gpu,
    provenance: Provenance | Mapping,
    *,
    cap_w: float | None = None,
    overhead_s: float | None = None,
    families: Sequence[str] = TIME_FIT_FAMILIES,
    kv_reference: Literal["bf16", "weights"] = "bf16",
    power_intercept: Literal["idle", "fit"] = "idle",
    gpu_name: str | None = None,
) -> CalibrationProfile:
    """A CalibrationProfile fitted to `samples`.

    gpu: a GpuSpec, or anything with peak_flops_per_s (dict by dtype), hbm_bandwidth_bytes_per_s
    and a name (a mapping works too); may be None when the samples carry their peaks and
    gpu_name is given. overhead_s fixes the per-iteration overhead instead of fitting it from the
    launch floor (e.g. an engine's measured scheduling cost). kv_reference and power_intercept:
    see fit_time_model and fit_power_model.
    """
    provenance = provenance if isinstance(provenance, Provenance) else Provenance.model_validate(dict(provenance))
    name = gpu_name or _gpu_name(gpu)
    if not name:
        raise SpecError("fit_profile: no GPU name (pass a GPU spec or gpu_name)")
    samples = samples_frame(samples)
    overhead, memory, compute, kv_eff = fit_time_model(
        samples, gpu, overhead_s=overhead_s, families=families, kv_reference=kv_reference
    )
    power = fit_power_model(samples, gpu, cap_w=cap_w, intercept=power_intercept)
    profile = CalibrationProfile(
        gpu=name,
        provenance=provenance,
        overhead_s=overhead,
        memory=memory,
        compute=compute,
        kv_read_efficiency=kv_eff,
        power=power,
    )
    return profile.model_copy(update={"fit_residuals": residuals_by_family(samples, profile, gpu)})


def _gpu_name(gpu) -> str | None:
    if gpu is None:
        return None
    if isinstance(gpu, Mapping):
        return gpu.get("name")
    return getattr(gpu, "name", None)


def _sig(value: float, digits: int = 6) -> float:
    """Round to significant digits (readable YAML, no false precision)."""
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")
