"""Read a Hugging Face ``config.json`` into an :class:`Architecture`.

The reader derives, in depth order, what kind every layer is and run-length encodes it; it reads
the mixture-of-experts layout; and, when no published count is given, it estimates total and
active parameters from the tensor shapes the config implies (the counting rule, active included,
is stated in :mod:`fleetsim.catalog.hf.shape`). One module per family of models:

- :mod:`~fleetsim.catalog.hf.dense`: GPT-2, OPT, Llama-style decoders (llama, mistral, qwen2,
  qwen3, gemma 1/2/3, phi3, granite)
- :mod:`~fleetsim.catalog.hf.moe`: mixtral, qwen3_moe, gpt_oss, llama4
- :mod:`~fleetsim.catalog.hf.mla`: deepseek_v2, deepseek_v3, kimi_k2, deepseek_v32
- :mod:`~fleetsim.catalog.hf.ssm`: mamba, falcon_mamba, mamba2
- :mod:`~fleetsim.catalog.hf.hybrid`: jamba, nemotron_h, qwen3_next, qwen3_5, qwen3_5_moe
- :mod:`~fleetsim.catalog.hf.gemma`: gemma3n, gemma4

Configs that nest the language model (``text_config``, ``llm_config``, ...) are read from the
nested block. Fields a checkpoint leaves out take the defaults of the transformers config class of
that family. Anything unknown or contradictory raises :class:`CatalogError` with one line that
names the field, its value (capped) and what would be valid. Counts are bounded as they are read
(layers at most ``MAX_LAYERS``, every other count at most ``MAX_ARCH_INT``, the Architecture
spec's limits), before any per-layer list is built.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from fleetsim.catalog.hf import dense, gemma, hybrid, mla, moe, ssm
from fleetsim.catalog.hf.fields import NAME_CHARS, HfConfig, merged_fields
from fleetsim.catalog.hf.shape import LayerSpec, Shape
from fleetsim.catalog.names import display
from fleetsim.errors import CatalogError, first_error_line, shown
from fleetsim.spec.architecture import (
    Architecture,
    AttentionLayers,
    KVSharedAttentionLayers,
    LinearAttentionLayers,
    MLALayers,
    SparseMLALayers,
    SSMLayers,
)

__all__ = ["architecture_from_hf_config", "model_type", "supported_model_types", "validation_message"]

_MODULES = (dense, moe, mla, ssm, hybrid, gemma)
_FAMILIES: dict[str, Callable[[HfConfig], Shape]] = {}
_DEFAULTS: dict[str, dict] = {}
_ARCHITECTURE_CLASSES: dict[str, str] = {}
for _module in _MODULES:
    _FAMILIES.update(_module.FAMILIES)
    _DEFAULTS.update(_module.DEFAULTS)
    _ARCHITECTURE_CLASSES.update(_module.ARCHITECTURE_CLASSES)

# Multimodal wrappers whose config lacks (or did not nest) the text model's own model_type.
_WRAPPERS = {"gemma3": "gemma3_text", "llama4": "llama4_text", **hybrid.WRAPPERS, **gemma.WRAPPERS}

_GROUP_CLASSES = {
    cls.model_fields["kind"].default: cls
    for cls in (AttentionLayers, KVSharedAttentionLayers, MLALayers, SparseMLALayers, SSMLayers, LinearAttentionLayers)
}


def supported_model_types() -> list[str]:
    """Every ``model_type`` this reader understands."""
    return sorted(set(_FAMILIES) | set(_WRAPPERS))


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
    from the config. When only ``total_params`` is given, ``active_params`` is the total less the
    estimated weights a token does not multiply (idle experts, embedding lookups).
    """
    label = display(name, NAME_CHARS)
    if not isinstance(config, dict):
        raise CatalogError(f"{label}: a config must be a JSON object (a dict), not {type(config).__name__}")
    family = model_type(config, name)
    cfg = HfConfig(config, name, family, _DEFAULTS.get(family, {}))
    build = _FAMILIES[family]
    if family in dense.FAMILIES and family != "opt" and cfg.has("num_local_experts"):
        build = moe.mixtral_or_qwen3_moe  # a Llama-style config with experts reads as Mixtral
    try:
        shape = build(cfg)
        total, active = _resolve_counts(shape, total_params, active_params, label)
        return Architecture(
            name=name,
            source=source,
            hidden_size=shape.hidden_size,
            vocab_size=shape.vocab_size,
            total_params=total,
            active_params=active,
            layers=tuple(_run_length(shape.layers)),
            tie_word_embeddings=cfg.tied_embeddings(),
            moe=shape.moe,
            native_dtype=cfg.native_dtype(),
            max_context_tokens=shape.max_context_tokens,
        )
    except ValidationError as exc:  # a layer group, the MoE layout or the whole out of the spec's bounds
        raise CatalogError(f"{label}: {validation_message(exc)}") from None


# Named in the message for an unknown model_type (the full list is supported_model_types()).
_KNOWN_EXAMPLES = ("llama", "qwen3", "mixtral", "deepseek_v3", "gemma3", "mamba")


def model_type(raw: dict, name: str) -> str:
    """The family a config belongs to: its (text model's) model_type, or the one its architectures
    class names; CatalogError naming some supported ones when neither is known."""
    label = display(name, NAME_CHARS)
    fields = merged_fields(raw)
    kind = fields.get("model_type")
    if kind is None:
        classes = fields.get("architectures")
        for cls in classes if isinstance(classes, list) else ():
            if isinstance(cls, str) and cls in _ARCHITECTURE_CLASSES:
                kind = _ARCHITECTURE_CLASSES[cls]
                break
    if kind is None:
        raise CatalogError(
            f"{label}: config has no 'model_type' and 'architectures' = {shown(fields.get('architectures'), 30)} "
            f"names no known class; give a model_type: {_supported_examples()}"
        )
    if not isinstance(kind, str):
        raise CatalogError(f"{label}: config field 'model_type' = {shown(kind)} is not valid; it must be a string")
    kind = _WRAPPERS.get(kind, kind)
    if kind not in _FAMILIES:
        raise CatalogError(
            f"{label}: config field 'model_type' = {shown(kind, 40)} is not supported; "
            f"supported families include {_supported_examples()}"
        )
    return kind


def _supported_examples() -> str:
    return f"{', '.join(_KNOWN_EXAMPLES)}, ... ({len(supported_model_types())} in all: supported_model_types())"


def _run_length(layers: list[LayerSpec]) -> list:
    groups: list = []
    previous, count = None, 0
    for spec in [*layers, None]:
        if spec == previous:
            count += 1
            continue
        if previous is not None:
            kind, fields = previous
            groups.append(_GROUP_CLASSES[kind](count=count, **dict(fields)))
        previous, count = spec, 1
    return groups


def _resolve_counts(shape: Shape, total: int | None, active: int | None, name: str) -> tuple[int, int]:
    for label, value in (("total_params", total), ("active_params", active)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise CatalogError(f"{name}: {label} = {shown(value)} is not valid; it must be a positive integer")
    estimate = shape.params
    if total is None:
        return (estimate.total, estimate.active) if active is None else (max(estimate.total, active), active)
    if active is None:
        return total, max(1, total - (estimate.total - estimate.active))
    return total, active


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line: where, then what (the value capped; see
    :func:`fleetsim.errors.first_error_line`)."""
    return first_error_line(exc)
