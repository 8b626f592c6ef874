"""What a GPU profile predicts for each measured sample row: one kernel call's time, and power.

Per row (one kernel call), with the terms of fleetsim.perf (r and the fixed times are call terms):

  gemm, dtype d       t = launch + max((flops + compute[d].half_work) / (compute[d].eta_max * peak[d]),
                                       (bytes + memory.half_work) / (memory.eta_max * bw))        perf: dense
  prefill_attention   t = launch + max(bytes / (memory.eta_max * bw), flops / (prefill_eta * peak))
  decode_attention    t = fixed[kv] + max((bytes - bytes_kv + bytes_kv / (r * kv_read_efficiency[kv]))
                                          / (memory.eta_max * bw), flops / (prefill_eta * peak))   perf: attention
  kv_append           t = fixed_append[kv] + bytes / (memory.eta_max * bw)                         perf: kv write
  launch              t = launch

Call terms are what the measured kernels add that is not a GPU-profile term: `launch` is the fixed
time of one kernel call (the launch floor: an engine's launch terms cover it); the torch reference
decode-attention and KV-append kernels launch several kernels per call (`fixed`, per KV dtype);
and r is the reference kernel's KV read rate relative to the profile's (an unfused gather moves
each KV byte several times; with kv_reference='weights' the profile holds the raw rates and r = 1).
`call_terms` derives them from samples and a profile by the fit's own loss, so the comparison of a
written profile with its samples reproduces the fit.

Power per GPU, as fleetsim.power computes it: P = min(cap_w, idle_w + compute_w * u_compute +
memory_w * u_memory), with u from the time per repetition inside the energy window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from fleetsim.calibrate.samples import samples_frame
from fleetsim.errors import SpecError
from fleetsim.spec.profile import CalibrationProfile

LOSS = {"loss": "soft_l1", "f_scale": 0.05}  # on log(t_model / t_measured): a few odd cases cannot drag a fit
FIXED_FAMILIES = ("decode_attention", "kv_append")  # reference kernels with their own per-call time


@dataclass(frozen=True)
class CallTerms:
    """Per-call terms of the measured kernels (not GPU-profile terms)."""

    launch_s: float = 0.0
    decode_fixed_s: Mapping[str, float] = field(default_factory=dict)  # per KV dtype
    decode_read_factor: float = 1.0
    append_fixed_s: Mapping[str, float] = field(default_factory=dict)  # per KV dtype

    def note(self) -> str:
        def us(table: Mapping[str, float]) -> str:
            return ", ".join(f"{d} {v * 1e6:.3g}" for d, v in sorted(table.items())) or "none"

        return (
            f"Per-call terms of the measured kernels (not profile terms): launch floor {self.launch_s * 1e6:.3g} us; "
            f"torch reference decode attention fixed time (us) {us(self.decode_fixed_s)}, KV read rate "
            f"{self.decode_read_factor:.3g} x the profile's; KV append fixed time (us) {us(self.append_fixed_s)}."
        )


# ---------------------------------------------------------------------------------------------
# rows


def timing_rows(samples: pd.DataFrame, families: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per timed case (not skipped, not slowed down while timed), optionally of some families."""
    frame = samples_frame(samples)
    frame = frame[(frame["skipped_reason"] == "") & ~frame["timing_throttled"]]
    frame = frame[np.isfinite(frame["time_s"]) & (frame["time_s"] > 0)]
    if families is not None:
        frame = frame[frame["family"].isin(list(families))]
    return frame.drop_duplicates("case_id").reset_index(drop=True)


