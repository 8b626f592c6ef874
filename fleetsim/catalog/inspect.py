"""What fleetsim read from a model: ``inspect_model(name_or_path)`` for ``fleetsim inspect MODEL``.

A pure function of the catalog (or the given file): how the name resolved, the config's
model_type, every layer group in depth order with its KV or state bytes, KV bytes per token and per
sequence at bf16 (at 1k/32k/128k tokens, so windows and chunks show), total and active parameters
(published and estimated), the MoE layout and the longest context. The result is JSON-safe: plain
str/int/float/bool/None/list/dict, no NaN or infinity.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from fleetsim.catalog import architecture_from_entry, architecture_from_hf_config, model_record
from fleetsim.catalog.hf import model_type
from fleetsim.catalog.hf.fields import merged_fields
from fleetsim.memory import kv_footprint, kv_size
from fleetsim.spec.architecture import Architecture

__all__ = ["inspect_model", "SEQUENCE_LENGTHS"]

# Context lengths the per-sequence KV is shown at: below and above the usual windows and chunks.
SEQUENCE_LENGTHS = (1024, 32_768, 131_072)


def inspect_model(name_or_path: str | Path) -> dict:
    """Everything fleetsim parsed from a catalog name, alias, Hugging Face id or config path."""
    found, entry = model_record(name_or_path)
    config = entry.get("hf_config")
    arch = architecture_from_entry(entry, where=found.name or str(found.path))
    estimate = architecture_from_hf_config(config, name=arch.name) if isinstance(config, dict) else arch
    quant = _quantization(config)
    return {
        "name": arch.name,
        "resolved_from": {
            "typed": str(name_or_path),
            "how": found.how,  # "name", "alias" or "path"
            "catalog_name": found.name,
            "path": None if found.path is None else str(found.path),
        },
        "model_type": model_type(config, arch.name) if isinstance(config, dict) else None,
        "source": arch.source,
        "attention": arch.attention_kind,
        "num_layers": arch.num_layers,
        # the config's own count: hybrids whose MLP/MoE blocks are layers of their own
        # (Nemotron-H) list more than the attention/state layers above
        "config_num_hidden_layers": _config_layers(config),
        "hidden_size": arch.hidden_size,
        "vocab_size": arch.vocab_size,
        "max_context_tokens": arch.max_context_tokens,
        "native_dtype": arch.native_dtype,
        "quantization": quant,
        "layer_groups": _groups(arch),
        "layer_summary": _summary(arch),
        "kv_bf16": _kv(arch),
        "params": {
            "total": arch.total_params,
            "active": arch.active_params,
            "published_active": entry.get("active_params"),
            "counted_as": "published" if "total_params" in entry else "estimated from the config",
            "published_source": entry.get("params_source") if "total_params" in entry else None,
            "estimated_total": estimate.total_params,
            "estimated_active": estimate.active_params,
            "active_rule": "parameters a token's forward pass multiplies: embedding lookups excluded, "
            "the LM head and the experts a token uses included",
        },
        "moe": None if arch.moe is None else {**arch.moe.model_dump(), "routed_params": arch.moe.routed_params},
        "flops": {
            "attention_per_context_token": arch.attention_flops_per_context_token(),
            "state_per_token": arch.state_flops_per_token(),
        },
    }


def _groups(arch: Architecture) -> list[dict]:
    groups, first = [], 0
    for g in arch.layers:
        one = arch.model_copy(update={"layers": (g,)})
        fp = kv_footprint(one)
        groups.append(
            {
                **g.model_dump(),
                "first_layer": first,
                "kv_bytes_per_token_bf16": _number(sum(t.bytes_per_token_per_rank for t in fp.terms)),
                "state_bytes_per_sequence_bf16": _number(sum(t.fixed_bytes_per_rank for t in fp.terms)),
            }
        )
        first += g.count
    return groups


def _summary(arch: Architecture) -> list[dict]:
    """Layer groups alike but for their depth, merged: what kinds of layer, how many of each."""
    merged: dict[tuple, dict] = {}
    for g in arch.layers:
        fields = g.model_dump(exclude={"count"})
        merged.setdefault(tuple(sorted(fields.items())), {**fields, "layers": 0})["layers"] += g.count
    return list(merged.values())


def _kv(arch: Architecture) -> dict:
    fp = kv_footprint(arch)
    sequences = []
    for n in SEQUENCE_LENGTHS:
        size = kv_size(arch, n)
        sequences.append(
            {
                "context_tokens": n,
                "bytes": size.bytes_per_sequence,
                "by_layer_kind": size.bytes_by_kind,
                "within_max_context": arch.max_context_tokens is None or n <= arch.max_context_tokens,
            }
        )
    return {
        # every caching layer holding the token: the paged-block unit, and the growth below any window
        "bytes_per_token": _number(fp.full_bytes_per_token_per_rank),
        # what keeps growing past every window and chunk
        "bytes_per_token_beyond_windows": _number(fp.growth_bytes_per_token_per_rank),
        "state_bytes_per_sequence": _number(sum(t.fixed_bytes_per_rank for t in fp.terms)),
        "per_sequence": sequences,
    }


def _config_layers(config: Any) -> int | None:
    if not isinstance(config, dict):
        return None
    fields = merged_fields(config)
    value = fields.get("num_hidden_layers", fields.get("n_layer"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _quantization(config: Any) -> dict | None:
    if not isinstance(config, dict):
        return None
    quant = merged_fields(config).get("quantization_config")
    if not isinstance(quant, dict):
        return None
    keep = ("quant_method", "fmt", "weight_block_size", "modules_to_not_convert", "bits", "group_size")
    return {k: quant[k] for k in keep if k in quant and _json_safe(quant[k])}


def _json_safe(value: Any) -> bool:
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, (list, tuple)):
        return all(_json_safe(v) for v in value)
    return isinstance(value, (str, int, bool)) or value is None


def _number(value: float | Fraction) -> int | float:
    """An exact byte count as an int when whole (bf16 always is), else a float."""
    value = Fraction(value)
    return int(value) if value.denominator == 1 else float(value)
