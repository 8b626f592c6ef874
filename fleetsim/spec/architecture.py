"""What a model is, as far as memory, FLOPs and bytes moved are concerned.

An Architecture is a run-length list of layer groups in depth order, so per-layer policies
(PyramidKV budgets, sliding-window patterns) can see each layer's depth.
"""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.spec.base import Spec

PositiveInt = Annotated[int, Field(gt=0)]


class AttentionLayers(Spec):
    """Softmax attention with a K and a V per KV head: MHA (kv_heads = q_heads), GQA, MQA."""

    kind: Literal["attention"] = "attention"
    count: PositiveInt
    q_heads: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt
    # None: a global layer; otherwise it attends to (and caches) at most this many tokens.
    window_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _heads_group(self):
        if self.q_heads % self.kv_heads:
            raise ValueError(f"q_heads={self.q_heads} is not a multiple of kv_heads={self.kv_heads}")
        return self


class MLALayers(Spec):
    """Multi-head latent attention (DeepSeek V2/V3): one compressed latent plus a RoPE key."""

    kind: Literal["mla"] = "mla"
    count: PositiveInt
    q_heads: PositiveInt
    kv_lora_rank: PositiveInt
    qk_rope_head_dim: PositiveInt
    qk_nope_head_dim: PositiveInt
    v_head_dim: PositiveInt


class SSMLayers(Spec):
    """Selective state-space layers (Mamba 1/2): a fixed state per sequence, no KV cache."""

    kind: Literal["ssm"] = "ssm"
    count: PositiveInt
    version: Literal[1, 2] = 1
    d_inner: PositiveInt
    d_state: PositiveInt
    d_conv: PositiveInt
    n_groups: PositiveInt = 1  # Mamba-2 B/C groups; 1 for Mamba-1
    n_heads: PositiveInt | None = None  # Mamba-2 heads (TP splits them)

    @property
    def state_elements_per_layer(self) -> int:
        """Conv state + SSM state elements of one sequence in one layer (vLLM's layout)."""
        if self.version == 1:
            conv_channels = self.d_inner
        else:
            conv_channels = self.d_inner + 2 * self.n_groups * self.d_state
        return (self.d_conv - 1) * conv_channels + self.d_inner * self.d_state


LayerGroup = Annotated[AttentionLayers | MLALayers | SSMLayers, Field(discriminator="kind")]


class MoE(Spec):
    """Mixture of experts: every expert stays resident; a token reads experts_per_token."""

    num_experts: PositiveInt
    experts_per_token: PositiveInt
    moe_layers: PositiveInt
    # Parameters of ONE routed expert in ONE layer.
    params_per_expert: PositiveInt
    shared_experts: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _k_le_e(self):
        if self.experts_per_token > self.num_experts:
            raise ValueError(f"experts_per_token={self.experts_per_token} exceeds num_experts={self.num_experts}")
        return self

    @property
    def routed_params(self) -> int:
        return self.num_experts * self.params_per_expert * self.moe_layers


class Architecture(Spec):
    name: str
    source: str = ""
    hidden_size: PositiveInt
    vocab_size: PositiveInt
    total_params: PositiveInt
    active_params: PositiveInt
    layers: tuple[LayerGroup, ...] = Field(min_length=1)
    moe: MoE | None = None
    native_dtype: str = "bf16"
    max_context_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.active_params > self.total_params:
            raise ValueError(f"active_params={self.active_params} exceeds total_params={self.total_params}")
        return self

    @property
    def num_layers(self) -> int:
        return sum(g.count for g in self.layers)

    def count_layers(self, kind: str) -> int:
        return sum(g.count for g in self.layers if g.kind == kind)

    @property
    def attention_kind(self) -> str:
        """A one-word label for tables: MHA, GQA, MQA, MLA, SSM, or hybrids like 'GQA+SSM'."""
        labels = []
        for g in self.layers:
            if g.kind == "attention":
                label = "MHA" if g.kv_heads == g.q_heads else ("MQA" if g.kv_heads == 1 else "GQA")
                if g.window_tokens is not None:
                    label = "SWA"
            else:
                label = g.kind.upper()
            if label not in labels:
                labels.append(label)
        return "+".join(labels)
