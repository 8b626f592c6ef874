"""Read a Hugging Face ``config.json`` into an :class:`Architecture`.

The reader derives, in depth order, what kind every layer is (softmax attention with or without
a sliding window, multi-head latent attention, Mamba state-space) and run-length encodes it;
it reads the mixture-of-experts layout; and, when no published count is given, it estimates the
parameter count from the tensor shapes the config implies (embeddings, attention, MLP or expert
weights, norms, biases where the family has them).

Families understood (by ``model_type``, or by the class named in ``architectures``):

- GPT-2 (``n_layer``/``n_embd``/``n_head``/``n_positions``) and OPT (``ffn_dim``): MHA, learned
  positions, LayerNorm and biases everywhere, two-matrix MLP, head tied to the token table.
- Llama-style decoders (llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, gemma, gemma2,
  gemma3/gemma3_text): RoPE, RMSNorm, SwiGLU, GQA; sliding windows from ``sliding_window`` with
  ``layer_types``, ``sliding_window_pattern`` (Gemma 3), alternating layers (Gemma 2),
  ``max_window_layers`` (Qwen) or every layer (Mistral v0.1); Mixtral/Qwen3-MoE experts.
- DeepSeek V2/V3 (and Kimi K2): MLA attention, ``first_k_dense_replace`` dense layers, routed
  plus shared experts. Multi-token-prediction layers are not counted: they are not part of the
  published 671B and serving stacks load them only for speculative decoding.
- Mamba 1 (mamba, falcon_mamba) and Mamba 2: a fixed recurrent state per sequence.
- Jamba: Mamba layers with one attention layer every ``attn_layer_period`` and experts every
  ``expert_layer_period``.

Configs that nest the language model (Gemma 3 ``text_config``, ``llm_config``, ...) are read
from the nested block. Fields a checkpoint leaves out take the defaults of the transformers
config class of that family (the Gemma 3 27B file relies on them for its vocabulary and its
5:1 local:global pattern).

Anything unknown or contradictory raises :class:`CatalogError` with one line that names the
field, its value and what would be valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from fleetsim.errors import CatalogError
from fleetsim.spec.architecture import (
    Architecture,
    AttentionLayers,
    MLALayers,
    MoE,
    SSMLayers,
)

__all__ = ["architecture_from_hf_config", "supported_model_types"]

_MISSING = object()

# Keys under which multimodal configs nest their language model.
_NESTED_TEXT_KEYS = ("text_config", "llm_config", "language_config", "text_model_config")

# Class names in `architectures` -> model_type, for configs that omit model_type.
_ARCHITECTURE_CLASSES = {
    "GPT2LMHeadModel": "gpt2",
    "OPTForCausalLM": "opt",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3_text",
    "Gemma3ForConditionalGeneration": "gemma3",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "MambaForCausalLM": "mamba",
    "FalconMambaForCausalLM": "falcon_mamba",
    "Mamba2ForCausalLM": "mamba2",
    "JambaForCausalLM": "jamba",
}

# Defaults of the transformers config classes, for the fields this reader needs, applied only
# when a checkpoint's file leaves the field out. tie_word_embeddings is listed per family
# because the library-wide default (True) is not what Llama-style classes use.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": {"tie_word_embeddings": True, "n_inner": None, "n_positions": 1024, "vocab_size": 50257},
    "opt": {
        "tie_word_embeddings": True,
        "do_layer_norm_before": True,
        "_remove_final_layer_norm": False,
        "enable_bias": True,
        "max_position_embeddings": 2048,
    },
    "llama": {"tie_word_embeddings": False},
    "mistral": {"tie_word_embeddings": False},
    "mixtral": {"tie_word_embeddings": False},
    "qwen2": {"tie_word_embeddings": False, "use_sliding_window": False},
    "qwen3": {"tie_word_embeddings": False, "use_sliding_window": False},
    "qwen3_moe": {
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    },
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
    "deepseek_v2": {"tie_word_embeddings": False, "moe_layer_freq": 1, "first_k_dense_replace": 0},
    "deepseek_v3": {"tie_word_embeddings": False, "moe_layer_freq": 1, "first_k_dense_replace": 0},
    "kimi_k2": {"tie_word_embeddings": False, "moe_layer_freq": 1, "first_k_dense_replace": 0},
    "mamba": {
        "tie_word_embeddings": True,
        "state_size": 16,
        "conv_kernel": 4,
        "expand": 2,
        "time_step_rank": "auto",
        "use_bias": False,
        "use_conv_bias": True,
    },
    "falcon_mamba": {
        "tie_word_embeddings": False,
        "state_size": 16,
        "conv_kernel": 4,
        "expand": 2,
        "time_step_rank": "auto",
        "use_bias": False,
        "use_conv_bias": True,
    },
    "mamba2": {
        "tie_word_embeddings": False,
        "state_size": 128,
        "conv_kernel": 4,
        "expand": 2,
        "n_groups": 1,
        "use_bias": False,
        "use_conv_bias": True,
    },
    "jamba": {
        "tie_word_embeddings": False,
        "attn_layer_period": 8,
        "attn_layer_offset": 4,
        "expert_layer_period": 2,
        "expert_layer_offset": 1,
        "num_experts": 16,
        "num_experts_per_tok": 2,
        "mamba_d_state": 16,
        "mamba_d_conv": 4,
        "mamba_expand": 2,
        "mamba_dt_rank": "auto",
        "mamba_conv_bias": True,
        "mamba_proj_bias": False,
    },
}

_DTYPES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    # Full-precision checkpoints (mamba-*-hf ship fp32) are served at 16 bit.
    "float32": "bf16",
    "float": "bf16",
}


def supported_model_types() -> list[str]:
    """Every ``model_type`` this reader understands."""
    return sorted(set(_FAMILIES) | {"gemma3"})


def architecture_from_hf_config(
    config: dict,
    *,
    name: str,
    source: str = "",
    total_params: int | None = None,
    active_params: int | None = None,
) -> Architecture:
    """Build an Architecture from the dict of a Hugging Face config.json.

    ``total_params``/``active_params`` are published counts; when left out they are estimated
    from the config (see the module docstring). When only ``total_params`` is given for an MoE
    model, ``active_params`` is the total less the estimated weights of the experts a token
    does not use.
    """
    if not isinstance(config, dict):
        raise CatalogError(f"{name}: a config must be a JSON object (a dict), not {type(config).__name__}")
    cfg = _Config(config, name)
    shape = _FAMILIES[cfg.model_type](cfg)

    total, active = _resolve_counts(shape, total_params, active_params, name)
    try:
        return Architecture(
            name=name,
            source=source,
            hidden_size=shape.hidden_size,
            vocab_size=shape.vocab_size,
            total_params=total,
            active_params=active,
            layers=tuple(_run_length(shape.layers)),
            moe=shape.moe,
            native_dtype=cfg.native_dtype(),
            max_context_tokens=shape.max_context_tokens,
        )
    except ValidationError as exc:
        raise CatalogError(f"{name}: {validation_message(exc)}") from None


# --------------------------------------------------------------------------------------------
# Reading fields
# --------------------------------------------------------------------------------------------


class _Config:
    """The language-model fields of a config, with family defaults and one-line errors."""

    def __init__(self, raw: dict, name: str):
        self.name = name
        merged = {k: v for k, v in raw.items() if k not in _NESTED_TEXT_KEYS and k != "vision_config"}
        for key in _NESTED_TEXT_KEYS:
            nested = raw.get(key)
            if isinstance(nested, dict):
                merged.update(nested)
                break
        self.fields = merged
        self.model_type = self._model_type(raw, merged)
        self.defaults = _DEFAULTS.get(self.model_type, {})

    def _model_type(self, raw: dict, merged: dict) -> str:
        model_type = merged.get("model_type")
        if model_type is None:
            for cls in merged.get("architectures") or ():
                if cls in _ARCHITECTURE_CLASSES:
                    model_type = _ARCHITECTURE_CLASSES[cls]
                    break
        if model_type is None:
            raise CatalogError(
                f"{self.name}: config has no 'model_type' and 'architectures' = "
                f"{merged.get('architectures')!r} names no known class; "
                f"supported model types: {', '.join(supported_model_types())}"
            )
        if model_type == "gemma3":  # multimodal wrapper whose text_config was not present
            model_type = "gemma3_text"
        if model_type not in _FAMILIES:
            raise CatalogError(
                f"{self.name}: config field 'model_type' = {model_type!r} is not supported; "
                f"supported: {', '.join(supported_model_types())}"
            )
        return model_type

    def has(self, key: str) -> bool:
        return self.fields.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.fields.get(key)
        if value is None:
            value = self.defaults.get(key, default)
        return value

    def int(self, *keys: str, default: Any = _MISSING, minimum: int = 1) -> int:
        """The first of ``keys`` that is set, as an integer >= minimum."""
        for key in keys:
            value = self.get(key)
            if value is not None:
                return self.check_int(key, value, minimum)
        if default is not _MISSING:
            return default
        also = f" (also looked for {', '.join(keys[1:])})" if len(keys) > 1 else ""
        raise CatalogError(
            f"{self.name}: config field '{keys[0]}' is missing{also}; "
            f"a {self.model_type} config needs it as an integer >= {minimum}"
        )

    def check_int(self, key: str, value: Any, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CatalogError(
                f"{self.name}: config field '{key}' = {value!r} is not valid; it must be an integer >= {minimum}"
            )
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.get(key, default)
        if isinstance(value, str):  # some hand-written configs quote booleans
            return value.strip().lower() == "true"
        return bool(value)

    def fail(self, key: str, value: Any, valid: str) -> CatalogError:
        return CatalogError(f"{self.name}: config field '{key}' = {value!r} is not valid; {valid}")

    def tied_embeddings(self) -> bool:
        return self.flag("tie_word_embeddings", True)

    def native_dtype(self) -> str:
        quant = self.fields.get("quantization_config")
        if isinstance(quant, dict):
            method = str(quant.get("quant_method", "")).lower()
            if method == "fp8":
                return "fp8"
        dtype = self.fields.get("torch_dtype") or self.fields.get("dtype") or "bfloat16"
        return _DTYPES.get(str(dtype).replace("torch.", ""), "bf16")

    def max_context(self, *keys: str) -> int | None:
        for key in keys:
            value = self.get(key)
            if value is not None:
                return self.check_int(key, value)
        return None


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


@dataclass
class _Shape:
    hidden_size: int
    vocab_size: int
    # One entry per layer, in depth order: (kind, fields) before run-length encoding.
    layers: list[tuple[str, tuple[tuple[str, Any], ...]]]
    total_estimate: int
    active_estimate: int
    moe: MoE | None = None
    max_context_tokens: int | None = None
    notes: list[str] = field(default_factory=list)


def _layer(kind: str, **fields: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return kind, tuple(sorted(fields.items()))


_GROUP_CLASSES = {"attention": AttentionLayers, "mla": MLALayers, "ssm": SSMLayers}


def _run_length(layers: list[tuple[str, tuple]]) -> list:
    groups: list = []
    previous, count = None, 0
    for layer in layers + [None]:
        if layer == previous:
            count += 1
            continue
        if previous is not None:
            kind, fields = previous
            groups.append(_GROUP_CLASSES[kind](count=count, **dict(fields)))
        previous, count = layer, 1
    return groups


def _resolve_counts(shape: _Shape, total: int | None, active: int | None, name: str) -> tuple[int, int]:
    for label, value in (("total_params", total), ("active_params", active)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise CatalogError(f"{name}: {label} = {value!r} is not valid; it must be a positive integer")
    inactive = shape.total_estimate - shape.active_estimate
    if total is None and active is None:
        return shape.total_estimate, shape.active_estimate
    if total is None:
        return max(shape.total_estimate, active), active
    if active is None:
        return total, max(1, total - inactive)
    return total, active


# --------------------------------------------------------------------------------------------
# Attention geometry shared by the decoder families
# --------------------------------------------------------------------------------------------


def _heads(cfg: _Config, hidden: int, q_key: str, kv_keys: tuple[str, ...]) -> tuple[int, int, int]:
    q_heads = cfg.int(q_key)
    kv_heads = q_heads
    for key in kv_keys:
        if cfg.get(key) is not None:
            kv_heads = cfg.int(key)
            break
    if q_heads % kv_heads:
        divisors = [d for d in range(1, q_heads + 1) if q_heads % d == 0]
        raise CatalogError(
            f"{cfg.name}: config field '{kv_keys[0]}' = {kv_heads} does not divide "
            f"{q_key} = {q_heads}; valid: one of {divisors}"
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


def _sliding_flags(cfg: _Config, n_layers: int) -> tuple[list[bool], int | None]:
    """Which layers use a sliding window, and its width."""
    window = cfg.get("sliding_window")
    if "use_sliding_window" in cfg.fields or "use_sliding_window" in cfg.defaults:
        if not cfg.flag("use_sliding_window"):
            window = None
    if window is not None:
        window = cfg.check_int("sliding_window", window)

    layer_types = cfg.fields.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != n_layers:
            size = len(layer_types) if isinstance(layer_types, list) else type(layer_types).__name__
            raise CatalogError(
                f"{cfg.name}: config field 'layer_types' has {size} entries; it must list "
                f"one type for each of the {n_layers} layers"
            )
        flags = []
        for i, kind in enumerate(layer_types):
            if kind not in ("sliding_attention", "full_attention"):
                raise cfg.fail(f"layer_types[{i}]", kind, "valid: 'sliding_attention' or 'full_attention'")
            flags.append(kind == "sliding_attention")
        if any(flags) and window is None:
            raise CatalogError(
                f"{cfg.name}: config field 'layer_types' names sliding_attention layers but "
                f"'sliding_window' = {cfg.get('sliding_window')!r}; give a positive window"
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
    return [True] * n_layers, window  # Mistral v0.1: every layer is windowed


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------


def _gpt2(cfg: _Config) -> _Shape:
    hidden = cfg.int("n_embd", "hidden_size")
    n_layers = cfg.int("n_layer", "num_hidden_layers")
    heads = cfg.int("n_head", "num_attention_heads")
    if hidden % heads:
        raise CatalogError(
            f"{cfg.name}: config field 'n_embd' = {hidden} is not divisible by n_head = "
            f"{heads}; use a multiple of {heads}"
        )
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
    total = vocab * hidden + positions * hidden + n_layers * per_layer + 2 * hidden
    if not cfg.tied_embeddings():
        total += vocab * hidden
    layer = _layer("attention", q_heads=heads, kv_heads=heads, head_dim=hidden // heads, window_tokens=None)
    return _Shape(hidden, vocab, [layer] * n_layers, total, total, max_context_tokens=positions)


def _opt(cfg: _Config) -> _Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    heads = cfg.int("num_attention_heads")
    if hidden % heads:
        raise CatalogError(
            f"{cfg.name}: config field 'hidden_size' = {hidden} is not divisible by "
            f"num_attention_heads = {heads}; use a multiple of {heads}"
        )
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
    # OPT's learned positions keep 2 extra rows (the padding offset).
    total = vocab * proj_dim + (positions + 2) * hidden + n_layers * per_layer
    if proj_dim != hidden:
        total += 2 * hidden * proj_dim  # project_in, project_out
    if cfg.flag("do_layer_norm_before", True) and not cfg.flag("_remove_final_layer_norm"):
        total += 2 * hidden
    if not cfg.tied_embeddings():
        total += vocab * proj_dim
    layer = _layer("attention", q_heads=heads, kv_heads=heads, head_dim=hidden // heads, window_tokens=None)
    return _Shape(hidden, vocab, [layer] * n_layers, total, total, max_context_tokens=positions)


def _decoder(cfg: _Config) -> _Shape:
    """Llama-style decoders: llama, mistral, mixtral, qwen2/3, qwen3_moe, gemma 1/2/3."""
    hidden = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    q_heads, kv_heads, head_dim = _heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    flags, window = _sliding_flags(cfg, n_layers)
    intermediate = cfg.int("intermediate_size")

    q_out, kv_out = q_heads * head_dim, kv_heads * head_dim
    attention = hidden * q_out + 2 * hidden * kv_out + q_out * hidden
    if cfg.flag("attention_bias"):
        attention += q_out + 2 * kv_out + hidden
    elif cfg.model_type == "qwen2":
        attention += q_out + 2 * kv_out  # Qwen2 always has Q/K/V biases
    if cfg.model_type in ("qwen3", "qwen3_moe", "gemma3_text"):
        attention += 2 * head_dim  # q_norm, k_norm
    norms = (4 if cfg.model_type in ("gemma2", "gemma3_text") else 2) * hidden
    dense_mlp = 3 * hidden * intermediate + ((2 * intermediate + hidden) if cfg.flag("mlp_bias") else 0)

    moe = None
    mlp_total = mlp_active = n_layers * dense_mlp
    if cfg.model_type == "mixtral" or cfg.has("num_local_experts"):
        experts = cfg.int("num_local_experts")
        k = _experts_per_token(cfg, experts)
        per_expert = 3 * hidden * intermediate
        router = hidden * experts
        moe = MoE(num_experts=experts, experts_per_token=k, moe_layers=n_layers, params_per_expert=per_expert)
        mlp_total = n_layers * (experts * per_expert + router)
        mlp_active = n_layers * (k * per_expert + router)
    elif cfg.model_type == "qwen3_moe":
        experts = cfg.int("num_experts")
        k = _experts_per_token(cfg, experts)
        per_expert = 3 * hidden * cfg.int("moe_intermediate_size")
        step = cfg.int("decoder_sparse_step")
        dense_only = set(cfg.get("mlp_only_layers") or [])
        moe_layers = [i for i in range(n_layers) if i not in dense_only and (i + 1) % step == 0]
        n_moe = len(moe_layers)
        n_dense = n_layers - n_moe
        if n_moe:
            moe = MoE(num_experts=experts, experts_per_token=k, moe_layers=n_moe, params_per_expert=per_expert)
        router = hidden * experts
        mlp_total = n_dense * dense_mlp + n_moe * (experts * per_expert + router)
        mlp_active = n_dense * dense_mlp + n_moe * (k * per_expert + router)

    shared = vocab * hidden + hidden + n_layers * (attention + norms)
    if not cfg.tied_embeddings():
        shared += vocab * hidden
    layers = [
        _layer(
            "attention",
            q_heads=q_heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            window_tokens=window if sliding else None,
        )
        for sliding in flags
    ]
    return _Shape(
        hidden,
        vocab,
        layers,
        shared + mlp_total,
        shared + mlp_active,
        moe=moe,
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


def _experts_per_token(cfg: _Config, experts: int) -> int:
    k = cfg.int("num_experts_per_tok")
    if k > experts:
        raise cfg.fail("num_experts_per_tok", k, f"it must be at most the number of experts, {experts}")
    return k


def _deepseek(cfg: _Config) -> _Shape:
    """DeepSeek V2/V3 (and Kimi K2): multi-head latent attention + fine-grained experts."""
    hidden = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    heads = cfg.int("num_attention_heads")
    kv_lora = cfg.int("kv_lora_rank")
    rope = cfg.int("qk_rope_head_dim")
    nope = cfg.int("qk_nope_head_dim")
    v_dim = cfg.int("v_head_dim")
    q_lora = cfg.get("q_lora_rank")

    if q_lora is None:
        q_proj = hidden * heads * (nope + rope)
    else:
        q_lora = cfg.check_int("q_lora_rank", q_lora)
        q_proj = hidden * q_lora + q_lora + q_lora * heads * (nope + rope)  # + q_a_layernorm
    kv_proj = hidden * (kv_lora + rope) + kv_lora + kv_lora * heads * (nope + v_dim)
    attention = q_proj + kv_proj + heads * v_dim * hidden
    norms = 2 * hidden

    dense_mlp = 3 * hidden * cfg.int("intermediate_size")
    experts = cfg.int("n_routed_experts", "num_experts", default=0, minimum=0)
    first_dense = cfg.int("first_k_dense_replace", minimum=0)
    freq = cfg.int("moe_layer_freq")
    moe_flags = [experts > 0 and i >= first_dense and i % freq == 0 for i in range(n_layers)]
    n_moe = sum(moe_flags)

    moe = None
    mlp_total = mlp_active = (n_layers - n_moe) * dense_mlp
    if n_moe:
        k = _experts_per_token(cfg, experts)
        per_expert = 3 * hidden * cfg.int("moe_intermediate_size")
        n_shared = cfg.int("n_shared_experts", default=0, minimum=0)
        router = hidden * experts + (experts if cfg.get("topk_method") == "noaux_tc" else 0)
        moe = MoE(
            num_experts=experts,
            experts_per_token=k,
            moe_layers=n_moe,
            params_per_expert=per_expert,
            shared_experts=n_shared,
        )
        mlp_total += n_moe * ((experts + n_shared) * per_expert + router)
        mlp_active += n_moe * ((k + n_shared) * per_expert + router)

    shared = vocab * hidden + hidden + n_layers * (attention + norms)
    if not cfg.tied_embeddings():
        shared += vocab * hidden
    layer = _layer(
        "mla",
        q_heads=heads,
        kv_lora_rank=kv_lora,
        qk_rope_head_dim=rope,
        qk_nope_head_dim=nope,
        v_head_dim=v_dim,
    )
    return _Shape(
        hidden,
        vocab,
        [layer] * n_layers,
        shared + mlp_total,
        shared + mlp_active,
        moe=moe,
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


def _dt_rank(cfg: _Config, key: str, hidden: int) -> int:
    value = cfg.get(key)
    if value == "auto":
        return math.ceil(hidden / 16)
    return cfg.check_int(key, value)


def _mamba1_mixer(
    hidden: int, d_inner: int, d_state: int, d_conv: int, dt_rank: int, proj_bias: bool, conv_bias: bool
) -> int:
    """Parameters of one Mamba-1 mixer (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj)."""
    return (
        hidden * 2 * d_inner
        + (2 * d_inner if proj_bias else 0)
        + d_inner * d_conv
        + (d_inner if conv_bias else 0)
        + d_inner * (dt_rank + 2 * d_state)
        + dt_rank * d_inner
        + d_inner
        + d_inner * d_state
        + d_inner
        + d_inner * hidden
        + (hidden if proj_bias else 0)
    )


def _mamba1(cfg: _Config) -> _Shape:
    hidden = cfg.int("hidden_size", "d_model")
    n_layers = cfg.int("num_hidden_layers", "n_layer")
    vocab = cfg.int("vocab_size")
    d_inner = cfg.int("intermediate_size", default=0) or cfg.int("expand") * hidden
    d_state = cfg.int("state_size", "d_state")
    d_conv = cfg.int("conv_kernel", "d_conv")
    dt_rank = _dt_rank(cfg, "time_step_rank", hidden)
    mixer = _mamba1_mixer(
        hidden, d_inner, d_state, d_conv, dt_rank, cfg.flag("use_bias"), cfg.flag("use_conv_bias", True)
    )
    total = vocab * hidden + n_layers * (mixer + hidden) + hidden
    if not cfg.tied_embeddings():
        total += vocab * hidden
    layer = _layer("ssm", version=1, d_inner=d_inner, d_state=d_state, d_conv=d_conv, n_groups=1, n_heads=None)
    return _Shape(hidden, vocab, [layer] * n_layers, total, total, max_context_tokens=None)


def _mamba2(cfg: _Config) -> _Shape:
    hidden = cfg.int("hidden_size", "d_model")
    n_layers = cfg.int("num_hidden_layers", "n_layer")
    vocab = cfg.int("vocab_size")
    d_inner = cfg.int("intermediate_size", default=0) or cfg.int("expand") * hidden
    d_state = cfg.int("state_size", "d_state")
    d_conv = cfg.int("conv_kernel", "d_conv")
    groups = cfg.int("n_groups")
    n_heads = cfg.int("num_heads")
    head_dim = cfg.int("head_dim", default=d_inner // n_heads)
    if n_heads * head_dim != d_inner:
        raise CatalogError(
            f"{cfg.name}: config field 'num_heads' = {n_heads} times head_dim = {head_dim} is "
            f"{n_heads * head_dim}, but the inner width (expand x hidden_size) is {d_inner}; "
            f"they must be equal"
        )
    if n_heads % groups:
        raise cfg.fail("n_groups", groups, f"it must divide num_heads = {n_heads}")
    conv_dim = d_inner + 2 * groups * d_state
    bias = cfg.flag("use_bias")
    mixer = (
        hidden * (d_inner + conv_dim + n_heads)
        + ((d_inner + conv_dim + n_heads) if bias else 0)
        + conv_dim * d_conv
        + (conv_dim if cfg.flag("use_conv_bias", True) else 0)
        + 3 * n_heads  # dt_bias, A_log, D
        + d_inner  # gated RMSNorm
        + d_inner * hidden
        + (hidden if bias else 0)
    )
    total = vocab * hidden + n_layers * (mixer + hidden) + hidden
    if not cfg.tied_embeddings():
        total += vocab * hidden
    layer = _layer("ssm", version=2, d_inner=d_inner, d_state=d_state, d_conv=d_conv, n_groups=groups, n_heads=n_heads)
    return _Shape(hidden, vocab, [layer] * n_layers, total, total, max_context_tokens=None)


def _jamba(cfg: _Config) -> _Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    q_heads, kv_heads, head_dim = _heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    intermediate = cfg.int("intermediate_size")

    block_types = cfg.fields.get("layers_block_type")
    if block_types is not None:
        if not isinstance(block_types, list) or len(block_types) != n_layers:
            raise CatalogError(
                f"{cfg.name}: config field 'layers_block_type' must list 'attention' or "
                f"'mamba' for each of the {n_layers} layers"
            )
        for i, kind in enumerate(block_types):
            if kind not in ("attention", "mamba"):
                raise cfg.fail(f"layers_block_type[{i}]", kind, "valid: 'attention' or 'mamba'")
        is_attention = [kind == "attention" for kind in block_types]
    else:
        period = cfg.int("attn_layer_period")
        offset = cfg.int("attn_layer_offset", minimum=0)
        if offset >= period:
            raise cfg.fail("attn_layer_offset", offset, f"it must be below attn_layer_period = {period}")
        is_attention = [i % period == offset for i in range(n_layers)]
    e_period = cfg.int("expert_layer_period")
    e_offset = cfg.int("expert_layer_offset", minimum=0)
    experts = cfg.int("num_experts")
    is_moe = [experts > 1 and i % e_period == e_offset for i in range(n_layers)]

    d_inner = cfg.int("mamba_expand") * hidden
    d_state = cfg.int("mamba_d_state")
    d_conv = cfg.int("mamba_d_conv")
    dt_rank = _dt_rank(cfg, "mamba_dt_rank", hidden)
    # Jamba's mixer adds RMSNorms on dt, B and C to the Mamba-1 mixer.
    mixer = _mamba1_mixer(
        hidden, d_inner, d_state, d_conv, dt_rank, cfg.flag("mamba_proj_bias"), cfg.flag("mamba_conv_bias", True)
    )
    mixer += dt_rank + 2 * d_state
    attention = hidden * q_heads * head_dim + 2 * hidden * kv_heads * head_dim + q_heads * head_dim * hidden

    per_expert = 3 * hidden * intermediate
    k = _experts_per_token(cfg, experts) if any(is_moe) else 1
    router = hidden * experts
    total = active = vocab * hidden + hidden + n_layers * 2 * hidden
    if not cfg.tied_embeddings():
        total += vocab * hidden
        active += vocab * hidden
    for attn, moe_layer in zip(is_attention, is_moe):
        mixing = attention if attn else mixer
        total += mixing + (experts * per_expert + router if moe_layer else per_expert)
        active += mixing + (k * per_expert + router if moe_layer else per_expert)

    n_moe = sum(is_moe)
    moe = (
        MoE(num_experts=experts, experts_per_token=k, moe_layers=n_moe, params_per_expert=per_expert) if n_moe else None
    )
    window = cfg.get("sliding_window")
    window = cfg.check_int("sliding_window", window) if window is not None else None
    attention_layer = _layer("attention", q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim, window_tokens=window)
    mamba_layer = _layer("ssm", version=1, d_inner=d_inner, d_state=d_state, d_conv=d_conv, n_groups=1, n_heads=None)
    layers = [attention_layer if attn else mamba_layer for attn in is_attention]
    return _Shape(
        hidden, vocab, layers, total, active, moe=moe, max_context_tokens=cfg.max_context("max_position_embeddings")
    )


_FAMILIES = {
    "gpt2": _gpt2,
    "opt": _opt,
    "llama": _decoder,
    "mistral": _decoder,
    "mixtral": _decoder,
    "qwen2": _decoder,
    "qwen3": _decoder,
    "qwen3_moe": _decoder,
    "gemma": _decoder,
    "gemma2": _decoder,
    "gemma3_text": _decoder,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "kimi_k2": _deepseek,
    "mamba": _mamba1,
    "falcon_mamba": _mamba1,
    "mamba2": _mamba2,
    "jamba": _jamba,
}


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line: where, then what."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = first.get("msg", str(exc)).replace("\n", " ")
    return f"{where}: {message}" if where else message
