"""`fleetsim kv`, `fleetsim memory`: the memory model, without a simulation."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from rich.table import Table

from fleetsim.cli.options import eviction_option, json_option, key_dtype_option, tokens_option, value_dtype_option
from fleetsim.cli.terminal import fail, gb, out, print_json
from fleetsim.errors import SpecError

# `fleetsim memory` counts concurrent sequences at this length unless --context is given: a
# typical chat request (prompt + output), capped by the model's context limit.
TYPICAL_CONTEXT_TOKENS = 2048

_MODEL_HELP = "A catalog name (fleetsim models) or a path to a Hugging Face config.json."
_BUDGET_HELP = "SnapKV / PyramidKV: prompt tokens kept per layer (PyramidKV: the mean over layers)."
_HEAVY_HELP = "H2O: heavy-hitter tokens kept per layer."
_RECENT_HELP = "H2O: most recent tokens kept per layer."
_SINK_HELP = "StreamingLLM: attention-sink tokens kept at the start."
_WINDOW_HELP = "StreamingLLM: recent tokens kept."


def _kv_spec(key_dtype, value_dtype, eviction, budget, heavy, recent, sink, window, ratio, prefix_ratio):
    from fleetsim.api import kv_cache_spec

    return kv_cache_spec(
        key_dtype=key_dtype,
        value_dtype=value_dtype,
        eviction=eviction,
        budget_tokens=budget,
        heavy_tokens=heavy,
        recent_tokens=recent,
        sink_tokens=sink,
        window_tokens=window,
        pyramid_ratio=ratio,
        prefix_compression_ratio=prefix_ratio,
    )


def kv(
    models_: list[str] = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP + " Several with --compare."),
    context: int = typer.Option(
        1,
        "--context",
        metavar="TOKENS",
        help="Sequence length, tokens (prompt + generated). The default 1 gives the per-token figure.",
    ),
    key_dtype: str = key_dtype_option(),
    value_dtype: str = value_dtype_option(),
    eviction: str = eviction_option(),
    budget: int | None = tokens_option("--budget", _BUDGET_HELP),
    heavy: int | None = tokens_option("--heavy", _HEAVY_HELP),
    recent: int | None = tokens_option("--recent", _RECENT_HELP),
    sink: int = tokens_option("--sink", _SINK_HELP, 4),
    window: int | None = tokens_option("--window", _WINDOW_HELP),
    pyramid_ratio: float = typer.Option(
        4.0, "--pyramid-ratio", metavar="RATIO", help="PyramidKV: first layer's budget / last layer's (>= 1)."
    ),
    shared_prefix: int = typer.Option(
        0,
        "--shared-prefix",
        metavar="TOKENS",
        help="Leading tokens shared with other sequences (a system prompt), stored once, tokens.",
    ),
    prefix_compression: float = typer.Option(
        1.0,
        "--prefix-compression",
        metavar="RATIO",
        help="The shared prefix's KV is this many times smaller (Cartridges-style compression; >= 1).",
    ),
    compare: bool = typer.Option(False, "--compare", help="A side-by-side table of several models."),
    json_out: bool = json_option("one JSON object (a list with --compare)"),
):
    """KV-cache bytes of one sequence, by layer kind.

    Per token and per sequence, with key/value quantization, eviction and a shared prefix. Whole model, all tensor-parallel ranks together; no GPU is involved (see fleetsim memory).

    \b
    Examples:
      fleetsim kv llama-3-8b --context 4000 --key-dtype q8_0 --value-dtype q4_0
      fleetsim kv --compare gpt2-xl llama-3-8b deepseek-v3 mamba-2.8b --context 4000
      fleetsim kv llama-3-8b --context 100000 --eviction h2o --heavy 200 --recent 200
    """
    from fleetsim.api import kv_report

    spec = _kv_spec(
        key_dtype, value_dtype, eviction, budget, heavy, recent, sink, window, pyramid_ratio, prefix_compression
    )
    if len(models_) > 1 and not compare:
        fail("kv: several models given; add --compare for a side-by-side table")
    rows = [kv_report(m, context, spec, shared_prefix_tokens=shared_prefix) for m in models_]
    if json_out:
        print_json(rows if compare else rows[0])
        return
    if compare:
        t = Table(title=f"KV cache at {context:,} tokens (K {key_dtype}, V {value_dtype}, eviction {eviction})")
        for col in ("model", "attention", "bytes/token", "KiB/token", "bytes/sequence", "GB/sequence", "vs first"):
            t.add_column(col)
        first = rows[0]["bytes_per_sequence"] or 1
        for r in rows:
            t.add_row(
                r["model"],
                r["attention"],
                f"{r['bytes_per_token']:,.0f}",
                f"{r['bytes_per_token'] / 1024:,.1f}",
                f"{r['bytes_per_sequence']:,}",
                gb(r["bytes_per_sequence"]),
                f"{r['bytes_per_sequence'] / first:.2f}x",
            )
        out.print(t)
        return
    r = rows[0]
    t = Table(title=f"{r['model']} ({r['attention']}): KV of one {context:,}-token sequence")
    t.add_column("layer kind")
    t.add_column("layers")
    t.add_column("bytes")
    for kind, b in r["by_layer_kind"].items():
        t.add_row(kind, str(b["layers"]), f"{b['bytes']:,}")
    t.add_row("total", str(sum(b["layers"] for b in r["by_layer_kind"].values())), f"{r['bytes_per_sequence']:,}")
    out.print(t)
    out.print(
        f"bytes per token: {r['bytes_per_token']:,.1f} ({r['bytes_per_token'] / 1024:,.2f} KiB); "
        f"K {key_dtype}, V {value_dtype}; per sequence {gb(r['bytes_per_sequence'])} GB"
    )
    if shared_prefix:
        out.print(f"shared prefix of {shared_prefix:,} tokens stored once: {r['shared_prefix_bytes']:,} bytes")


def _typical_context(model: str) -> int:
    from fleetsim.catalog import load_model

    limit = load_model(model).max_context_tokens
    return min(TYPICAL_CONTEXT_TOKENS, limit) if limit else TYPICAL_CONTEXT_TOKENS


def memory(
    model: str = typer.Argument(..., metavar="MODEL", help=_MODEL_HELP),
    gpu: str = typer.Option(..., "--gpu", metavar="GPU", help="GPU catalog name (fleetsim gpus), e.g. h100-sxm."),
    tp: int = typer.Option(1, "--tp", metavar="N", help="Tensor-parallel degree: GPUs per replica."),
    weight_dtype: str = typer.Option(
        "bf16", "--weight-dtype", metavar="DTYPE", help="Precision of the weights: bf16, fp16, fp8, int8, int4, fp4."
    ),
    key_dtype: str = key_dtype_option(),
    value_dtype: str = value_dtype_option(),
    context: int | None = typer.Option(
        None,
        "--context",
        metavar="TOKENS",
        help=f"Sequence length (prompt + output) at which concurrent sequences are counted, tokens. "
        f"Default: {TYPICAL_CONTEXT_TOKENS:,}, a typical chat request (or the model's context limit when shorter).",
        show_default=False,
    ),
    utilization: float = typer.Option(
        0.9,
        "--gpu-memory-utilization",
        metavar="FRACTION",
        help="Fraction of each GPU's memory the server may use, in (0, 1] (vLLM's default 0.9).",
    ),
    block_tokens: int = typer.Option(16, "--block-tokens", metavar="TOKENS", help="Tokens per paged KV block."),
    eviction: str = eviction_option(),
    budget: int | None = tokens_option("--budget", _BUDGET_HELP),
    heavy: int | None = tokens_option("--heavy", _HEAVY_HELP),
    recent: int | None = tokens_option("--recent", _RECENT_HELP),
    sink: int = tokens_option("--sink", _SINK_HELP, 4),
    window: int | None = tokens_option("--window", _WINDOW_HELP),
    ep: int | None = typer.Option(
        None,
        "--ep",
        metavar="N",
        help="Expert-parallel degree of a mixture-of-experts model (divides --tp and the routed experts). "
        "Default: no expert parallelism (experts split like every other weight, by --tp).",
    ),
    dp_attention: bool = typer.Option(
        False,
        "--dp-attention",
        help="Data-parallel attention over the --tp GPUs: attention weights whole per GPU, each GPU "
        "holding only its own sequences' KV (SGLang --enable-dp-attention).",
    ),
    pp: int = typer.Option(
        1,
        "--pp",
        metavar="N",
        help="Pipeline-parallel stages (a replica is pp x tp GPUs, possibly across servers); "
        "the plan is shown per stage.",
    ),
    layers_per_stage: str | None = typer.Option(
        None,
        "--layers-per-stage",
        metavar="N,N,...",
        help="Layers of each pipeline stage when --pp does not divide the layers, e.g. 31,30. "
        "Default: the layers split evenly over --pp stages.",
        show_default=False,
    ),
    json_out: bool = json_option(),
):
    """How one GPU's memory splits: weights, workspace, KV pool.

    Also: how many tokens the KV pool holds, and how many sequences of --context tokens fit.

    \b
    Examples:
      fleetsim memory llama-3-70b --gpu h100-sxm --tp 2 --context 8192
      fleetsim memory deepseek-v3 --gpu h200 --tp 8 --ep 8 --dp-attention --weight-dtype fp8
      fleetsim memory llama-3.1-405b --gpu h100-sxm --pp 2 --tp 8
    """
    from fleetsim.api import memory_plan

    if context is None:
        context = _typical_context(model)
    spec = _kv_spec(key_dtype, value_dtype, eviction, budget, heavy, recent, sink, window, 4.0, 1.0)
    if pp > 1 or layers_per_stage is not None:
        if ep is not None or dp_attention:
            raise SpecError("--pp: pipeline stages with --ep/--dp-attention are not modelled yet; use one or the other")
        _show_pipeline(model, gpu, pp, tp, weight_dtype, spec, context, utilization, layers_per_stage, json_out)
        return
    options = dict(
        tp=tp,
        weight_dtype=weight_dtype,
        kv=spec,
        context_tokens=context,
        gpu_memory_utilization=utilization,
        block_tokens=block_tokens,
    )
    layout = None
    if ep is not None or dp_attention:
        plan, layout = _layout_plan(model, gpu, ep, dp_attention, options)
    else:
        plan = memory_plan(model, gpu, **options)
    d = plan.as_dict()
    if json_out:
        print_json(d)
        return
    t = Table(title=f"{plan.model} on {plan.gpu}, tp={tp}, weights {weight_dtype}, KV K {key_dtype} / V {value_dtype}")
    t.add_column("per GPU")
    t.add_column("GB", justify="right")
    t.add_row("memory", gb(plan.gpu_memory_bytes))
    t.add_row(f"usable (x{utilization})", gb(plan.usable_bytes_per_gpu))
    t.add_row("weights", gb(plan.weights_bytes_per_gpu))
    if layout is not None:
        t.add_row(f"  routed experts (over {layout.tp} GPUs, ep {layout.ep})", gb(layout.experts_bytes))
        t.add_row(f"  attention, dense, tables (attention TP {layout.attention_tp})", gb(layout.rest_bytes))
    t.add_row("workspace (activations, runtime)", gb(plan.workspace_bytes_per_gpu))
    t.add_row("KV pool", gb(plan.kv_pool_bytes_per_gpu))
    out.print(t)
    cap = "no KV cache (state only)" if plan.kv_capacity_tokens is None else f"{plan.kv_capacity_tokens:,} tokens"
    out.print(f"KV capacity per replica: {cap} in {plan.kv_blocks:,} blocks of {block_tokens}")
    out.print(f"max concurrent sequences at {context:,} tokens: {plan.max_concurrent_sequences:,} per replica")
    if layout is not None:
        where = (
            f"each of the {plan.dp} data-parallel attention ranks holds only its own sequences' KV"
            if plan.dp > 1
            else "the KV is split (or replicated) across the tensor-parallel ranks"
        )
        out.print(f"layout: tp {tp}, experts over ep {plan.ep} ranks; {where}")


@dataclass(frozen=True)
class _LayoutShown:
    tp: int
    ep: int
    attention_tp: int
    experts_bytes: float
    rest_bytes: float


def _layout_plan(model: str, gpu: str, ep: int | None, dp_attention: bool, options: dict):
    """The memory plan under fleet.ep / fleet.dp_attention (fleetsim.parallel), and its weight split."""
    from fleetsim.catalog import load_gpu, load_model
    from fleetsim.memory import plan_memory, weight_bytes
    from fleetsim.parallel import layout_of, routed_bytes
    from fleetsim.precision import WEIGHT_DTYPES, bytes_per_element, check_dtype

    check_dtype(options["weight_dtype"], WEIGHT_DTYPES, "weight_dtype")
    arch = load_model(model)
    layout = layout_of(arch, options["tp"], ep, dp_attention)
    plan = plan_memory(arch, load_gpu(gpu), layout=layout, **options)
    experts = routed_bytes(arch, float(bytes_per_element(options["weight_dtype"])))
    rest = weight_bytes(arch, options["weight_dtype"]) - experts
    shown = _LayoutShown(layout.tp, layout.ep, layout.attention_tp, experts / layout.tp, rest / layout.attention_tp)
    return plan, shown


def _stage_layers(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() and len(p) <= 9 for p in parts):
        raise SpecError(f"--layers-per-stage: {text[:60]!r}; valid: layer counts separated by commas, e.g. 31,30")
    return tuple(int(p) for p in parts)


def _show_pipeline(model, gpu, pp, tp, weight_dtype, spec, context, utilization, layers_per_stage, json_out):
    """The per-stage memory plan of a pp x tp replica (fleetsim.pipeline)."""
    from fleetsim.pipeline import pipeline_plan

    split = _stage_layers(layers_per_stage) if layers_per_stage is not None else None
    plan = pipeline_plan(
        model,
        gpu,
        pp=len(split) if split is not None and pp == 1 else pp,
        tp=tp,
        weight_dtype=weight_dtype,
        kv=spec,
        context_tokens=context,
        gpu_memory_utilization=utilization,
        layers_per_stage=split,
    )
    if json_out:
        print_json(plan.as_dict())
        return
    where = "across servers" if plan.tp_crosses_servers else "within a server"
    t = Table(
        title=f"{plan.model} on {plan.gpu}: pp {plan.pp} x tp {plan.tp} = {plan.gpus} GPUs "
        f"({plan.servers} servers, TP {where}), weights {weight_dtype}"
    )
    for name in ("stage", "layers", "weights GB/GPU", "workspace GB/GPU", "KV pool GB/GPU", "KV tokens"):
        t.add_column(name, justify="right")
    for st in plan.stages:
        cap = "state only" if st.kv_capacity_tokens is None else f"{st.kv_capacity_tokens:,}"
        t.add_row(
            str(st.index),
            str(st.layers),
            gb(st.weights_bytes_per_gpu),
            gb(st.workspace_bytes_per_gpu),
            gb(st.kv_pool_bytes_per_gpu),
            cap,
        )
    out.print(t)
    cap = "no KV cache (state only)" if plan.kv_capacity_tokens is None else f"{plan.kv_capacity_tokens:,} tokens"
    out.print(f"KV capacity per replica (tightest stage): {cap}")
    out.print(f"max concurrent sequences at {context:,} tokens: {plan.max_concurrent_sequences:,} per replica")
    for note in plan.notes:
        out.print(f"note: {note}")
