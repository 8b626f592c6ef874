"""GPU power from achieved utilisation, and exact energy integration over iterations.

Per GPU (DESIGN.md, "Power"):

    P = min(cap_w, idle_w + compute_w * u_compute + memory_w * u_memory)

where u_compute and u_memory are the fractions of peak FLOP/s and HBM bandwidth one scheduler
iteration achieved. Power is constant within an iteration, so a run's power is piecewise
constant and its energy is a sum of duration x power products; `EnergyMeter` keeps that sum
exactly (see its docstring). Pure: no simpy, no I/O.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np

from fleetsim.spec.profile import PowerModel

ArrayLike = float | np.ndarray


def _scalar_or_array(x: np.ndarray) -> float | np.ndarray:
    return float(x) if np.ndim(x) == 0 else x


@overload
def gpu_power_w(model: PowerModel, u_compute: float, u_memory: float) -> float: ...
@overload
def gpu_power_w(model: PowerModel, u_compute: np.ndarray, u_memory: ArrayLike) -> np.ndarray: ...
@overload
def gpu_power_w(model: PowerModel, u_compute: ArrayLike, u_memory: np.ndarray) -> np.ndarray: ...


def gpu_power_w(model, u_compute, u_memory):
    """Power of one GPU running an iteration at the given utilisations, in W.

    Utilisations are clipped to [0, 1]; floats give a float, arrays broadcast and give an array.
    Monotone non-decreasing in each utilisation (the coefficients are non-negative).
    """
    if isinstance(u_compute, (int, float)) and isinstance(u_memory, (int, float)):
        # Scalar fast path (no numpy overhead); the same float operations in the same order.
        u_c = min(1.0, max(0.0, float(u_compute)))
        u_m = min(1.0, max(0.0, float(u_memory)))
        return min(model.cap_w, model.idle_w + model.compute_w * u_c + model.memory_w * u_m)
    u_c = np.clip(np.asarray(u_compute, dtype=np.float64), 0.0, 1.0)
    u_m = np.clip(np.asarray(u_memory, dtype=np.float64), 0.0, 1.0)
    power = np.minimum(model.cap_w, model.idle_w + model.compute_w * u_c + model.memory_w * u_m)
    return _scalar_or_array(power)


def parked_power_w(model: PowerModel) -> float:
    """Power of a GPU with no work at all (between bursts): parked_w, defaulting to idle_w."""
    return model.idle_w if model.parked_w is None else model.parked_w


def utilizations(
    flops: ArrayLike,
    bytes_moved: ArrayLike,
    duration_s: ArrayLike,
    peak_flops_per_s: float,
    hbm_bandwidth_bytes_per_s: float,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """(u_compute, u_memory) of one GPU over one iteration, each in [0, 1].

    `flops` and `bytes_moved` are the work of ONE GPU (a tensor-parallel replica's totals divided
    by its TP degree); `peak_flops_per_s` is the datasheet peak for the compute dtype. An
    iteration of zero duration has zero utilisation. Floats or broadcastable arrays.
    """
    if peak_flops_per_s <= 0 or hbm_bandwidth_bytes_per_s <= 0:
        raise ValueError("peak_flops_per_s and hbm_bandwidth_bytes_per_s must be > 0")
    if all(isinstance(x, (int, float)) for x in (flops, bytes_moved, duration_s)):
        if duration_s <= 0:
            return 0.0, 0.0
        u_c = flops / (duration_s * peak_flops_per_s)
        u_m = bytes_moved / (duration_s * hbm_bandwidth_bytes_per_s)
        return min(1.0, max(0.0, u_c)), min(1.0, max(0.0, u_m))
    f = np.asarray(flops, dtype=np.float64)
    b = np.asarray(bytes_moved, dtype=np.float64)
    d = np.asarray(duration_s, dtype=np.float64)
    positive = d > 0
    safe_d = np.where(positive, d, 1.0)
    u_c = np.where(positive, f / (safe_d * peak_flops_per_s), 0.0)
    u_m = np.where(positive, b / (safe_d * hbm_bandwidth_bytes_per_s), 0.0)
    return (
        _scalar_or_array(np.clip(u_c, 0.0, 1.0)),
        _scalar_or_array(np.clip(u_m, 0.0, 1.0)),
    )


class _ExactSum:
    """Running float sum with no rounding until read (Shewchuk's non-overlapping partials,
    the algorithm behind math.fsum), so the order and number of additions do not matter."""

    __slots__ = ("_partials",)

    def __init__(self) -> None:
        self._partials: list[float] = []

    def add(self, x: float) -> None:
        partials = self._partials
        i = 0
        for y in partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        partials[i:] = [x]

    @property
    def value(self) -> float:
        return math.fsum(self._partials)


class EnergyMeter:
    """Energy of one GPU (or any constant-multiple group of GPUs) over busy iterations and idle gaps.

    The integral of a piecewise-constant power: energy_j = sum(duration_i x power_i) over busy
    intervals + parked_w x sum(idle gaps). Accuracy: each product duration x power is rounded
    once (float64); `add_busy_many` sums its array with plain float64 pairwise summation
    (np.sum; relative error <= ~log2(n) x 1.1e-16 for these non-negative terms); the running
    totals across calls are kept exactly (Shewchuk partials, the algorithm of math.fsum) and
    rounded once when read. So a long run does not drift the way a plain `+=` does (1e16 J plus
    ten 1 J intervals reads 1e16 + 10, not 1e16), and splitting a sequence into calls differently
    changes the result by at most a few ulps. Deterministic: same calls, same bits.
    """

    __slots__ = ("_idle_power_w", "_energy", "_busy", "_idle", "_peak_w")

    def __init__(self, idle_power_w: float) -> None:
        if not idle_power_w >= 0:
            raise ValueError(f"idle_power_w must be >= 0, got {idle_power_w}")
        self._idle_power_w = float(idle_power_w)
        self._energy = _ExactSum()
        self._busy = _ExactSum()
        self._idle = _ExactSum()
        self._peak_w = 0.0

    @classmethod
    def for_model(cls, model: PowerModel) -> EnergyMeter:
        """A meter whose idle gaps draw the model's parked power (parked_w, else idle_w)."""
        return cls(parked_power_w(model))

    @property
    def idle_power_w(self) -> float:
        return self._idle_power_w

    def add_busy(self, duration_s: float, power_w: float) -> None:
        """One iteration of `duration_s` at constant `power_w`."""
        if not (duration_s >= 0 and power_w >= 0):
            raise ValueError(f"need duration_s >= 0 and power_w >= 0, got {duration_s}, {power_w}")
        if duration_s == 0:
            return
        self._energy.add(float(duration_s) * float(power_w))
        self._busy.add(float(duration_s))
        self._peak_w = max(self._peak_w, float(power_w))

    def add_busy_many(self, durations_s: np.ndarray, powers_w: np.ndarray) -> None:
        """Many consecutive iterations: durations_s[i] at powers_w[i] (same length)."""
        d = np.asarray(durations_s, dtype=np.float64)
        p = np.asarray(powers_w, dtype=np.float64)
        if d.shape != p.shape:
            raise ValueError(f"durations_s and powers_w differ in shape: {d.shape} vs {p.shape}")
        if d.size == 0:
            return
        d_min = d.min()
        if not (d_min >= 0 and p.min() >= 0):  # also rejects NaN
            raise ValueError("durations_s and powers_w must be >= 0")
        # ndarray.sum sums pairwise: relative error <= ~log2(n) x 2^-53 for these non-negative
        # terms, at ~1 ns per element (math.fsum costs ~40 ns per element, too much per step).
        self._energy.add(float((d * p).sum()))
        self._busy.add(float(d.sum()))
        peak_w = float(p.max() if d_min > 0 else np.where(d > 0, p, 0.0).max())
        if peak_w > self._peak_w:
            self._peak_w = peak_w

    def add_idle(self, duration_s: float) -> None:
        """A gap with no work, drawn at the idle (parked) power."""
        if not duration_s >= 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        if duration_s == 0:
            return
        self._energy.add(float(duration_s) * self._idle_power_w)
        self._idle.add(float(duration_s))
        self._peak_w = max(self._peak_w, self._idle_power_w)

    @property
    def energy_j(self) -> float:
        return self._energy.value

    @property
    def busy_s(self) -> float:
        return self._busy.value

    @property
    def idle_s(self) -> float:
        return self._idle.value

    @property
    def elapsed_s(self) -> float:
        """busy_s + idle_s."""
        return math.fsum(self._busy._partials + self._idle._partials)

    @property
    def peak_w(self) -> float:
        """Highest power of any interval of positive duration (0 before any)."""
        return self._peak_w

    def mean_w(self, over_s: float | None = None) -> float:
        """Mean power energy_j / over_s; over_s defaults to elapsed_s. 0 when nothing elapsed."""
        span_s = self.elapsed_s if over_s is None else float(over_s)
        if span_s < 0:
            raise ValueError(f"over_s must be >= 0, got {over_s}")
        return 0.0 if span_s == 0 else self.energy_j / span_s
