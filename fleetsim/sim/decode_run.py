"""A run of k decode-only iterations in closed form.

Iteration j (0-based) takes t_j = max_i (a_i + b_i j): the upper envelope of a few lines (the
memory- and compute-bound attention rooflines on top of the fixed dense/communication time, the
eager-launch floor, the host time when it overlaps the GPU). The envelope of lines is convex and
piecewise linear, so the run splits into at most as many segments as there are lines, on each of
which t_j is linear. Sums of times, FLOPs and bytes over the first s iterations are then
arithmetic series, the iteration in progress at an elapsed time is the root of a quadratic, and
energy is a sum of linear terms unless the power cap binds (checked at the segment ends: a GPU's
power along a segment is a ratio of linear functions of j, hence monotone).
"""

from __future__ import annotations

import math

import numpy as np

from fleetsim.power import gpu_power_w

# The sums below are arithmetic series written out: S(s) = sum_{j<s} (c0 + c1 j) is
# s * c0 + c1 * s * (s - 1) / 2.0, always in that order of operations (the same bits wherever it
# is evaluated).


def envelope_segments(lines: list[tuple[float, float]], k: int) -> list[tuple[int, int, float, float]]:
    """Segments (start, end, c0, c1) with t_j = c0 + c1 j = max over lines, for start <= j < end,
    covering 0 <= j < k. Convexity: the winning line's slope never decreases with j."""
    segs: list[tuple[int, int, float, float]] = []
    j = 0
    first, rest = lines[0], lines[1:]
    while j < k:
        # The line on top at j (ties: the steeper one, which stays on top longer; the first of equals).
        a, b = first
        top = a + b * j
        for ln in rest:
            v = ln[0] + ln[1] * j
            if v > top or (v == top and ln[1] > b):
                a, b = ln
                top = v
        end = k
        for a2, b2 in lines:
            if b2 > b:
                # The steeper line overtakes at x where a + b x = a2 + b2 x.
                # It is strictly on top from the first integer above x.
                x = (a - a2) / (b2 - b)
                cut = math.floor(x) + 1
                if cut <= j:
                    cut = j + 1
                if cut < end:
                    end = cut
        segs.append((j, end, a, b))
        j = end
    return segs


