"""Multi-head latent attention: DeepSeek V2/V3 (and Kimi K2), DeepSeek-V3.2's sparse attention.

MLA layers cache one latent (``kv_lora_rank``) and one RoPE key (``qk_rope_head_dim``) per token;
``first_k_dense_replace`` dense layers precede routed + shared experts on every
``moe_layer_freq``-th layer. Multi-token-prediction layers are not counted: they are not part of
the published 671B and serving stacks load them only for speculative decoding.

DeepSeek-V3.2 (deepseek_v32) adds to every layer a lightning indexer -- ``index_n_heads`` query
heads of ``index_head_dim`` from the q latent (wq_b), one key of ``index_head_dim`` from the
hidden state (wk, LayerNorm'd), per-head weights (weights_proj) -- whose keys are cached for every
token and pick the ``index_topk`` tokens the MLA attends to.
"""

from __future__ import annotations

from fleetsim.catalog.hf.fields import HfConfig
from fleetsim.catalog.hf.shape import Params, Shape, embeddings, experts_per_token, layer, moe_spec, routed_moe

_DEEPSEEK = {"tie_word_embeddings": False, "moe_layer_freq": 1, "first_k_dense_replace": 0}
DEFAULTS: dict[str, dict] = {
    "deepseek_v2": _DEEPSEEK,
    "deepseek_v3": _DEEPSEEK,
    "kimi_k2": _DEEPSEEK,
    # transformers DeepseekV32Config / the DeepSeek-V3.2 release's indexer defaults
    "deepseek_v32": {**_DEEPSEEK, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048},
}


def deepseek(cfg: HfConfig) -> Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    n_heads = cfg.int("num_attention_heads")
    kv_lora = cfg.int("kv_lora_rank")
    rope = cfg.int("qk_rope_head_dim")
    nope = cfg.int("qk_nope_head_dim")
    v_dim = cfg.int("v_head_dim")
    q_lora = cfg.optional_int("q_lora_rank")

    if q_lora is None:
        q_proj = hidden * n_heads * (nope + rope)
    else:
        q_proj = hidden * q_lora + q_lora + q_lora * n_heads * (nope + rope)  # + q_a_layernorm
    kv_proj = hidden * (kv_lora + rope) + kv_lora + kv_lora * n_heads * (nope + v_dim)
    attention = q_proj + kv_proj + n_heads * v_dim * hidden
    fields = dict(q_heads=n_heads, kv_lora_rank=kv_lora, qk_rope_head_dim=rope, qk_nope_head_dim=nope, v_head_dim=v_dim)
    kind = "mla"
    if cfg.model_type == "deepseek_v32":
        kind, indexer, index_fields = "mla_sparse", *_indexer(cfg, hidden, q_lora)
        attention += indexer
        fields.update(index_fields)

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(hidden + n_layers * (attention + 2 * hidden))  # final norm; per layer attention + 2 norms

    dense_mlp = 3 * hidden * cfg.int("intermediate_size")
    experts = cfg.int("n_routed_experts", "num_experts", default=0, minimum=0)
    first_dense = cfg.int("first_k_dense_replace", minimum=0)
    freq = cfg.int("moe_layer_freq")
    is_moe = [experts > 0 and i >= first_dense and i % freq == 0 for i in range(n_layers)]
    k = experts_per_token(cfg, experts) if any(is_moe) else 1
    per_expert = 3 * hidden * cfg.int("moe_intermediate_size") if any(is_moe) else 1
    n_shared = cfg.int("n_shared_experts", default=0, minimum=0)
    router = hidden * experts + (experts if cfg.get("topk_method") == "noaux_tc" else 0)  # + score bias
    for moe_layer in is_moe:
        if moe_layer:
            routed_moe(params, experts=experts, k=k, per_expert=per_expert, router=router, shared=n_shared * per_expert)
        else:
            params.add(dense_mlp)
    return Shape(
        hidden,
        vocab,
        [layer(kind, **fields)] * n_layers,
        params,
        moe=moe_spec(experts, k, sum(is_moe), per_expert, shared=n_shared),
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


def _indexer(cfg: HfConfig, hidden: int, q_lora: int | None) -> tuple[int, dict]:
    """Parameters of one layer's lightning indexer, and the layer fields it adds."""
    index_heads = cfg.int("index_n_heads")
    index_dim = cfg.int("index_head_dim")
    topk = cfg.int("index_topk")
    if q_lora is None:
        raise cfg.fail("q_lora_rank", None, "DeepSeek-V3.2's indexer reads the q latent; give q_lora_rank")
    params = (
        q_lora * index_heads * index_dim  # wq_b
        + hidden * index_dim  # wk
        + 2 * index_dim  # k_norm (LayerNorm: weight and bias)
        + hidden * index_heads  # weights_proj
    )
    return params, dict(index_n_heads=index_heads, index_head_dim=index_dim, index_topk=topk)


FAMILIES = {"deepseek_v2": deepseek, "deepseek_v3": deepseek, "kimi_k2": deepseek, "deepseek_v32": deepseek}

ARCHITECTURE_CLASSES = {
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "DeepseekV32ForCausalLM": "deepseek_v32",
}
