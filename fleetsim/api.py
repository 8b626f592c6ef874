"""The public Python API (re-exported by `fleetsim`): catalogs, KV and memory helpers, simulate."""

from __future__ import annotations

import pandas as pd
from pydantic import ValidationError

from fleetsim.catalog import gpu_names, load_gpu, load_model, model_entry, model_names
from fleetsim.errors import SpecError, first_error_line
from fleetsim.memory import MemoryPlan, kv_footprint, kv_size, plan_memory
from fleetsim.scenario import load_scenario
from fleetsim.simulation import SimulationResult, simulate
from fleetsim.spec.kvcache import KvCacheSpec

__all__ = [
    "gpu_table",
    "kv_cache_spec",
    "kv_report",
    "kv_table",
    "load_scenario",
    "memory_plan",
    "model_table",
    "simulate",
    "SimulationResult",
]


def kv_cache_spec(
    key_dtype: str = "bf16",
    value_dtype: str = "bf16",
    eviction: str = "none",
    *,
    budget_tokens: int | None = None,
    heavy_tokens: int | None = None,
    recent_tokens: int | None = None,
    sink_tokens: int = 4,
    window_tokens: int | None = None,
    pyramid_ratio: float = 4.0,
    prefix_compression_ratio: float = 1.0,
) -> KvCacheSpec:
    """Build a KvCacheSpec from flat options (as the CLI takes them)."""
    ev: dict = {"kind": eviction}
    need = {
        "h2o": {"heavy_tokens": heavy_tokens, "recent_tokens": recent_tokens},
        "snapkv": {"budget_tokens": budget_tokens},
        "pyramidkv": {"budget_tokens": budget_tokens, "ratio": pyramid_ratio},
        "streamingllm": {"window_tokens": window_tokens, "sink_tokens": sink_tokens},
        "none": {},
    }
    if eviction not in need:
        raise SpecError(f"eviction: '{eviction}' is unknown; choose one of {', '.join(need)}")
    flag = {
        "heavy_tokens": "--heavy",
        "recent_tokens": "--recent",
        "budget_tokens": "--budget",
        "window_tokens": "--window",
        "ratio": "--pyramid-ratio",
        "sink_tokens": "--sink",
    }
    for k, v in need[eviction].items():
        if v is None:
            raise SpecError(f"eviction {eviction}: {flag[k]} is required")
        ev[k] = v
    try:
        return KvCacheSpec(
            key_dtype=key_dtype, value_dtype=value_dtype, eviction=ev, prefix_compression_ratio=prefix_compression_ratio
        )
    except ValidationError as exc:
        raise SpecError(first_error_line(exc)) from None


def kv_report(
    model: str,
    context_tokens: int = 1,
    kv: KvCacheSpec = KvCacheSpec(),
    *,
    shared_prefix_tokens: int = 0,
    generated_tokens: int = 0,
) -> dict:
    """KV bytes of one sequence (whole model, all TP ranks), as a JSON-ready dict."""
    arch = load_model(model)
    size = kv_size(arch, context_tokens, kv, generated_tokens=generated_tokens)
    fp = kv_footprint(arch, kv)
    by_kind = {}
    for t in fp.terms:
        d = by_kind.setdefault(t.kind, {"layers": 0, "bytes": 0})
        d["layers"] += t.layers
    for kind, b in size.bytes_by_kind.items():
        by_kind[kind]["bytes"] = b
    prefix = fp.prefix_bytes_per_rank(shared_prefix_tokens) if shared_prefix_tokens else 0.0
    unique = (
        float(fp.bytes_per_rank(context_tokens, generated_tokens, shared_prefix_tokens))
        if shared_prefix_tokens
        else None
    )
    return {
        "model": arch.name,
        "attention": arch.attention_kind,
        "context_tokens": size.context_tokens,
        "key_dtype": kv.key_dtype,
        "value_dtype": kv.value_dtype,
        "eviction": kv.eviction.model_dump(),
        "bytes_per_sequence": size.bytes_per_sequence,
        "bytes_per_token": size.bytes_per_token,
        "by_layer_kind": by_kind,
        "shared_prefix_tokens": shared_prefix_tokens,
        "shared_prefix_bytes": round(prefix),
        "bytes_per_sequence_beyond_shared_prefix": None if unique is None else round(unique),
    }


def kv_table(models: list[str], context_tokens: int = 1, kv: KvCacheSpec = KvCacheSpec()) -> pd.DataFrame:
    """One row per model: the architectures compared at a length and precision."""
    rows = []
    for m in models:
        r = kv_report(m, context_tokens, kv)
        rows.append(
            {
                "model": r["model"],
                "attention": r["attention"],
                "context_tokens": r["context_tokens"],
                "key_dtype": kv.key_dtype,
                "value_dtype": kv.value_dtype,
                "bytes_per_token": r["bytes_per_token"],
                "bytes_per_sequence": r["bytes_per_sequence"],
            }
        )
    return pd.DataFrame(rows)


def memory_plan(
    model: str,
    gpu: str,
    *,
    tp: int = 1,
    weight_dtype: str = "bf16",
    kv: KvCacheSpec = KvCacheSpec(),
    context_tokens: int = 1,
    gpu_memory_utilization: float = 0.9,
    block_tokens: int = 16,
) -> MemoryPlan:
    from fleetsim.precision import WEIGHT_DTYPES, check_dtype

    check_dtype(weight_dtype, WEIGHT_DTYPES, "weight_dtype")
    return plan_memory(
        load_model(model),
        load_gpu(gpu),
        tp=tp,
        weight_dtype=weight_dtype,
        kv=kv,
        context_tokens=context_tokens,
        gpu_memory_utilization=gpu_memory_utilization,
        block_tokens=block_tokens,
    )


def model_table() -> pd.DataFrame:
    """One row per catalog model; None where a figure is missing."""
    rows = []
    for name in model_names():
        arch = load_model(name)
        entry = model_entry(name)
        rows.append(
            {
                "model": name,
                "attention": arch.attention_kind,
                "layers": arch.num_layers,
                "total_params_b": arch.total_params / 1e9,
                "active_params_b": arch.active_params / 1e9,
                "kv_bytes_per_token": kv_size(arch, 1).bytes_per_token,
                "source": entry.get("source", ""),
            }
        )
    return _with_none(pd.DataFrame(rows))


def _tera(x: float | None) -> float | None:
    return None if x is None else x / 1e12


def _with_none(df: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None, not NaN (a figure the catalog has no source for): the columns that
    have one hold objects; complete columns keep their numeric dtype."""
    for c in df.columns[df.isna().any()]:
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def gpu_table() -> pd.DataFrame:
    """One row per catalog GPU; None where the catalog gives no figure (e.g. fp8 on an A100)."""
    rows = []
    for name in gpu_names():
        g = load_gpu(name)
        pf = g.peak_flops_per_s
        rows.append(
            {
                "gpu": name,
                "memory_gb": g.memory_bytes / 1e9,
                "hbm_tb_per_s": g.hbm_bandwidth_bytes_per_s / 1e12,
                "bf16_tflops": _tera(pf.get("bf16")),
                "fp8_tflops": _tera(pf.get("fp8")),
                "fp4_tflops": _tera(pf.get("fp4")),
                "tdp_w": g.tdp_w,
                "link_gb_per_s": g.interconnect_bandwidth_bytes_per_s / 1e9,
                "usd_per_gpu_hour": g.rental_usd_per_gpu_hour,
            }
        )
    return _with_none(pd.DataFrame(rows))
