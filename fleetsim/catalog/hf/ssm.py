"""State-space models: Mamba 1 (mamba, falcon_mamba) and Mamba 2, and the mixers hybrids reuse.

Each layer keeps a fixed recurrent state per sequence (conv state + SSM state), whatever the
sequence length.
"""

from __future__ import annotations

import math

from fleetsim.catalog.hf.fields import HfConfig
from fleetsim.catalog.hf.shape import Params, Shape, embeddings, layer
from fleetsim.errors import CatalogError

_MAMBA1 = {
    "state_size": 16,
    "conv_kernel": 4,
    "expand": 2,
    "time_step_rank": "auto",
    "use_bias": False,
    "use_conv_bias": True,
}
DEFAULTS: dict[str, dict] = {
    "mamba": {"tie_word_embeddings": True, **_MAMBA1},
    "falcon_mamba": {"tie_word_embeddings": False, **_MAMBA1},
    "mamba2": {
        "tie_word_embeddings": False,
        "state_size": 128,
        "conv_kernel": 4,
        "expand": 2,
        "n_groups": 1,
        "use_bias": False,
        "use_conv_bias": True,
    },
}


def dt_rank(cfg: HfConfig, key: str, hidden: int) -> int:
    value = cfg.get(key)
    if value == "auto":
        return math.ceil(hidden / 16)
    return cfg.check_int(key, value)


def mamba1_mixer(
    hidden: int, d_inner: int, d_state: int, d_conv: int, rank: int, proj_bias: bool, conv_bias: bool
) -> int:
    """Parameters of one Mamba-1 mixer (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj)."""
    return (
        hidden * 2 * d_inner
        + (2 * d_inner if proj_bias else 0)
        + d_inner * d_conv
        + (d_inner if conv_bias else 0)
        + d_inner * (rank + 2 * d_state)
        + rank * d_inner
        + d_inner
        + d_inner * d_state
        + d_inner
        + d_inner * hidden
        + (hidden if proj_bias else 0)
    )


def mamba2_mixer(
    hidden: int, d_inner: int, d_state: int, d_conv: int, groups: int, n_heads: int, bias: bool, conv_bias: bool
) -> int:
    """Parameters of one Mamba-2 mixer (in_proj to z, xBC and dt; conv1d; dt_bias, A_log, D;
    gated RMSNorm; out_proj)."""
    conv_dim = d_inner + 2 * groups * d_state
    return (
        hidden * (d_inner + conv_dim + n_heads)
        + ((d_inner + conv_dim + n_heads) if bias else 0)
        + conv_dim * d_conv
        + (conv_dim if conv_bias else 0)
        + 3 * n_heads  # dt_bias, A_log, D
        + d_inner  # gated RMSNorm
        + d_inner * hidden
        + (hidden if bias else 0)
    )


def check_mamba2_heads(cfg: HfConfig, d_inner: int, n_heads: int, head_dim: int, groups: int, keys: tuple) -> None:
    heads_key, groups_key = keys
    if n_heads * head_dim != d_inner:
        raise CatalogError(
            f"{cfg.name}: config field '{heads_key}' = {n_heads} times head_dim = {head_dim} is "
            f"{n_heads * head_dim}, but the inner width is {d_inner}; they must be equal"
        )
    if n_heads % groups:
        raise cfg.fail(groups_key, groups, f"it must divide {heads_key} = {n_heads}")


def _mamba_stack(cfg: HfConfig, mixer_of) -> Shape:
    """A pure Mamba model: embeddings, n_layers x (norm + mixer), a final norm."""
    hidden = cfg.int("hidden_size", "d_model")
    n_layers = cfg.layer_count("num_hidden_layers", "n_layer")
    vocab = cfg.int("vocab_size")
    d_inner = cfg.int("intermediate_size", default=0) or cfg.int("expand") * hidden
    d_state = cfg.int("state_size", "d_state")
    d_conv = cfg.int("conv_kernel", "d_conv")
    mixer, fields = mixer_of(hidden, d_inner, d_state, d_conv)
    params = Params()
    embeddings(cfg, params, vocab, hidden)
    params.add(n_layers * (mixer + hidden) + hidden)
    ssm = layer("ssm", d_inner=d_inner, d_state=d_state, d_conv=d_conv, **fields)
    return Shape(hidden, vocab, [ssm] * n_layers, params)


def mamba1(cfg: HfConfig) -> Shape:
    def mixer_of(hidden: int, d_inner: int, d_state: int, d_conv: int):
        rank = dt_rank(cfg, "time_step_rank", hidden)
        bias, conv_bias = cfg.flag("use_bias"), cfg.flag("use_conv_bias", True)
        return mamba1_mixer(hidden, d_inner, d_state, d_conv, rank, bias, conv_bias), _V1

    return _mamba_stack(cfg, mixer_of)


_V1 = dict(version=1, n_groups=1, n_heads=None)


def mamba2(cfg: HfConfig) -> Shape:
    return _mamba_stack(cfg, lambda *dims: _mamba2_mixer(cfg, *dims))


def _mamba2_mixer(cfg: HfConfig, hidden: int, d_inner: int, d_state: int, d_conv: int):
    groups = cfg.int("n_groups")
    n_heads = cfg.int("num_heads")
    head_dim = cfg.int("head_dim", default=d_inner // n_heads)
    check_mamba2_heads(cfg, d_inner, n_heads, head_dim, groups, ("num_heads", "n_groups"))
    mixer = mamba2_mixer(
        hidden, d_inner, d_state, d_conv, groups, n_heads, cfg.flag("use_bias"), cfg.flag("use_conv_bias", True)
    )
    return mixer, dict(version=2, n_groups=groups, n_heads=n_heads)


FAMILIES = {"mamba": mamba1, "falcon_mamba": mamba1, "mamba2": mamba2}

ARCHITECTURE_CLASSES = {
    "MambaForCausalLM": "mamba",
    "FalconMambaForCausalLM": "falcon_mamba",
    "Mamba2ForCausalLM": "mamba2",
}
