"""`fleetsim models`, `fleetsim inspect`, `fleetsim gpus`: the catalogs a scenario names its model and GPU
from, and what fleetsim read from one model."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from fleetsim.cli.options import json_option
from fleetsim.cli.terminal import cell, gb, out, print_json, say


def models(json_out: bool = json_option("one JSON array, a record per model")):
    """The model catalog: architecture, parameters, KV bytes.

    KV-cache bytes per token at bf16, whole model.

    Any command that takes a model also takes a path to a Hugging Face config.json.

    \b
    Examples:
      fleetsim models
      fleetsim models --json
    """
    from fleetsim.api import model_table

    df = model_table()
    if json_out:
        print_json(df.to_dict(orient="records"))
        return
    t = Table(title="Models (KV at bf16, per token, whole model)")
    for col in ("model", "attention", "layers", "total_params_b", "active_params_b", "kv_bytes_per_token", "source"):
        t.add_column(col, overflow="fold")
    for r in df.itertuples(index=False):
        t.add_row(
            r.model,
            r.attention,
            str(r.layers),
            cell(r.total_params_b, "{:,.1f}"),
            cell(r.active_params_b, "{:,.1f}"),
            cell(r.kv_bytes_per_token, "{:,.0f}"),
            r.source,
        )
    out.print(t)


_GPU_COLUMNS = (
    ("gpu", "{}"),
    ("memory_gb", "{:,.1f}"),
    ("hbm_tb_per_s", "{:,.2f}"),
    ("bf16_tflops", "{:,.0f}"),
    ("fp8_tflops", "{:,.0f}"),
    ("fp4_tflops", "{:,.0f}"),
    ("tdp_w", "{:,.0f}"),
    ("link_gb_per_s", "{:,.0f}"),
    ("usd_per_gpu_hour", "{:,.2f}"),
)


def gpus(json_out: bool = json_option("one JSON array, a record per GPU")):
    """The GPU catalog: memory, bandwidth, FLOP/s, power, price.

    Memory, HBM bandwidth, dense peak FLOP/s per dtype, TDP, interconnect, rental price.

    A '-' (null in JSON) is a figure the catalog has no source for, e.g. fp8 on an A100.

    \b
    Examples:
      fleetsim gpus
      fleetsim gpus --json
    """
    from fleetsim.api import gpu_table

    df = gpu_table()
    if json_out:
        print_json([{**row, **_gpu_details(row["gpu"])} for row in df.to_dict(orient="records")])
        return
    t = Table(title="GPUs (dense peaks)")
    for col, _ in _GPU_COLUMNS:
        t.add_column(col)
    for r in df.to_dict(orient="records"):
        t.add_row(*(cell(r[col], fmt) for col, fmt in _GPU_COLUMNS))
    out.print(t)


def _gpu_details(name: str) -> dict:
    """What `fleetsim gpus --json` adds to a table row: power limits, the server, every source."""
    from fleetsim.catalog import load_gpu
    from fleetsim.server_power import non_gpu_power_w

    g = load_gpu(name)
    server = g.server
    return {
        "min_power_limit_w": g.min_power_limit_w,
        "max_power_limit_w": g.max_power_limit_w,
        "gpus_per_server": g.gpus_per_server,
        "server_kind": server.kind if server else None,
        "rack_scale": bool(server and server.rack_scale),
        "server_non_gpu_idle_w": non_gpu_power_w(g, 0.0) if server else None,
        "server_non_gpu_max_w": non_gpu_power_w(g, 1.0) if server else None,
        "psu_efficiency": server.psu_efficiency if server else None,
        "host_memory_gb": g.host_memory_bytes / 1e9 if g.host_memory_bytes else None,
        "host_link_gb_per_s": g.host_link_bandwidth_bytes_per_s / 1e9 if g.host_link_bandwidth_bytes_per_s else None,
        "sources": dict(g.sources),
        "server_sources": dict(server.sources) if server else {},
    }


# ---------------------------------------------------------------------------- fleetsim inspect
# Fields of a layer group that are bookkeeping, not the layer's geometry.
_GROUP_BOOK = {"kind", "count", "first_layer", "kv_bytes_per_token_bf16", "state_bytes_per_sequence_bf16"}
# Depth-order groups shown on the "depth order" line before it is elided.
_DEPTH_GROUPS_SHOWN = 8


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4g}"
    return f"{int(value):,}"


def _params(value: Any) -> str:
    """A parameter count in billions (B), or millions (M) below a billion."""
    if value is None:
        return "-"
    return f"{value / 1e9:,.2f} B" if value >= 1e9 else f"{value / 1e6:,.1f} M"


def _geometry(group: dict) -> str:
    """A layer's shape from its own fields (whatever its kind): 'q_heads 32, kv_heads 8, head_dim 128'."""
    return ", ".join(f"{k} {_number(v)}" for k, v in group.items() if k not in _GROUP_BOOK and v is not None)


def _layer_kinds(groups: list[dict]) -> tuple[list[dict], list[tuple[str, int, int]]]:
    """Groups of the same kind and shape merged (their layers, KV bytes per token and state
    summed; each labelled A, B, ...), and the depth order as (label, first layer, last layer)."""
    kinds: dict[tuple, dict] = {}
    order = []
    for g in groups:
        shape = tuple((k, v) for k, v in g.items() if k not in _GROUP_BOOK - {"kind"})
        if shape not in kinds:
            label = chr(ord("A") + len(kinds)) if len(kinds) < 26 else str(len(kinds) + 1)
            kinds[shape] = {"label": label, "group": g, "layers": 0, "kv": 0, "state": 0}
        k = kinds[shape]
        k["layers"] += g["count"]
        k["kv"] += g["kv_bytes_per_token_bf16"] or 0
        k["state"] += g["state_bytes_per_sequence_bf16"] or 0
        order.append((k["label"], g["first_layer"], g["first_layer"] + g["count"] - 1))
    return list(kinds.values()), order


