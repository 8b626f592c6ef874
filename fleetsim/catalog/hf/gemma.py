"""Gemma 3n and Gemma 4.

Gemma 3n (gemma3n_text, or gemma3n with a text_config): sliding/full layers by ``layer_types``
(4 local : 1 global by default), KV sharing, per-layer embeddings, AltUp and LAuReL.

- KV sharing: the last ``num_kv_shared_layers`` layers compute no K/V of their own; each reuses
  the cache of the last earlier layer of its type (sliding or full), so they add no KV bytes.
- Per-layer embeddings (PLE): a table of ``vocab_size_per_layer_input`` rows by
  num_hidden_layers x ``hidden_size_per_layer_input``, plus a projection of the hidden state to
  the same width; every layer gates its slice in and projects it back. The table counts in the
  total (it is in the checkpoint) but is a lookup, not active.
- AltUp keeps ``altup_num_inputs`` copies of the residual stream (projections in and out of the
  stack, per-layer router and coefficient tables); LAuReL adds a rank-``laurel_rank`` residual.
Shapes follow transformers' Gemma3nTextModel and vLLM's gemma3n.py (which computes the fused
qkv projection on KV-shared layers too, so their K/V weights count as active).

Gemma 4 (gemma4_text, or gemma4 with a text_config), per transformers' Gemma4TextModel: sliding
layers of ``head_dim`` x ``num_key_value_heads``; full layers of ``global_head_dim``, with
``num_global_key_value_heads`` and no v_proj when ``attention_k_eq_v`` (the values are the
keys, normed apart -- both still cached); a dense GeGLU MLP on every layer and, with
``enable_moe_block``, a routed-expert block beside it (``num_experts``, ``top_k_experts``);
per-layer embeddings when ``hidden_size_per_layer_input`` > 0; KV-shared layers keep no K/V
weights (and, with ``use_double_wide_mlp``, a twice-as-wide MLP).
"""

from __future__ import annotations

from fleetsim.catalog.hf.fields import HfConfig
from fleetsim.catalog.hf.shape import (
    Params,
    Shape,
    attention_params,
    embeddings,
    experts_per_token,
    gated_mlp_params,
    heads,
    layer,
    moe_spec,
    routed_moe,
)
from fleetsim.errors import CatalogError

DEFAULTS: dict[str, dict] = {
    # transformers Gemma3nTextConfig defaults (the E4B checkpoint's values)
    "gemma3n_text": {
        "tie_word_embeddings": True,
        "vocab_size": 262_400,
        "head_dim": 256,
        "sliding_window": 512,
        "max_position_embeddings": 32_768,
        "vocab_size_per_layer_input": 262_144,
        "hidden_size_per_layer_input": 256,
        "altup_num_inputs": 4,
        "num_kv_shared_layers": 15,
        "laurel_rank": 64,
    },
    # transformers Gemma4TextConfig defaults
    "gemma4_text": {
        "tie_word_embeddings": True,
        "sliding_window": 512,
        "global_head_dim": 512,
        "vocab_size_per_layer_input": 262_144,
        "hidden_size_per_layer_input": 256,
        "num_kv_shared_layers": 0,
    },
}


