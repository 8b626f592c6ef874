"""How the KV cache is stored: key/value precision, token eviction, shared prefixes."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from fleetsim.precision import KV_DTYPES
from fleetsim.spec.base import Spec

PositiveInt = Annotated[int, Field(gt=0)]


class NoEviction(Spec):
    kind: Literal["none"] = "none"


class H2O(Spec):
    """Heavy-Hitter Oracle (Zhang et al. 2023): keep heavy hitters + the most recent tokens."""

    kind: Literal["h2o"] = "h2o"
    heavy_tokens: PositiveInt
    recent_tokens: PositiveInt

    def budget_tokens(self, depth_fraction: float) -> int:
        return self.heavy_tokens + self.recent_tokens


class SnapKV(Spec):
    """SnapKV (Li et al. 2024): the prompt is compressed to a budget; generated tokens are kept."""

    kind: Literal["snapkv"] = "snapkv"
    budget_tokens: PositiveInt


class PyramidKV(Spec):
    """PyramidKV (Cai et al. 2024): prompt budgets shrink linearly with depth.

    budget_tokens is the mean per layer; the first layer gets `ratio` times the last one.
    """

    kind: Literal["pyramidkv"] = "pyramidkv"
    budget_tokens: PositiveInt
    ratio: Annotated[float, Field(ge=1)] = 4.0

    def layer_budget_tokens(self, depth_fraction: float) -> int:
        low = 2 * self.budget_tokens / (1 + self.ratio)
        high = self.ratio * low
        return max(1, round(high - (high - low) * depth_fraction))


class StreamingLLM(Spec):
    """StreamingLLM (Xiao et al. 2024): attention sinks + a window of recent tokens."""

    kind: Literal["streamingllm"] = "streamingllm"
    sink_tokens: Annotated[int, Field(ge=0)] = 4
    window_tokens: PositiveInt


Eviction = Annotated[NoEviction | H2O | SnapKV | PyramidKV | StreamingLLM, Field(discriminator="kind")]


class KvCacheSpec(Spec):
    key_dtype: str = "bf16"
    value_dtype: str = "bf16"
    eviction: Eviction = NoEviction()
    # Shared prefixes (prefix caching) are stored once per replica; a ratio > 1 models a
    # Cartridges-style compressed prefix (the prefix's KV is that many times smaller).
    prefix_caching: bool = True
    prefix_compression_ratio: Annotated[float, Field(ge=1)] = 1.0
    # SSM state precision (not a KV cache; kept at model precision by default).
    ssm_state_dtype: str = "bf16"

    @field_validator("key_dtype", "value_dtype")
    @classmethod
    def _kv_dtype(cls, v: str) -> str:
        if v not in KV_DTYPES:
            raise ValueError(f"'{v}' is not a KV dtype; choose one of {', '.join(KV_DTYPES)}")
        return v
