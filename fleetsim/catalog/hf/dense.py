"""Dense decoders: GPT-2, OPT and the Llama-style family.

- GPT-2 (``n_layer``/``n_embd``/``n_head``/``n_positions``) and OPT (``ffn_dim``): MHA, learned
  positions, LayerNorm and biases everywhere, two-matrix MLP, head tied to the token table.
- Llama-style decoders (llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3/gemma3_text, phi3,
  granite): RoPE, RMSNorm, gated MLP, GQA; sliding windows from ``sliding_window`` with
  ``layer_types``, ``sliding_window_pattern`` (Gemma 3), alternating layers (Gemma 2),
  ``max_window_layers`` (Qwen) or every layer (Mistral v0.1, Phi-3 mini). Phi-3 fuses qkv and
  gate/up (the same parameter count); Granite's embedding/attention/residual/logit multipliers
  are scalars with no parameters.
"""

from __future__ import annotations

from fleetsim.catalog.hf.fields import HfConfig
from fleetsim.catalog.hf.shape import (
    Params,
    Shape,
    attention_params,
    embeddings,
    gated_mlp_params,
    heads,
    layer,
)
from fleetsim.errors import CatalogError, shown

_LLAMA_STYLE_UNTIED = ("llama", "mistral", "qwen2", "qwen3", "phi3")

DEFAULTS: dict[str, dict] = {
    "gpt2": {"tie_word_embeddings": True, "n_inner": None, "n_positions": 1024, "vocab_size": 50257},
    "opt": {
        "tie_word_embeddings": True,
        "do_layer_norm_before": True,
        "_remove_final_layer_norm": False,
        "enable_bias": True,
        "max_position_embeddings": 2048,
    },
    **{t: {"tie_word_embeddings": False} for t in _LLAMA_STYLE_UNTIED},
    "qwen2": {"tie_word_embeddings": False, "use_sliding_window": False},
    "qwen3": {"tie_word_embeddings": False, "use_sliding_window": False},
    "gemma": {"tie_word_embeddings": True},
    "gemma2": {"tie_word_embeddings": True, "sliding_window": 4096},
    "gemma3_text": {
        # transformers Gemma3TextConfig defaults (the 27B config.json omits these)
        "tie_word_embeddings": True,
        "vocab_size": 262_208,
        "max_position_embeddings": 131_072,
        "sliding_window": 4096,
        "sliding_window_pattern": 6,
        "head_dim": 256,
    },
    # transformers GraniteConfig: tie_word_embeddings defaults to False; Granite 3.x files set it.
    "granite": {"tie_word_embeddings": False},
}

# Families with per-head RMSNorm on q and k.
QK_NORM = ("qwen3", "qwen3_moe", "gemma3_text")
# Families with a norm before and after both attention and MLP (four per layer).
SANDWICH_NORMS = ("gemma2", "gemma3_text")


def sliding_flags(cfg: HfConfig, n_layers: int) -> tuple[list[bool], int | None]:
    """Which layers use a sliding window, and its width."""
    window = cfg.get("sliding_window")
    if "use_sliding_window" in cfg.fields or "use_sliding_window" in cfg.defaults:
        if not cfg.flag("use_sliding_window"):
            window = None
    if window is not None:
        window = cfg.check_int("sliding_window", window)

    types = cfg.layer_types(n_layers, ("sliding_attention", "full_attention"))
    if types is not None:
        flags = [t == "sliding_attention" for t in types]
        if any(flags) and window is None:
            raise CatalogError(
                f"{cfg.name}: config field 'layer_types' names sliding_attention layers but "
                f"'sliding_window' = {shown(cfg.get('sliding_window'))}; give a positive window"
            )
        return flags, window

    if window is None:
        return [False] * n_layers, None
    if cfg.model_type == "gemma2":
        # transformers Gemma2: even layers are local (sliding), odd layers global
        return [i % 2 == 0 for i in range(n_layers)], window
    pattern = cfg.get("sliding_window_pattern")
    if pattern is not None:
        pattern = cfg.check_int("sliding_window_pattern", pattern)
        # Gemma 3: layer i is global iff (i + 1) % pattern == 0 (5 local : 1 global for 6)
        return [(i + 1) % pattern != 0 for i in range(n_layers)], window
    if cfg.model_type in ("qwen2", "qwen3", "qwen3_moe") and cfg.get("max_window_layers") is not None:
        first = cfg.int("max_window_layers", minimum=0)
        return [i >= first for i in range(n_layers)], window
    return [True] * n_layers, window  # Mistral v0.1, Phi-3 mini: every layer is windowed


def attention_layers(q_heads: int, kv_heads: int, head_dim: int, flags: list[bool], window: int | None) -> list:
    return [
        layer("attention", q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim, window_tokens=window if s else None)
        for s in flags
    ]


