"""`fleetsim validate`, `fleetsim calibrate`: how close the simulator is to measurements."""

from __future__ import annotations

from pathlib import Path

import typer

from fleetsim.cli.options import DIR, FILE, json_option
from fleetsim.cli.terminal import fail, note_line, print_frame, print_json, say


def validate(
    cases: list[Path] | None = typer.Argument(
        None, metavar="CASES", help="Case files (YAML). Default: the shipped cases (fleetsim/validation)."
    ),
    json_out: bool = json_option(),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        metavar=DIR,
        help="Folder to write, whole: validation.csv, summary.json, VALIDATION.md, manifest.json "
        "(a rerun replaces it). Checked before the cases run. Default: nothing written.",
    ),
):
    """Compare predictions with published measurements.

    Throughput, latency (TTFT, TPOT, ITL), GPU power and energy per token, case by case.

    \b
    Examples:
      fleetsim validate
      fleetsim validate --out runs/validation
      fleetsim validate my_cases.yaml --json
    """
    from fleetsim.output import check_output_dir, output_directory
    from fleetsim.validation import run_validation

    if out_dir is not None:
        check_output_dir(out_dir, "--out")
    result = run_validation(cases or None)
    if out_dir is not None:
        with output_directory(out_dir, "--out") as tmp:
            result.save(tmp)
    if json_out:
        print_json(result.to_dict())
    else:
        print_frame(result.display_table(), title="predicted vs published")
        print_frame(result.summary_table(), title="absolute error by metric (%)")
    if out_dir is not None:
        (note_line if json_out else say)(f"wrote {out_dir}/")


def calibrate(
    gpu_index: int = typer.Option(
        0, "--gpu", metavar="INDEX", help="GPU index as nvidia-smi numbers it (matched to torch by UUID)."
    ),
    out_path: Path | None = typer.Option(
        None,
        "--out",
        metavar=FILE,
        help="Profile YAML to write: measuring, the GPU profile (its raw samples CSV beside it); with "
        "--from-bench, the fitted engine profile. Default: calibration/<gpu>.yaml when measuring; with "
        "--from-bench none (the tables only).",
    ),
    quick: bool = typer.Option(False, "--quick", help="A small grid: under 10 minutes on an H100."),
    report_profile: Path | None = typer.Option(
        None,
        "--report",
        metavar=FILE,
        help="Show measured against fitted for this profile YAML (no GPU needed). Default: none (measure).",
    ),
    plot: Path | None = typer.Option(
        None, "--plot", metavar=FILE, help="With --report: write the plot (PNG) here. Default: no plot."
    ),
    from_bench: list[Path] | None = typer.Option(
        None,
        "--from-bench",
        metavar=FILE,
        help="A benchmark result file of your deployment to fit the engine terms to (no GPU needed); repeat "
        "for more. vLLM `vllm bench serve --save-result` JSON, SGLang bench_serving JSONL, GuideLLM "
        "benchmarks.json, genai-perf profile_export_genai_perf.json, AIPerf profile_export_aiperf.json. "
        "Default: none (measure kernels).",
    ),
    scenario: Path | None = typer.Option(
        None,
        "--scenario",
        metavar=FILE,
        help="With --from-bench: the scenario YAML of the benchmarked deployment (model, GPU, TP, precisions, "
        "scheduler limits, engine kind and version; its engine profile is the prior, its GPU profile is kept). "
        "Default: none; required with --from-bench.",
    ),
    bench_format: str = typer.Option(
        "auto",
        "--bench-format",
        metavar="FORMAT",
        help="With --from-bench: the tool that wrote the files: auto (detected from each file's fields), vllm, "
        "sglang, guidellm, genai-perf or aiperf.",
    ),
):
    """Measure kernels on an NVIDIA GPU, or fit engine terms to benchmark results.

    Measuring: KV-cache kernels and weight GEMMs timed with CUDA events and NVML energy. Needs an NVIDIA GPU with torch and NVML (pip install 'fleetsim[calibrate]').

    With --from-bench: the engine terms of a profile (host time per iteration and per sequence, GPU time per layer, overlap serial fraction, all-reduce latency; s) are fitted to your benchmark results, GPU kernel terms kept; prints published vs predicted (before and after, error %) per point. Concurrency runs are closed loops, request_rate inf runs a burst of every request; request-rate runs are simulated, not fitted.

    \b
    Examples:
      fleetsim calibrate --gpu 0 --out calibration/h100-sxm.yaml --quick
      fleetsim calibrate --report calibration/h100-sxm.yaml --plot fit.png
      fleetsim calibrate --from-bench c1.json --from-bench c5.json --scenario deploy.yaml --out my-engine.yaml
    """
    from fleetsim.output import check_output_file

    if from_bench:
        return _calibrate_from_bench(
            from_bench, scenario, bench_format, out_path, gpu_index, quick, report_profile, plot
        )
    if scenario is not None:
        fail("--scenario goes with --from-bench FILE (see fleetsim calibrate --help)")
    if bench_format != "auto":
        fail("--bench-format goes with --from-bench FILE (see fleetsim calibrate --help)")

    from fleetsim.calibrate import command

    if report_profile is None:
        _require_nvml()
    for path, flag in ((out_path, "--out"), (plot, "--plot")):
        if path is not None:
            check_output_file(path, flag)
    if report_profile is not None:
        df = command.calibration_report(report_profile, plot)
        print_frame(df, title=f"measured vs fitted: {report_profile}")
        if plot is not None:
            say(f"wrote {plot}")
        return
    path = command.run_calibration(gpu_index, out_path, quick)
    say(f"wrote {path}")


def _require_nvml() -> None:
    """Measuring reads the GPU through NVML (the nvidia-ml-py package, the `calibrate` extra, not a
    core dependency): one line and exit status 2 where it is not installed."""
    try:
        import pynvml  # noqa: F401
    except ImportError:
        fail("nvidia-ml-py is not installed: pip install 'fleetsim[calibrate]'")


def _calibrate_from_bench(files, scenario, bench_format, out_path, gpu_index, quick, report_profile, plot) -> None:
    from fleetsim.calibrate.bench import BENCH_FORMATS
    from fleetsim.output import check_output_file

    if scenario is None:
        fail("--from-bench needs --scenario SCENARIO.yaml (the benchmarked deployment; see fleetsim calibrate --help)")
    for flag, given in (("--gpu", gpu_index != 0), ("--quick", quick), ("--report", report_profile), ("--plot", plot)):
        if given:
            fail(f"{flag} measures kernels on a GPU; it does not go with --from-bench")
    if bench_format != "auto" and bench_format not in BENCH_FORMATS:
        fail(f"--bench-format: '{bench_format[:40]}' is unknown; valid: auto, {', '.join(BENCH_FORMATS)}")
    if out_path is not None:
        check_output_file(out_path, "--out")
    from fleetsim.calibrate.bench import write_engine_profile
    from fleetsim.calibrate.bench.command import calibrate_from_bench, parameter_table, point_tables, summary_line

    result = calibrate_from_bench(list(files), scenario, bench_format)
    for title, table in point_tables(result):
        print_frame(table, title=title, floatfmt="{:,.4g}")
    print_frame(parameter_table(result), title=f"engine terms (s; serial_fraction a share): {result.prior.name}")
    say(summary_line(result))
    if out_path is not None:
        write_engine_profile(result.profile, out_path)
        say(f"wrote {out_path}")
    else:
        note_line("pass --out PROFILE.yaml to write the fitted engine profile")
