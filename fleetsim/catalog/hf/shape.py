"""What a family reader returns, and the parameter counts the families share.

Parameter counts follow the tensors a checkpoint holds for the language model (embeddings,
attention, MLP or expert weights, norms, biases where the family has them). Multi-token-prediction
heads and vision/audio towers are not counted.

Active parameters are the parameters one token's forward pass multiplies: every dense weight,
the experts the router picks (routed top-k plus shared experts) and the LM head; tables that are
only read by index -- the input token embedding, learned position embeddings, per-layer
embedding tables -- are not active (a lookup is not a matmul). A tied embedding is multiplied as
the LM head, so it counts once, as active. The same rule holds for every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetsim.catalog.hf.fields import HfConfig
from fleetsim.errors import CatalogError
from fleetsim.spec.architecture import MoE

LayerSpec = tuple[str, tuple[tuple[str, Any], ...]]


def layer(kind: str, **fields: Any) -> LayerSpec:
    """One layer before run-length encoding: its kind and its fields (hashable, comparable)."""
    return kind, tuple(sorted(fields.items()))


@dataclass
class Params:
    """Parameter tallies: ``total`` held, ``idle`` routed-expert weights a token leaves unused,
    ``lookup`` tables read by index only (see the module docstring)."""

    total: int = 0
    idle: int = 0
    lookup: int = 0

    def add(self, count: int, idle: int = 0) -> None:
        self.total += count
        self.idle += idle

    @property
    def active(self) -> int:
        return self.total - self.idle - self.lookup


@dataclass
class Shape:
    hidden_size: int
    vocab_size: int
    layers: list[LayerSpec]  # one per layer, in depth order
    params: Params
    moe: MoE | None = None
    max_context_tokens: int | None = None
    notes: list[str] = field(default_factory=list)


def embeddings(cfg: HfConfig, params: Params, vocab: int, width: int) -> None:
    """The token table (a lookup) and, unless tied to it, the LM head (a matmul)."""
    params.add(vocab * width)
    if cfg.tied_embeddings():
        return  # the one table is multiplied as the LM head
    params.add(vocab * width)
    params.lookup += vocab * width


def attention_params(
    hidden: int,
    q_heads: int,
    kv_heads: int,
    head_dim: int,
    *,
    qkv_bias: bool = False,
    o_bias: bool = False,
    qk_norm: bool = False,
    gated: bool = False,
) -> int:
    """q, k, v, o projections (+ biases, per-head q/k RMSNorm weights, an output gate folded
    into q_proj as Qwen3-Next's gated attention does)."""
    q_out, kv_out = q_heads * head_dim, kv_heads * head_dim
    count = hidden * q_out * (2 if gated else 1) + 2 * hidden * kv_out + q_out * hidden
    if qkv_bias:
        count += q_out * (2 if gated else 1) + 2 * kv_out
    if o_bias:
        count += hidden
    if qk_norm:
        count += 2 * head_dim
    return count


def gated_mlp_params(hidden: int, intermediate: int, bias: bool = False) -> int:
    """gate, up and down projections (SwiGLU / GeGLU)."""
    return 3 * hidden * intermediate + ((2 * intermediate + hidden) if bias else 0)


def experts_per_token(cfg: HfConfig, experts: int, *keys: str) -> int:
    keys = keys or ("num_experts_per_tok",)
    k = cfg.int(*keys)
    if k > experts:
        raise cfg.fail(keys[0], k, f"it must be at most the number of experts, {experts}")
    return k


def routed_moe(
    params: Params,
    *,
    experts: int,
    k: int,
    per_expert: int,
    router: int,
    shared: int = 0,
) -> None:
    """One MoE block: every expert held, k of them (plus the shared part) used by a token."""
    params.add(experts * per_expert + router + shared, idle=(experts - k) * per_expert)


def heads(cfg: HfConfig, hidden: int, q_key: str, kv_keys: tuple[str, ...]) -> tuple[int, int, int]:
    """(q_heads, kv_heads, head_dim): kv heads default to q heads (MHA), head_dim to hidden / q."""
    q_heads = cfg.int(q_key)
    kv_heads = q_heads
    for key in kv_keys:
        if cfg.get(key) is not None:
            kv_heads = cfg.int(key)
            break
    if q_heads % kv_heads:
        raise CatalogError(
            f"{cfg.name}: config field '{kv_keys[0]}' = {kv_heads} does not divide "
            f"{q_key} = {q_heads}; valid: {_divisors(q_heads)}"
        )
    head_dim = cfg.get("head_dim")
    if head_dim is None:
        if hidden % q_heads:
            raise CatalogError(
                f"{cfg.name}: config field 'hidden_size' = {hidden} is not divisible by "
                f"{q_key} = {q_heads} and no 'head_dim' is given; set head_dim or use a "
                f"multiple of {q_heads}"
            )
        head_dim = hidden // q_heads
    else:
        head_dim = cfg.check_int("head_dim", head_dim)
    return q_heads, kv_heads, head_dim


def _divisors(n: int, most: int = 12) -> str:
    """'one of [1, 2, 4, ...]' for a count with few divisors, else 'a divisor of n' (no loop over
    a huge n)."""
    if n <= 100_000:
        found = [d for d in range(1, n + 1) if n % d == 0]
        if len(found) <= most:
            return f"one of {found}"
    return f"a divisor of {n:,}"


def moe_spec(experts: int, k: int, moe_layers: int, per_expert: int, shared: int = 0) -> MoE | None:
    if not moe_layers:
        return None
    return MoE(
        num_experts=experts,
        experts_per_token=k,
        moe_layers=moe_layers,
        params_per_expert=per_expert,
        shared_experts=shared,
    )
