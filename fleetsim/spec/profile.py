"""GPU calibration profile: how fast one GPU's kernels run, and how much power it draws doing so.

Written by `fleetsim calibrate` (measured kernels) or fitted to published figures
(`python -m fleetsim.calibrate.published`); read by the step model (fleetsim.perf) and the power
model (fleetsim.power). What the serving engine adds (host time, launch cost, batching) lives in
an engine profile (fleetsim.spec.engine); the simulator never imports the harness, only these
schemas.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.precision import BITS_PER_ELEMENT
from fleetsim.spec.base import Spec

Fraction01 = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Watts = Annotated[float, Field(ge=0, le=20_000, allow_inf_nan=False)]


class EfficiencyCurve(Spec):
    """Achieved fraction of peak as a function of work size w (bytes or FLOPs):

    eta(w) = eta_max * w / (w + half_work)  =>  time(w) = (w + half_work) / (eta_max * peak).
    half_work is the work at which half of eta_max is reached (a latency term in disguise).
    """

    eta_max: Fraction01 = Field(description="Fraction of the datasheet peak reached by large work.")
    half_work: NonNeg = Field(default=0.0, description="Work (bytes or FLOPs) at which half of eta_max is reached.")

    def time_s(self, work: float, peak_per_s: float) -> float:
        if work <= 0:
            return 0.0
        return (work + self.half_work) / (self.eta_max * peak_per_s)


class AttentionEfficiency(Spec):
    """Attention kernels (FlashAttention / FlashInfer / FlashMLA / TensorRT-LLM FMHA) on this GPU."""

    prefill_eta: Fraction01 = Field(
        description="Fraction of the attention compute dtype's peak that prefill attention reaches."
    )
    kv_read_efficiency: dict[str, Fraction01] = Field(
        default_factory=dict,
        description="Decode attention's KV-read bandwidth per KV dtype, relative to the memory curve "
        "(dequantization cost); a dtype not listed takes the fitted dtype nearest in bits.",
    )

    def kv_efficiency(self, dtype: str) -> tuple[float, str]:
        """(efficiency, the dtype it was fitted for): the nearest fitted dtype in bits per element
        (bf16 at 1.0 when nothing is fitted)."""
        if dtype in self.kv_read_efficiency:
            return self.kv_read_efficiency[dtype], dtype
        table = dict(self.kv_read_efficiency)
        table.setdefault("bf16", 1.0)
        bits = BITS_PER_ELEMENT[dtype]
        nearest = min(table, key=lambda d: (abs(BITS_PER_ELEMENT[d] - bits), -BITS_PER_ELEMENT[d]))
        return table[nearest], nearest


class Collectives(Spec):
    """Tensor-parallel all-reduce on this GPU's scale-up link, as NCCL achieves it."""

    allreduce_bus_bytes_per_s: Annotated[float, Field(gt=0, le=1e14, allow_inf_nan=False)] = Field(
        description="Achieved all-reduce bus bandwidth for large messages (nccl-tests busbw), B/s."
    )
    allreduce_latency_s: Annotated[float, Field(ge=0, le=1e-2, allow_inf_nan=False)] = Field(
        description="Time of one small all-reduce (latency term), s."
    )
    source: str = ""


class PowerModel(Spec):
    """P = min(cap_w, idle_w + compute_w * u_compute + memory_w * u_memory) per GPU."""

    idle_w: Watts = Field(description="Power of an active GPU doing no useful work, W.")
    compute_w: Watts = Field(description="Power added at 100% of peak FLOP/s, W.")
    memory_w: Watts = Field(description="Power added at 100% of peak HBM bandwidth, W.")
    cap_w: Annotated[float, Field(gt=0, le=20_000, allow_inf_nan=False)] = Field(
        description="Board power limit (TDP unless capped), W."
    )
    # Power drawn by a GPU with no work at all (between bursts); defaults to idle_w.
    parked_w: Watts | None = Field(default=None, description="Power with no work queued, W; null: idle_w.")
    board_limit_w: Annotated[float, Field(gt=0, le=20_000, allow_inf_nan=False)] | None = Field(
        default=None,
        description="A board power limit below the cap of the silicon this model describes (a PCIe card of an "
        "SXM part's die: H100 NVL and PCIe, H200 NVL), W: applied by default through the clock model "
        "(fleetsim.dvfs) as fleet.power_limit_w is, so the part runs at the clock that fits it. Null: none (cap_w "
        "is the board's limit).",
    )


