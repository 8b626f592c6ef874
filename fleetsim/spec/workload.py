"""What arrives at the fleet: when requests come (arrival process) and how long they are (classes).

YAML shape, inside a scenario::

    workload:
      arrival: {kind: poisson, rate_per_s: 12.0}
      classes:
        - name: chat
          weight: 1.0
          input_tokens: {kind: lognormal, mean_tokens: 600, sigma: 1.0, min_tokens: 1, max_tokens: 8192}
          output_tokens: {kind: fixed, tokens: 256}
          shared_prefix_tokens: 0
          slo_class: interactive

Arrival kinds (tagged on ``kind``): poisson, gamma, diurnal (sinusoidal or piecewise-constant),
trace (CSV replay), closed (N users with think time), offline (every request at t = 0).
Length kinds: fixed, uniform, lognormal, empirical.

Field checks raise pydantic's ValidationError; checks that need a file (a trace) happen when the
trace is loaded (``fleetsim.workload.load_trace``) and raise ``SpecError``.
"""

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.spec.base import Spec

PositiveInt = Annotated[int, Field(gt=0)]
TokenCount = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


# --------------------------------------------------------------------------- lengths (tokens)


class FixedLength(Spec):
    """Every request has exactly ``tokens`` tokens."""

    kind: Literal["fixed"] = "fixed"
    tokens: TokenCount

    @property
    def min_possible_tokens(self) -> int:
        return self.tokens


class UniformLength(Spec):
    """Integer uniform on [min_tokens, max_tokens], both ends included."""

    kind: Literal["uniform"] = "uniform"
    min_tokens: TokenCount
    max_tokens: TokenCount

    @model_validator(mode="after")
    def _ordered(self):
        if self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens={self.min_tokens} exceeds max_tokens={self.max_tokens}; need min_tokens <= max_tokens"
            )
        return self

    @property
    def min_possible_tokens(self) -> int:
        return self.min_tokens


class LognormalLength(Spec):
    """round(X) clipped to [min_tokens, max_tokens], X lognormal with arithmetic mean mean_tokens.

    ``mean_tokens`` is the mean of the untruncated lognormal: X = exp(mu + sigma Z) with
    mu = ln(mean_tokens) - sigma^2 / 2. Draws are rounded to the nearest integer, then clipped
    (not rejected), so the clipped mass piles up at the bounds. ``max_tokens: null`` means no
    upper bound.
    """

    kind: Literal["lognormal"] = "lognormal"
    mean_tokens: PositiveFloat
    sigma: PositiveFloat
    min_tokens: TokenCount = 1
    max_tokens: TokenCount | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens={self.min_tokens} exceeds max_tokens={self.max_tokens}; need min_tokens <= max_tokens"
            )
        return self

    @property
    def mu(self) -> float:
        """Mean of ln X."""
        return math.log(self.mean_tokens) - 0.5 * self.sigma**2

    @property
    def min_possible_tokens(self) -> int:
        return self.min_tokens


class EmpiricalLength(Spec):
    """A draw from ``values`` with probabilities proportional to ``weights`` (equal if omitted)."""

    kind: Literal["empirical"] = "empirical"
    values: tuple[TokenCount, ...] = Field(min_length=1)
    weights: tuple[PositiveFloat, ...] | None = None

    @model_validator(mode="after")
    def _same_length(self):
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(
                f"weights has {len(self.weights)} entries but values has {len(self.values)}; "
                "give one positive weight per value"
            )
        return self

    @property
    def min_possible_tokens(self) -> int:
        return min(self.values)


