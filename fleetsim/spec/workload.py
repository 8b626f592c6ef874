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

from fleetsim.spec.base import (
    INTEGER,
    MAX_DURATION_S,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    MAX_TOKENS,
    NUMBER,
    Duration,
    Fraction,
    Name,
    NonNegativeDuration,
    NonNegativeTokens,
    PathText,
    Rate,
    RequestCount,
    Spec,
    TokenCount,
)

MAX_SIGMA = 10.0
MAX_CV = 100.0
MIN_CV = 1e-3
MAX_WEIGHT = 1e12
MAX_EMPIRICAL_VALUES = 1_000_000
MAX_SEGMENTS = 100_000
MIN_SEGMENT_S = 1e-3
MAX_SPEEDUP = 1e6
MAX_USERS = 1_000_000
MAX_CLASSES = 1000
MAX_TRACE_REQUESTS = MAX_REQUESTS

_TOKENS = f"1 to {MAX_TOKENS:,}"
_YEARS = f"{MAX_DURATION_S:,.0f} s (10 years)"
_RATE = f"> 0 and at most {MAX_RATE_PER_S:.0e}"
Weight = Annotated[float, Field(gt=0, le=MAX_WEIGHT), NUMBER]


# --------------------------------------------------------------------------- lengths (tokens)


class FixedLength(Spec):
    """Every request has exactly ``tokens`` tokens."""

    kind: Literal["fixed"] = Field(default="fixed", description="Fixed length: every request has `tokens` tokens.")
    tokens: TokenCount = Field(description=f"Tokens of every request; {_TOKENS}. Required.")

    @property
    def min_possible_tokens(self) -> int:
        return self.tokens


