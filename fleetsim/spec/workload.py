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

This module holds the request mix (classes, sessions) and WorkloadSpec, and re-exports the
length distributions (fleetsim.spec.lengths) and the arrival processes (fleetsim.spec.arrivals).
"""

from typing import Annotated

from pydantic import Field, model_validator

from fleetsim.spec.arrivals import (
    MAX_CV,
    MAX_SEGMENTS,
    MAX_SPEEDUP,
    MAX_TRACE_REQUESTS,
    MAX_USERS,
    MIN_CV,
    MIN_SEGMENT_S,
    OPEN_LOOP_KINDS,
    ArrivalProcess,
    ClosedArrival,
    DiurnalArrival,
    ExponentialThinkTime,
    FixedThinkTime,
    GammaArrival,
    OfflineArrival,
    PoissonArrival,
    ThinkTime,
    TraceArrival,
)
from fleetsim.spec.base import MAX_TOKENS, Fraction, Name, NonNegativeTokens, Spec
from fleetsim.spec.lengths import (
    MAX_EMPIRICAL_VALUES,
    MAX_SIGMA,
    MAX_WEIGHT,
    EmpiricalLength,
    FixedLength,
    LengthDistribution,
    LognormalLength,
    UniformLength,
    Weight,
)

__all__ = [
    "MAX_SIGMA",
    "MAX_CV",
    "MIN_CV",
    "MAX_WEIGHT",
    "MAX_EMPIRICAL_VALUES",
    "MAX_SEGMENTS",
    "MIN_SEGMENT_S",
    "MAX_SPEEDUP",
    "MAX_USERS",
    "MAX_CLASSES",
    "MAX_TRACE_REQUESTS",
    "OPEN_LOOP_KINDS",
    "Weight",
    "FixedLength",
    "UniformLength",
    "LognormalLength",
    "EmpiricalLength",
    "LengthDistribution",
    "FixedThinkTime",
    "ExponentialThinkTime",
    "ThinkTime",
    "PoissonArrival",
    "GammaArrival",
    "DiurnalArrival",
    "TraceArrival",
    "ClosedArrival",
    "OfflineArrival",
    "ArrivalProcess",
    "TurnCount",
    "SessionSpec",
    "RequestClass",
    "WorkloadSpec",
]

MAX_CLASSES = 1000


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
