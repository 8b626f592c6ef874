"""When requests come: the arrival processes (poisson, gamma, diurnal sinusoidal or piecewise,
trace replay, closed loop, offline; tagged on ``kind``) and the think times of the closed loop
and of sessions, with their bounds. Its own module: the load is specified apart from the
request mix (fleetsim.spec.workload) and drawn by fleetsim.arrivals.
"""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.spec.base import (
    INTEGER,
    MAX_DURATION_S,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    NUMBER,
    Duration,
    NonNegativeDuration,
    PathText,
    Rate,
    RequestCount,
    Spec,
)

MAX_CV = 100.0
MIN_CV = 1e-3
MAX_SEGMENTS = 100_000
MIN_SEGMENT_S = 1e-3
MAX_SPEEDUP = 1e6
MAX_USERS = 1_000_000
MAX_TRACE_REQUESTS = MAX_REQUESTS

_YEARS = f"{MAX_DURATION_S:,.0f} s (10 years)"
_RATE = f"> 0 and at most {MAX_RATE_PER_S:.0e}"


class FixedThinkTime(Spec):
    """The same think time after every answer."""

    kind: Literal["fixed"] = Field(default="fixed", description="Fixed think time.")
    value_s: NonNegativeDuration = Field(description=f"Think time, seconds; 0 to {_YEARS}. Required.")


class ExponentialThinkTime(Spec):
    """Exponentially distributed think times."""

    kind: Literal["exponential"] = Field(default="exponential", description="Exponential think time.")
    mean_s: Duration = Field(description=f"Mean think time, seconds; > 0 and at most {_YEARS}. Required.")


ThinkTime = Annotated[FixedThinkTime | ExponentialThinkTime, Field(discriminator="kind")]


# --------------------------------------------------------------------------- arrival processes


class PoissonArrival(Spec):
    """Exponential inter-arrival times with mean 1 / rate_per_s."""

    kind: Literal["poisson"] = Field(default="poisson", description="Poisson arrivals at a constant rate.")
    rate_per_s: Rate = Field(description=f"Mean arrival rate, requests per second; {_RATE}. Required.")


class GammaArrival(Spec):
    """Renewal process with Gamma inter-arrivals: mean 1 / rate_per_s, coefficient of variation cv.

    Shape k = 1 / cv^2, scale = cv^2 / rate_per_s. cv = 1 is Poisson; cv > 1 is bursty.
    """

    kind: Literal["gamma"] = Field(default="gamma", description="Renewal arrivals with Gamma inter-arrival times.")
    rate_per_s: Rate = Field(description=f"Mean arrival rate, requests per second; {_RATE}. Required.")
    cv: Annotated[float, Field(ge=MIN_CV, le=MAX_CV), NUMBER] = Field(
        description=f"Coefficient of variation of the gaps (1: Poisson, > 1: bursty); {MIN_CV:g} to {MAX_CV:g}. "
        "Required."
    )


class DiurnalArrival(Spec):
    """Non-homogeneous Poisson process with a daily (or any periodic) rate profile.

    Either sinusoidal::

        rate(t) = mean_rate_per_s * (1 + (peak_to_mean - 1) * cos(2 pi (t - peak_time_s) / period_s))

    (peak_to_mean in [1, 2] keeps the rate non-negative; the trough is (2 - peak_to_mean) x mean),
    or piecewise-constant: ``rates_per_s[i]`` on [i, i + 1) x segment_s, the profile repeating
    with period len(rates_per_s) x segment_s.
    """

    kind: Literal["diurnal"] = Field(default="diurnal", description="Poisson arrivals with a periodic rate profile.")
    mean_rate_per_s: Rate | None = Field(
        default=None,
        description=f"Sinusoidal: mean rate over a period, requests per second; {_RATE}. "
        "Default null (give it, or rates_per_s and segment_s).",
    )
    peak_to_mean: Annotated[float, Field(ge=1, le=2), NUMBER] | None = Field(
        default=None, description="Sinusoidal: peak rate / mean rate; 1 to 2. Default null: 1 (a flat rate)."
    )
    period_s: Annotated[float, Field(ge=MIN_SEGMENT_S, le=MAX_DURATION_S), NUMBER] = Field(
        default=86400.0,
        description=f"Sinusoidal: period, seconds; {MIN_SEGMENT_S:g} to {_YEARS}. Default 86400 (a day).",
    )
    peak_time_s: NonNegativeDuration = Field(
        default=0.0, description=f"Sinusoidal: time of the peak within the period, seconds; 0 to {_YEARS}. Default 0."
    )
    rates_per_s: tuple[Annotated[float, Field(ge=0, le=MAX_RATE_PER_S), NUMBER], ...] | None = Field(
        default=None,
        max_length=MAX_SEGMENTS,
        description=f"Piecewise: the rate of each segment, requests per second, each 0 to {MAX_RATE_PER_S:.0e} "
        f"(at least one > 0); 1 to {MAX_SEGMENTS:,} segments, repeating. Default null (sinusoidal).",
    )
    segment_s: Annotated[float, Field(ge=MIN_SEGMENT_S, le=MAX_DURATION_S), NUMBER] | None = Field(
        default=None,
        description=f"Piecewise: length of each segment, seconds; {MIN_SEGMENT_S:g} to {_YEARS}. "
        "Default null (sinusoidal).",
    )

    @model_validator(mode="after")
    def _one_shape(self):
        sinusoid = self.mean_rate_per_s is not None or self.peak_to_mean is not None
        piecewise = self.rates_per_s is not None or self.segment_s is not None
        if sinusoid and piecewise:
            raise ValueError(
                "give either {mean_rate_per_s, peak_to_mean} (sinusoidal) or "
                "{rates_per_s, segment_s} (piecewise), not both"
            )
        if piecewise:
            if self.rates_per_s is None or self.segment_s is None:
                raise ValueError("piecewise diurnal needs both rates_per_s and segment_s")
            if len(self.rates_per_s) == 0 or max(self.rates_per_s) <= 0:
                raise ValueError(f"rates_per_s={list(self.rates_per_s)} must hold at least one rate > 0")
        else:
            if self.mean_rate_per_s is None:
                raise ValueError(
                    "diurnal needs mean_rate_per_s (> 0) and peak_to_mean (in [1, 2]), or rates_per_s and segment_s"
                )
        return self

    @property
    def is_piecewise(self) -> bool:
        return self.rates_per_s is not None

    @property
    def amplitude(self) -> float:
        """Relative amplitude of the sinusoid: peak_to_mean - 1 (peak_to_mean defaults to 1)."""
        return (self.peak_to_mean if self.peak_to_mean is not None else 1.0) - 1.0