def _depth_line(order: list[tuple[str, int, int]]) -> str:
    shown = [f"{label} {a}" if a == b else f"{label} {a}-{b}" for label, a, b in order[:_DEPTH_GROUPS_SHOWN]]
    more = len(order) - _DEPTH_GROUPS_SHOWN
    tail = f", ... ({len(order)} groups; --json lists each)" if more > 0 else ""
    return "depth order: " + ", ".join(shown) + tail


def _resolved_line(r: dict) -> str:
    how = r["how"]
    if how == "path":
        return f"read from {r['path']}"
    if how == "alias":
        return f"'{r['typed']}' is an alias of the catalog model {r['catalog_name']}"
    return f"catalog model {r['catalog_name']}"


def _print_inspection(report: dict) -> None:
    from rich.text import Text

    say(
        f"{report['name']}: {report['attention']}, {report['num_layers']:,} layers, hidden {_number(report['hidden_size'])}, "
        f"vocab {_number(report['vocab_size'])}, context {_number(report['max_context_tokens'])} tokens, "
        f"native {report['native_dtype']}"
    )
    quant = report["quantization"]
    quant_text = "none" if not quant else ", ".join(f"{k} {v}" for k, v in quant.items())
    say(
        f"  {_resolved_line(report['resolved_from'])}; model_type {report['model_type'] or '-'}; quantization {quant_text}"
    )
    if report["config_num_hidden_layers"] not in (None, report["num_layers"]):
        say(
            f"  the config counts {report['config_num_hidden_layers']:,} layers (its MLP/MoE blocks are layers of their own)"
        )
    say(f"  source: {report['source']}")

    kinds, order = _layer_kinds(report["layer_groups"])
    t = Table(title="Layers (KV at bf16, whole model)")
    for col in ("", "kind", "layers", "shape", "KV bytes/token", "state bytes/sequence"):
        t.add_column(col, overflow="fold")
    for k in kinds:
        g = k["group"]
        t.add_row(k["label"], g["kind"], f"{k['layers']:,}", Text(_geometry(g)), _number(k["kv"]), _number(k["state"]))
    out.print(t)
    say(_depth_line(order))

    kv = report["kv_bf16"]
    t = Table(title="KV cache of one sequence (bf16, whole model, all tensor-parallel ranks)")
    for col in ("context tokens", "bytes", "GB", "by layer kind (bytes)", "within the context limit"):
        t.add_column(col, overflow="fold")
    for seq in kv["per_sequence"]:
        parts = ", ".join(f"{kind} {_number(b)}" for kind, b in seq["by_layer_kind"].items())
        t.add_row(
            f"{seq['context_tokens']:,}",
            _number(seq["bytes"]),
            gb(seq["bytes"]),
            Text(parts),
            "yes" if seq["within_max_context"] else "no",
        )
    out.print(t)
    say(
        f"KV bytes per token: {_number(kv['bytes_per_token'])} ({_number(kv['bytes_per_token_beyond_windows'])} "
        f"beyond every window and chunk); fixed state per sequence: {_number(kv['state_bytes_per_sequence'])} bytes"
    )

    params = report["params"]
    t = Table(title=f"Parameters (total {params['counted_as']})")
    for col in ("", "total", "active per token"):
        t.add_column(col)
    t.add_row("used by fleetsim", _params(params["total"]), _params(params["active"]))
    if params["counted_as"] == "published":
        t.add_row("published", _params(params["total"]), _params(params["published_active"]))
    t.add_row("estimated from the config", _params(params["estimated_total"]), _params(params["estimated_active"]))
    out.print(t)
    say(f"  active: {params['active_rule']}")
    if params["published_source"]:
        say(f"  published: {params['published_source']}")
    moe = report["moe"]
    if moe is None:
        say("MoE: none (dense)")
    else:
        say(
            f"MoE: {moe['num_experts']:,} experts, {moe['experts_per_token']:,} per token, {moe['shared_experts']:,} "
            f"shared, on {moe['moe_layers']:,} layers; {_params(moe['params_per_expert'])} per expert, "
            f"{_params(moe['routed_params'])} routed in all"
        )


def inspect(
    model: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="A catalog name or alias (fleetsim models), a Hugging Face id, or a path to a config.json "
        "(or a folder holding one).",
    ),
    json_out: bool = json_option("one JSON object: everything parsed from the model"),
):
    """What fleetsim read from one model: layers, KV bytes, parameters.

    How the name resolved, the config's model_type, every kind of layer with its shape and KV bytes
    per token, the layers in depth order, the KV cache of one sequence at 1k/32k/128k tokens (so
    windows and chunks show), total and active parameters (published and estimated), and the MoE
    layout. KV at bf16, whole model; see fleetsim kv for other precisions and eviction.

    \b
    Examples:
      fleetsim inspect llama-3-8b
      fleetsim inspect gemma-3-27b --json
      fleetsim inspect ./my-model/config.json
    """
    from fleetsim.catalog.inspect import inspect_model

    report = inspect_model(model)
    if json_out:
        print_json(report)
        return
    _print_inspection(report)
