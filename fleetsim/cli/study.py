"""`fleetsim sweep`, `fleetsim plan`, `fleetsim report`: what-ifs, procurement, the HTML report."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from fleetsim.cli.options import DIR, FILE, json_option, set_option
from fleetsim.cli.terminal import fail, note_line, out, overrides, print_frame, print_json, say

PRICE_OPTION = typer.Option(
    None,
    "--price",
    metavar="GPU=USD",
    help="Rental price per GPU-hour for one GPU type (repeat, or comma-separate): --price h100-sxm=2.10. "
    "Replaces that GPU's offers (catalog/offers.yaml) with one per-GPU offer. Default: the offers and catalog prices.",
)
SEEDS_OPTION = typer.Option(
    5,
    "--seeds",
    metavar="R",
    help="Seeds each fleet found is re-run over (run.seed + 0..R-1): figures are means with 95% Student-t "
    "intervals; options whose $/Mtok intervals overlap are ties. Default 5.",
)


def _gpu_list(text: str | None) -> list[str] | None:
    return None if text is None else [g.strip() for g in text.split(",") if g.strip()]


def sweep(
    scenario: Path = typer.Argument(..., metavar="SCENARIO", help="Base scenario YAML file."),
    grid: list[str] = typer.Option(
        ...,
        "--grid",
        metavar="KEY=VALUES",
        help="A field by dotted path and its values: KEY=V1,V2,... or KEY=START:STOP:STEP (inclusive); "
        "list items by index (workload.classes.0.weight=1,2). Repeat for a product. Every key and value "
        "is checked before anything runs.",
    ),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        metavar=DIR,
        help="Folder for sweep.json, points.parquet and points/<id>.json (one per point, written as it "
        "finishes). Rerun the same command into it to resume: finished points are not rerun.",
    ),
    set_: list[str] | None = set_option("the base scenario (every point)"),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        metavar="local|tcp://HOST:PORT",
        help="Run on Dask: 'local' starts a LocalCluster, tcp://HOST:PORT joins a running scheduler "
        "(needs fleetsim[dask]). Default: a local process pool.",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        metavar="N",
        help="Processes of the local pool or LocalCluster. Default: the CPU count (pool), 2 (LocalCluster).",
    ),
    seeds: int = typer.Option(
        1,
        "--seeds",
        metavar="R",
        help="Run each point at R seeds (run.seed + 0..R-1): interval.<figure>_lo/_hi columns hold 95% "
        "Student-t intervals of the headline figures. Default 1 (no intervals).",
    ),
    json_out: bool = json_option("the table as one JSON array (a record per point)"),
):
    """Run a grid of what-ifs, one simulation per point.

    One row per point, written as each finishes.

    Exit status 0 when every point ran or some failed (their count is said), 1 when every point
    failed, 2 for a bad key or value (nothing runs); Ctrl-C keeps the finished points.

    \b
    Examples:
      fleetsim sweep scenarios/h100_llama3.yaml --grid fleet.replicas=2:8:2 --out runs/sweep
      fleetsim sweep scenarios/h100_llama3.yaml --grid fleet.gpu=h100-sxm,h200 \\
          --grid kv_cache.key_dtype=bf16,fp8 --set run.duration_s=120 --out runs/gpu_kv
      fleetsim sweep my.yaml --grid workload.arrival.rate_per_s=5:40:5 --out runs/load --scheduler local
    """
    from fleetsim.sweep import SweepInterrupted, display_columns, parse_grid, run_sweep

    try:
        df = run_sweep(
            scenario,
            parse_grid(grid),
            out_dir,
            overrides=overrides(set_),
            scheduler=scheduler,
            workers=workers,
            progress=not json_out and sys.stderr.isatty(),
            seeds=seeds,
        )
    except SweepInterrupted as exc:  # Ctrl-C or SIGTERM: one line, what was kept
        note_line(exc.message)
        raise typer.Exit(exc.exit_status) from None
    if json_out:
        print_json(df.to_dict(orient="records"))
    else:
        print_frame(df[display_columns(df)], title=f"sweep: {len(df)} points -> {out_dir}")
    failed = df[df["status"] != "ok"]
    if len(failed) and len(failed) == len(df):
        fail(f"sweep: all {len(df)} points failed (the first: {failed['error'].iloc[0]}); see {out_dir}/points", 1)
    if len(failed):
        note_line(f"sweep: {len(failed)} of {len(df)} points failed (see the error column, or {out_dir}/points)")


def plan(
    scenario: Path = typer.Argument(
        ..., metavar="SCENARIO", help="Scenario YAML file: its workload and SLOs are the requirement."
    ),
    gpus_: str | None = typer.Option(
        None,
        "--gpus",
        metavar="GPU[,GPU...]",
        help="GPU types to compare, comma-separated catalog names (fleetsim gpus). Default: every catalog GPU "
        "(one without a price is a row with the reason).",
    ),
    price: list[str] | None = PRICE_OPTION,
    seeds: int = SEEDS_OPTION,
    spares: int = typer.Option(
        0, "--spares", metavar="K", help="N+K: K hot-spare replicas on top of the fleet found, priced and powered."
    ),
    peak: bool = typer.Option(
        False,
        "--peak",
        help="Size a diurnal load for its peak rate (a steady Poisson load at the peak) instead of the day.",
    ),
    mix: bool = typer.Option(
        False,
        "--mix",
        help="Also search fleets mixing the two --gpus types (fleet.groups behind the capacity_weighted router): "
        "for each count of the first type up to its one-type answer, the fewest of the second that meets the "
        "SLO; says whether a mix beats the best one-type fleet. Default: off.",
    ),
    set_: list[str] | None = set_option(),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        metavar=DIR,
        help="Folder to write, whole: plan.json, plan.csv, options.csv, evaluations.csv, scenario.yaml, "
        "manifest.json (with --mix: mix.json, mix.csv; a rerun replaces it). Checked before the search starts. "
        "Default: nothing written.",
    ),
    json_out: bool = json_option(),
    pd_: bool = typer.Option(
        False,
        "--pd",
        help="A P/D scenario (disaggregation): search the prefill and decode replica counts of its pools "
        "(their GPU and tp) for the cheapest P:D ratio meeting the SLO, one run per ratio at the scenario's "
        "seed. --gpus, --price, --spares, --peak and --out do not apply (refused); --seeds is not read.",
    ),
):
    """The cheapest fleet per GPU type that meets the SLOs.

    For each GPU type: the smallest replica count (over TP degrees that fit) meeting the SLO, and
    proof that one replica fewer misses it.

    \b
    Examples:
      fleetsim plan scenarios/h100_llama3.yaml --price a100-80gb=1.40 --seeds 10
      fleetsim plan scenarios/h100_l40s_mixed.yaml --gpus h100-sxm,l40s --price l40s=0.86 --mix
      fleetsim plan my.yaml --out runs/plan && fleetsim report runs/plan -o plan.html
    """
    from fleetsim.output import check_output_dir, output_directory
    from fleetsim.plan import plan_fleet

    if pd_:
        given = {"--gpus": gpus_, "--price": price, "--spares": spares, "--peak": peak, "--out": out_dir, "--mix": mix}
        _plan_pd(scenario, overrides(set_), json_out, [k for k, v in given.items() if v])
        return
    if out_dir is not None:
        check_output_dir(out_dir, "--out")
    from fleetsim.study.sources import parse_prices

    if mix:
        if spares or peak:
            fail(f"plan --mix: {'--spares' if spares else '--peak'} is not searched with --mix; valid: leave it out")
        _plan_mix(scenario, gpus_, price, seeds, set_, out_dir, json_out)
        return

    result = plan_fleet(
        scenario,
        _gpu_list(gpus_),
        overrides=overrides(set_),
        progress=not json_out and sys.stderr.isatty(),
        seeds=seeds,
        prices=parse_prices(price),
        spares=spares,
        size_for_peak=peak,
    )
    if out_dir is not None:
        with output_directory(out_dir, "--out", scenario=result.scenario) as tmp:
            result.save(tmp)
    if json_out:
        print_json(result.to_dict())
    else:
        print_frame(result.display_table(), title=result.title())
        out.print(result.recommendation())
    if out_dir is not None:
        (note_line if json_out else say)(f"wrote {out_dir}/")


def _plan_mix(scenario, gpus_, price, seeds, set_, out_dir, json_out) -> None:
    from fleetsim.output import output_directory, write_json
    from fleetsim.plan_mix import plan_mix
    from fleetsim.study.sources import parse_prices

    result = plan_mix(
        scenario, _gpu_list(gpus_) or [], overrides=overrides(set_), seeds=seeds, prices=parse_prices(price)
    )
    if out_dir is not None:
        with output_directory(out_dir, "--out", scenario=result.scenario) as tmp:
            write_json(tmp / "mix.json", result.to_dict())
            result.candidates.to_csv(tmp / "mix.csv", index=False)
    if json_out:
        print_json(result.to_dict())
    else:
        ga, gb = result.gpus
        table = result.candidates.rename(
            columns={"a": ga, "b": gb, "slo_attainment": "SLO attain.", "usd_per_hour": "$/hour"}
        )
        print_frame(table, title=f"plan --mix: {ga} + {gb}")
        for note in result.notes:
            note_line(note)
        out.print(result.sentence())
    if out_dir is not None:
        (note_line if json_out else say)(f"wrote {out_dir}/")


def _plan_pd(scenario: Path, sets: dict, json_out: bool, not_applicable: list[str]) -> None:
    from fleetsim.errors import SpecError
    from fleetsim.plan_pd import plan_pd

    if not_applicable:
        raise SpecError(f"plan --pd: {not_applicable[0]} does not apply; valid: a P/D scenario and --set")
    result = plan_pd(scenario, overrides=sets)
    if json_out:
        print_json(result.to_dict())
        return
    print_frame(result.table(), title=f"Fewest decode replicas per prefill count: {result.scenario.name}")
    out.print(result.recommendation())


def report(
    source: Path = typer.Argument(
        ..., metavar="SOURCE", help="A scenario YAML file, a sweep folder (fleetsim sweep --out) or a plan folder."
    ),
    output: Path = typer.Option(
        Path("report.html"),
        "-o",
        "--output",
        metavar=FILE,
        help="HTML file to write (replaced whole; checked before any work).",
    ),
    gpus_: str | None = typer.Option(
        None,
        "--gpus",
        metavar="GPU[,GPU...]",
        help="A scenario SOURCE: GPU types the right-sizing compares. Default: the scenario's GPU and every "
        "catalog GPU with a price.",
    ),
    seeds: int = SEEDS_OPTION,
    price: list[str] | None = PRICE_OPTION,
    spares: int = typer.Option(0, "--spares", metavar="K", help="N+K hot-spare replicas in the plan. Default 0."),
    peak: bool = typer.Option(False, "--peak", help="Size a diurnal load for its peak rate. Default: off."),
    pdf: bool = typer.Option(
        False,
        "--pdf",
        help="Also print the page to PDF beside the HTML (OUTPUT with .pdf; needs Chromium). Default: off.",
    ),
    csv_dir: Path | None = typer.Option(
        None, "--csv", metavar=DIR, help="Also write every table as DIR/<table id>.csv. Default: none."
    ),
    set_: list[str] | None = set_option("a scenario SOURCE"),
):
    """Write a self-contained HTML procurement report.

    From a scenario: right-sizes the fleet over its GPU and comparable catalog GPUs (R seeds, 95%
    intervals) and leads with what to rent or buy, rent vs own, the runner-up and the margin.

    \b
    Examples:
      fleetsim report scenarios/h100_llama3.yaml -o report.html --pdf
      fleetsim report scenarios/h100_llama3.yaml --gpus h100-sxm,h200 --price h200=3.00 --csv tables
      fleetsim report runs/sweep -o sweep.html
    """
    from fleetsim.output import output_file
    from fleetsim.report.html import write_report
    from fleetsim.study.sources import parse_prices

    study_options: dict = {}
    if gpus_ is not None:
        study_options["gpus"] = _gpu_list(gpus_)
    if price:
        study_options["prices"] = parse_prices(price)
    if spares:
        study_options["spares"] = spares
    if peak:
        study_options["size_for_peak"] = True
    if (
        source.is_file()
        and source.suffix in (".yaml", ".yml", ".json")
        and source.name not in ("plan.json", "sweep.json")
    ):
        study_options["seeds"] = seeds
    with output_file(output, "-o") as tmp:
        write_report(source, tmp, overrides=overrides(set_), study_options=study_options or None, csv_dir=csv_dir)
    say(f"wrote {output}")
    if csv_dir is not None:
        say(f"wrote {csv_dir}/ (one CSV per table)")
    if pdf:
        from fleetsim.report.pdf import print_pdf

        target = print_pdf(output, output.with_suffix(".pdf"))
        say(f"wrote {target}")
