"""What a model is, as far as memory, FLOPs and bytes moved are concerned.

An Architecture is a run-length list of layer groups in depth order, so per-layer policies
(PyramidKV budgets, sliding-window patterns) can see each layer's depth.

Every layer group answers two FLOP questions, summed over its layers and over all TP ranks:

- ``attention_flops_per_context_token()``: the FLOPs one query token spends on one cached token
  (QK^T and PV); 0 for layers with a fixed state instead of a cache.
  ``attention_flops_per_query_token(n)`` is the same times the cached tokens a query sees at
  context n (windows, chunks and sparse top-k selection cap it).
- ``state_flops_per_token()``: the FLOPs one token spends updating and reading a fixed-size
  recurrent state (Mamba, Gated DeltaNet), independent of context; 0 for attention.
"""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.spec.base import INTEGER, Spec

# Every count, size and parameter number is an int >= 1 and <= 10^15 (no bool, no string): the
# largest published models have ~2e12 parameters, so byte and FLOP products stay exact in int64 and
# finite in float. Layers are at most MAX_LAYERS in all (the largest models have ~130), so
# per-layer loops stay cheap.
MAX_ARCH_INT = 10**15
MAX_LAYERS = 10_000
PositiveInt = Annotated[int, Field(ge=1, le=MAX_ARCH_INT), INTEGER]

# DeepSeek-V3.2's lightning-indexer key cache in vLLM and SGLang: fp8 keys with one fp32 scale
# per 128-element block (vLLM DeepseekV32IndexerCache: head_dim + head_dim // 128 * 4 bytes).
INDEX_KEY_BYTES_PER_ELEMENT = 1
INDEX_SCALE_BLOCK = 128
INDEX_SCALE_BYTES = 4


class _HeadAttention(Spec):
    """Softmax attention over K and V per KV head: the fields and FLOPs both kinds below share."""

    kind: str
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

    @property
    def cached_tokens_cap(self) -> int | None:
        """Most tokens of one sequence a query attends to in these layers (None: all of them)."""
        return self.window_tokens

    def attention_flops_per_context_token(self) -> float:
        # QK^T and PV: a multiply-add (2 FLOPs) per head-dim element for each.
        return float(4 * self.q_heads * self.head_dim * self.count)

    def attention_flops_per_query_token(self, context_tokens: float) -> float:
        return self.attention_flops_per_context_token() * _capped(context_tokens, self.cached_tokens_cap)

    def state_flops_per_token(self) -> float:
        return 0.0


class AttentionLayers(_HeadAttention):
    """Softmax attention with a K and a V per KV head: MHA (kv_heads = q_heads), GQA, MQA."""

    kind: Literal["attention"] = "attention"
    # Chunked local attention (Llama 4): a token attends only within its chunk of this many
    # tokens, so the cache holds at most one chunk.
    chunk_tokens: PositiveInt | None = None

    @model_validator(mode="after")
    def _slides_or_chunks(self):
        if self.window_tokens is not None and self.chunk_tokens is not None:
            raise ValueError("window_tokens and chunk_tokens exclude each other; a layer slides or is chunked")
        return self

    @property
    def cached_tokens_cap(self) -> int | None:
        return self.window_tokens if self.window_tokens is not None else self.chunk_tokens


class KVSharedAttentionLayers(_HeadAttention):
    """Attention layers that reuse the KV cache of an earlier layer of the same type (Gemma 3n's
    last num_kv_shared_layers): they attend like attention layers but store no KV of their own."""

    kind: Literal["attention_kv_shared"] = "attention_kv_shared"


