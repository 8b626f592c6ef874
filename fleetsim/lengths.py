"""Token lengths: drawing input/output lengths, classes and shared prefixes from the classes'
length distributions, and the distributions' exact means (lognormal rounded and clipped) and
cheap estimates. Its own module: what a request asks for, apart from when it arrives.
"""

from __future__ import annotations

import math

import numpy as np

from fleetsim.spec.base import MAX_TOKENS
from fleetsim.spec.workload import (
    EmpiricalLength,
    FixedLength,
    LengthDistribution,
    LognormalLength,
    UniformLength,
    WorkloadSpec,
)


def _sample_lengths(dist: LengthDistribution, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(dist, FixedLength):
        return np.full(n, dist.tokens, dtype=np.int64)
    if isinstance(dist, UniformLength):
        return rng.integers(dist.min_tokens, dist.max_tokens, size=n, endpoint=True, dtype=np.int64)
    if isinstance(dist, LognormalLength):
        x = np.rint(rng.lognormal(dist.mu, dist.sigma, n))
        hi = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
        return np.clip(x, dist.min_tokens, hi).astype(np.int64)
    if isinstance(dist, EmpiricalLength):
        values = np.asarray(dist.values, dtype=np.int64)
        if dist.weights is None:
            return values[rng.integers(0, len(values), size=n)]
        p = np.asarray(dist.weights, dtype=np.float64)
        return rng.choice(values, size=n, p=p / p.sum())
    raise TypeError(f"unknown length distribution {type(dist).__name__}")


def _sample_classes(spec: WorkloadSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    if len(spec.classes) == 1:
        return np.zeros(n, dtype=np.int32)
    return rng.choice(len(spec.classes), size=n, p=np.asarray(spec.class_weights)).astype(np.int32)


def _prefix_column(spec: WorkloadSpec, class_index: np.ndarray) -> np.ndarray:
    prefixes = np.asarray([c.shared_prefix_tokens for c in spec.classes], dtype=np.int64)
    return prefixes[class_index]


def _sample_requests(spec: WorkloadSpec, rng: np.random.Generator, n: int):
    """Class, input, output and shared-prefix columns of n requests (lengths from the classes)."""
    class_index = _sample_classes(spec, rng, n)
    inputs = np.empty(n, dtype=np.int64)
    outputs = np.empty(n, dtype=np.int64)
    if len(spec.classes) == 1:
        c = spec.classes[0]
        inputs[:] = _sample_lengths(c.input_tokens, rng, n)
        outputs[:] = _sample_lengths(c.output_tokens, rng, n)
    else:
        for k, c in enumerate(spec.classes):
            rows = np.flatnonzero(class_index == k)
            inputs[rows] = _sample_lengths(c.input_tokens, rng, len(rows))
            outputs[rows] = _sample_lengths(c.output_tokens, rng, len(rows))
    return inputs, outputs, class_index, _prefix_column(spec, class_index)


def length_mean(dist: LengthDistribution, *, exact: bool = True) -> float:
    """Expected tokens of one draw from a length distribution. ``exact=False`` takes the
    continuous clipped-lognormal mean for a lognormal (O(1), within half a token; for estimates)."""
    if isinstance(dist, FixedLength):
        return float(dist.tokens)
    if isinstance(dist, UniformLength):
        return 0.5 * (dist.min_tokens + dist.max_tokens)
    if isinstance(dist, EmpiricalLength):
        values = np.asarray(dist.values, dtype=np.float64)
        if dist.weights is None:
            return float(values.mean())
        p = np.asarray(dist.weights, dtype=np.float64)
        return float(np.dot(values, p) / p.sum())
    if isinstance(dist, LognormalLength):
        if not exact:
            high = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
            return _clipped_lognormal_mean(dist.mu, dist.sigma, dist.min_tokens, high)
        return _rounded_clipped_lognormal_mean(dist)
    raise TypeError(f"unknown length distribution {type(dist).__name__}")


_EXACT_SUM_TOKENS = 2_000_000


def _rounded_clipped_lognormal_mean(dist: LognormalLength) -> float:
    """E[clip(rint(X), a, b)] = a + sum_{k=a}^{b-1} P(X >= k + 1/2), X ~ lognormal(mu, sigma)."""
    from scipy.special import ndtr  # imported on use: scipy.special costs ~0.2 s at start-up

    mu, sigma = dist.mu, dist.sigma
    a = dist.min_tokens
    b = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
    stop = int(min(b, a + _EXACT_SUM_TOKENS))
    k = np.arange(a, stop, dtype=np.float64)
    mean = a + float(ndtr(-(np.log(k + 0.5) - mu) / sigma).sum())
    if stop < b:
        # sum_{k>=stop}^{b-1} P(X >= k + 1/2) ~ integral_{stop}^{b} P(X > x) dx (midpoint rule).
        mean += _clipped_lognormal_mean(mu, sigma, stop, b) - stop
    return mean


def length_estimate(dist: LengthDistribution) -> float:
    """``length_mean(dist, exact=False)`` with the normal CDF from math.erfc instead of scipy's
    (the same to ~1e-15 relative, without importing scipy.special: ~0.2 CPU s of every
    `fleetsim run`); for estimates (fleetsim.workbudget), not for results."""
    if isinstance(dist, LognormalLength):
        high = MAX_TOKENS if dist.max_tokens is None else dist.max_tokens
        return _clipped_lognormal_mean(dist.mu, dist.sigma, dist.min_tokens, high, _erfc_normal_cdf)
    return length_mean(dist)


def _erfc_normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _clipped_lognormal_mean(mu: float, sigma: float, lo: float, hi: float, ndtr=None) -> float:
    """E[clip(X, lo, hi)] for continuous X ~ lognormal(mu, sigma), 0 < lo <= hi <= inf; `ndtr`
    the standard normal CDF (default scipy's)."""
    if ndtr is None:
        from scipy.special import ndtr  # imported on use: scipy.special costs ~0.2 s at start-up

    m = math.exp(mu + 0.5 * sigma**2)
    alpha = (math.log(lo) - mu) / sigma
    if math.isinf(hi):
        return lo * float(ndtr(alpha)) + m * float(ndtr(sigma - alpha))
    beta = (math.log(hi) - mu) / sigma
    return lo * float(ndtr(alpha)) + m * float(ndtr(beta - sigma) - ndtr(alpha - sigma)) + hi * float(ndtr(-beta))
