"""The memory model: model weights, KV cache of every attention architecture, and the
per-GPU plan (weights | workspace | paged KV pool). Pure functions of specs and numbers.

KV bytes of one sequence = sum over layers of cached_tokens(layer) x bytes per cached token:
  attention (MHA/GQA/MQA): kv_heads x head_dim x (key_bytes + value_bytes)
  MLA: (kv_lora_rank + qk_rope_head_dim) x latent_bytes -- one latent, no K/V pair; the
       latent is stored at the key precision (it produces both keys and values)
  SSM: a fixed state per sequence, independent of length (not scaled by KV precision)
  Gated DeltaNet (linear attention): likewise a fixed recurrent + conv state per sequence
  DeepSeek sparse attention: the MLA latent, plus the lightning indexer's key of every token
       (fp8 + fp32 block scale, whatever the KV precision: vLLM and SGLang store it so)
  KV-shared layers (Gemma 3n): nothing -- they read an earlier layer's cache
cached_tokens is n for global layers, min(n, window) for sliding-window layers, min(n, chunk) for
chunked local attention (one chunk held at most), and is further capped by the eviction policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from fleetsim.errors import CapacityError, SpecError
from fleetsim.parallel import Layout, check_tp, kv_heads_per_rank, routed_bytes, valid_tp_degrees
from fleetsim.precision import bytes_per_element
from fleetsim.spec.architecture import (
    Architecture,
    AttentionLayers,
    KVSharedAttentionLayers,
    LinearAttentionLayers,
    SparseMLALayers,
    SSMLayers,
)
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.kvcache import H2O, KvCacheSpec, PyramidKV, SnapKV, StreamingLLM

INF = math.inf
GIB = 1 << 30


# --------------------------------------------------------------------------- KV footprint
@dataclass(frozen=True)
class KvTerm:
    """Layers sharing one caching rule: tokens = min(n, cap_tokens, min(prompt, prompt_cap) + generated)."""

    kind: str  # attention_global | attention_window | attention_chunk | mla | dsa_indexer | ssm | linear_attention
    layers: int
    bytes_per_token_per_rank: Fraction  # summed over these layers
    cap_tokens: float = INF  # window and/or whole-sequence eviction budget
    prompt_cap_tokens: float = INF  # prompt-compression budget (SnapKV, PyramidKV)
    fixed_bytes_per_rank: Fraction = Fraction(0)  # SSM state
    shareable: bool = True  # a shared prefix can be stored once (no eviction)


@dataclass(frozen=True)
class KvFootprint:
    """The KV (and SSM state) bytes of one sequence as a function of its length, compiled once
    per (architecture, KV spec, tp) so the simulator can evaluate it on whole arrays."""

    terms: tuple[KvTerm, ...]
    tp: int
    prefix_compression_ratio: float = 1.0
    # Data-parallel attention ranks: bytes are a rank's average share (each sequence lives on one
    # rank), and a shared prefix is held by every rank.
    dp: int = 1

    # -- per rank (one GPU of the replica); multiply by tp for the replica
    def bytes_per_rank(self, prompt_tokens, generated_tokens=0, shared_prefix_tokens=0):
        """Per-GPU bytes one sequence holds, excluding a shared prefix stored once per replica.
        Works on ints or numpy arrays."""
        p = np.asarray(prompt_tokens, dtype=np.float64)
        g = np.asarray(generated_tokens, dtype=np.float64)
        s = np.asarray(shared_prefix_tokens, dtype=np.float64)
        n = p + g
        total = np.zeros(np.broadcast(p, g, s).shape, dtype=np.float64)
        for t in self.terms:
            if t.fixed_bytes_per_rank:
                total = total + float(t.fixed_bytes_per_rank)
            if not t.bytes_per_token_per_rank:
                continue
            tokens = np.minimum(np.minimum(n, t.cap_tokens), np.minimum(p, t.prompt_cap_tokens) + g)
            if t.shareable:
                # Positions [n - cap, n) cached; those inside the shared prefix [0, s) are not ours.
                overlap = np.maximum(0.0, np.minimum(s, n) - np.maximum(0.0, n - t.cap_tokens))
                tokens = tokens - overlap
            total = total + tokens * float(t.bytes_per_token_per_rank)
        return total if total.shape else float(total)

    def prefix_bytes_per_rank(self, shared_prefix_tokens: int) -> float:
        """Bytes of one shared prefix, stored once per replica (compressed by the ratio)."""
        if shared_prefix_tokens <= 0:
            return 0.0
        total = 0.0
        for t in self.terms:
            if t.shareable and t.bytes_per_token_per_rank:
                total += min(shared_prefix_tokens, t.cap_tokens) * float(t.bytes_per_token_per_rank)
        if self.dp > 1:
            total *= self.dp
        return total / self.prefix_compression_ratio

    @property
    def growth_bytes_per_token_per_rank(self) -> float:
        """Bytes per token of the layers that grow without bound (the paged-block unit)."""
        return float(
            sum(t.bytes_per_token_per_rank for t in self.terms if t.cap_tokens == INF and t.prompt_cap_tokens == INF)
        )

    @property
    def full_bytes_per_token_per_rank(self) -> float:
        """Bytes per token if every caching layer held the token (the paged-block unit)."""
        return float(sum(t.bytes_per_token_per_rank for t in self.terms))


def kv_footprint(arch: Architecture, kv: KvCacheSpec = KvCacheSpec(), tp: int = 1, dp: int = 1) -> KvFootprint:
    if dp > 1:
        # DP attention: dp groups of tp / dp ranks each hold their own sequences; per GPU of the
        # replica that is 1/dp of a sequence's bytes at attention TP tp / dp.
        inner = kv_footprint(arch, kv, tp // dp)
        shares = tuple(
            replace(
                t,
                bytes_per_token_per_rank=t.bytes_per_token_per_rank / dp,
                fixed_bytes_per_rank=t.fixed_bytes_per_rank / dp,
            )
            for t in inner.terms
        )
        return replace(inner, terms=shares, tp=tp, dp=dp)
    check_tp(arch, tp)
    kb = bytes_per_element(kv.key_dtype)
    vb = bytes_per_element(kv.value_dtype)
    sb = bytes_per_element(kv.ssm_state_dtype)
    ev = kv.eviction
    n_layers = arch.num_layers
    terms: dict[tuple, list] = {}

    def add(kind, per_token, cap, prompt_cap, fixed=Fraction(0)):
        shareable = ev.kind == "none"
        key = (kind, cap, prompt_cap, shareable)
        acc = terms.setdefault(key, [0, Fraction(0), Fraction(0)])
        acc[0] += 1
        acc[1] += per_token
        acc[2] += fixed

    depth = 0
    for g in arch.layers:
        for _ in range(g.count):
            frac = depth / (n_layers - 1) if n_layers > 1 else 0.0
            depth += 1
            if isinstance(g, (SSMLayers, LinearAttentionLayers)):  # fixed state, split by head over TP
                add(g.kind, Fraction(0), INF, INF, g.state_elements_per_layer * sb / tp)
                continue
            if isinstance(g, KVSharedAttentionLayers):
                continue  # attends over an earlier layer's cache; stores none of its own
            cached = [_cached_per_token(g, tp, kb, vb)]
            if isinstance(g, SparseMLALayers):  # the indexer's keys, replicated like the latent
                cached.append(("dsa_indexer", Fraction(g.index_bytes_per_token_per_layer), INF))
            for kind, per_token, cap in cached:
                prompt_cap = INF
                if isinstance(ev, H2O):
                    cap = min(cap, ev.heavy_tokens + ev.recent_tokens)
                elif isinstance(ev, StreamingLLM):
                    cap = min(cap, ev.sink_tokens + ev.window_tokens)
                elif isinstance(ev, SnapKV):
                    prompt_cap = ev.budget_tokens
                elif isinstance(ev, PyramidKV):
                    prompt_cap = ev.layer_budget_tokens(frac)
                add(kind, per_token, cap, prompt_cap)

    built = tuple(
        KvTerm(
            kind=k[0],
            layers=v[0],
            bytes_per_token_per_rank=v[1],
            cap_tokens=k[1],
            prompt_cap_tokens=k[2],
            fixed_bytes_per_rank=v[2],
            shareable=k[3],
        )
        for k, v in terms.items()
    )
    return KvFootprint(terms=built, tp=tp, prefix_compression_ratio=kv.prefix_compression_ratio)


def _cached_per_token(g, tp: int, kb: Fraction, vb: Fraction) -> tuple[str, Fraction, float]:
    """(term kind, bytes per cached token per rank in one layer, cached-token cap) of a KV layer."""
    if isinstance(g, AttentionLayers):
        per_token = kv_heads_per_rank(g.kv_heads, tp) * g.head_dim * (kb + vb)
        if g.window_tokens:
            return "attention_window", per_token, float(g.window_tokens)
        if g.chunk_tokens:
            return "attention_chunk", per_token, float(g.chunk_tokens)
        return "attention_global", per_token, INF
    # MLA (dense or sparse): one latent, replicated on every rank, at the key precision
    return "mla", g.latent_elements_per_token * kb, INF


@dataclass(frozen=True)
class KvSize:
    """KV bytes of one sequence for the whole model (all TP ranks together)."""

    context_tokens: int
    bytes_per_sequence: int
    bytes_by_kind: dict[str, int]

    @property
    def bytes_per_token(self) -> float:
        return self.bytes_per_sequence / self.context_tokens if self.context_tokens else 0.0


def kv_size(
    arch: Architecture, context_tokens: int, kv: KvCacheSpec = KvCacheSpec(), generated_tokens: int = 0, tp: int = 1
) -> KvSize:
    """Bytes one sequence of `context_tokens` prompt (+ generated) tokens holds, all ranks."""
    if context_tokens < 1:
        raise SpecError(f"context: {context_tokens} is not valid; it must be >= 1 token")
    fp = kv_footprint(arch, kv, tp)
    by_kind: dict[str, int] = {}
    for t in fp.terms:
        one = KvFootprint(terms=(t,), tp=tp)
        b = one.bytes_per_rank(context_tokens, generated_tokens) * tp
        by_kind[t.kind] = by_kind.get(t.kind, 0) + math.ceil(b)
    return KvSize(
        context_tokens=context_tokens + generated_tokens,
        bytes_per_sequence=sum(by_kind.values()),
        bytes_by_kind=by_kind,
    )


# --------------------------------------------------------------------------- weights
TABLE_DTYPE = "bf16"  # quantized checkpoints (FP8, NVFP4, AWQ/GPTQ) keep embeddings and LM head in bf16


def _table_bytes_per_element(weight_dtype: str) -> Fraction:
    return max(bytes_per_element(weight_dtype), bytes_per_element(TABLE_DTYPE))


def weight_bytes(arch: Architecture, weight_dtype: str = "bf16") -> int:
    """Bytes of the weights: the body at weight_dtype, the embedding / LM-head tables at least bf16
    (as FP8, NVFP4 and AWQ/GPTQ checkpoints store them)."""
    tables = arch.table_params
    body = arch.total_params - tables
    return math.ceil(body * bytes_per_element(weight_dtype) + tables * _table_bytes_per_element(weight_dtype))


def active_weight_bytes(arch: Architecture, weight_dtype: str, tokens_in_step: float) -> float:
    """Weight bytes one forward step streams: the dense body, the experts the batch touches and
    the LM head; the token-embedding table of an untied model is a lookup (a few rows), not read.

    With k of E experts per token chosen independently, the expected number of distinct experts
    a step of b tokens touches in a layer is E * (1 - (1 - k/E)^b).
    """
    b = float(bytes_per_element(weight_dtype))
    head = arch.token_table_params * float(_table_bytes_per_element(weight_dtype))
    body = arch.total_params - arch.table_params
    if arch.moe is None:
        return body * b + head
    m = arch.moe
    dense = body - m.routed_params
    touched = m.num_experts * (1.0 - (1.0 - m.experts_per_token / m.num_experts) ** max(tokens_in_step, 1.0))
    return dense * b + touched * m.params_per_expert * m.moe_layers * b + head


def layout_weight_bytes(arch: Architecture, weight_dtype: str, layout: Layout) -> float:
    """Weight bytes per GPU: routed experts split over all tp GPUs (ep ranks, each expert tp/ep
    ways), everything else (attention, dense layers, shared experts, tables) split over attention TP."""
    experts = routed_bytes(arch, float(bytes_per_element(weight_dtype)))
    return (weight_bytes(arch, weight_dtype) - experts) / layout.attention_tp + experts / layout.tp


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class MemoryPlan:
    model: str
    gpu: str
    tp: int
    weight_dtype: str
    key_dtype: str
    value_dtype: str
    gpu_memory_utilization: float
    block_tokens: int
    gpu_memory_bytes: int
    usable_bytes_per_gpu: int
    weights_bytes_per_gpu: int
    workspace_bytes_per_gpu: int
    kv_pool_bytes_per_gpu: int
    block_bytes_per_gpu: float
    kv_blocks: int
    kv_capacity_tokens: int | None  # per replica; None for a model with no KV cache (pure SSM)
    context_tokens: int
    sequence_bytes_per_gpu: float  # one sequence of context_tokens, per GPU
    max_concurrent_sequences: int
    footprint: KvFootprint = field(repr=False, compare=False)
    ep: int = 1  # expert-parallel degree
    dp: int = 1  # data-parallel attention ranks

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "footprint"}
        d["kv_pool_bytes_per_replica"] = self.kv_pool_bytes_per_gpu * self.tp
        return d


def workspace_bytes(
    arch: Architecture, tp: int, max_batched_tokens: int, max_running_seqs: int, runtime_reserve_bytes: int
) -> int:
    """Per-GPU memory vLLM keeps out of the KV pool: CUDA context, NCCL and graph buffers
    (runtime_reserve_bytes) plus the activation peak of a forward pass of max_batched_tokens
    (~ 16 hidden-sized bf16 tensors live at the MLP peak) and fp32 logits of max_running_seqs."""
    activation = max_batched_tokens * arch.hidden_size * 2 * 16 // tp
    logits = max_running_seqs * arch.vocab_size * 4
    return runtime_reserve_bytes + activation + logits


def plan_memory(
    arch: Architecture,
    gpu: GpuSpec,
    *,
    tp: int = 1,
    weight_dtype: str = "bf16",
    kv: KvCacheSpec = KvCacheSpec(),
    gpu_memory_utilization: float = 0.9,
    block_tokens: int = 16,
    context_tokens: int = 1,
    max_batched_tokens: int = 8192,
    max_running_seqs: int = 256,
    runtime_reserve_bytes: int = GIB,
    _suggest_tp: bool = True,
    layout: Layout | None = None,
) -> MemoryPlan:
    """Split one GPU's memory; raise CapacityError (with the numbers) when nothing is left for KV."""
    if not 0 < gpu_memory_utilization <= 1:
        raise SpecError(f"gpu_memory_utilization: {gpu_memory_utilization} is not valid; it must be in (0, 1]")
    if block_tokens < 1:
        raise SpecError(f"block_tokens: {block_tokens} is not valid; it must be >= 1")
    if layout is None or layout.plain:
        check_tp(arch, tp)
        fp = kv_footprint(arch, kv, tp)
        weights = math.ceil(weight_bytes(arch, weight_dtype) / tp)
        layout = Layout(tp)
    else:
        fp = kv_footprint(arch, kv, tp, layout.dp)
        weights = math.ceil(layout_weight_bytes(arch, weight_dtype, layout))
    usable = int(gpu.memory_bytes * gpu_memory_utilization)
    workspace = workspace_bytes(arch, tp, max_batched_tokens, max_running_seqs, runtime_reserve_bytes)
    pool = usable - weights - workspace
    if pool <= 0:
        if not _suggest_tp:
            raise CapacityError(f"{arch.name} does not fit on {gpu.name} at tp={tp}")
        smallest = smallest_fitting_tp(
            arch,
            gpu,
            weight_dtype=weight_dtype,
            kv=kv,
            gpu_memory_utilization=gpu_memory_utilization,
            max_batched_tokens=max_batched_tokens,
            max_running_seqs=max_running_seqs,
            runtime_reserve_bytes=runtime_reserve_bytes,
        )
        hint = f"smallest tp that fits: tp={smallest}" if smallest else "no tp up to 64 fits on this GPU"
        raise CapacityError(
            f"{arch.name} ({weight_dtype}) does not fit on {gpu.name} at tp={tp}: needs "
            f"{(weights + workspace) / 1e9:.1f} GB per GPU (weights {weights / 1e9:.1f} GB + workspace "
            f"{workspace / 1e9:.1f} GB), {usable / 1e9:.1f} GB available at utilization "
            f"{gpu_memory_utilization}; {hint}"
        )
    block_unit = fp.full_bytes_per_token_per_rank
    block_bytes = block_tokens * block_unit
    if block_unit > 0:
        blocks = int(pool // block_bytes)
        capacity_tokens: int | None = blocks * block_tokens
    else:
        blocks, capacity_tokens = 0, None
    seq_bytes = fp.bytes_per_rank(context_tokens, 0)
    max_seqs = sequences_that_fit(pool, blocks, block_bytes, seq_bytes)
    if max_seqs < 1:
        raise CapacityError(
            f"{arch.name} on {gpu.name} at tp={tp}: the KV pool ({pool / 1e9:.2f} GB per GPU) cannot hold one "
            f"sequence of {context_tokens} tokens ({seq_bytes / 1e9:.2f} GB per GPU)"
        )
    return MemoryPlan(
        model=arch.name,
        gpu=gpu.name,
        tp=tp,
        weight_dtype=weight_dtype,
        key_dtype=kv.key_dtype,
        value_dtype=kv.value_dtype,
        gpu_memory_utilization=gpu_memory_utilization,
        block_tokens=block_tokens,
        gpu_memory_bytes=gpu.memory_bytes,
        usable_bytes_per_gpu=usable,
        weights_bytes_per_gpu=weights,
        workspace_bytes_per_gpu=workspace,
        kv_pool_bytes_per_gpu=pool,
        block_bytes_per_gpu=block_bytes,
        kv_blocks=blocks,
        kv_capacity_tokens=capacity_tokens,
        context_tokens=context_tokens,
        sequence_bytes_per_gpu=seq_bytes,
        max_concurrent_sequences=max_seqs,
        footprint=fp,
        ep=layout.ep,
        dp=layout.dp,
    )


def sequences_that_fit(pool_bytes: float, blocks: int, block_bytes: float, seq_bytes: float) -> int:
    """Sequences of seq_bytes (per GPU) the KV pool holds: whole paged blocks each when the
    model has a KV cache (blocks > 0), else the pool divided by the fixed state size."""
    if block_bytes > 0 and blocks:
        return blocks // max(1, math.ceil(seq_bytes / block_bytes))
    return int(pool_bytes // seq_bytes) if seq_bytes > 0 else 0


def smallest_fitting_tp(arch: Architecture, gpu: GpuSpec, **kwargs) -> int | None:
    for tp in valid_tp_degrees(arch):
        try:
            plan_memory(arch, gpu, tp=tp, _suggest_tp=False, **kwargs)
            return tp
        except CapacityError:
            continue
    return None