def _layout(cfg: HfConfig, period: int):
    """hidden, layers, vocab, (q, kv, head_dim), window and per-layer types (by default every
    ``period``-th layer global, as the family's config class lays them out)."""
    hidden = cfg.int("hidden_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    q_kv_hd = heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    types = cfg.layer_types(n_layers, ("sliding_attention", "full_attention"))
    if types is None:
        types = ["full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(n_layers)]
    return hidden, n_layers, cfg.int("vocab_size"), q_kv_hd, cfg.int("sliding_window"), types


def gemma3n(cfg: HfConfig) -> Shape:
    hidden, n_layers, vocab, (q, kv, hd), window, types = _layout(cfg, period=5)  # 4 local : 1 global
    widths = _intermediate_sizes(cfg, n_layers)
    first_shared = _first_kv_shared_layer(cfg, types)
    streams = cfg.int("altup_num_inputs")
    rank = cfg.int("laurel_rank")

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    ple_width = _per_layer_embeddings(cfg, params, hidden, n_layers)
    params.add(2 * (streams - 1) * hidden * hidden + hidden)  # altup (un)embed projections; final norm

    attention = attention_params(hidden, q, kv, hd, qk_norm=True)  # v_norm has no weight
    altup = hidden + streams * streams + streams * streams**2 + hidden * streams + hidden
    laurel = 2 * hidden * rank + hidden
    per_layer_input = 2 * hidden * ple_width + hidden  # gate, projection, post norm
    layers = []
    for i, (kind, width) in enumerate(zip(types, widths)):
        params.add(attention + gated_mlp_params(hidden, width) + 4 * hidden + altup + laurel + per_layer_input)
        slide = window if kind == "sliding_attention" else None
        own_kv = "attention" if i < first_shared else "attention_kv_shared"
        layers.append(layer(own_kv, q_heads=q, kv_heads=kv, head_dim=hd, window_tokens=slide))
    return Shape(hidden, vocab, layers, params, max_context_tokens=cfg.max_context("max_position_embeddings"))


def gemma4(cfg: HfConfig) -> Shape:
    hidden, n_layers, vocab, (q, kv, hd), window, types = _layout(cfg, period=6)  # 5 local : 1 global
    k_eq_v = cfg.flag("attention_k_eq_v")
    global_hd = cfg.int("global_head_dim")
    global_kv = cfg.int("num_global_key_value_heads", default=kv) if k_eq_v else kv
    if q % global_kv:
        raise cfg.fail("num_global_key_value_heads", global_kv, f"it must divide num_attention_heads = {q}")
    first_shared = _first_kv_shared_layer(cfg, types)
    inter = cfg.int("intermediate_size")
    double_wide = cfg.flag("use_double_wide_mlp")

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(hidden)  # final norm
    ple_width = _per_layer_embeddings(cfg, params, hidden, n_layers)
    moe = None
    if cfg.flag("enable_moe_block"):
        experts = cfg.int("num_experts")
        k = experts_per_token(cfg, experts, "top_k_experts")
        per_expert = gated_mlp_params(hidden, cfg.int("moe_intermediate_size"))
        moe = moe_spec(experts, k, n_layers, per_expert)

    layers = []
    for i, kind in enumerate(types):
        full, shared = kind == "full_attention", i >= first_shared
        layer_hd, layer_kv = (global_hd, global_kv) if full else (hd, kv)
        attention = attention_params(hidden, q, layer_kv, layer_hd, qkv_bias=cfg.flag("attention_bias"), qk_norm=True)
        if shared:  # no k_proj, v_proj or k_norm of its own
            attention -= 2 * hidden * layer_kv * layer_hd + layer_hd
        elif full and k_eq_v:  # the values reuse the key projection
            attention -= hidden * layer_kv * layer_hd
        width = inter * (2 if double_wide and shared else 1)
        params.add(attention + gated_mlp_params(hidden, width) + 4 * hidden)
        if ple_width:
            params.add(2 * hidden * ple_width + hidden)  # per-layer input gate, projection, norm
        if moe is not None:  # router (proj, scale, per-expert scale), experts, three more norms
            router = hidden * moe.num_experts + hidden + moe.num_experts
            routed_moe(params, experts=moe.num_experts, k=moe.experts_per_token, per_expert=per_expert, router=router)
            params.add(3 * hidden)
        own_kv = "attention_kv_shared" if shared else "attention"
        layers.append(
            layer(own_kv, q_heads=q, kv_heads=layer_kv, head_dim=layer_hd, window_tokens=None if full else window)
        )
    return Shape(hidden, vocab, layers, params, moe=moe, max_context_tokens=cfg.max_context("max_position_embeddings"))


def _first_kv_shared_layer(cfg: HfConfig, types: list[str]) -> int:
    """Index of the first layer that reuses an earlier layer's KV (len(types) when none does)."""
    n_layers = len(types)
    shared_layers = cfg.int("num_kv_shared_layers", minimum=0)
    if shared_layers >= n_layers:
        raise cfg.fail("num_kv_shared_layers", shared_layers, f"it must be below num_hidden_layers = {n_layers}")
    first_shared = n_layers - shared_layers
    for kind in set(types[first_shared:]):
        if kind not in types[:first_shared]:
            raise cfg.fail(
                "num_kv_shared_layers", shared_layers, f"no earlier {kind} layer is left to share its KV cache"
            )
    return first_shared


def _per_layer_embeddings(cfg: HfConfig, params: Params, hidden: int, n_layers: int) -> int:
    """The PLE table (a lookup) and the projection of the hidden state to it; returns the width
    per layer (0: no per-layer embeddings)."""
    width = cfg.int("hidden_size_per_layer_input", minimum=0)
    if not width:
        return 0
    table = cfg.int("vocab_size_per_layer_input") * n_layers * width
    params.add(table)
    params.lookup += table
    params.add(hidden * n_layers * width + width)  # per_layer_model_projection + its norm
    return width


def _intermediate_sizes(cfg: HfConfig, n_layers: int) -> list[int]:
    value = cfg.get("intermediate_size")
    if isinstance(value, list):
        return cfg.int_list("intermediate_size", n_layers, minimum=1) or []
    if value is None:
        raise CatalogError(
            f"{cfg.name}: config field 'intermediate_size' is missing; give one integer or one per layer"
        )
    return [cfg.check_int("intermediate_size", value)] * n_layers


FAMILIES = {"gemma3n_text": gemma3n, "gemma4_text": gemma4}
WRAPPERS = {"gemma3n": "gemma3n_text", "gemma4": "gemma4_text"}
ARCHITECTURE_CLASSES = {
    "Gemma3nForConditionalGeneration": "gemma3n",
    "Gemma3nForCausalLM": "gemma3n_text",
    "Gemma4ForConditionalGeneration": "gemma4",
    "Gemma4ForCausalLM": "gemma4_text",
}
