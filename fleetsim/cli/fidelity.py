"""`fleetsim validate`, `fleetsim calibrate`: how close the simulator is to measurements."""

from __future__ import annotations

from pathlib import Path

import typer

from fleetsim.cli.options import DIR, FILE, json_option
from fleetsim.cli.terminal import note_line, print_frame, print_json, say


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
        help="Profile YAML to write (the raw samples CSV beside it). Default: calibration/<gpu>.yaml.",
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
):
    """Measure kernels on an NVIDIA GPU, fit a profile.

    KV-cache kernels and weight GEMMs timed with CUDA events and NVML energy. Needs an NVIDIA GPU with torch and NVML (pip install 'fleetsim[calibrate]').

    \b
    Examples:
      fleetsim calibrate --gpu 0 --out calibration/h100-sxm.yaml --quick
      fleetsim calibrate --report calibration/h100-sxm.yaml --plot fit.png
    """
    from fleetsim.calibrate import command
    from fleetsim.output import check_output_file

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
