"""A mergeable log-bucketed histogram for latency statistics of any number of samples.

Bucket i holds values in [lo * r^i, lo * r^(i+1)); a quantile is reported at its bucket's
geometric midpoint, so it is within a relative error of sqrt(r) - 1 (0.25% for r = 1.005) of
the exact sample quantile, whatever the count. Histograms of the same shape merge by adding
counts (pods, sweeps). Values below `lo` fall in the first bucket, above the top in the last.
Samples carry weights (an iteration's time counts once per decoding sequence).
"""

from __future__ import annotations

import math

import numpy as np

LO_S = 1e-6
HI_S = 1e4
RATIO = 1.005
RELATIVE_ERROR = math.sqrt(RATIO) - 1.0


class LogHistogram:
    __slots__ = ("counts", "total", "weighted_sum", "since_s", "until_s", "_log_lo", "_log_r", "_n")

    def __init__(self, since_s: float = 0.0, until_s: float = math.inf):
        self._n = int(math.ceil(math.log(HI_S / LO_S) / math.log(RATIO))) + 1
        self.counts = np.zeros(self._n, dtype=np.float64)
        self.total = 0.0
        self.weighted_sum = 0.0
        self.since_s = since_s  # samples recorded outside [since_s, until_s] are ignored (warm-up, drain)
        self.until_s = until_s
        self._log_lo = math.log(LO_S)
        self._log_r = math.log(RATIO)

    def add(self, value: float, weight: float, now: float = math.inf) -> None:
        if now < self.since_s or now > self.until_s or weight <= 0 or not value > 0:
            return
        i = int((math.log(value) - self._log_lo) / self._log_r)
        i = 0 if i < 0 else (self._n - 1 if i >= self._n else i)
        self.counts[i] += weight
        self.total += weight
        self.weighted_sum += weight * value

    def add_values(self, values: np.ndarray) -> None:
        """Add unit-weight samples at once (no clock window). Unlike `add`, a value of 0 or below
        `lo` counts, in the first bucket, so quantiles over latencies keep every sample (such a
        value is reported as about `lo`: its error is absolute, at most LO_S)."""
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        if not len(v):
            return
        i = np.floor((np.log(np.maximum(v, LO_S)) - self._log_lo) / self._log_r)
        idx = np.clip(i, 0, self._n - 1).astype(np.intp)
        self.counts += np.bincount(idx, minlength=self._n)
        self.total += float(len(v))
        self.weighted_sum += float(v.sum())

    def merge(self, other: LogHistogram) -> None:
        self.counts += other.counts
        self.total += other.total
        self.weighted_sum += other.weighted_sum

    @property
    def mean(self) -> float | None:
        return self.weighted_sum / self.total if self.total else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), at the geometric midpoint of its bucket."""
        if not self.total:
            return None
        cdf = np.cumsum(self.counts)
        i = int(np.searchsorted(cdf, q * self.total, side="left"))
        i = min(i, self._n - 1)
        return math.exp(self._log_lo + (i + 0.5) * self._log_r)

    def stats(self) -> dict:
        out = {"mean": self.mean}
        for p in (50, 90, 99):
            out[f"p{p}"] = self.quantile(p / 100.0)
        return out
