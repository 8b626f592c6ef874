"""Power limits and clock locks: what a lower SM clock does to an iteration's time and power (DVFS).

A GPU under a power limit (nvidia-smi -pl, MLPerf "MaxQ") or a locked clock (nvidia-smi -lgc)
runs its SM clock at a fraction s of the boost clock, s in [s_min, 1]. The model:

- Time. Every roofline term of the step model is max(memory time, compute time); the compute time
  scales as 1/s (FLOP/s are proportional to the SM clock), the memory time does not (the HBM clock
  is not scaled: the memory roofline is kept unchanged). All-reduce, the short fixed kernels,
  launch and host time are kept unchanged. So a compute-bound prefill slows ~1/s, a memory-bound
  decode hardly at all (Patel et al., "Characterizing Power Management Opportunities for LLMs in
  the Cloud", ASPLOS 2024; Ma et al., "The Illusion of Power Capping in LLM Decode", arXiv
  2605.11999: H200 decode draws 137-300 W and never meets a cap).
- Power. Dynamic CMOS power is C V^2 f: at clock s each FLOP costs v(s)^2 of its boost energy,
  v the core voltage relative to boost (flat at a floor below a knee clock, linear above; the
  curve and its sources are in fleetsim/profiles/dvfs.yaml). Memory power is split into the
  HBM's own energy per bit (not scaled) and the on-chip part (scaled by v^2). Relative to the
  iteration at boost clock, whose power is P0 = the profile's min(cap_w, idle + a_c u_c + a_m u_m):

      P(s) = idle + (P0 - idle) * (t(1) / t(s)) * (c v(s)^2 + (1 - c) (h + (1 - h) v(s)^2))

  c: the compute share of the linear dynamic power at boost, h: the HBM share of memory power
  (energy per bit x bandwidth / memory_w). The profile's efficiencies were fitted at the default
  limit (TDP), so a limit at or above P0 changes nothing, and without a limit or lock nothing moves.
- A limited iteration runs at the highest clock whose P(s) <= limit (P is increasing in s: an
  Illinois regula-falsi solve, a handful of evaluations to 1e-7 of the limit; a decode run
  solves once, at its first step). A locked
  clock is an upper bound on s. The GPU's reported power is the simulator's usual
  min(cap, idle + a_c u_c + a_m u_m) with cap = the limit and the coefficients scaled to the locked
  clock: exactly the limit when it binds (the linear form is >= P(s)), P0 when it does not.
  Under a clock lock alone an iteration that was at TDP keeps the linear form (no saving claimed).
Pure: no simpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fleetsim.power import gpu_power_w
from fleetsim.spec.profile import ClockModel, PowerModel

MAX_SOLVER_STEPS = 60
CLOCK_TOLERANCE = 1e-7  # in clock fraction
POWER_TOLERANCE = 1e-7  # relative to the limit


@dataclass(frozen=True)
class ClockSetting:
    """A power limit and/or clock lock on one GPU, compiled for the step model."""

    model: ClockModel
    power: PowerModel  # the profile's power model at boost clock
    limit_w: float  # effective board limit (the power limit, at most cap_w)
    lock_fraction: float  # highest clock allowed (1: boost)
    hbm_share: float  # h: HBM share of the memory power coefficient

    def voltage_factor(self, s: float) -> float:
        v = self.model.voltage_fraction(s)
        return v * v

    def power_at_w(self, s: float, t1_s: float, ts_s: float, p0_w: float, compute_share: float) -> float:
        """P(s) of an iteration whose boost-clock time is t1_s and power p0_w, taking ts_s at clock s."""
        v2 = self.voltage_factor(s)
        h = self.hbm_share
        f = compute_share * v2 + (1.0 - compute_share) * (h + (1.0 - h) * v2)
        idle = self.power.idle_w
        return idle + (p0_w - idle) * (t1_s / ts_s) * f

    def clock_for(
        self, time_at: Callable[[float], float], flops: float, moved_bytes: float, peak_flops: float, bw: float
    ) -> float:
        """The clock fraction an iteration runs at: the lock, or lower until P(s) <= the limit."""
        t1 = time_at(1.0)
        if t1 <= 0:
            return self.lock_fraction
        p = self.power
        u_c = min(1.0, max(0.0, flops / (t1 * peak_flops)))
        u_m = min(1.0, max(0.0, moved_bytes / (t1 * bw)))
        p0 = gpu_power_w(p, u_c, u_m)
        lin_c, lin_m = p.compute_w * u_c, p.memory_w * u_m
        share = lin_c / (lin_c + lin_m) if lin_c + lin_m > 0 else 0.0

        def power(s: float) -> float:
            return self.power_at_w(s, t1, time_at(s), p0, share)

        hi = self.lock_fraction
        if power(hi) <= self.limit_w:
            return hi
        lo = self.model.min_clock_fraction
        f_lo, f_hi = power(lo) - self.limit_w, power(hi) - self.limit_w
        if f_lo > 0:
            return lo  # the limit cannot be met by clocks alone: reported power is clipped to it
        # Illinois (regula falsi with halving): P is smooth and increasing in s, so a few
        # evaluations reach the limit; `lo` always keeps P(lo) <= limit.
        side = 0
        for _ in range(MAX_SOLVER_STEPS):
            if hi - lo <= CLOCK_TOLERANCE or f_lo > -POWER_TOLERANCE * self.limit_w:
                break
            x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
            if not lo < x < hi:
                x = 0.5 * (lo + hi)
            f_x = power(x) - self.limit_w
            if f_x <= 0:
                lo, f_lo = x, f_x
                if side == -1:
                    f_hi *= 0.5
                side = -1
            else:
                hi, f_hi = x, f_x
                if side == 1:
                    f_lo *= 0.5
                side = 1
        return lo


def hbm_share(model: ClockModel, power: PowerModel, hbm_bandwidth_bytes_per_s: float) -> float:
    """h: the HBM's own power at full bandwidth as a share of memory_w (at most 1)."""
    if power.memory_w <= 0:
        return 1.0
    hbm_w = model.hbm_energy_pj_per_bit * 1e-12 * 8.0 * hbm_bandwidth_bytes_per_s
    return min(1.0, hbm_w / power.memory_w)


def clocked_power_model(setting: ClockSetting) -> PowerModel:
    """The per-GPU power model the simulator evaluates under the setting (see the module docstring)."""
    p = setting.power
    cap = min(p.cap_w, setting.limit_w)
    if setting.lock_fraction >= 1.0:
        return p.model_copy(update={"cap_w": cap})
    v2 = setting.voltage_factor(setting.lock_fraction)
    h = setting.hbm_share
    return p.model_copy(
        update={"cap_w": cap, "compute_w": p.compute_w * v2, "memory_w": p.memory_w * (h + (1.0 - h) * v2)}
    )
