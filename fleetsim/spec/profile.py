"""Calibration profile: the efficiencies and power coefficients the step-time model uses.

Written by `fleetsim calibrate` (measured) or fitted to published figures; read by perf.py and
power.py. The simulator never imports the harness, only this schema.
"""

from typing import Annotated, Literal

from pydantic import Field

from fleetsim.spec.base import Spec

Fraction01 = Annotated[float, Field(gt=0, le=1)]
NonNeg = Annotated[float, Field(ge=0)]


class EfficiencyCurve(Spec):
    """Achieved fraction of peak as a function of work size w (bytes or FLOPs):

    eta(w) = eta_max * w / (w + half_work)  =>  time(w) = (w + half_work) / (eta_max * peak).
    half_work is the work at which half of eta_max is reached (a latency term in disguise).
    """

    eta_max: Fraction01
    half_work: NonNeg = 0.0

    def time_s(self, work: float, peak_per_s: float) -> float:
        if work <= 0:
            return 0.0
        return (work + self.half_work) / (self.eta_max * peak_per_s)


class TensorParallelModel(Spec):
    # Fixed cost of one all-reduce (launch + synchronisation), and achieved link fraction.
    allreduce_latency_s: NonNeg = 8e-6
    link_efficiency: Fraction01 = 0.7


class PowerModel(Spec):
    """P = min(cap_w, idle_w + compute_w * u_compute + memory_w * u_memory) per GPU."""

    idle_w: NonNeg
    compute_w: NonNeg
    memory_w: NonNeg
    cap_w: Annotated[float, Field(gt=0)]
    # Power drawn by a GPU with no work at all (between bursts); defaults to idle_w.
    parked_w: NonNeg | None = None


class Provenance(Spec):
    kind: Literal["measured", "fitted_to_published", "transferred"]
    date: str
    sources: tuple[str, ...] = ()
    notes: str = ""
    gpu_name: str | None = None  # as NVML reports it, for measured profiles
    driver: str | None = None
    raw_samples: str | None = None  # CSV path, relative to the profile file


class CalibrationProfile(Spec):
    gpu: str
    provenance: Provenance
    overhead_s: NonNeg  # per scheduler iteration: launch, sampling, scheduling
    memory: EfficiencyCurve
    compute: EfficiencyCurve
    # Multiplier on memory efficiency for reading KV of a given precision (dequant cost).
    kv_read_efficiency: dict[str, Fraction01] = Field(default_factory=dict)
    tp: TensorParallelModel = TensorParallelModel()
    power: PowerModel
    fit_residuals: dict[str, float] = Field(default_factory=dict)

    def kv_efficiency(self, dtype: str) -> float:
        return self.kv_read_efficiency.get(dtype, 1.0)
