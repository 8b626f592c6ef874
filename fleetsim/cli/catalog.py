"""`fleetsim models`, `fleetsim gpus`: the catalogs a scenario names its model and GPU from."""

from __future__ import annotations

from rich.table import Table

from fleetsim.cli.options import json_option
from fleetsim.cli.terminal import cell, out, print_json


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
        print_json(df.to_dict(orient="records"))
        return
    t = Table(title="GPUs (dense peaks)")
    for col, _ in _GPU_COLUMNS:
        t.add_column(col)
    for r in df.to_dict(orient="records"):
        t.add_row(*(cell(r[col], fmt) for col, fmt in _GPU_COLUMNS))
    out.print(t)


# ---------------------------------------------------------------------------- fleetsim inspect
# RESERVED: `fleetsim inspect MODEL` will show one model's architecture, per layer, from
# fleetsim.catalog.inspect.inspect_model (being written separately). Wire it here as a function
# `inspect(...)` and register it in fleetsim/cli/root.py (COMMANDS, after "models").
