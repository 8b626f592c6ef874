"""`fleetsim init`, `fleetsim run`, `fleetsim schema`: write a scenario, simulate it, its schema."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from fleetsim.cli.options import DIR, json_option, period_s, set_option
from fleetsim.cli.terminal import err, fail, note_line, out, overrides, print_json, say


def init(
    path: Path = typer.Argument(
        Path("scenario.yaml"), metavar="PATH", help="Where to write the starter scenario (YAML)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite PATH if it exists."),
):
    """Write a commented starter scenario to edit and run.

    Every section of a scenario, each field with its meaning, unit and default as a comment.
    It runs as written (Llama 3 8B on two H100s serving chat traffic); edit it from there.

    \b
    Examples:
      fleetsim init
      fleetsim init my.yaml && fleetsim run my.yaml
      fleetsim init my.yaml --force
    """
    from fleetsim.cli.starter import starter_scenario
    from fleetsim.output import check_output_file, write_bytes

    if path.exists() and not force:
        fail(f"init: {path} exists; give another PATH, or add --force to overwrite it")
    check_output_file(path, "init PATH")
    write_bytes(path, starter_scenario(str(path)).encode())
    say(f"wrote {path}; next: fleetsim run {path}")


def schema():
    """Print the scenario JSON Schema (for editors and validation).

    Every field with its description: meaning, unit, bounds and default.

    \b
    Examples:
      fleetsim schema > scenario.schema.json
    """
    from fleetsim.spec.scenario import ScenarioSpec

    print_json(ScenarioSpec.model_json_schema())


_RUN_FILES = "summary.json, scenario.json, requests.parquet, timeseries.parquet, replicas.parquet, manifest.json"


def run(
    scenario: Path = typer.Argument(..., metavar="SCENARIO", help="Scenario YAML file (fleetsim init writes one)."),
    set_: list[str] | None = set_option(),
    seed: int | None = typer.Option(
        None,
        "--seed",
        metavar="N",
        help="Random seed; the same scenario and seed give the same summary. Default: run.seed of the scenario.",
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        metavar=DIR,
        help=f"Folder to write the run into, whole ({_RUN_FILES}); a rerun replaces it. "
        "Checked before the simulation starts. Default: nothing written.",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=1024,
        metavar="N",
        help="Processes for a fleet in pods (fleet.pods > 1: one pod per process); the result does not depend "
        "on it. Default: one per CPU, at most one per pod. A one-pod fleet runs in this process.",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="local|tcp://HOST:PORT",
        help="Run a fleet's pods (fleet.pods > 1) on Dask: 'local' starts a LocalCluster of --workers processes, "
        "tcp://HOST:PORT joins a running scheduler (needs fleetsim[dask]); the result does not depend on it. "
        "Default: a local process pool.",
    ),
    period: str | None = typer.Option(
        None,
        "--period",
        metavar="PERIOD",
        help="Simulated period of arrivals (sets run.duration_s): 24h, 30m, 3600s, 1d or seconds. "
        "Default: run.duration_s of the scenario.",
    ),
    json_out: bool = json_option("exactly one JSON object, the summary"),
):
    """Simulate a scenario: latency, power, cooling and cost.

    Prints requests, latency (TTFT, TPOT, end to end), throughput, concurrency, KV-cache use,
    GPU and facility power, heat, water, cost per hour and per million tokens, and the SLO verdict.

    \b
    Examples:
      fleetsim run scenarios/h100_llama3.yaml
      fleetsim run scenarios/h100_llama3.yaml --set fleet.replicas=8 --seed 1 --out runs/r8 --json
      fleetsim run scenarios/h100_llama3_autoscaled_day.yaml --period 24h
    """
    from fleetsim.api import simulate
    from fleetsim.output import check_output_dir, summary_null_reasons
    from fleetsim.report.console import print_summary

    changes = overrides(set_)
    if seed is not None:
        changes["run.seed"] = seed
    if period is not None:
        changes["run.duration_s"] = period_s(period)
    if out_dir is not None:
        check_output_dir(out_dir, "--out")
    progress = None
    if not json_out and sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(console=err, transient=True)
        task = bar.add_task("simulating", total=1.0)
        bar.start()
        progress = lambda f: bar.update(task, completed=f)  # noqa: E731
    try:
        result = simulate(scenario, changes, progress=progress, workers=workers, scheduler=scheduler)
    finally:
        if progress is not None:
            bar.stop()
    if out_dir is not None:
        result.save(out_dir)
    if json_out:
        print_json(result.summary, reasons=summary_null_reasons(result.summary))
        if out_dir is not None:
            note_line(f"wrote {out_dir}/ ({_RUN_FILES})")
        return
    print_summary(out, result)
    if out_dir is not None:
        say(f"wrote {out_dir}/ ({_RUN_FILES})")
    else:
        say("nothing written; add --out DIR to keep the summary and the per-request table")