class TraceArrival(Spec):
    """Replay a CSV trace: arrival times and both token lengths come from the file.

    Recognised column sets (extra columns are ignored):
      - ``arrival_s, input_tokens, output_tokens`` (seconds),
      - Azure LLM inference trace ``TIMESTAMP, ContextTokens, GeneratedTokens`` (datetime strings),
      - Vidur ``arrived_at, num_prefill_tokens, num_decode_tokens`` (seconds).
    Any of them may add ``session_id, turn`` (a multi-turn conversation and the request's turn in it).
    Rows are sorted by time and shifted so the first request arrives at 0. ``speedup`` divides
    every arrival time (speedup 2 replays the trace twice as fast, at twice the rate); lengths are
    unchanged. ``max_requests`` keeps only the first N requests. A relative ``path`` in a scenario
    file is resolved against that file's folder (in a mapping given in Python, against the working
    directory). Requests after ``run.duration_s`` are dropped, with a FleetsimWarning.
    """

    kind: Literal["trace"] = Field(
        default="trace", description="Replay of a CSV trace (times and lengths from the file)."
    )
    path: PathText = Field(
        description="CSV trace file; a relative path is relative to the scenario file's folder. Optional columns "
        "session_id and turn (both or neither, whole numbers >= 0) place requests in conversations (the block "
        "prefix cache and session affinity read them). Required."
    )
    speedup: Annotated[float, Field(ge=1 / MAX_SPEEDUP, le=MAX_SPEEDUP), NUMBER] = Field(
        default=1.0,
        description=f"Divide every arrival time by this (2: twice the rate); {1 / MAX_SPEEDUP:g} to "
        f"{MAX_SPEEDUP:.0e}. Default 1.",
    )
    max_requests: RequestCount | None = Field(
        default=None,
        description=f"Keep only the first N requests; 1 to {MAX_REQUESTS:,}. Default null: the whole trace.",
    )


class ClosedArrival(Spec):
    """``users`` clients, each sending its next request ``think_time`` after the previous answer.

    The simulator drives the loop; ``think_time: null`` (the default) means no think time.
    """

    kind: Literal["closed"] = Field(default="closed", description="Closed loop: users wait for each answer.")
    users: Annotated[int, Field(ge=1, le=MAX_USERS), INTEGER] = Field(
        description=f"Concurrent clients, each with one request in flight; 1 to {MAX_USERS:,}. Required."
    )
    think_time: ThinkTime | None = Field(
        default=None,
        description="Pause between an answer and the next request, by `kind`. Default null: no think time.",
    )


class OfflineArrival(Spec):
    """MLPerf Offline: all ``requests`` arrive at time 0."""

    kind: Literal["offline"] = Field(default="offline", description="Offline batch: every request arrives at t = 0.")
    requests: RequestCount = Field(description=f"Requests in the batch; 1 to {MAX_REQUESTS:,}. Required.")


ArrivalProcess = Annotated[
    PoissonArrival | GammaArrival | DiurnalArrival | TraceArrival | ClosedArrival | OfflineArrival,
    Field(discriminator="kind"),
]

OPEN_LOOP_KINDS = ("poisson", "gamma", "diurnal", "trace", "offline")
