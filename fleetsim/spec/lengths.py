"""How long requests are: the token-length distributions of a request class (fixed, uniform,
lognormal, empirical; tagged on ``kind``) with their bounds. Its own module: the same shapes
serve input and output tokens and a session's turn count (fleetsim.spec.workload).
"""

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.spec.base import MAX_TOKENS, NUMBER, Spec, TokenCount

MAX_SIGMA = 10.0
MAX_WEIGHT = 1e12
MAX_EMPIRICAL_VALUES = 1_000_000

_TOKENS = f"1 to {MAX_TOKENS:,}"
Weight = Annotated[float, Field(gt=0, le=MAX_WEIGHT), NUMBER]


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
