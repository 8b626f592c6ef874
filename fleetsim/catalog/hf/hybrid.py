"""Hybrids of attention with a fixed-state mixer: Jamba, Nemotron-H, Qwen3-Next and Qwen3.5.

- Jamba: Mamba-1 layers with one attention layer every ``attn_layer_period`` (or as
  ``layers_block_type`` lists them) and experts every ``expert_layer_period``.
- Nemotron-H (nemotron_h): ``hybrid_override_pattern`` names each layer: ``M`` Mamba-2,
  ``*`` attention, ``-`` a squared-ReLU MLP (up and down projections, no gate), ``E`` a MoE of
  such MLPs with one shared expert (Nemotron 3). The Mamba inner width is mamba_num_heads x
  mamba_head_dim.
- Qwen3-Next (qwen3_next) and Qwen3.5 (qwen3_5, qwen3_5_moe): Gated DeltaNet linear attention,
  with gated full attention (q_proj also yields a sigmoid output gate; q/k RMSNorm) on every
  ``full_attention_interval``-th layer or as ``layer_types`` says; Qwen3-Next and Qwen3.5-MoE
  route to experts beside one gated shared expert, Qwen3.5 is dense.
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
from fleetsim.catalog.hf.ssm import check_mamba2_heads, dt_rank, mamba1_mixer, mamba2_mixer
from fleetsim.errors import CatalogError

_QWEN_HYBRID = {"tie_word_embeddings": False, "full_attention_interval": 4, "linear_conv_kernel_dim": 4}
DEFAULTS: dict[str, dict] = {
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
    "nemotron_h": {
        "tie_word_embeddings": False,
        "conv_kernel": 4,
        "n_groups": 8,
        "use_bias": False,
        "use_conv_bias": True,
        "mlp_bias": False,
        "attention_bias": False,
    },
    "qwen3_next": {**_QWEN_HYBRID, "decoder_sparse_step": 1, "mlp_only_layers": []},
    "qwen3_5_text": _QWEN_HYBRID,
    "qwen3_5_moe_text": {**_QWEN_HYBRID, "decoder_sparse_step": 1, "mlp_only_layers": []},
}


def jamba(cfg: HfConfig) -> Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    q_heads, kv_heads, head_dim = heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    intermediate = cfg.int("intermediate_size")

    types = cfg.layer_types(n_layers, ("attention", "mamba"), key="layers_block_type")
    if types is not None:
        is_attention = [t == "attention" for t in types]
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
    rank = dt_rank(cfg, "mamba_dt_rank", hidden)
    # Jamba's mixer adds RMSNorms on dt, B and C to the Mamba-1 mixer.
    mixer = mamba1_mixer(
        hidden, d_inner, d_state, d_conv, rank, cfg.flag("mamba_proj_bias"), cfg.flag("mamba_conv_bias", True)
    )
    mixer += rank + 2 * d_state
    attention = attention_params(hidden, q_heads, kv_heads, head_dim)
    per_expert = 3 * hidden * intermediate
    k = experts_per_token(cfg, experts) if any(is_moe) else 1

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(hidden + n_layers * 2 * hidden)  # final norm; two norms per layer
    for attn, moe_layer in zip(is_attention, is_moe):
        params.add(attention if attn else mixer)
        if moe_layer:
            routed_moe(params, experts=experts, k=k, per_expert=per_expert, router=hidden * experts)
        else:
            params.add(per_expert)
    window = cfg.optional_int("sliding_window")
    attention_layer = layer("attention", q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim, window_tokens=window)
    mamba_layer = layer("ssm", version=1, d_inner=d_inner, d_state=d_state, d_conv=d_conv, n_groups=1, n_heads=None)
    return Shape(
        hidden,
        vocab,
        [attention_layer if attn else mamba_layer for attn in is_attention],
        params,
        moe=moe_spec(experts, k, sum(is_moe), per_expert),
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


def nemotron_h(cfg: HfConfig) -> Shape:
    hidden = cfg.int("hidden_size")
    vocab = cfg.int("vocab_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    # M Mamba-2, * attention, - MLP, E MoE
    pattern = cfg.layer_types(n_layers, ("M", "*", "-", "E"), key="hybrid_override_pattern")
    if pattern is None:
        raise CatalogError(
            f"{cfg.name}: config field 'hybrid_override_pattern' is missing; a nemotron_h config names "
            f"each of its {n_layers} layers with M (Mamba-2), * (attention), - (MLP) or E (MoE)"
        )

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(hidden + n_layers * hidden)  # norm_f; one pre-norm per block
    layers, moe = [], None

    if "M" in pattern:
        n_heads = cfg.int("mamba_num_heads")
        head_dim = cfg.int("mamba_head_dim")
        d_inner = n_heads * head_dim
        d_state = cfg.int("ssm_state_size")
        d_conv = cfg.int("conv_kernel")
        groups = cfg.int("n_groups")
        check_mamba2_heads(cfg, d_inner, n_heads, head_dim, groups, ("mamba_num_heads", "n_groups"))
        mixer = mamba2_mixer(
            hidden, d_inner, d_state, d_conv, groups, n_heads, cfg.flag("use_bias"), cfg.flag("use_conv_bias", True)
        )
        params.add(pattern.count("M") * mixer)
        mamba = layer(
            "ssm", version=2, d_inner=d_inner, d_state=d_state, d_conv=d_conv, n_groups=groups, n_heads=n_heads
        )
    if "*" in pattern:
        q, kv = cfg.int("num_attention_heads"), cfg.int("num_key_value_heads")
        hd = cfg.int("head_dim", "attention_head_dim", default=hidden // q)
        biased = cfg.flag("attention_bias")
        params.add(pattern.count("*") * attention_params(hidden, q, kv, hd, qkv_bias=biased, o_bias=biased))
        attention = layer(
            "attention", q_heads=q, kv_heads=kv, head_dim=hd, window_tokens=cfg.optional_int("sliding_window")
        )
    bias = cfg.flag("mlp_bias")

    def relu2_mlp(width: int) -> int:  # up_proj and down_proj, no gate
        return 2 * hidden * width + ((width + hidden) if bias else 0)

    if "-" in pattern:
        params.add(pattern.count("-") * relu2_mlp(cfg.int("intermediate_size")))
    if "E" in pattern:
        experts = cfg.int("n_routed_experts")
        k = experts_per_token(cfg, experts)
        per_expert = relu2_mlp(cfg.int("moe_intermediate_size"))
        n_shared = cfg.int("n_shared_experts", default=1)
        shared = n_shared * relu2_mlp(cfg.int("moe_shared_expert_intermediate_size"))
        for _ in range(pattern.count("E")):  # router weight + its score-correction bias
            routed_moe(
                params, experts=experts, k=k, per_expert=per_expert, router=hidden * experts + experts, shared=shared
            )
        moe = moe_spec(experts, k, pattern.count("E"), per_expert, shared=n_shared)

    for char in pattern:  # only mixers define a layer's kind; MLP/MoE blocks carry no state
        if char == "M":
            layers.append(mamba)
        elif char == "*":
            layers.append(attention)
    return Shape(hidden, vocab, layers, params, moe=moe, max_context_tokens=cfg.max_context("max_position_embeddings"))


def qwen_hybrid(cfg: HfConfig) -> Shape:
    hidden = cfg.int("hidden_size")
    n_layers = cfg.layer_count("num_hidden_layers")
    vocab = cfg.int("vocab_size")
    q, kv, hd = heads(cfg, hidden, "num_attention_heads", ("num_key_value_heads",))
    types = cfg.layer_types(n_layers, ("linear_attention", "full_attention"))
    if types is None:
        interval = cfg.int("full_attention_interval")
        types = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n_layers)]

    key_heads, value_heads = cfg.int("linear_num_key_heads"), cfg.int("linear_num_value_heads")
    key_dim, value_dim = cfg.int("linear_key_head_dim"), cfg.int("linear_value_head_dim")
    kernel = cfg.int("linear_conv_kernel_dim")
    if value_heads % key_heads:
        raise cfg.fail(
            "linear_num_value_heads", value_heads, f"it must be a multiple of linear_num_key_heads = {key_heads}"
        )
    keys, values = key_heads * key_dim, value_heads * value_dim
    gdn = (
        hidden * (2 * keys + 2 * values)  # q, k, v and the output gate z
        + hidden * 2 * value_heads  # beta and alpha (decay) per value head
        + (2 * keys + values) * kernel  # depthwise causal conv over q, k, v (no bias)
        + 2 * value_heads  # dt_bias, A_log
        + value_dim  # gated RMSNorm
        + values * hidden  # out_proj
    )
    gated = cfg.model_type == "qwen3_next" or cfg.flag("attn_output_gate", True)
    attention = attention_params(hidden, q, kv, hd, qkv_bias=cfg.flag("attention_bias"), qk_norm=True, gated=gated)

    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(hidden + n_layers * 2 * hidden)
    params.add(sum(attention if t == "full_attention" else gdn for t in types))

    moe = None
    if cfg.model_type == "qwen3_5_text":
        params.add(n_layers * gated_mlp_params(hidden, cfg.int("intermediate_size")))
    else:
        experts = cfg.int("num_experts")
        k = experts_per_token(cfg, experts)
        per_expert = gated_mlp_params(hidden, cfg.int("moe_intermediate_size"))
        shared = gated_mlp_params(hidden, cfg.int("shared_expert_intermediate_size")) + hidden  # + its gate
        step = cfg.int("decoder_sparse_step")
        dense_only = cfg.index_set("mlp_only_layers")
        is_moe = [i not in dense_only and (i + 1) % step == 0 for i in range(n_layers)]
        for moe_layer in is_moe:
            if moe_layer:
                routed_moe(params, experts=experts, k=k, per_expert=per_expert, router=hidden * experts, shared=shared)
            else:
                params.add(gated_mlp_params(hidden, cfg.int("intermediate_size")))
        moe = moe_spec(experts, k, sum(is_moe), per_expert, shared=1)

    full = layer("attention", q_heads=q, kv_heads=kv, head_dim=hd, window_tokens=None)
    linear = layer(
        "linear_attention",
        key_heads=key_heads,
        value_heads=value_heads,
        key_head_dim=key_dim,
        value_head_dim=value_dim,
        conv_kernel=kernel,
    )
    return Shape(
        hidden,
        vocab,
        [full if t == "full_attention" else linear for t in types],
        params,
        moe=moe,
        max_context_tokens=cfg.max_context("max_position_embeddings"),
    )


FAMILIES = {
    "jamba": jamba,
    "nemotron_h": nemotron_h,
    "qwen3_next": qwen_hybrid,
    "qwen3_5_text": qwen_hybrid,
    "qwen3_5_moe_text": qwen_hybrid,
}

# Multimodal wrappers whose language model is the text family named here.
WRAPPERS = {"qwen3_5": "qwen3_5_text", "qwen3_5_moe": "qwen3_5_moe_text"}

ARCHITECTURE_CLASSES = {
    "JambaForCausalLM": "jamba",
    "NemotronHForCausalLM": "nemotron_h",
    "Qwen3NextForCausalLM": "qwen3_next",
    "Qwen3_5ForConditionalGeneration": "qwen3_5",
    "Qwen3_5ForCausalLM": "qwen3_5_text",
    "Qwen3_5MoeForConditionalGeneration": "qwen3_5_moe",
    "Qwen3_5MoeForCausalLM": "qwen3_5_moe_text",
}