LengthDistribution = Annotated[
    FixedLength | UniformLength | LognormalLength | EmpiricalLength,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- think time (closed)


class FixedThinkTime(Spec):
    kind: Literal["fixed"] = "fixed"
    value_s: NonNegativeFloat


class ExponentialThinkTime(Spec):
    kind: Literal["exponential"] = "exponential"
    mean_s: PositiveFloat


ThinkTime = Annotated[FixedThinkTime | ExponentialThinkTime, Field(discriminator="kind")]


# --------------------------------------------------------------------------- arrival processes


class PoissonArrival(Spec):
    """Exponential inter-arrival times with mean 1 / rate_per_s."""

    kind: Literal["poisson"] = "poisson"
    rate_per_s: PositiveFloat


class GammaArrival(Spec):
    """Renewal process with Gamma inter-arrivals: mean 1 / rate_per_s, coefficient of variation cv.

    Shape k = 1 / cv^2, scale = cv^2 / rate_per_s. cv = 1 is Poisson; cv > 1 is bursty.
    """

    kind: Literal["gamma"] = "gamma"
    rate_per_s: PositiveFloat
    cv: PositiveFloat


class DiurnalArrival(Spec):
    """Non-homogeneous Poisson process with a daily (or any periodic) rate profile.

    Either sinusoidal::

        rate(t) = mean_rate_per_s * (1 + (peak_to_mean - 1) * cos(2 pi (t - peak_time_s) / period_s))

    (peak_to_mean in [1, 2] keeps the rate non-negative; the trough is (2 - peak_to_mean) x mean),
    or piecewise-constant: ``rates_per_s[i]`` on [i, i + 1) x segment_s, the profile repeating
    with period len(rates_per_s) x segment_s.
    """

    kind: Literal["diurnal"] = "diurnal"
    mean_rate_per_s: PositiveFloat | None = None
    peak_to_mean: float | None = Field(default=None, ge=1, le=2, allow_inf_nan=False)
    period_s: PositiveFloat = 86400.0
    peak_time_s: NonNegativeFloat = 0.0
    rates_per_s: tuple[NonNegativeFloat, ...] | None = None
    segment_s: PositiveFloat | None = None

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
    Rows are sorted by time and shifted so the first request arrives at 0. ``speedup`` divides
    every arrival time (speedup 2 replays the trace twice as fast, at twice the rate); lengths are
    unchanged. ``max_requests`` keeps only the first N requests. A relative ``path`` is resolved
    against the working directory.
    """

    kind: Literal["trace"] = "trace"
    path: str = Field(min_length=1)
    speedup: PositiveFloat = 1.0
    max_requests: PositiveInt | None = None


class ClosedArrival(Spec):
    """``users`` clients, each sending its next request ``think_time`` after the previous answer.

    The simulator drives the loop; ``think_time: null`` (the default) means no think time.
    """

    kind: Literal["closed"] = "closed"
    users: PositiveInt
    think_time: ThinkTime | None = None


class OfflineArrival(Spec):
    """MLPerf Offline: all ``requests`` arrive at time 0."""

    kind: Literal["offline"] = "offline"
    requests: PositiveInt


ArrivalProcess = Annotated[
    PoissonArrival | GammaArrival | DiurnalArrival | TraceArrival | ClosedArrival | OfflineArrival,
    Field(discriminator="kind"),
]

OPEN_LOOP_KINDS = ("poisson", "gamma", "diurnal", "trace", "offline")


# --------------------------------------------------------------------------- request classes


class RequestClass(Spec):
    """One kind of request in the mix, drawn with probability weight / sum(weights).

    ``shared_prefix_tokens`` leading input tokens are the same for every request of the class
    (a system prompt, a RAG preamble): prefix caching stores them once per replica. They are part
    of ``input_tokens``, so they must be fewer than the smallest possible input.

    For a trace workload the lengths come from the file and ``input_tokens``/``output_tokens``
    must be left out; otherwise both are required.
    """

    name: str = Field(min_length=1)
    weight: PositiveFloat = 1.0
    input_tokens: LengthDistribution | None = None
    output_tokens: LengthDistribution | None = None
    shared_prefix_tokens: int = Field(default=0, ge=0)
    # Fraction of requests whose whole prompt is already in the prefix cache (a prompt seen
    # before: a benchmark resending its prompts k times has 1 - 1/k; a retry; a regenerate).
    # With kv_cache.prefix_caching such a request prefills only its last prompt token and
    # shares the prompt's KV blocks instead of holding its own.
    prompt_cache_hit_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    slo_class: str | None = None

    @model_validator(mode="after")
    def _prefix_below_input(self):
        if self.input_tokens is not None:
            smallest = self.input_tokens.min_possible_tokens
            if self.shared_prefix_tokens >= smallest:
                raise ValueError(
                    f"shared_prefix_tokens={self.shared_prefix_tokens} must be below the "
                    f"smallest possible input_tokens ({smallest}) of class '{self.name}'"
                )
        return self


class WorkloadSpec(Spec):
    """Arrival process plus the request mix. A trace workload may leave ``classes`` out."""

    arrival: ArrivalProcess
    classes: tuple[RequestClass, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _trace_default_class(cls, data):
        if isinstance(data, dict) and not data.get("classes"):
            arrival = data.get("arrival")
            kind = arrival.get("kind") if isinstance(arrival, dict) else getattr(arrival, "kind", None)
            if kind == "trace":
                data = {**data, "classes": [{"name": "trace"}]}
        return data

    @model_validator(mode="after")
    def _classes_fit_arrival(self):
        if not self.classes:
            raise ValueError("classes is empty; give at least one request class")
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"classes have duplicate names {names}; names must be unique")
        trace = self.arrival.kind == "trace"
        for c in self.classes:
            given = (c.input_tokens is not None, c.output_tokens is not None)
            if trace and any(given):
                raise ValueError(
                    f"classes['{c.name}']: a trace workload takes lengths from the trace; "
                    "leave out input_tokens and output_tokens"
                )
            if not trace and not all(given):
                raise ValueError(
                    f"classes['{c.name}']: input_tokens and output_tokens are both required "
                    f"for a {self.arrival.kind} workload"
                )
        return self

    @property
    def class_weights(self) -> tuple[float, ...]:
        """Normalised class probabilities."""
        total = sum(c.weight for c in self.classes)
        return tuple(c.weight / total for c in self.classes)