def usable(samples: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran and whose energy window (or timing) was not throttled."""
    frame = samples_frame(samples)
    return frame[(frame["skipped_reason"] == "") & ~frame["throttled"]]


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
            peak[i] = gpu_peak(gpu, dtypes[i] or "bf16")
        bw[~np.isfinite(bw)] = _gpu_value(gpu, "hbm_bandwidth_bytes_per_s")
    flops = frame["flops"].to_numpy(dtype=float, na_value=0.0)
    work_bytes = frame["bytes"].to_numpy(dtype=float, na_value=0.0)
    peak[~np.isfinite(peak) & (flops <= 0)] = 1.0  # unused: no FLOPs
    bw[~np.isfinite(bw) & (work_bytes <= 0)] = 1.0
    if not (np.all(np.isfinite(peak)) and np.all(np.isfinite(bw))):
        raise SpecError("samples: some rows have no peak_flops_per_s / hbm_bandwidth_bytes_per_s; pass the GPU spec")
    return peak, bw


def _gpu_value(gpu, key: str):
    return gpu[key] if isinstance(gpu, Mapping) else getattr(gpu, key)


def gpu_peak(gpu, dtype: str) -> float:
    if not isinstance(gpu, Mapping) and callable(getattr(gpu, "peak_flops", None)):
        return float(gpu.peak_flops(dtype))
    peaks = _gpu_value(gpu, "peak_flops_per_s")
    return float(peaks[dtype] if dtype in peaks else peaks["bf16"])


@dataclass(frozen=True)
class Work:
    """The columns the time model reads, as arrays (one entry per row)."""

    family: np.ndarray
    compute_dtype: np.ndarray
    kv_dtype: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    bytes_kv: np.ndarray
    peak: np.ndarray
    bw: np.ndarray
    measured_s: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, gpu=None) -> Work:
        peak, bw = row_peaks(frame, gpu)
        return cls(
            family=frame["family"].to_numpy(dtype=object),
            compute_dtype=frame["compute_dtype"].replace("", "bf16").to_numpy(dtype=object),
            kv_dtype=frame["kv_dtype"].to_numpy(dtype=object),
            flops=frame["flops"].to_numpy(dtype=float, na_value=0.0),
            bytes=frame["bytes"].to_numpy(dtype=float, na_value=0.0),
            bytes_kv=frame["bytes_kv"].to_numpy(dtype=float, na_value=0.0),
            peak=peak,
            bw=bw,
            measured_s=frame["time_s"].to_numpy(dtype=float, na_value=np.nan),
        )


def row_times(w: Work, mem: tuple[float, float], curves, prefill_eta: float, kv, fixed) -> np.ndarray:
    """The model time of each row. mem = (eta_m, half_m); curves[i] = (eta_c, half_c) of row i's
    GEMM dtype; kv[i] = r x kv_read_efficiency of row i's KV dtype; fixed[i] = its call time."""
    eta_m, half_m = mem
    eta_c, half_c = curves
    mem_rate = eta_m * w.bw
    gemm = np.maximum((w.flops + half_c) / (eta_c * w.peak), (w.bytes + half_m) / mem_rate)
    attn_compute = w.flops / (prefill_eta * w.peak)
    prefill = np.maximum(w.bytes / mem_rate, attn_compute)
    decode = np.maximum((w.bytes - w.bytes_kv + w.bytes_kv / kv) / mem_rate, attn_compute)
    append = w.bytes / mem_rate
    f = w.family
    busy = np.select(
        [
            np.isin(f, ("gemm_decode", "gemm_prefill")),
            f == "prefill_attention",
            f == "decode_attention",
            f == "kv_append",
        ],
        [gemm, prefill, decode, append],
        default=0.0,
    )
    return fixed + np.where(f == "idle", np.nan, busy)


def _profile_arrays(w: Work, profile: CalibrationProfile, terms: CallTerms, *, raw_kv: bool = False):
    curves = [profile.compute_curve(d) for d in w.compute_dtype]
    eta_c = np.array([c.eta_max for c in curves])
    half_c = np.array([c.half_work for c in curves])
    kv = np.array([profile.attention.kv_efficiency(d)[0] if d else 1.0 for d in w.kv_dtype])
    if not raw_kv:
        kv = kv * terms.decode_read_factor
    fixed = np.full(len(w.family), terms.launch_s)
    for family, table in (("decode_attention", terms.decode_fixed_s), ("kv_append", terms.append_fixed_s)):
        rows = w.family == family
        fixed[rows] = [table.get(d, terms.launch_s) for d in w.kv_dtype[rows]]
    return (profile.memory.eta_max, profile.memory.half_work), (eta_c, half_c), profile.attention.prefill_eta, kv, fixed


def predict_time_s(
    samples: pd.DataFrame, profile: CalibrationProfile, gpu=None, terms: CallTerms | None = None
) -> np.ndarray:
    """The time the profile (and the call terms, derived from the samples when not given) predicts per row."""
    frame = samples_frame(samples)
    if terms is None:
        terms = call_terms(frame, profile, gpu)
    w = Work.of(frame, gpu)
    return row_times(w, *_profile_arrays(w, profile, terms))


# ---------------------------------------------------------------------------------------------
# call terms


def launch_floor_s(samples: pd.DataFrame) -> float:
    """Median time of the launch-floor case (0 when it was not measured)."""
    rows = timing_rows(samples, ("launch",))
    return float(rows["time_s"].median()) if not rows.empty else 0.0


def fit_decode(w: Work, mem, prefill_eta: float, base_kv: np.ndarray, groups: np.ndarray):
    """Decode-attention call terms by the fit's loss: a fixed time per KV dtype and a scale per
    group of rows (the KV read efficiency of row i is scale[groups[i]] x base_kv[i]).
    Returns ({kv dtype: fixed_s}, scales)."""
    dtypes = sorted(set(w.kv_dtype))
    index = np.array([dtypes.index(d) for d in w.kv_dtype])
    n_groups = int(groups.max()) + 1
    curves = (np.ones(len(index)), np.zeros(len(index)))  # no GEMM rows here

    def residuals(x):
        kv = x[len(dtypes) :][groups] * base_kv
        return np.log(row_times(w, mem, curves, prefill_eta, kv, x[index] * 1e-6) / w.measured_s)

    top = 1.0 / max(float(base_kv.max()), 1e-3)
    lo = np.array([0.0] * len(dtypes) + [1e-3 * top] * n_groups)
    hi = np.array([1e6] * len(dtypes) + [top] * n_groups)
    smallest = [float(w.measured_s[index == i].min()) * 1e6 for i in range(len(dtypes))]
    best = None
    for fixed_share, scale_share in ((0.5, 0.5), (0.1, 0.9), (0.8, 0.2)):
        x0 = np.clip([fixed_share * t for t in smallest] + [scale_share * top] * n_groups, lo, hi * (1 - 1e-9))
        result = least_squares(residuals, x0, bounds=(lo, hi), x_scale="jac", max_nfev=2000, **LOSS)
        if best is None or result.cost < best.cost:
            best = result
    return {d: float(best.x[i] * 1e-6) for i, d in enumerate(dtypes)}, best.x[len(dtypes) :]


def call_terms(samples: pd.DataFrame, profile: CalibrationProfile, gpu=None) -> CallTerms:
    """The call terms that fit the samples best given the profile's terms (the fit's loss):
    launch floor, then decode attention (fixed time per KV dtype and one read factor r for all),
    then KV append (fixed time per KV dtype)."""
    frame = samples_frame(samples)
    terms = CallTerms(launch_s=launch_floor_s(frame))
    decode_fixed: dict[str, float] = {}
    factor = 1.0
    decode = timing_rows(frame, ("decode_attention",))
    if not decode.empty:
        w = Work.of(decode, gpu)
        mem, _, eta_p, kv, _ = _profile_arrays(w, profile, terms, raw_kv=True)
        fixed, scales = fit_decode(w, mem, eta_p, kv, np.zeros(len(kv), dtype=int))
        decode_fixed = {d: sig(v) for d, v in fixed.items()}
        factor = sig(scales[0])
    append_fixed = {}
    append = timing_rows(frame, ("kv_append",))
    if not append.empty:
        w = Work.of(append, gpu)
        busy = w.bytes / (profile.memory.eta_max * w.bw)
        for d in sorted(set(w.kv_dtype)):
            rows = w.kv_dtype == d
            append_fixed[d] = sig(_fixed_only(w.measured_s[rows], busy[rows]))
    return CallTerms(terms.launch_s, decode_fixed, factor, append_fixed)


def _fixed_only(measured: np.ndarray, busy: np.ndarray) -> float:
    """The fixed time minimising the loss of t = fixed + busy."""
    result = least_squares(
        lambda x: np.log((x[0] * 1e-6 + busy) / measured),
        [min(max(0.0, float(np.min(measured - busy))) * 1e6, 1e6 * (1 - 1e-9))],
        bounds=([0.0], [1e6]),
        **LOSS,
    )
    return float(result.x[0] * 1e-6)


# ---------------------------------------------------------------------------------------------
# power


def utilization(samples: pd.DataFrame, gpu=None) -> tuple[np.ndarray, np.ndarray]:
    """(u_compute, u_memory) of each row, from its time per repetition in the energy window
    (window_s / reps), else its CUDA-event median; clipped to [0, 1] as fleetsim.power clips them."""
    frame = samples_frame(samples)
    peak, bw = row_peaks(frame, gpu)
    flops = frame["flops"].to_numpy(dtype=float, na_value=0.0)
    work_bytes = frame["bytes"].to_numpy(dtype=float, na_value=0.0)
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


def sig(value: float, digits: int = 6) -> float:
    """Round to significant digits (readable YAML, no false precision)."""
    value = float(value)
    if value == 0 or not np.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")
