"""Fit a schema-2 CalibrationProfile to measured kernel samples, with the simulator's own terms.

The row model (fleetsim.calibrate.model) is fleetsim.perf's step model for one kernel call. The
terms a kernel measurement gives are fitted in stages, each by robust least squares (scipy's
least_squares, soft-L1 loss on log(t_model / t_measured), so a few odd cases cannot drag it):

1. the launch floor (median of the no-work case): the fixed time of one kernel call, taken off
   every one-kernel case (GEMMs, SDPA); not a profile term;
2. GEMMs, every compute dtype measured (bf16, fp8): one memory curve (decode-shaped, skinny
   GEMMs stream their weights) and a compute curve per dtype (prefill-shaped GEMMs), through the
   same max() as perf's dense term;
3. prefill attention (SDPA, causal): attention.prefill_eta, the fraction of the bf16 peak;
4. decode attention over the paged cache, per KV dtype: its KV read rate relative to the memory
   curve and a fixed time per call (the torch reference kernel launches several kernels); with
   kv_reference="bf16" (the default) the profile holds the rates relative to bf16's, bf16 = 1 (a
   fused kernel reads bf16 KV at the memory curve; the reference kernel's bf16 rate is kept as
   the call term r), with kv_reference="weights" the raw rates;
5. power: P = min(cap_w, idle_w + compute_w u_compute + memory_w u_memory) over the energy
   windows: idle_w the median idle window, compute_w and memory_w a non-negative robust fit of
   the windows below the cap, cap_w the enforced power limit NVML reports.

What a kernel measurement cannot give is copied from the shipped published-fit profile of the
same GPU (fleetsim.profile.load_profile): collectives (all-reduce needs several GPUs),
host_time_scale (the host CPU), and any compute dtype or KV dtype not measured here; the notes say
which term came from where. Engine terms (host time, launch, batching) are not GPU-profile terms:
they stay in engine profiles. KV append is not fitted: its error is reported (fit_residuals).
Skipped rows are never fitted; timings under a thermal or hardware slowdown are left out of the
time fit, energy windows under any power or thermal throttling out of the power fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, nnls

from fleetsim.calibrate.model import (
    LOSS,
    CallTerms,
    Work,
    call_terms,
    fit_decode,
    launch_floor_s,
    power_rows,
    predict_power_w,
    predict_time_s,
    row_times,
    sig,
    timing_rows,
    utilization,
)
from fleetsim.calibrate.samples import samples_frame
from fleetsim.errors import FleetsimError, SpecError
from fleetsim.spec.profile import AttentionEfficiency, CalibrationProfile, EfficiencyCurve, PowerModel, Provenance

GEMM_FAMILIES = ("gemm_decode", "gemm_prefill")
TIME_FIT_FAMILIES = ("launch", *GEMM_FAMILIES, "prefill_attention", "decode_attention")
REFERENCE_KV_DTYPE = "bf16"
POWER_KEY = "power"  # fit_residuals key of the power model's RMS relative error
_ETA_MIN = 1e-3


@dataclass(frozen=True)
class MeasuredTerms:
    """The GPU-profile terms fitted from kernel samples (None: not measurable from these samples)."""

    memory: EfficiencyCurve
    compute: dict[str, EfficiencyCurve]
    prefill_eta: float | None
    kv_read_efficiency: dict[str, float]  # as the profile holds it (see kv_reference)
    kv_reference: str
    raw_kv_read: dict[str, float] = field(default_factory=dict)  # relative to the memory curve
    power: PowerModel | None = None
    power_problem: str = ""


# ---------------------------------------------------------------------------------------------
# time terms


def fit_gemm_curves(samples: pd.DataFrame, gpu=None, launch_s: float = 0.0):
    """(memory curve, {dtype: compute curve}) from the GEMM rows (launch floor taken off)."""
    rows = timing_rows(samples, GEMM_FAMILIES)
    dtypes = sorted(set(rows.loc[rows["family"] == "gemm_prefill", "compute_dtype"]))
    if REFERENCE_KV_DTYPE not in dtypes:
        raise SpecError("samples: no usable bf16 prefill-shaped GEMM rows (family gemm_prefill) to fit compute")
    rows = rows[rows["compute_dtype"].isin(dtypes)].reset_index(drop=True)
    if not (rows["family"] == "gemm_decode").any():
        raise SpecError("samples: no usable decode-shaped GEMM rows (family gemm_decode) to fit the memory curve")
    w = Work.of(rows, gpu)
    busy = w.measured_s - launch_s
    decode, index = w.family == "gemm_decode", np.array([dtypes.index(d) for d in w.compute_dtype])
    eta_m0, half_m0 = _curve_start(w.bytes[decode], busy[decode], w.bw[decode])
    starts = [
        _curve_start(w.flops[pre], busy[pre], w.peak[pre])
        for pre in ((w.family == "gemm_prefill") & (index == i) for i in range(len(dtypes)))
    ]

    def unpack(x):
        eta_c, half_c = x[2::2], x[3::2] * 1e9
        return (x[0], x[1] * 1e6), (eta_c[index], half_c[index])

    def residuals(x):
        mem, curves = unpack(x)
        return np.log(row_times(w, mem, curves, 1.0, np.ones(len(index)), launch_s) / w.measured_s)

    lo = np.array([_ETA_MIN, 0.0] + [_ETA_MIN, 0.0] * len(dtypes))
    hi = np.array([1.0, 1e6] + [1.0, 1e7] * len(dtypes))
    best = None
    for scale_eta, scale_half in ((1.0, 1.0), (1.0, 0.0), (0.8, 2.0)):
        x0 = [eta_m0 * scale_eta, half_m0 * scale_half / 1e6]
        for eta_c0, half_c0 in starts:
            x0 += [eta_c0 * scale_eta, half_c0 * scale_half / 1e9]
        x0 = np.clip(x0, lo, hi * (1 - 1e-9))
        result = least_squares(residuals, x0, bounds=(lo, hi), x_scale="jac", max_nfev=2000, **LOSS)
        if best is None or result.cost < best.cost:
            best = result
    x = best.x
    memory = EfficiencyCurve(eta_max=sig(min(1.0, x[0])), half_work=sig(x[1] * 1e6))
    compute = {
        d: EfficiencyCurve(eta_max=sig(min(1.0, x[2 + 2 * i])), half_work=sig(x[3 + 2 * i] * 1e9))
        for i, d in enumerate(dtypes)
    }
    return memory, compute


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


def fit_prefill_eta(samples: pd.DataFrame, memory: EfficiencyCurve, gpu=None, launch_s: float = 0.0) -> float | None:
    """attention.prefill_eta from the prefill-attention rows; None when there are none."""
    rows = timing_rows(samples, ("prefill_attention",))
    if rows.empty:
        return None
    w = Work.of(rows, gpu)
    ones = np.ones(len(rows))
    mem = (memory.eta_max, memory.half_work)
    start = float(np.clip(np.median(w.flops / ((w.measured_s - launch_s).clip(1e-9) * w.peak)), 0.01, 0.99))

    def residuals(x):
        return np.log(row_times(w, mem, (ones, 0 * ones), x[0], ones, launch_s) / w.measured_s)

    result = least_squares(residuals, [start], bounds=([_ETA_MIN], [1.0]), **LOSS)
    return sig(min(1.0, result.x[0]))


def fit_kv_read(samples: pd.DataFrame, memory: EfficiencyCurve, prefill_eta: float, gpu=None) -> dict[str, float]:
    """Decode attention's KV read rate per KV dtype relative to the memory curve (each dtype with
    its own fixed time per call)."""
    rows = timing_rows(samples, ("decode_attention",))
    if rows.empty:
        return {}
    w = Work.of(rows, gpu)
    dtypes = sorted(set(w.kv_dtype))
    groups = np.array([dtypes.index(d) for d in w.kv_dtype])
    _, scales = fit_decode(w, (memory.eta_max, memory.half_work), prefill_eta, np.ones(len(groups)), groups)
    return {d: sig(min(1.0, scales[i])) for i, d in enumerate(dtypes)}


# ---------------------------------------------------------------------------------------------
# power


def fit_power_model(
    samples: pd.DataFrame, gpu=None, *, cap_w: float | None = None, intercept: Literal["idle", "fit"] = "idle"
) -> PowerModel:
    """idle_w, compute_w, memory_w and cap_w of the power model from the energy windows.

    intercept="idle": idle_w is the median power of the idle windows; intercept="fit": idle_w is
    the fitted intercept of the active windows and parked_w the idle windows' median (a busy GPU
    at near-zero utilisation runs at higher clocks than a rested one).
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
        result = least_squares(lambda x: (design @ x - above) / target, x0, bounds=(0.0, np.inf), **LOSS)
        idle_w, (compute_w, memory_w), parked_w = idle_power, result.x, None
    else:
        with_intercept = np.column_stack([np.ones(len(target)), design])
        x0, _ = nnls(with_intercept, target)
        result = least_squares(lambda x: (with_intercept @ x - target) / target, x0, bounds=(0.0, np.inf), **LOSS)
        idle_w, compute_w, memory_w = result.x
        parked_w = idle_power if math.isfinite(idle_power) else None
    return PowerModel(
        idle_w=sig(idle_w),
        compute_w=sig(compute_w),
        memory_w=sig(memory_w),
        cap_w=sig(cap),
        parked_w=None if parked_w is None else sig(parked_w),
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


# ---------------------------------------------------------------------------------------------
# the profile


def fit_terms(
    samples: pd.DataFrame,
    gpu=None,
    *,
    prefill_eta_fallback: float = 0.5,
    cap_w: float | None = None,
    kv_reference: Literal["bf16", "weights"] = "bf16",
    power_intercept: Literal["idle", "fit"] = "idle",
) -> MeasuredTerms:
    """Every GPU-profile term the samples give (stages 1-5 of the module docstring)."""
    if kv_reference not in ("bf16", "weights"):
        raise SpecError(f"kv_reference: '{kv_reference}' is not valid; choose bf16 or weights")
    samples = samples_frame(samples)
    launch = launch_floor_s(samples)
    memory, compute = fit_gemm_curves(samples, gpu, launch)
    prefill_eta = fit_prefill_eta(samples, memory, gpu, launch)
    raw = fit_kv_read(samples, memory, prefill_eta or prefill_eta_fallback, gpu)
    kv = dict(raw)
    if kv_reference == "bf16" and REFERENCE_KV_DTYPE in raw:
        kv = {d: sig(min(1.0, v / raw[REFERENCE_KV_DTYPE])) for d, v in raw.items()}
    try:
        power, problem = fit_power_model(samples, gpu, cap_w=cap_w, intercept=power_intercept), ""
    except FleetsimError as error:
        power, problem = None, str(error).removeprefix("samples: ")
    return MeasuredTerms(memory, compute, prefill_eta, kv, kv_reference, raw, power, problem)


def assemble_profile(terms: MeasuredTerms, base: CalibrationProfile, provenance: Provenance, name: str):
    """The profile: measured terms, the rest from `base` (the shipped published-fit profile), and
    notes naming where every term came from."""
    compute = {**terms.compute, **{d: c for d, c in base.compute.items() if d not in terms.compute}}
    kv = {**terms.kv_read_efficiency}
    kv.update({d: v for d, v in base.attention.kv_read_efficiency.items() if d not in kv})
    measured = ["memory", *(f"compute.{d}" for d in sorted(terms.compute))]
    copied = [
        "collectives (an all-reduce needs several GPUs)",
        "host_time_scale (the host CPU, not a kernel)",
        *(f"compute.{d} (not measured)" for d in sorted(set(compute) - set(terms.compute))),
    ]
    if terms.prefill_eta is None:
        copied.append("attention.prefill_eta (no prefill-attention samples)")
    else:
        measured.append("attention.prefill_eta")
    if terms.kv_read_efficiency:
        how = (
            "relative to bf16 = 1, the rate a fused kernel reads bf16 KV at the memory curve"
            if terms.kv_reference == "bf16" and REFERENCE_KV_DTYPE in terms.raw_kv_read
            else "relative to the memory curve (the torch reference kernel's own rates)"
        )
        measured.append(f"attention.kv_read_efficiency {', '.join(sorted(terms.kv_read_efficiency))} ({how})")
    not_measured_kv = sorted(set(kv) - set(terms.kv_read_efficiency))
    if not_measured_kv:
        copied.append(f"attention.kv_read_efficiency {', '.join(not_measured_kv)} (not measured)")
    if terms.power is not None:
        measured.append("power")
    else:
        copied.append(f"power ({terms.power_problem})")
    source = f"fleetsim/profiles/gpus/{base.gpu}.yaml ({base.provenance.kind}, {base.provenance.date})"
    notes = (
        f"measured here: {'; '.join(measured)}. From the shipped profile {source}: {'; '.join(copied)}. "
        "Engine terms (host time, kernel launch, batching) are not GPU-profile terms: they stay in engine "
        "profiles (fleetsim/profiles/engines; fit your own with fleetsim calibrate --from-bench)."
    )
    provenance = provenance.model_copy(
        update={
            "notes": "; ".join(n for n in (provenance.notes, notes) if n),
            "sources": (*provenance.sources, f"fleetsim/profiles/gpus/{base.gpu}.yaml"),
        }
    )
    return CalibrationProfile(
        gpu=name,
        provenance=provenance,
        memory=terms.memory,
        compute=compute,
        attention=AttentionEfficiency(
            prefill_eta=terms.prefill_eta if terms.prefill_eta is not None else base.attention.prefill_eta,
            kv_read_efficiency=kv,
        ),
        collectives=base.collectives,
        host_time_scale=base.host_time_scale,
        power=terms.power if terms.power is not None else base.power,
    )


def base_profile_for(name: str, base: CalibrationProfile | str | None = None) -> CalibrationProfile:
    """The profile whose unmeasurable terms a measured one takes: given, or the shipped one of `name`."""
    if isinstance(base, CalibrationProfile):
        return base
    from fleetsim.profile import load_profile

    return load_profile(base or name)


def fit_profile(
    samples: pd.DataFrame,
    gpu,
    provenance: Provenance | Mapping,
    *,
    base: CalibrationProfile | str | None = None,
    cap_w: float | None = None,
    kv_reference: Literal["bf16", "weights"] = "bf16",
    power_intercept: Literal["idle", "fit"] = "idle",
    gpu_name: str | None = None,
) -> CalibrationProfile:
    """A schema-2 CalibrationProfile fitted to `samples`.

    gpu: a GpuSpec, or anything with peak_flops_per_s (dict by dtype), hbm_bandwidth_bytes_per_s
    and a name (a mapping works too); may be None when the samples carry their peaks and gpu_name
    is given. base: the profile (or shipped profile name) the unmeasurable terms come from;
    default the shipped profile of the GPU. kv_reference, power_intercept: see fit_terms.
    """
    provenance = provenance if isinstance(provenance, Provenance) else Provenance.model_validate(dict(provenance))
    name = gpu_name or _gpu_name(gpu)
    if not name:
        raise SpecError("fit_profile: no GPU name (pass a GPU spec or gpu_name)")
    base = base_profile_for(name, base)
    samples = samples_frame(samples)
    terms = fit_terms(
        samples,
        gpu,
        prefill_eta_fallback=base.attention.prefill_eta,
        cap_w=cap_w,
        kv_reference=kv_reference,
        power_intercept=power_intercept,
    )
    profile = assemble_profile(terms, base, provenance, name)
    call = call_terms(samples, profile, gpu)
    notes = f"{profile.provenance.notes} {call.note()}"
    return profile.model_copy(
        update={
            "provenance": profile.provenance.model_copy(update={"notes": notes}),
            "fit_residuals": residuals_by_family(samples, profile, gpu, call),
        }
    )


def residuals_by_family(
    samples: pd.DataFrame, profile: CalibrationProfile, gpu=None, terms: CallTerms | None = None
) -> dict[str, float]:
    """RMS relative error of the model time per kernel family (call terms derived from the samples
    when not given), and of power ('power')."""
    out: dict[str, float] = {}
    rows = timing_rows(samples)
    rows = rows[rows["family"] != "idle"].reset_index(drop=True)
    if not rows.empty:
        terms = terms if terms is not None else call_terms(samples, profile, gpu)
        relative = predict_time_s(rows, profile, gpu, terms) / rows["time_s"].to_numpy() - 1
        for family, errors in pd.Series(relative).groupby(rows["family"].to_numpy()):
            out[str(family)] = sig(float(np.sqrt(np.mean(np.square(errors)))), 4)
    windows = power_rows(samples)
    if not windows.empty:
        relative = predict_power_w(windows, profile, gpu) / windows["mean_power_w"].to_numpy(dtype=float) - 1.0
        out[POWER_KEY] = sig(float(np.sqrt(np.mean(np.square(relative)))), 4)
    return out


def _gpu_name(gpu) -> str | None:
    if gpu is None:
        return None
    if isinstance(gpu, Mapping):
        return gpu.get("name")
    return getattr(gpu, "name", None)