class _LatentAttention(Spec):
    """Multi-head latent attention's fields: one compressed latent plus a RoPE key per token."""

    kind: str
    count: PositiveInt
    q_heads: PositiveInt
    kv_lora_rank: PositiveInt
    qk_rope_head_dim: PositiveInt
    qk_nope_head_dim: PositiveInt
    v_head_dim: PositiveInt

    @property
    def latent_elements_per_token(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim

    def _mla_flops_per_token(self) -> float:
        # Absorbed weights: scores over the latent + RoPE key, values over the latent.
        return float(2 * self.q_heads * (2 * self.kv_lora_rank + self.qk_rope_head_dim) * self.count)

    def state_flops_per_token(self) -> float:
        return 0.0


class MLALayers(_LatentAttention):
    """Multi-head latent attention (DeepSeek V2/V3): one compressed latent plus a RoPE key."""

    kind: Literal["mla"] = "mla"

    def attention_flops_per_context_token(self) -> float:
        return self._mla_flops_per_token()

    def attention_flops_per_query_token(self, context_tokens: float) -> float:
        return self._mla_flops_per_token() * _capped(context_tokens, None)


class SparseMLALayers(_LatentAttention):
    """DeepSeek Sparse Attention (DeepSeek-V3.2): MLA as in V3, plus a lightning indexer that
    keeps one small key per token (index_head_dim, fp8 + scale) and picks the index_topk cached
    tokens each query's MLA attends to."""

    kind: Literal["mla_sparse"] = "mla_sparse"
    index_n_heads: PositiveInt
    index_head_dim: PositiveInt
    index_topk: PositiveInt

    @property
    def index_bytes_per_token_per_layer(self) -> int:
        """fp8 index key plus its fp32 block scales, whatever the KV precision (vLLM, SGLang)."""
        blocks = -(-self.index_head_dim // INDEX_SCALE_BLOCK)
        return self.index_head_dim * INDEX_KEY_BYTES_PER_ELEMENT + blocks * INDEX_SCALE_BYTES

    def _index_flops_per_token(self) -> float:
        # One dot product per index head with every cached index key.
        return float(2 * self.index_n_heads * self.index_head_dim * self.count)

    def attention_flops_per_context_token(self) -> float:
        """Indexer + MLA per cached token; exact while context <= index_topk (beyond it the MLA
        part stops growing: see attention_flops_per_query_token)."""
        return self._index_flops_per_token() + self._mla_flops_per_token()

    def attention_flops_per_query_token(self, context_tokens: float) -> float:
        n = _capped(context_tokens, None)
        return self._index_flops_per_token() * n + self._mla_flops_per_token() * min(n, self.index_topk)


class SSMLayers(Spec):
    """Selective state-space layers (Mamba 1/2): a fixed state per sequence, no KV cache."""

    kind: Literal["ssm"] = "ssm"
    count: PositiveInt
    version: Annotated[Literal[1, 2], INTEGER] = 1
    d_inner: PositiveInt
    d_state: PositiveInt
    d_conv: PositiveInt
    n_groups: PositiveInt = 1  # Mamba-2 B/C groups; 1 for Mamba-1
    n_heads: PositiveInt | None = None  # Mamba-2 heads (TP splits them)

    @property
    def conv_channels(self) -> int:
        return self.d_inner if self.version == 1 else self.d_inner + 2 * self.n_groups * self.d_state

    @property
    def state_elements_per_layer(self) -> int:
        """Conv state + SSM state elements of one sequence in one layer (vLLM's layout)."""
        return (self.d_conv - 1) * self.conv_channels + self.d_inner * self.d_state

    def attention_flops_per_context_token(self) -> float:
        return 0.0

    def attention_flops_per_query_token(self, context_tokens: float) -> float:
        return 0.0

    def state_flops_per_token(self) -> float:
        # Per state element: decay, input and readout (~6 FLOPs); per conv tap a multiply-add.
        return float((6 * self.d_inner * self.d_state + 2 * self.conv_channels * self.d_conv) * self.count)


class LinearAttentionLayers(Spec):
    """Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5): per sequence a fixed recurrent state
    (value_heads x key_head_dim x value_head_dim) and a causal-conv state over q, k and v."""

    kind: Literal["linear_attention"] = "linear_attention"
    count: PositiveInt
    key_heads: PositiveInt
    value_heads: PositiveInt
    key_head_dim: PositiveInt
    value_head_dim: PositiveInt
    conv_kernel: PositiveInt

    @model_validator(mode="after")
    def _heads_group(self):
        if self.value_heads % self.key_heads:
            raise ValueError(f"value_heads={self.value_heads} is not a multiple of key_heads={self.key_heads}")
        return self

    @property
    def conv_channels(self) -> int:
        return 2 * self.key_heads * self.key_head_dim + self.value_heads * self.value_head_dim

    @property
    def recurrent_state_elements_per_layer(self) -> int:
        return self.value_heads * self.key_head_dim * self.value_head_dim

    @property
    def state_elements_per_layer(self) -> int:
        """Conv state ((kernel - 1) x conv channels) + recurrent state, one sequence, one layer."""
        return (self.conv_kernel - 1) * self.conv_channels + self.recurrent_state_elements_per_layer

    def attention_flops_per_context_token(self) -> float:
        return 0.0

    def attention_flops_per_query_token(self, context_tokens: float) -> float:
        return 0.0

    def state_flops_per_token(self) -> float:
        # Per head and state element: decay, k^T S, the rank-1 delta update, q^T S (~7 FLOPs);
        # per conv tap a multiply-add.
        return float(
            (7 * self.recurrent_state_elements_per_layer + 2 * self.conv_channels * self.conv_kernel) * self.count
        )


def _capped(context_tokens: float, cap: int | None) -> float:
    n = max(0.0, float(context_tokens))
    return n if cap is None else min(n, float(cap))


LayerGroup = Annotated[
    AttentionLayers | KVSharedAttentionLayers | MLALayers | SparseMLALayers | SSMLayers | LinearAttentionLayers,
    Field(discriminator="kind"),
]

# One-word labels for tables (attention_kind); plain attention is labelled by its head layout.
_KIND_LABELS = {
    "mla": "MLA",
    "mla_sparse": "DSA",
    "ssm": "SSM",
    "linear_attention": "GDN",
    "attention_kv_shared": "KV-shared",
}


class MoE(Spec):
    """Mixture of experts: every expert stays resident; a token reads experts_per_token."""

    num_experts: PositiveInt
    experts_per_token: PositiveInt
    moe_layers: PositiveInt
    # Parameters of ONE routed expert in ONE layer.
    params_per_expert: PositiveInt
    shared_experts: Annotated[int, Field(ge=0, le=MAX_ARCH_INT), INTEGER] = 0

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
    # Parameters one token's forward pass multiplies: embedding lookups excluded, LM head and
    # the experts a token uses included (fleetsim.catalog.hf.shape states the rule).
    active_params: PositiveInt
    layers: tuple[LayerGroup, ...] = Field(min_length=1, max_length=MAX_LAYERS)
    # The LM head is the token-embedding table (one vocab x hidden table) rather than its own.
    tie_word_embeddings: bool = False
    moe: MoE | None = None
    native_dtype: str = "bf16"
    max_context_tokens: PositiveInt | None = None

    @property
    def token_table_params(self) -> int:
        """Parameters of one vocab x hidden table (the token embedding; the LM head when untied)."""
        return self.vocab_size * self.hidden_size

    @property
    def lookup_params(self) -> int:
        """Parameters only read by index (the token-embedding table of an untied model)."""
        return 0 if self.tie_word_embeddings else self.token_table_params

    @property
    def table_params(self) -> int:
        """Embedding and LM-head parameters (kept in bf16 by quantized checkpoints)."""
        return self.token_table_params * (1 if self.tie_word_embeddings else 2)

    @model_validator(mode="after")
    def _consistent(self):
        layers = sum(g.count for g in self.layers)
        if layers > MAX_LAYERS:
            raise ValueError(f"the layer groups hold {layers:,} layers; valid: at most {MAX_LAYERS:,}")
        if self.active_params > self.total_params:
            raise ValueError(f"active_params={self.active_params} exceeds total_params={self.total_params}")
        return self

    @property
    def num_layers(self) -> int:
        return sum(g.count for g in self.layers)

    def count_layers(self, kind: str) -> int:
        return sum(g.count for g in self.layers if g.kind == kind)

    def attention_flops_per_context_token(self) -> float:
        """Summed over every layer group (see the module docstring)."""
        return sum(g.attention_flops_per_context_token() for g in self.layers)

    def state_flops_per_token(self) -> float:
        return sum(g.state_flops_per_token() for g in self.layers)

    @property
    def attention_kind(self) -> str:
        """A one-word label for tables: MHA, GQA, MQA, MLA, SSM, or hybrids like 'GQA+SSM'."""
        labels = []
        for g in self.layers:
            if g.kind == "attention":
                label = "MHA" if g.kv_heads == g.q_heads else ("MQA" if g.kv_heads == 1 else "GQA")
                if g.window_tokens is not None:
                    label = "SWA"
                elif g.chunk_tokens is not None:
                    label = "chunked"
            else:
                label = _KIND_LABELS.get(g.kind, g.kind.upper())
            if label not in labels:
                labels.append(label)
        return "+".join(labels)
