"""How the KV cache is stored: key/value precision, token eviction, shared prefixes."""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from fleetsim.precision import BITS_PER_ELEMENT, KV_DTYPES
from fleetsim.spec.base import MAX_TOKENS, NUMBER, NonNegativeTokens, Spec, TokenCount
from fleetsim.spec.topology import KvOffloadSpec

MAX_PYRAMID_RATIO = 1000.0
MAX_PREFIX_COMPRESSION = 10_000.0
_TOKENS = f"1 to {MAX_TOKENS:,}"


class NoEviction(Spec):
    """Every token of every sequence stays in the cache."""

    kind: Literal["none"] = Field(default="none", description="No eviction: the cache holds every token.")


class H2O(Spec):
    """Heavy-Hitter Oracle (Zhang et al. 2023): keep heavy hitters + the most recent tokens."""

    kind: Literal["h2o"] = Field(default="h2o", description="H2O eviction (heavy hitters + recent tokens).")
    heavy_tokens: TokenCount = Field(description=f"Heavy-hitter tokens kept per layer; {_TOKENS}. Required.")
    recent_tokens: TokenCount = Field(description=f"Most recent tokens kept per layer; {_TOKENS}. Required.")

    def budget_tokens(self, depth_fraction: float) -> int:
        return self.heavy_tokens + self.recent_tokens


class SnapKV(Spec):
    """SnapKV (Li et al. 2024): the prompt is compressed to a budget; generated tokens are kept."""

    kind: Literal["snapkv"] = Field(default="snapkv", description="SnapKV eviction (prompt compressed to a budget).")
    budget_tokens: TokenCount = Field(description=f"Prompt tokens kept per layer; {_TOKENS}. Required.")


class PyramidKV(Spec):
    """PyramidKV (Cai et al. 2024): prompt budgets shrink linearly with depth.

    budget_tokens is the mean per layer; the first layer gets `ratio` times the last one.
    """

    kind: Literal["pyramidkv"] = Field(
        default="pyramidkv", description="PyramidKV eviction (budgets shrink with depth)."
    )
    budget_tokens: TokenCount = Field(description=f"Mean prompt tokens kept per layer; {_TOKENS}. Required.")
    ratio: Annotated[float, Field(ge=1, le=MAX_PYRAMID_RATIO), NUMBER] = Field(
        default=4.0,
        description=f"First layer's budget over the last layer's; 1 to {MAX_PYRAMID_RATIO:,.0f}. Default 4.",
    )

    def layer_budget_tokens(self, depth_fraction: float) -> int:
        low = 2 * self.budget_tokens / (1 + self.ratio)
        high = self.ratio * low
        return max(1, round(high - (high - low) * depth_fraction))


class StreamingLLM(Spec):
    """StreamingLLM (Xiao et al. 2024): attention sinks + a window of recent tokens."""

    kind: Literal["streamingllm"] = Field(default="streamingllm", description="StreamingLLM eviction (sinks + window).")
    sink_tokens: NonNegativeTokens = Field(
        default=4, description=f"Attention-sink tokens kept at the start; 0 to {MAX_TOKENS:,}. Default 4."
    )
    window_tokens: TokenCount = Field(description=f"Recent tokens kept; {_TOKENS}. Required.")


Eviction = Annotated[NoEviction | H2O | SnapKV | PyramidKV | StreamingLLM, Field(discriminator="kind")]


class KvCacheSpec(Spec):
    """Key/value precision, token eviction and prefix sharing of the KV cache."""

    key_dtype: str = Field(
        default="bf16", description=f"Precision of cached keys: one of {', '.join(KV_DTYPES)}. Default bf16."
    )
    value_dtype: str = Field(
        default="bf16", description=f"Precision of cached values: one of {', '.join(KV_DTYPES)}. Default bf16."
    )
    eviction: Eviction = Field(
        default=NoEviction(),
        description="Token eviction policy, by `kind`: none, h2o, snapkv, pyramidkv, streamingllm. Default none.",
    )
    prefix_caching: bool = Field(
        default=True,
        description="Store each class's shared prefix once per replica (and serve repeated prompts from it). "
        "Default true.",
    )
    prefix_compression_ratio: Annotated[float, Field(ge=1, le=MAX_PREFIX_COMPRESSION), NUMBER] = Field(
        default=1.0,
        description="A shared prefix's KV is this many times smaller (a Cartridges-style compressed prefix); "
        f"1 to {MAX_PREFIX_COMPRESSION:,.0f}. Default 1 (not compressed).",
    )
    prefix_cache: Literal["per_class", "blocks"] | None = Field(
        default=None,
        description="How prefix caching is modelled: per_class (each class's shared prefix stored once per "
        "replica, never evicted) or blocks (a per-replica cache of full KV blocks held in the KV pool, LRU-evicted, "
        "hits found by content: shared prefixes and earlier turns of a session; fleetsim.sim.block_cache). "
        "Default null: blocks when kv_cache.offload is set or fleet.router is prefix_aware, else per_class.",
    )
    offload: KvOffloadSpec | None = Field(
        default=None,
        description="A host-memory (and optional disk) KV tier per replica that evicted prefix blocks move to "
        "and are reloaded from when that beats recomputing them (implies prefix_cache blocks). Default null: none.",
    )
    ssm_state_dtype: str = Field(
        default="bf16",
        description=f"Precision of SSM (Mamba) state, not a KV cache: one of {', '.join(BITS_PER_ELEMENT)}. "
        "Default bf16 (model precision).",
    )

    @field_validator("key_dtype", "value_dtype")
    @classmethod
    def _kv_dtype(cls, v: str) -> str:
        if v not in KV_DTYPES:
            raise ValueError(f"'{v[:80]}' is not a KV dtype; choose one of {', '.join(KV_DTYPES)}")
        return v

    @field_validator("ssm_state_dtype")
    @classmethod
    def _state_dtype(cls, v: str) -> str:
        if v not in BITS_PER_ELEMENT:
            raise ValueError(f"'{v[:80]}' is not a dtype; choose one of {', '.join(BITS_PER_ELEMENT)}")
        return v