class UniformLength(Spec):
    """Integer uniform on [min_tokens, max_tokens], both ends included."""

    kind: Literal["uniform"] = Field(
        default="uniform", description="Integer uniform length on [min_tokens, max_tokens]."
    )
    min_tokens: TokenCount = Field(description=f"Smallest length, included; {_TOKENS}. Required.")
    max_tokens: TokenCount = Field(description=f"Largest length, included, >= min_tokens; {_TOKENS}. Required.")

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
    (not rejected), so the clipped mass piles up at the bounds. ``max_tokens: null`` means the
    request limit of 10,000,000 tokens.
    """

    kind: Literal["lognormal"] = Field(
        default="lognormal", description="Rounded lognormal length, clipped to the bounds."
    )
    mean_tokens: Annotated[float, Field(gt=0, le=MAX_TOKENS), NUMBER] = Field(
        description=f"Arithmetic mean of the untruncated lognormal, tokens; > 0 and at most {MAX_TOKENS:,}. Required."
    )
    sigma: Annotated[float, Field(gt=0, le=MAX_SIGMA), NUMBER] = Field(
        description=f"Standard deviation of ln(length); > 0 and at most {MAX_SIGMA:g}. Required."
    )
    min_tokens: TokenCount = Field(default=1, description=f"Draws below are raised to this; {_TOKENS}. Default 1.")
    max_tokens: TokenCount | None = Field(
        default=None,
        description=f"Draws above are cut to this; {_TOKENS}. Default null: the {MAX_TOKENS:,}-token request limit.",
    )

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

    kind: Literal["empirical"] = Field(default="empirical", description="A draw from a list of lengths.")
    values: tuple[TokenCount, ...] = Field(
        min_length=1,
        max_length=MAX_EMPIRICAL_VALUES,
        description=f"Lengths to draw from, tokens each {_TOKENS}; 1 to {MAX_EMPIRICAL_VALUES:,} entries. Required.",
    )
    weights: tuple[Weight, ...] | None = Field(
        default=None,
        max_length=MAX_EMPIRICAL_VALUES,
        description=f"Relative probability of each value, one per value, each > 0 and at most {MAX_WEIGHT:.0e}. "
        "Default null: equal probabilities.",
    )

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


# --------------------------------------------------------------------------- multi-turn sessions

TurnCount = Annotated[
    FixedLength | UniformLength | EmpiricalLength,
    Field(discriminator="kind"),
]


class SessionSpec(Spec):
    """Multi-turn conversations: each arrival of the class opens a session of `turns` requests.

    Turn 1's prompt is a draw of the class's ``input_tokens`` (its shared prefix included); turn
    j's prompt is the conversation so far (turn j-1's prompt and answer) plus a new draw of
    ``input_tokens``, so the prompt grows by the conversation. Turn j + 1 arrives ``think_time``
    after turn j arrived (open loop: the answer's own time is the simulator's to add when it
    drives sessions); turns after run.duration_s are left out. A prompt is capped at 10,000,000
    tokens.
    """

    turns: TurnCount = Field(
        description="Requests per session, by `kind` (fixed, uniform, empirical; each >= 1). Required."
    )
    think_time: ThinkTime | None = Field(
        default=None,
        description="Time from one turn's arrival to the next's, by `kind` (fixed, exponential). "
        "Default null: 0 (every turn at once).",
    )


# --------------------------------------------------------------------------- request classes


class RequestClass(Spec):
    """One kind of request in the mix, drawn with probability weight / sum(weights).

    ``shared_prefix_tokens`` leading input tokens are the same for every request of the class
    (a system prompt, a RAG preamble): prefix caching stores them once per replica. They are part
    of ``input_tokens``, so they must be fewer than the smallest possible input.

    For a trace workload the lengths come from the file and ``input_tokens``/``output_tokens``
    must be left out; otherwise both are required.
    """

    name: Name = Field(description="Class name, unique in the workload; 1 to 200 characters. Required.")
    weight: Weight = Field(
        default=1.0,
        description=f"Relative share of requests (probability weight / sum of weights); > 0 and at most "
        f"{MAX_WEIGHT:.0e}. Default 1.",
    )
    input_tokens: LengthDistribution | None = Field(
        default=None,
        description="Prompt length distribution, by `kind` (fixed, uniform, lognormal, empirical). "
        "Required unless the workload is a trace (then left out).",
    )
    output_tokens: LengthDistribution | None = Field(
        default=None,
        description="Generated length distribution, by `kind`. Required unless the workload is a trace (then left out).",
    )
    shared_prefix_tokens: NonNegativeTokens = Field(
        default=0,
        description=f"Leading prompt tokens shared by every request of the class (a system prompt), below the "
        f"smallest possible input; 0 to {MAX_TOKENS:,}. Default 0 (none).",
    )
    # A benchmark resending its prompts k times has 1 - 1/k; a retry; a regenerate. With
    # kv_cache.prefix_caching such a request prefills only its last prompt token and shares the
    # prompt's KV blocks instead of holding its own.
    prompt_cache_hit_fraction: Fraction = Field(
        default=0.0,
        description="Fraction of requests whose whole prompt is already in the prefix cache; 0 to 1. Default 0.",
    )
    slo_class: Name | None = Field(
        default=None, description="Label for grouping results (e.g. interactive, batch). Default null: no label."
    )
    session: SessionSpec | None = Field(
        default=None,
        description="Multi-turn sessions: each arrival of the class opens a conversation whose prompt grows "
        "turn by turn. Default null: single requests.",
    )

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

    arrival: ArrivalProcess = Field(
        description="When requests arrive, by `kind`: poisson, gamma, diurnal, trace, closed, offline. Required."
    )
    classes: tuple[RequestClass, ...] = Field(
        default=(),
        max_length=MAX_CLASSES,
        description=f"The request mix: 1 to {MAX_CLASSES:,} classes. Required unless the workload is a trace "
        "(default: one class named 'trace').",
    )

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
            if c.session is not None and self.arrival.kind not in ("poisson", "gamma", "diurnal", "offline"):
                raise ValueError(
                    f"classes['{c.name}']: sessions open on an open-loop arrival (poisson, gamma, diurnal, "
                    f"offline), not {self.arrival.kind}; a trace gives session_id and turn columns instead"
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
