"""The `fleetsim` command: a thin shell over the public API. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fleetsim.errors import FleetsimError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="fleetsim: how many of which GPU to serve an LLM at a load, within latency targets, "
    "and what it costs in $, kW and cooling.",
)
# Piped output is not cut to 80 columns (names and numbers stay whole).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def _error_line(message: str) -> None:
    # One physical line, never wrapped to the terminal width.
    sys.stderr.write("error: " + " ".join(str(message).split()) + "\n")


def _fail(message: str) -> None:
    _error_line(message)
    raise typer.Exit(2)


def _overrides(values: list[str] | None) -> dict:
    from fleetsim.scenario import parse_override

    return dict(parse_override(v) for v in values or [])


def _gb(x: float) -> str:
    return f"{x / 1e9:,.2f}"


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


# ---------------------------------------------------------------------------- catalogs
@app.command()
def models(json_out: bool = typer.Option(False, "--json", help="One JSON array.")):
    """The model catalog: architecture, parameters, KV bytes per token (bf16)."""
    from fleetsim.api import model_table

    df = model_table()
    if json_out:
        _print_json(df.to_dict(orient="records"))
        return
    t = Table(title="Models (KV at bf16, per token, whole model)")
    for col in ("model", "attention", "layers", "total_params_b", "active_params_b", "kv_bytes_per_token", "source"):
        t.add_column(col, overflow="fold")
    for r in df.itertuples(index=False):
        t.add_row(
            r.model,
            r.attention,
            str(r.layers),
            f"{r.total_params_b:,.1f}",
            f"{r.active_params_b:,.1f}",
            f"{r.kv_bytes_per_token:,.0f}",
            r.source,
        )
    out.print(t)


@app.command()
def gpus(json_out: bool = typer.Option(False, "--json", help="One JSON array.")):
    """The GPU catalog: memory, bandwidth, dense peak FLOP/s, TDP, interconnect, price."""
    from fleetsim.api import gpu_table

    df = gpu_table()
    if json_out:
        _print_json(df.to_dict(orient="records"))
        return
    t = Table(title="GPUs (dense peaks)")
    for col in (
        "gpu",
        "memory_gb",
        "hbm_tb_per_s",
        "bf16_tflops",
        "fp8_tflops",
        "fp4_tflops",
        "tdp_w",
        "link_gb_per_s",
        "usd_per_gpu_hour",
    ):
        t.add_column(col)
    for r in df.itertuples(index=False):

        def f(x, fmt="{:,.0f}"):
            return "-" if x is None or x != x else fmt.format(x)

        t.add_row(
            r.gpu,
            f(r.memory_gb, "{:,.1f}"),
            f(r.hbm_tb_per_s, "{:,.2f}"),
            f(r.bf16_tflops),
            f(r.fp8_tflops),
            f(r.fp4_tflops),
            f(r.tdp_w),
            f(r.link_gb_per_s),
            f(r.usd_per_gpu_hour, "{:,.2f}"),
        )
    out.print(t)


# ---------------------------------------------------------------------------- memory model
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


_EVICTION_HELP = "Token eviction: none, h2o, snapkv, pyramidkv, streamingllm."


@app.command()
def kv(
    models_: list[str] = typer.Argument(..., metavar="MODEL...", help="Catalog name(s) or path(s) to config.json."),
    context: int = typer.Option(1, "--context", help="Sequence length in tokens."),
    key_dtype: str = typer.Option("bf16", "--key-dtype", help="bf16, fp16, fp8, int8, int4, q8_0, q4_0."),
    value_dtype: str = typer.Option("bf16", "--value-dtype", help="bf16, fp16, fp8, int8, int4, q8_0, q4_0."),
    eviction: str = typer.Option("none", "--eviction", help=_EVICTION_HELP),
    budget: int | None = typer.Option(
        None, "--budget", help="SnapKV/PyramidKV token budget (PyramidKV: mean per layer)."
    ),
    heavy: int | None = typer.Option(None, "--heavy", help="H2O heavy-hitter tokens."),
    recent: int | None = typer.Option(None, "--recent", help="H2O recent tokens."),
    sink: int = typer.Option(4, "--sink", help="StreamingLLM attention-sink tokens."),
    window: int | None = typer.Option(None, "--window", help="StreamingLLM window tokens."),
    pyramid_ratio: float = typer.Option(4.0, "--pyramid-ratio", help="PyramidKV first-layer / last-layer budget."),
    shared_prefix: int = typer.Option(
        0, "--shared-prefix", help="Tokens of a prefix shared with other sequences (stored once)."
    ),
    prefix_compression: float = typer.Option(
        1.0, "--prefix-compression", help="Cartridges-style compression ratio of the shared prefix."
    ),
    compare: bool = typer.Option(False, "--compare", help="Side-by-side table of several models."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object (a list with --compare)."),
):
    """KV-cache bytes of one sequence: by layer kind, per token, with quantization and eviction."""
    from fleetsim.api import kv_report

    spec = _kv_spec(
        key_dtype, value_dtype, eviction, budget, heavy, recent, sink, window, pyramid_ratio, prefix_compression
    )
    if len(models_) > 1 and not compare:
        _fail("kv: several models given; add --compare for a side-by-side table")
    rows = [kv_report(m, context, spec, shared_prefix_tokens=shared_prefix) for m in models_]
    if json_out:
        _print_json(rows if compare else rows[0])
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
                _gb(r["bytes_per_sequence"]),
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
        f"K {key_dtype}, V {value_dtype}; per sequence {_gb(r['bytes_per_sequence'])} GB"
    )
    if shared_prefix:
        out.print(f"shared prefix of {shared_prefix:,} tokens stored once: {r['shared_prefix_bytes']:,} bytes")


@app.command()
def memory(
    model: str = typer.Argument(..., help="Catalog name or path to config.json."),
    gpu: str = typer.Option(..., "--gpu", help="GPU catalog name (fleetsim gpus)."),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel degree."),
    weight_dtype: str = typer.Option("bf16", "--weight-dtype", help="bf16, fp16, fp8, int8, int4, fp4."),
    key_dtype: str = typer.Option("bf16", "--key-dtype"),
    value_dtype: str = typer.Option("bf16", "--value-dtype"),
    context: int = typer.Option(1, "--context", help="Sequence length for max concurrent sequences."),
    utilization: float = typer.Option(
        0.9, "--gpu-memory-utilization", help="Fraction of GPU memory the server may use."
    ),
    block_tokens: int = typer.Option(16, "--block-tokens", help="Tokens per paged KV block."),
    eviction: str = typer.Option("none", "--eviction", help=_EVICTION_HELP),
    budget: int | None = typer.Option(None, "--budget"),
    heavy: int | None = typer.Option(None, "--heavy"),
    recent: int | None = typer.Option(None, "--recent"),
    sink: int = typer.Option(4, "--sink"),
    window: int | None = typer.Option(None, "--window"),
    json_out: bool = typer.Option(False, "--json", help="One JSON object."),
):
    """How one GPU's memory splits between weights, workspace and the paged KV pool."""
    from fleetsim.api import memory_plan

    spec = _kv_spec(key_dtype, value_dtype, eviction, budget, heavy, recent, sink, window, 4.0, 1.0)
    plan = memory_plan(
        model,
        gpu,
        tp=tp,
        weight_dtype=weight_dtype,
        kv=spec,
        context_tokens=context,
        gpu_memory_utilization=utilization,
        block_tokens=block_tokens,
    )
    d = plan.as_dict()
    if json_out:
        _print_json(d)
        return
    t = Table(title=f"{plan.model} on {plan.gpu}, tp={tp}, weights {weight_dtype}, KV K {key_dtype} / V {value_dtype}")
    t.add_column("per GPU")
    t.add_column("GB", justify="right")
    t.add_row("memory", _gb(plan.gpu_memory_bytes))
    t.add_row(f"usable (x{utilization})", _gb(plan.usable_bytes_per_gpu))
    t.add_row("weights", _gb(plan.weights_bytes_per_gpu))
    t.add_row("workspace (activations, runtime)", _gb(plan.workspace_bytes_per_gpu))
    t.add_row("KV pool", _gb(plan.kv_pool_bytes_per_gpu))
    out.print(t)
    cap = "no KV cache (state only)" if plan.kv_capacity_tokens is None else f"{plan.kv_capacity_tokens:,} tokens"
    out.print(f"KV capacity per replica: {cap} in {plan.kv_blocks:,} blocks of {block_tokens}")
    out.print(f"max concurrent sequences at {context:,} tokens: {plan.max_concurrent_sequences:,} per replica")


