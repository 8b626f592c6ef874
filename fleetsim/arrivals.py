"""Arrival times of the open-loop kinds: renewal processes (poisson, gamma) drawn in blocks of
gaps and cut at the clock or the count, and diurnal load (sinusoidal by thinning, piecewise
through the inverse integrated rate), with the diurnal rate and its integral. Its own module:
when requests arrive is drawn apart from what they ask for (fleetsim.lengths).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fleetsim.spec.workload import DiurnalArrival

# Draws per numpy call: the least block of gaps after the first one, and each refill of the closed
# loop's length and think-time samplers (fleetsim.workload).
_BLOCK = 4096


def _first_block_size(rate_per_s: float, cv: float, duration_s, max_requests) -> int:
    """Gaps to draw first: enough to pass duration_s with high probability, at most max_requests."""
    n = math.inf
    if duration_s is not None:
        expected = rate_per_s * duration_s
        n = expected + 6.0 * max(cv, 1.0) * math.sqrt(expected) + 64
    if max_requests is not None:
        n = min(n, max_requests)
    return max(int(n), 1)


def _renewal_times(
    draw_gaps: Callable[[int], np.ndarray],
    first_block: int,
    duration_s: float | None,
    max_requests: int | None,
) -> np.ndarray:
    """Cumulative sums of gap blocks until past duration_s or max_requests drawn, then cut."""
    chunks = []
    clock_s = 0.0
    drawn = 0
    block = first_block
    while True:
        times = clock_s + np.cumsum(draw_gaps(block))
        chunks.append(times)
        drawn += block
        clock_s = float(times[-1])
        if max_requests is not None and drawn >= max_requests:
            break
        if duration_s is not None and clock_s > duration_s:
            break
        block = max(first_block // 4, _BLOCK)
        if max_requests is not None:
            block = min(block, max_requests - drawn)
    times = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    if duration_s is not None:
        times = times[: np.searchsorted(times, duration_s, side="right")]
    if max_requests is not None:
        times = times[:max_requests]
    return times


def _poisson_times(rate_per_s, rng, duration_s, max_requests) -> np.ndarray:
    scale_s = 1.0 / rate_per_s
    return _renewal_times(
        lambda n: rng.exponential(scale_s, n),
        _first_block_size(rate_per_s, 1.0, duration_s, max_requests),
        duration_s,
        max_requests,
    )


def _gamma_times(rate_per_s, cv, rng, duration_s, max_requests) -> np.ndarray:
    shape = 1.0 / cv**2
    scale_s = cv**2 / rate_per_s
    return _renewal_times(
        lambda n: rng.gamma(shape, scale_s, n),
        _first_block_size(rate_per_s, cv, duration_s, max_requests),
        duration_s,
        max_requests,
    )


def sinusoidal_rate_per_s(arrival: DiurnalArrival, t_s: np.ndarray | float) -> np.ndarray | float:
    """Instantaneous rate of a sinusoidal diurnal profile at time(s) t_s."""
    phase = 2.0 * np.pi * (np.asarray(t_s) - arrival.peak_time_s) / arrival.period_s
    return arrival.mean_rate_per_s * (1.0 + arrival.amplitude * np.cos(phase))


def integrated_rate(arrival: DiurnalArrival, t_s: np.ndarray | float) -> np.ndarray | float:
    """Expected number of arrivals in [0, t_s] of a diurnal profile (the integrated rate)."""
    t = np.asarray(t_s, dtype=np.float64)
    if arrival.is_piecewise:
        rates = np.asarray(arrival.rates_per_s, dtype=np.float64)
        seg_s = arrival.segment_s
        period_s = seg_s * len(rates)
        cum = np.concatenate(([0.0], np.cumsum(rates * seg_s)))
        cycles = np.floor(t / period_s)
        rest_s = t - cycles * period_s
        i = np.minimum((rest_s // seg_s).astype(np.int64), len(rates) - 1)
        return cycles * cum[-1] + cum[i] + rates[i] * (rest_s - i * seg_s)
    omega = 2.0 * np.pi / arrival.period_s
    a = arrival.amplitude
    return arrival.mean_rate_per_s * (
        t + a / omega * (np.sin(omega * (t - arrival.peak_time_s)) - np.sin(-omega * arrival.peak_time_s))
    )


def _diurnal_times(arrival: DiurnalArrival, rng, duration_s, max_requests) -> np.ndarray:
    if arrival.is_piecewise:
        return _piecewise_times(arrival, rng, duration_s, max_requests)
    # Thinning: candidates at the peak rate, each kept with probability rate(t) / peak rate.
    peak_per_s = arrival.mean_rate_per_s * (1.0 + arrival.amplitude)
    chunks = []
    kept = 0
    clock_s = 0.0
    block = _first_block_size(
        peak_per_s,
        1.0,
        duration_s,
        None if max_requests is None else int(max_requests * (1.0 + arrival.amplitude) + 64),
    )
    while True:
        times = clock_s + np.cumsum(rng.exponential(1.0 / peak_per_s, block))
        clock_s = float(times[-1])
        accept = rng.random(block) * peak_per_s < sinusoidal_rate_per_s(arrival, times)
        chunk = times[accept]
        chunks.append(chunk)
        kept += len(chunk)
        if max_requests is not None and kept >= max_requests:
            break
        if duration_s is not None and clock_s > duration_s:
            break
        block = max(block // 4, _BLOCK)
    times = np.concatenate(chunks)
    if duration_s is not None:
        times = times[: np.searchsorted(times, duration_s, side="right")]
    if max_requests is not None:
        times = times[:max_requests]
    return times


def _piecewise_times(arrival: DiurnalArrival, rng, duration_s, max_requests) -> np.ndarray:
    # Unit-rate Poisson "operational time" E, mapped through the inverse integrated rate.
    rates = np.asarray(arrival.rates_per_s, dtype=np.float64)
    seg_s = arrival.segment_s
    period_s = seg_s * len(rates)
    cum = np.concatenate(([0.0], np.cumsum(rates * seg_s)))
    per_period = cum[-1]
    horizon = None if duration_s is None else float(integrated_rate(arrival, duration_s))
    ops = _renewal_times(
        lambda n: rng.exponential(1.0, n),
        _first_block_size(1.0, 1.0, horizon, max_requests),
        horizon,
        max_requests,
    )
    cycles = np.floor(ops / per_period)
    rest = np.clip(ops - cycles * per_period, 0.0, np.nextafter(per_period, 0.0))
    i = np.minimum(np.searchsorted(cum, rest, side="right") - 1, len(rates) - 1)
    times = cycles * period_s + i * seg_s + (rest - cum[i]) / rates[i]
    times = np.maximum.accumulate(times) if len(times) else times
    if duration_s is not None:
        times = times[: np.searchsorted(times, duration_s, side="right")]
    return times