class DecodeRun:
    __slots__ = (
        "k",
        "segs",
        "cum",
        "f0",
        "f1",
        "m0",
        "m1",
        "power",
        "peak_flops",
        "bw",
        "_seg_energy",
        "_idle_w",
        "_compute_w",
        "_memory_w",
        "_cap_w",
        "_start",
    )

    def __init__(self, step_model, n: int, kv0: float, growth: float, k: int):
        lines, f0, f1, m0, m1 = step_model.decode_run_lines(n, kv0, growth)
        self.k = k
        self.f0, self.f1, self.m0, self.m1 = f0, f1, m0, m1
        power = self.power = step_model.power
        # The power model's terms, read once per run (_power_at evaluates them at every segment end).
        self._idle_w, self._compute_w, self._memory_w, self._cap_w = (
            power.idle_w,
            power.compute_w,
            power.memory_w,
            power.cap_w,
        )
        self.peak_flops = step_model.peak_flops
        self.bw = step_model.bw
        self.segs = segs = envelope_segments(lines, k)
        cum = [0.0]
        total = 0.0
        for s0, s1, c0, c1 in segs:
            # S(s1) - S(s0)
            total = total + (s1 * c0 + c1 * s1 * (s1 - 1) / 2.0) - (s0 * c0 + c1 * s0 * (s0 - 1) / 2.0)
            cum.append(total)
        self.cum = cum
        self._start: tuple[float, bool] | None = None
        self._seg_energy: list | None = None  # per segment: None (closed form) or cumulative step energies

    def time_s(self, steps: int) -> float:
        """Time of the first `steps` iterations."""
        total = 0.0
        for (s0, s1, c0, c1), before in zip(self.segs, self.cum):
            if steps <= s0:
                break
            e = steps if steps < s1 else s1
            total = before + (e * c0 + c1 * e * (e - 1) / 2.0) - (s0 * c0 + c1 * s0 * (s0 - 1) / 2.0)
        return total

    @property
    def total_s(self) -> float:
        return self.cum[-1]

    def steps_started_by(self, elapsed_s: float) -> int:
        """Number of iterations that have begun by elapsed_s (the one in progress included)."""
        cum = self.cum
        for i in range(len(self.segs)):
            if elapsed_s < cum[i + 1]:  # cum[i + 1] = cum[i] + this segment's time
                return self._started_in(i, elapsed_s)
        return self.k

    def _started_in(self, i: int, elapsed_s: float) -> int:
        """steps_started_by for an elapsed time within segment i (cum[i] <= elapsed_s < cum[i + 1])."""
        s0, s1, c0, c1 = self.segs[i]
        # Solve S(s) <= target for the largest s: quadratic in s.
        target = elapsed_s - self.cum[i] + (s0 * c0 + c1 * s0 * (s0 - 1) / 2.0)
        if c1 == 0:
            s = math.floor(target / c0)
        else:
            a, b = c1 / 2.0, c0 - c1 / 2.0
            s = math.floor((-b + math.sqrt(b * b + 4 * a * target)) / (2 * a))
        if s < s0:
            s = s0
        if s > s1 - 1:
            s = s1 - 1
        # Guard against rounding at a boundary.
        while s + 1 < s1 and (s + 1) * c0 + c1 * (s + 1) * s / 2.0 <= target:
            s += 1
        while s > s0 and s * c0 + c1 * s * (s - 1) / 2.0 > target:
            s -= 1
        return s + 1 if s + 1 < self.k else self.k

    def _power_at(self, j: int, t: float) -> float:
        return self._power_unclipped(j, t)[0]

    def _power_unclipped(self, j: int, t: float) -> tuple[float, bool]:
        """(per-GPU power of iteration j taking t, whether its utilizations are within 1). The
        scalar gpu_power_w written out, the same float operations: clip each utilization to
        [0, 1], then min(cap, idle + compute x u_c + memory x u_m)."""
        u_c = (self.f0 + self.f1 * j) / (t * self.peak_flops)
        u_m = (self.m0 + self.m1 * j) / (t * self.bw)
        unclipped = u_c <= 1 and u_m <= 1
        c = (u_c if u_c < 1.0 else 1.0) if u_c > 0.0 else 0.0
        m = (u_m if u_m < 1.0 else 1.0) if u_m > 0.0 else 0.0
        p = self._idle_w + self._compute_w * c + self._memory_w * m
        return (p if p < self._cap_w else self._cap_w), unclipped

    def _unclipped_at(self, j: int, t: float) -> bool:
        """Iteration j's utilizations are within 1 (gpu_power_w clips them above)."""
        return self._power_unclipped(j, t)[1]

    def _linear_energy(self, s0: int, e: int, c0: float, c1: float) -> float:
        """Energy per GPU of iterations s0..e-1 of a segment whose power stays below the cap and
        unclipped: the power model is linear there, so its sums are arithmetic series."""
        n = e - s0
        t_sum = (e * c0 + c1 * e * (e - 1) / 2.0) - (s0 * c0 + c1 * s0 * (s0 - 1) / 2.0)
        j_sum = e * (e - 1) / 2.0 - s0 * (s0 - 1) / 2.0  # sum of j over s0 <= j < e
        f_sum = n * self.f0 + self.f1 * j_sum
        m_sum = n * self.m0 + self.m1 * j_sum
        return self._idle_w * t_sum + self._compute_w * f_sum / self.peak_flops + self._memory_w * m_sum / self.bw

    def settle(self, steps: int) -> tuple[float, float, float, float, list[tuple[float, int]]]:
        """What the first `steps` iterations book, in one pass over the segments: (their time,
        energy per GPU, peak power per GPU, sum_{j < steps} j * t_j, and per segment (mean
        iteration time, iterations)). Energy is a sum of linear terms unless the cap (or a clip)
        binds at a segment's end, then it is summed step by step."""
        time, energy, peak, weighted = 0.0, 0.0, 0.0, 0.0
        parts = []
        cap = self._cap_w
        for (s0, s1, c0, c1), before in zip(self.segs, self.cum):
            if steps <= s0:
                break
            e = steps if steps < s1 else s1
            time = before + (e * c0 + c1 * e * (e - 1) / 2.0) - (s0 * c0 + c1 * s0 * (s0 - 1) / 2.0)
            if s0 == 0:
                p_first, lin_first = self._start_power()
            else:
                p_first, lin_first = self._power_unclipped(s0, c0 + c1 * s0)
            p_last, lin_last = self._power_unclipped(e - 1, c0 + c1 * (e - 1))
            if p_first > peak:
                peak = p_first
            if p_last > peak:
                peak = p_last
            if p_first < cap and p_last < cap and lin_first and lin_last:
                energy += self._linear_energy(s0, e, c0, c1)
            else:
                for j in range(s0, e):
                    t = c0 + c1 * j
                    energy += self._power_at(j, t) * t
            # sum j*(c0 + c1 j) = c0 * sum j + c1 * sum j^2
            sj = (e * (e - 1) - s0 * (s0 - 1)) / 2.0
            sj2 = ((e - 1) * e * (2 * e - 1) - (s0 - 1) * s0 * (2 * s0 - 1)) / 6.0
            weighted += c0 * sj + c1 * sj2
            parts.append((c0 + c1 * (s0 + e - 1) / 2.0, e - s0))
        return time, energy, peak, weighted, parts

    def energy_j(self, steps: int) -> tuple[float, float]:
        """(energy per GPU over the first `steps` iterations, peak power per GPU)."""
        _, energy, peak, _, _ = self.settle(steps)
        return energy, peak

    def weighted_index_s(self, steps: int) -> float:
        """sum_{j < steps} j * t_j (for time integrals of quantities growing by one unit per step)."""
        return self.settle(steps)[3]

    def segment_steps(self, steps: int) -> list[tuple[float, int]]:
        """(mean iteration time, iterations) of each segment within the first `steps` iterations."""
        return self.settle(steps)[4]

    def energy_by_j(self, elapsed_s: float) -> float:
        """Energy per GPU of the run's first elapsed_s, the iteration in progress pro rata at its
        power: what the fleet's energy meter reads mid-run (exact at every step boundary and at
        the end, so the meter never runs ahead of the energy booked when the run ends)."""
        return self.meter(elapsed_s)[1]

    def meter(self, elapsed_s: float) -> tuple[int, float]:
        """(steps_started_by(elapsed_s), energy_by_j(elapsed_s)): the token and energy meters'
        readings mid-run, in one call (the time series reads every replica at every sample)."""
        if len(self.segs) == 1 and elapsed_s < self.cum[1]:
            # The common run (one segment, mid-run): steps_started_by, _first and step_power_w
            # on that segment, when its energy is the closed form (the same operations).
            if self._seg_energy is None:
                self._seg_energy = [self._segment_cumulative(self.segs[0])]
            if self._seg_energy[0] is None:
                started = self._started_in(0, elapsed_s)
                done = started - 1
                s0, _, c0, c1 = self.segs[0]  # s0 = 0
                energy, time = 0.0, 0.0
                if done > s0:
                    energy += self._linear_energy(s0, done, c0, c1)
                    time = (
                        self.cum[0] + (done * c0 + c1 * done * (done - 1) / 2.0) - (s0 * c0 + c1 * s0 * (s0 - 1) / 2.0)
                    )
                return started, energy + (elapsed_s - time) * self._power_unclipped(done, c0 + c1 * done)[0]
        started = self.steps_started_by(elapsed_s)
        if elapsed_s >= self.cum[-1]:
            return started, self._first(self.k)[0]
        done = started - 1
        energy, time = self._first(done)
        return started, energy + (elapsed_s - time) * self.step_power_w(done)

    def _first(self, steps: int) -> tuple[float, float]:
        """(energy per GPU, time) of the first `steps` iterations, at their own powers (time_s's
        sum, in the same pass)."""
        if self._seg_energy is None:
            self._seg_energy = [self._segment_cumulative(seg) for seg in self.segs]
        energy, time = 0.0, 0.0
        for (s0, s1, c0, c1), before, cum in zip(self.segs, self.cum, self._seg_energy):
            if steps <= s0:
                break
            e = steps if steps < s1 else s1
            energy += float(cum[e - s0]) if cum is not None else self._linear_energy(s0, e, c0, c1)
            time = before + (e * c0 + c1 * e * (e - 1) / 2.0) - (s0 * c0 + c1 * s0 * (s0 - 1) / 2.0)
        return energy, time

    def _segment_cumulative(self, seg) -> np.ndarray | None:
        """None when the segment's power stays below the cap and unclipped at both ends (power is
        monotone along a segment: the linear closed form holds), else its cumulative step energies."""
        s0, s1, c0, c1 = seg
        ends = (s0, s1 - 1)
        linear = all(
            self._power_at(j, c0 + c1 * j) < self.power.cap_w and self._unclipped_at(j, c0 + c1 * j) for j in ends
        )
        if linear:
            return None
        j = np.arange(s0, s1, dtype=np.float64)
        t = c0 + c1 * j
        power = gpu_power_w(
            self.power, (self.f0 + self.f1 * j) / (t * self.peak_flops), (self.m0 + self.m1 * j) / (t * self.bw)
        )
        return np.concatenate(([0.0], np.cumsum(power * t)))

    def step_power_w(self, j: int) -> float:
        """Per-GPU power of iteration j (0-based) of the run."""
        for _, s1, c0, c1 in self.segs:
            if j < s1:
                return self._power_unclipped(j, c0 + c1 * j)[0]
        _, _, c0, c1 = self.segs[-1]
        return self._power_unclipped(j, c0 + c1 * j)[0]

    def power_at_start_w(self) -> float:
        """Per-GPU power of the run's first iteration."""
        return self._start_power()[0]

    def _start_power(self) -> tuple[float, bool]:
        """_power_unclipped of iteration 0, kept: the run's start and its booking both read it."""
        if self._start is None:
            self._start = self._power_unclipped(0, self.segs[0][2])
        return self._start