# ---------------------------------------------------------------------------- simulation
@app.command()
def schema():
    """Print the scenario JSON Schema (for editors and validation)."""
    from fleetsim.spec.scenario import ScenarioSpec

    _print_json(ScenarioSpec.model_json_schema())


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="Scenario YAML."),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Override a field by dotted path: --set fleet.replicas=8"
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (overrides run.seed)."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write summary, per-request table and time series here."),
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
):
    """Simulate a scenario and print concurrency, latency, power, cooling and cost."""
    from fleetsim.api import simulate
    from fleetsim.report.console import print_summary

    overrides = _overrides(set_)
    if seed is not None:
        overrides["run.seed"] = seed
    progress = None
    if not json_out and sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(console=err, transient=True)
        task = bar.add_task("simulating", total=1.0)
        bar.start()
        progress = lambda f: bar.update(task, completed=f)  # noqa: E731
    try:
        result = simulate(scenario, overrides, progress=progress)
    finally:
        if progress is not None:
            bar.stop()
    if out_dir is not None:
        result.save(out_dir)
    if json_out:
        _print_json(result.summary)
    else:
        print_summary(out, result)
        if out_dir is not None:
            out.print(f"wrote {out_dir}/summary.json, requests.csv, timeseries.csv, replicas.csv")


