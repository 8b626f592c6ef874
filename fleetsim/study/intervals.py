"""Confidence intervals for figures measured over independent replications (seeds).

Which interval, and why:
- Every headline figure (SLO attainment, p99 TTFT/TPOT, $/Mtok, kW) gets a **Student-t interval
  over seeds**: mean +- t(1 - a/2, R - 1) x s / sqrt(R), s the sample standard deviation of the R
  per-seed values. Seeds are independent replications of the whole run, so their per-run values
  are i.i.d. draws; requests within one run are not (a queue links neighbours), which makes a
  binomial interval over pooled requests too narrow exactly when the fleet is loaded.
- `wilson_interval` (attainment over pooled requests, treated as Bernoulli trials) is kept for
  comparison and for the degenerate case where every seed gives the same attainment (all 100%):
  then s = 0 and the t interval has zero width, while Wilson still says how many requests that
  rests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval [lo, hi]."""

    mean: float
    lo: float
    hi: float
    n: int
    confidence: float
    method: str  # "student-t over seeds" | "wilson over requests" | "single run"

    def overlaps(self, other: Interval) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0

    def text(self, fmt: str = "{:.4g}") -> str:
        if self.n < 2:
            return fmt.format(self.mean)
        return f"{fmt.format(self.mean)} ({fmt.format(self.lo)}-{fmt.format(self.hi)})"


def t_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Student-t interval of the mean of independent replications. One value: a zero-width
    'single run' interval (no spread can be estimated from one run)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        raise ValueError("t_interval: no finite values")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return Interval(mean, mean, mean, 1, confidence, "single run")
    s = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * s / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, confidence, "student-t over seeds")


def wilson_interval(successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson score interval of a binomial proportion (Wilson 1927)."""
    if trials <= 0:
        raise ValueError("wilson_interval: trials must be > 0")
    if not 0 <= successes <= trials:
        raise ValueError(f"wilson_interval: successes must be in 0..{trials}, got {successes}")
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends at 0 and 1 (no rounding below p)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return Interval(p, lo, hi, trials, confidence, "wilson over requests")
