"""The parallel layout of a replica: tensor parallelism, expert parallelism (fleet.ep) and
data-parallel attention (fleet.dp_attention), as SGLang (--tp 8 --ep-size 8 --enable-dp-attention
--dp 8) and vLLM (--enable-expert-parallel --data-parallel-size 8) serve DeepSeek-V3/R1 on 8 GPUs.

A replica is tp GPUs. With dp_attention the attention runs data-parallel over dp = tp ranks
(attention TP = tp / dp = 1): each rank holds the attention and dense weights whole and the KV
(MLA latent) of its own sequences only, so a sequence's latent is stored once per replica, not
on every rank. Routed experts are split over ep ranks (ep divides tp; when ep < tp each expert is
further tensor-split over tp / ep); per rank that is routed_params / tp either way.

Per rank and iteration of T tokens (the replica's batch; each rank serves T / dp of them):
- experts read: the distinct experts T tokens touch, E (1 - (1 - k/E)^T) per layer, of which a
  rank holds 1/ep (expected), each split tp/ep ways: touched x expert bytes / tp;
- MoE load imbalance: the busiest of ep ranks gets 1 + sqrt(2 ln(ep) / mu) times the mean load
  mu = T k / ep token-expert pairs (the expected maximum of ep balanced-random loads, mu +
  sqrt(2 mu ln ep); at most ep): expert GEMMs and the all-to-all run at the busiest rank's pace;
- DP attention: decode sequences spread evenly over the dp ranks (KV read and attention FLOPs
  per rank are the replica's mean), but a request's prefill runs its attention and dense layers
  on the one rank that holds it, so the busiest rank does dp / min(prefill sequences, dp) times the
  mean prefill share, and every rank waits for it at the MoE all-to-alls;
- all-to-all dispatch and combine per MoE layer over NVLink, replacing the MoE all-reduce: each
  way T/tp x k x hidden x 2 B x (ep - 1)/ep per rank at the profile's achieved bus bandwidth,
  plus its small-message latency; attention (and dense MLP) all-reduces only when attention TP > 1.
Sources: the SGLang v0.4 release notes (lmsys.org/blog/2024-12-04-sglang-v0-4, "Data parallelism
attention for DeepSeek models": TP on 8 GPUs duplicates the single-head MLA cache, DP attention
does not); SGLang server_args.py: with --enable-dp-attention, chunked_prefill_size and
max_running_requests are divided by dp_size, i.e. they stay replica-wide budgets as fleetsim's
scheduler keeps them. Not modelled: SGLang caps one rank's prefill per step at that per-rank
share (chunked_prefill_size / dp), where fleetsim's one scheduler lets a single request take the
whole budget on its rank; decode sequences are taken as evenly spread over DP ranks.
Pure: no simpy, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetsim.errors import SpecError
from fleetsim.spec.architecture import (
    Architecture,
    AttentionLayers,
    KVSharedAttentionLayers,
    LinearAttentionLayers,
    MLALayers,
    SparseMLALayers,
)


# --------------------------------------------------------------------------- tensor parallel
def _tp_problem(arch: Architecture, tp: int) -> str | None:
    """Why tp cannot split this model (None when it can): query heads must split evenly, and
    KV heads evenly or be replicated whole (tp a multiple of them); Gated DeltaNet key and value
    heads must split evenly (their state is sharded by head, as vLLM does)."""
    for g in arch.layers:
        if isinstance(g, (AttentionLayers, KVSharedAttentionLayers, MLALayers, SparseMLALayers)) and g.q_heads % tp:
            return f"does not divide the {g.q_heads} attention heads of {arch.name}"
        if isinstance(g, (AttentionLayers, KVSharedAttentionLayers)):
            if tp > g.kv_heads and tp % g.kv_heads:
                return f"neither divides nor is a multiple of the {g.kv_heads} KV heads of {arch.name}"
            if tp <= g.kv_heads and g.kv_heads % tp:
                return f"does not divide the {g.kv_heads} KV heads of {arch.name}"
        if isinstance(g, LinearAttentionLayers):
            for heads, what in ((g.key_heads, "key"), (g.value_heads, "value")):
                if heads % tp:
                    return f"does not divide the {heads} linear-attention {what} heads of {arch.name}"
    return None


def check_tp(arch: Architecture, tp: int) -> None:
    if tp < 1:
        raise SpecError(f"tp: {tp} is not valid; tensor-parallel degree must be >= 1")
    problem = _tp_problem(arch, tp)
    if problem:
        raise SpecError(f"tp: {tp} {problem}; valid: {', '.join(str(t) for t in valid_tp_degrees(arch))}")


def valid_tp_degrees(arch: Architecture, limit: int = 64) -> list[int]:
    return [tp for tp in (1, 2, 4, 8, 16, 32, 64) if tp <= limit and _tp_problem(arch, tp) is None]


def kv_heads_per_rank(kv_heads: int, tp: int) -> int:
    # vLLM replicates KV heads when tp > kv_heads: each rank still holds one whole head.
    return kv_heads // tp if tp <= kv_heads else 1


# --------------------------------------------------------------------------- expert / data parallel
@dataclass(frozen=True)
class Layout:
    tp: int  # GPUs per replica
    ep: int = 1  # expert-parallel degree
    dp: int = 1  # data-parallel attention ranks (tp with dp_attention)

    @property
    def attention_tp(self) -> int:
        return self.tp // self.dp

    @property
    def plain(self) -> bool:
        """Plain tensor parallelism (no EP, no DP attention)."""
        return self.ep == 1 and self.dp == 1


def layout_of(arch: Architecture, tp: int, ep: int | None, dp_attention: bool) -> Layout:
    """Check fleet.ep and fleet.dp_attention against the model and tp (one line each)."""
    ep = 1 if ep is None else ep
    if ep < 1:
        raise SpecError(f"fleet.ep: {ep} is not valid; the expert-parallel degree must be >= 1")
    moe = arch.moe
    if (ep > 1 or dp_attention) and moe is None:
        what = f"fleet.ep: {ep}" if ep > 1 else "fleet.dp_attention: true"
        raise SpecError(
            f"{what} needs a mixture-of-experts model; {arch.name} is dense (valid: ep 1, dp_attention false)"
        )
    if ep > 1:
        assert moe is not None
        if moe.num_experts % ep:
            valid = [d for d in range(1, tp + 1) if moe.num_experts % d == 0 and tp % d == 0]
            raise SpecError(
                f"fleet.ep: {ep} does not divide the {moe.num_experts} routed experts of {arch.name}; "
                f"valid: {', '.join(map(str, valid))}"
            )
        if ep > tp or tp % ep:
            raise SpecError(
                f"fleet.ep: {ep} does not divide the {tp} GPUs of a replica (fleet.tp); valid: a divisor of {tp}"
            )
    dp = tp if dp_attention else 1
    if dp_attention and tp == 1:
        raise SpecError("fleet.dp_attention: true needs fleet.tp > 1 (data-parallel attention over the replica's GPUs)")
    return Layout(tp=tp, ep=ep, dp=dp)


def touched_experts(arch: Architecture, tokens: float) -> float:
    """Expected distinct routed experts a step of `tokens` tokens touches in one MoE layer."""
    m = arch.moe
    if m is None:
        return 0.0
    return m.num_experts * (1.0 - (1.0 - m.experts_per_token / m.num_experts) ** max(tokens, 1.0))


def imbalance_factor(arch: Architecture, layout: Layout, tokens: float) -> float:
    """Busiest expert-parallel rank's load over the mean (1 without EP)."""
    m = arch.moe
    if layout.ep <= 1 or m is None or tokens <= 0:
        return 1.0
    mean = tokens * m.experts_per_token / layout.ep
    return min(1.0 + math.sqrt(2.0 * math.log(layout.ep) / mean), float(layout.ep))


def routed_bytes(arch: Architecture, bytes_per_param: float) -> float:
    """Bytes of every routed expert of the model."""
    return 0.0 if arch.moe is None else arch.moe.routed_params * bytes_per_param


def a2a_bytes_per_token(arch: Architecture, layout: Layout, activation_bytes: float) -> float:
    """All-to-all bytes one rank sends each way per token of the replica's batch in one MoE layer."""
    if layout.ep <= 1 or arch.moe is None:
        return 0.0
    k = arch.moe.experts_per_token
    return k * arch.hidden_size * activation_bytes * (layout.ep - 1) / layout.ep / layout.tp