# ---------------------------------------------------------------------------- tables
def _print_frame(df, title: str = "", floatfmt: str = "{:,.4g}") -> None:
    t = Table(title=title or None)
    for c in df.columns:
        t.add_column(str(c), overflow="fold")
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("-" if v != v else floatfmt.format(v))
            else:
                cells.append(str(v))
        t.add_row(*cells)
    out.print(t)


# ---------------------------------------------------------------------------- what-if and procurement
@app.command()
def sweep(
    scenario: Path = typer.Argument(..., help="Base scenario YAML."),
    grid: list[str] = typer.Option(
        ..., "--grid", help="KEY=V1,V2,... or KEY=START:STOP:STEP (inclusive); repeat for a product."
    ),
    out_dir: Path = typer.Option(..., "--out", help="Directory for points.parquet and per-point results (resumable)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a base field: --set run.duration_s=120"),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Dask: 'local' starts a LocalCluster, tcp://HOST:PORT joins one. Default: a local process pool.",
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Local pool / LocalCluster workers (default: CPU count)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the table as one JSON array."),
):
    """Run a grid of what-ifs; one row per point, written as each finishes (rerun to resume)."""
    from fleetsim.sweep import parse_grid, run_sweep

    df = run_sweep(
        scenario,
        parse_grid(grid),
        out_dir,
        overrides=_overrides(set_),
        scheduler=scheduler,
        workers=workers,
        progress=not json_out,
    )
    if json_out:
        sys.stdout.write(df.to_json(orient="records", indent=2) + "\n")
    else:
        from fleetsim.sweep import display_columns

        _print_frame(df[display_columns(df)], title=f"sweep: {len(df)} points -> {out_dir}")


@app.command()
def plan(
    scenario: Path = typer.Argument(..., help="Scenario YAML: its workload and SLOs are the requirement."),
    gpus_: str = typer.Option("h100-sxm,h200,b200,a100-80gb", "--gpus", help="Comma-separated GPU types to compare."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a field by dotted path."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write plan.json and the comparison table here."),
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
):
    """Cheapest fleet per GPU type that meets the scenario's SLOs at its load."""
    from fleetsim.plan import plan_fleet

    result = plan_fleet(
        scenario,
        [g.strip() for g in gpus_.split(",") if g.strip()],
        overrides=_overrides(set_),
        out_dir=out_dir,
        progress=not json_out,
    )
    if json_out:
        _print_json(result.to_dict())
    else:
        _print_frame(result.display_table(), title=result.title())
        out.print(result.recommendation())


@app.command()
def report(
    source: Path = typer.Argument(..., help="A scenario YAML, a sweep directory or a plan directory."),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override fields of a scenario source."),
):
    """Write a self-contained HTML procurement report (opens offline in any browser)."""
    from fleetsim.report.html import write_report

    path = write_report(source, output, overrides=_overrides(set_))
    out.print(f"wrote {path}")


@app.command()
def validate(
    cases: list[Path] | None = typer.Argument(None, help="Case files (YAML); default: the shipped cases."),
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write validation.csv and summary.json here."),
):
    """Compare fleetsim's predictions with published measurements."""
    from fleetsim.validation import run_validation

    result = run_validation(cases or None)
    if out_dir is not None:
        result.save(out_dir)
    if json_out:
        _print_json(result.to_dict())
    else:
        _print_frame(result.display_table(), title="predicted vs published")
        _print_frame(result.summary_table(), title="absolute error by metric (%)")


@app.command()
def calibrate(
    gpu_index: int = typer.Option(0, "--gpu", help="GPU index as nvidia-smi numbers it (matched to torch by UUID)."),
    out_path: Path | None = typer.Option(None, "--out", help="Profile YAML to write (raw samples CSV beside it)."),
    quick: bool = typer.Option(False, "--quick", help="Small grid: under 10 minutes on an H100."),
    report_profile: Path | None = typer.Option(None, "--report", help="Show measured against fitted for a profile."),
    plot: Path | None = typer.Option(None, "--plot", help="With --report: write the plot (PNG) here."),
):
    """Measure KV-cache kernels and weight GEMMs with NVML energy, fit a calibration profile."""
    from fleetsim.calibrate import command

    if report_profile is not None:
        df = command.calibration_report(report_profile, plot)
        _print_frame(df, title=f"measured vs fitted: {report_profile}")
        if plot is not None:
            out.print(f"wrote {plot}")
        return
    path = command.run_calibration(gpu_index, out_path, quick)
    out.print(f"wrote {path}")


def _usage_error_types() -> tuple:
    import click

    types = [click.exceptions.ClickException]
    try:  # typer may bundle its own click
        from typer._click import exceptions as bundled

        types.append(bundled.ClickException)
    except ImportError:
        pass
    return tuple(types)


def main() -> None:
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except FleetsimError as exc:
        _error_line(str(exc))
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # usage errors arrive here in non-standalone mode
        if isinstance(exc, _usage_error_types()):
            _error_line(f"{exc.format_message()} (see fleetsim --help)")
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