class ClockModel(Spec):
    """How an SM clock below boost changes time and power (DVFS; fleetsim.dvfs). Data:
    fleetsim/profiles/dvfs.yaml, with sources."""

    min_clock_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = Field(
        description="Lowest SM clock the model runs at, as a fraction of the boost clock."
    )
    voltage_floor_fraction: Fraction01 = Field(
        description="Core voltage at and below voltage_floor_clock_fraction, relative to the boost voltage."
    )
    voltage_floor_clock_fraction: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = Field(
        description="Clock fraction below which the voltage stays at its floor (linear in clock above it)."
    )
    hbm_energy_pj_per_bit: NonNeg = Field(
        description="HBM energy per bit moved, pJ: the part of memory power the SM clock does not scale."
    )
    sources: dict[str, str] = Field(default_factory=dict, description="Where each figure comes from.")

    def voltage_fraction(self, clock_fraction: float) -> float:
        """Core voltage at an SM clock, relative to the boost voltage (1 at the boost clock)."""
        knee, floor = self.voltage_floor_clock_fraction, self.voltage_floor_fraction
        if clock_fraction <= knee:
            return floor
        return floor + (1.0 - floor) * (clock_fraction - knee) / (1.0 - knee)


class Provenance(Spec):
    kind: Literal["measured", "fitted_to_published", "transferred", "prior"]
    date: str
    sources: tuple[str, ...] = ()
    notes: str = ""
    gpu_name: str | None = None  # as NVML reports it, for measured profiles
    driver: str | None = None
    raw_samples: str | None = None  # CSV path, relative to the profile file
    figures: Annotated[int, Field(ge=0)] = Field(default=0, description="Published figures of this GPU fitted.")
    engines: tuple[str, ...] = Field(default=(), description="Engine profiles the figures were served by.")
    figures_by_engine: dict[str, int] = Field(
        default_factory=dict, description="Published figures of this GPU fitted, per engine profile."
    )
    transferred_from: str | None = Field(default=None, description="The GPU whose fit this profile scales.")
    power_figures: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="Published power or energy figures of this GPU its power coefficients were fitted to "
        "(0: the coefficients are priors, whatever the kernel efficiencies were fitted to).",
    )

    @model_validator(mode="after")
    def _transfer_named(self):
        if self.kind == "transferred" and not self.transferred_from:
            raise ValueError("a transferred profile names transferred_from")
        return self


class CalibrationProfile(Spec):
    """Kernel efficiencies and power coefficients of one GPU (schema 2)."""

    schema_version: Literal[2] = 2
    gpu: str
    provenance: Provenance
    memory: EfficiencyCurve = Field(description="HBM streaming (weights, KV) efficiency curve (bytes).")
    compute: dict[str, EfficiencyCurve] = Field(
        description="GEMM efficiency curve (FLOPs) per compute dtype (bf16, fp8, fp4, int8); a dtype "
        "not listed uses the nearest wider one."
    )
    attention: AttentionEfficiency
    collectives: Collectives
    host_time_scale: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = Field(
        default=1.0,
        description="The host CPU of this GPU's servers relative to the reference (a DGX H100's): engine host "
        "time is multiplied by it (single-thread speed, scheduling across more or faster cores).",
    )
    power: PowerModel
    fit_residuals: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_bf16(self):
        if "bf16" not in self.compute:
            raise ValueError("compute needs a bf16 curve (the fallback of every other dtype)")
        return self

    def compute_curve(self, dtype: str) -> EfficiencyCurve:
        """The GEMM curve for a compute dtype, falling back to the next wider fitted one."""
        for d in _WIDER.get(dtype, (dtype,)):
            if d in self.compute:
                return self.compute[d]
        return self.compute["bf16"]

    @property
    def grade(self) -> str:
        """A one-line calibration status for tables and warnings."""
        p = self.provenance
        if p.kind == "measured":
            return "measured"
        if p.kind == "transferred":
            return f"transferred from {p.transferred_from}"
        if p.kind == "prior":
            return "prior values (not fitted)"
        return f"fitted to {p.figures} published figures" if p.figures else "fitted to published figures"


_WIDER = {
    "fp4": ("fp4", "fp8", "bf16"),
    "int4": ("int8", "fp8", "bf16"),
    "fp8": ("fp8", "bf16"),
    "int8": ("int8", "fp8", "bf16"),
    "fp16": ("bf16",),
    "bf16": ("bf16",),
}