def llama_attention_params(cfg: HfConfig, hidden: int, q_heads: int, kv_heads: int, head_dim: int) -> int:
    """Attention of a Llama-style layer, with the biases and q/k norms its family has."""
    biased = cfg.flag("attention_bias")
    return attention_params(
        hidden,
        q_heads,
        kv_heads,
        head_dim,
        qkv_bias=biased or cfg.model_type == "qwen2",  # Qwen2 always has Q/K/V biases
        o_bias=biased,
        qk_norm=cfg.model_type in QK_NORM,
    )


def norms_per_layer(cfg: HfConfig, hidden: int) -> int:
    return (4 if cfg.model_type in SANDWICH_NORMS else 2) * hidden


def llama_style(cfg: HfConfig) -> Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    q_heads, kv_heads, head_dim = heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    flags, window = sliding_flags(cfg, n_layers)
    intermediate = cfg.int("intermediate_size")

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(hidden)  # final norm
    attention = llama_attention_params(cfg, hidden, q_heads, kv_heads, head_dim)
    mlp = gated_mlp_params(hidden, intermediate, cfg.flag("mlp_bias"))
    params.add(n_layers * (attention + norms_per_layer(cfg, hidden) + mlp))
    return Shape(
        hidden,
        vocab,
        attention_layers(q_heads, kv_heads, head_dim, flags, window),
        params,
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


def _divisible(cfg: HfConfig, hidden: int, heads_: int, hidden_key: str, heads_key: str) -> None:
    if hidden % heads_:
        raise CatalogError(
            f"{cfg.name}: config field '{hidden_key}' = {hidden} is not divisible by "
            f"{heads_key} = {heads_}; use a multiple of {heads_}"
        )


def gpt2(cfg: HfConfig) -> Shape:
    hidden = cfg.int("n_embd", "hidden_size")
    n_layers = cfg.layer_count("n_layer", "num_hidden_layers")
    n_heads = cfg.int("n_head", "num_attention_heads")
    _divisible(cfg, hidden, n_heads, "n_embd", "n_head")
    vocab = cfg.int("vocab_size")
    positions = cfg.int("n_positions", "n_ctx")
    inner = cfg.int("n_inner", default=4 * hidden)
    per_layer = (
        2 * hidden  # ln_1
        + hidden * 3 * hidden
        + 3 * hidden  # c_attn
        + hidden * hidden
        + hidden  # attn c_proj
        + 2 * hidden  # ln_2
        + hidden * inner
        + inner  # c_fc
        + inner * hidden
        + hidden  # mlp c_proj
    )
    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(positions * hidden + n_layers * per_layer + 2 * hidden)
    params.lookup += positions * hidden  # learned positions are looked up
    attn = layer("attention", q_heads=n_heads, kv_heads=n_heads, head_dim=hidden // n_heads, window_tokens=None)
    return Shape(hidden, vocab, [attn] * n_layers, params, max_context_tokens=positions)


def opt(cfg: HfConfig) -> Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    n_heads = cfg.int("num_attention_heads")
    _divisible(cfg, hidden, n_heads, "hidden_size", "num_attention_heads")
    ffn = cfg.int("ffn_dim")
    vocab = cfg.int("vocab_size")
    positions = cfg.int("max_position_embeddings")
    proj_dim = cfg.int("word_embed_proj_dim", default=hidden)
    bias = cfg.flag("enable_bias", True)
    per_layer = (
        4 * hidden * hidden
        + (4 * hidden if bias else 0)  # q, k, v, out_proj
        + 2 * hidden  # self_attn_layer_norm
        + hidden * ffn
        + ffn * hidden
        + ((ffn + hidden) if bias else 0)  # fc1, fc2
        + 2 * hidden  # final_layer_norm
    )
    params = Params()
    embeddings(cfg, params, vocab, proj_dim)
    # OPT's learned positions keep 2 extra rows (the padding offset).
    params.add((positions + 2) * hidden + n_layers * per_layer)
    params.lookup += (positions + 2) * hidden
    if proj_dim != hidden:
        params.add(2 * hidden * proj_dim)  # project_in, project_out
    if cfg.flag("do_layer_norm_before", True) and not cfg.flag("_remove_final_layer_norm"):
        params.add(2 * hidden)
    attn = layer("attention", q_heads=n_heads, kv_heads=n_heads, head_dim=hidden // n_heads, window_tokens=None)
    return Shape(hidden, vocab, [attn] * n_layers, params, max_context_tokens=positions)


FAMILIES = {
    "gpt2": gpt2,
    "opt": opt,
    "llama": llama_style,
    "mistral": llama_style,
    "qwen2": llama_style,
    "qwen3": llama_style,
    "gemma": llama_style,
    "gemma2": llama_style,
    "gemma3_text": llama_style,
    "phi3": llama_style,
    "granite": llama_style,
}

ARCHITECTURE_CLASSES = {
    "GPT2LMHeadModel": "gpt2",
    "OPTForCausalLM": "opt",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3_text",
    "Gemma3ForConditionalGeneration": "gemma3",
    "Phi3ForCausalLM": "phi3",
    "GraniteForCausalLM": "granite",
}
