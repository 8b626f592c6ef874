"""Decoders with mixture-of-experts MLPs: Mixtral, Qwen3-MoE, gpt-oss, Llama 4.

- Mixtral (and any Llama-style config with ``num_local_experts``): every layer routes to
  ``num_experts_per_tok`` of ``num_local_experts`` SwiGLU experts.
- Qwen3-MoE: experts on layers ``(i + 1) % decoder_sparse_step == 0`` not in ``mlp_only_layers``.
- gpt-oss: biased q/k/v/o projections, one learned attention-sink logit per head (a parameter,
  no KV), sliding (128) and full layers alternating by ``layer_types``; experts with biased
  gate_up/down projections and a biased router. The published checkpoint stores the experts in
  MXFP4 (``quantization_config``); counts here are parameters, whatever their storage.
- Llama 4 (llama4_text, or llama4 with a text_config): MoE on ``moe_layers`` (default every
  ``interleave_moe_layer_step``-th layer), each with one shared expert of ``intermediate_size``
  beside the routed ones, dense layers of ``intermediate_size_mlp``; layers with RoPE
  (``no_rope_layers[i] == 1``, by default all but every 4th) use chunked local attention of
  ``attention_chunk_size`` tokens, the NoPE layers are global. q/k norms are parameter-free L2.
"""

from __future__ import annotations

from fleetsim.catalog.hf.dense import (
    attention_layers,
    llama_attention_params,
    norms_per_layer,
    sliding_flags,
)
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

DEFAULTS: dict[str, dict] = {
    "mixtral": {"tie_word_embeddings": False},
    "qwen3_moe": {
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    },
    # transformers GptOssConfig defaults
    "gpt_oss": {"tie_word_embeddings": False, "sliding_window": 128, "attention_bias": True},
    # transformers Llama4TextConfig defaults
    "llama4_text": {
        "tie_word_embeddings": False,
        "interleave_moe_layer_step": 1,
        "no_rope_layer_interval": 4,
        "attention_chunk_size": 8192,
    },
}


def _decoder_start(cfg: HfConfig):
    hidden = cfg.int("hidden_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    q_heads, kv_heads, head_dim = heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(hidden)  # final norm
    return hidden, n_layers, vocab, (q_heads, kv_heads, head_dim), params


def mixtral_or_qwen3_moe(cfg: HfConfig) -> Shape:
    hidden, n_layers, vocab, (q, kv, hd), params = _decoder_start(cfg)
    flags, window = sliding_flags(cfg, n_layers)
    params.add(n_layers * (llama_attention_params(cfg, hidden, q, kv, hd) + norms_per_layer(cfg, hidden)))
    dense_mlp = gated_mlp_params(hidden, cfg.int("intermediate_size"), cfg.flag("mlp_bias"))
    if cfg.model_type == "qwen3_moe":
        experts = cfg.int("num_experts")
        per_expert = 3 * hidden * cfg.int("moe_intermediate_size")
        step = cfg.int("decoder_sparse_step")
        dense_only = cfg.index_set("mlp_only_layers")
        is_moe = [i not in dense_only and (i + 1) % step == 0 for i in range(n_layers)]
    else:  # mixtral, or a Llama-style config with num_local_experts
        experts = cfg.int("num_local_experts")
        per_expert = 3 * hidden * cfg.int("intermediate_size")
        is_moe = [True] * n_layers
    k = experts_per_token(cfg, experts)
    for moe_layer in is_moe:
        if moe_layer:
            routed_moe(params, experts=experts, k=k, per_expert=per_expert, router=hidden * experts)
        else:
            params.add(dense_mlp)
    return Shape(
        hidden,
        vocab,
        attention_layers(q, kv, hd, flags, window),
        params,
        moe=moe_spec(experts, k, sum(is_moe), per_expert),
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


def gpt_oss(cfg: HfConfig) -> Shape:
    hidden, n_layers, vocab, (q, kv, hd), params = _decoder_start(cfg)
    flags, window = sliding_flags(cfg, n_layers)
    biased = cfg.flag("attention_bias", True)
    attention = attention_params(hidden, q, kv, hd, qkv_bias=biased, o_bias=biased) + q  # + one sink per head
    inter = cfg.int("intermediate_size")
    experts = cfg.int("num_local_experts", "num_experts")
    k = experts_per_token(cfg, experts, "num_experts_per_tok", "experts_per_token")
    # gate_up_proj (hidden -> 2 x inter) and down_proj (inter -> hidden), both biased
    per_expert = 3 * hidden * inter + 2 * inter + hidden
    for _ in range(n_layers):
        params.add(attention + 2 * hidden)  # + input / post-attention RMSNorm
        routed_moe(params, experts=experts, k=k, per_expert=per_expert, router=hidden * experts + experts)
    return Shape(
        hidden,
        vocab,
        attention_layers(q, kv, hd, flags, window),
        params,
        moe=moe_spec(experts, k, n_layers, per_expert),
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


def llama4(cfg: HfConfig) -> Shape:
    hidden, n_layers, vocab, (q, kv, hd), params = _decoder_start(cfg)
    uses_rope = cfg.int_list("no_rope_layers", n_layers)
    if not uses_rope:  # Llama4TextConfig: absent or empty means the default cadence
        interval = cfg.int("no_rope_layer_interval")
        uses_rope = [int((i + 1) % interval != 0) for i in range(n_layers)]
    chunk = cfg.optional_int("attention_chunk_size")
    moe_layers = cfg.get("moe_layers")
    if moe_layers is None:
        step = cfg.int("interleave_moe_layer_step")
        moe_layers = list(range(step - 1, n_layers, step))
    elif not isinstance(moe_layers, list) or not all(isinstance(i, int) and 0 <= i < n_layers for i in moe_layers):
        raise cfg.fail("moe_layers", "<not a list of layer indices>", f"list layer indices 0..{n_layers - 1}")
    is_moe = set(moe_layers)

    experts = cfg.int("num_local_experts")
    k = experts_per_token(cfg, experts)
    per_expert = gated_mlp_params(hidden, cfg.int("intermediate_size"))
    dense_mlp = gated_mlp_params(hidden, cfg.int("intermediate_size_mlp"))
    attention = attention_params(hidden, q, kv, hd, qkv_bias=cfg.flag("attention_bias"))
    layers = []
    for i in range(n_layers):
        params.add(attention + 2 * hidden)
        if i in is_moe:  # routed experts + one shared expert of the same width
            routed_moe(params, experts=experts, k=k, per_expert=per_expert, router=hidden * experts, shared=per_expert)
        else:
            params.add(dense_mlp)
        chunked = chunk if uses_rope[i] else None
        layers.append(layer("attention", q_heads=q, kv_heads=kv, head_dim=hd, window_tokens=None, chunk_tokens=chunked))
    return Shape(
        hidden,
        vocab,
        layers,
        params,
        moe=moe_spec(experts, k, len(is_moe), per_expert, shared=1),
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


FAMILIES = {
    "mixtral": mixtral_or_qwen3_moe,
    "qwen3_moe": mixtral_or_qwen3_moe,
    "gpt_oss": gpt_oss,
    "llama4_text": llama4,
}

ARCHITECTURE_CLASSES = {
    "MixtralForCausalLM": "mixtral",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "GptOssForCausalLM": "gpt_oss",
    "Llama4ForCausalLM": "llama4_text",
    "Llama4ForConditionalGeneration": "llama4",
}
