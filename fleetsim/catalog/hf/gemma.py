"""Gemma 3n (gemma3n_text, or gemma3n with a text_config): sliding/full layers by ``layer_types``
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
"""

from __future__ import annotations

from fleetsim.catalog.hf.fields import HfConfig
from fleetsim.catalog.hf.shape import Params, Shape, attention_params, embeddings, gated_mlp_params, heads, layer
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
}


def gemma3n(cfg: HfConfig) -> Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    q, kv, hd = heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    window = cfg.int("sliding_window")
    types = cfg.layer_types(n_layers, ("sliding_attention", "full_attention"))
    if types is None:  # Gemma3nTextConfig: every 5th layer is global
        types = ["full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(n_layers)]
    widths = _intermediate_sizes(cfg, n_layers)
    shared_layers = cfg.int("num_kv_shared_layers", minimum=0)
    if shared_layers >= n_layers:
        raise cfg.fail("num_kv_shared_layers", shared_layers, f"it must be below num_hidden_layers = {n_layers}")
    first_shared = n_layers - shared_layers
    for kind in set(types[first_shared:]):
        if kind not in types[:first_shared]:
            raise cfg.fail(
                "num_kv_shared_layers", shared_layers, f"no earlier {kind} layer is left to share its KV cache"
            )

    ple_width = cfg.int("hidden_size_per_layer_input")
    ple_vocab = cfg.int("vocab_size_per_layer_input")
    streams = cfg.int("altup_num_inputs")
    rank = cfg.int("laurel_rank")

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    ple_table = ple_vocab * n_layers * ple_width
    params.add(ple_table)
    params.lookup += ple_table
    params.add(hidden * n_layers * ple_width + ple_width)  # per_layer_model_projection + its norm
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


def _intermediate_sizes(cfg: HfConfig, n_layers: int) -> list[int]:
    value = cfg.get("intermediate_size")
    if isinstance(value, list):
        return cfg.int_list("intermediate_size", n_layers, minimum=1) or []
    if value is None:
        raise CatalogError(
            f"{cfg.name}: config field 'intermediate_size' is missing; give one integer or one per layer"
        )
    return [cfg.check_int("intermediate_size", value)] * n_layers


FAMILIES = {"gemma3n_text": gemma3n}
WRAPPERS = {"gemma3n": "gemma3n_text"}
ARCHITECTURE_CLASSES = {
    "Gemma3nForConditionalGeneration": "gemma3n",
    "Gemma3nForCausalLM": "gemma3n_text",
}
