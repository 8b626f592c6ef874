"""Procurement: the cheapest fleet of each GPU type that meets a scenario's SLO at its load.

    result = plan_fleet("scenarios/h100_llama3.yaml", ["h100-sxm", "h200"],
                        overrides={"run.duration_s": 60})
    result.table            # one row per GPU type
    result.recommendation() # one sentence

For each GPU type and each allowed configuration (tensor-parallel degree x weight dtype x KV
precision) the replica count is searched, not gridded: capacity grows with replicas, so an
exponential search (1, 2, 4, ...) brackets the smallest fleet that meets the SLO and a bisection
narrows it to one replica. Both ends of the final bracket are simulated, so every answer comes
with the evidence that one replica fewer misses. A configuration whose cheapest possible price
(GPUs alone, no energy) already exceeds the best found is not simulated further.

This module runs the plan over GPU types and ranks them; the candidates are plan_configs, the
search and its evaluation plan_search, the answer (PlanResult and its columns) plan_table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fleetsim.catalog import gpu_names, load_gpu
from fleetsim.errors import FleetsimError, SpecError
from fleetsim.plan_configs import PIPELINE_OPTIONS as PIPELINE_OPTIONS  # re-exported: public before the split
from fleetsim.plan_configs import configs, option_cols
from fleetsim.plan_search import ReplicaSearch, row_from
from fleetsim.plan_table import EXTRA_COLUMNS, TABLE_COLUMNS, PlanResult, describe_load, pipeline_overrides
from fleetsim.scenario import load_scenario
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.economics import floor_usd_per_hour
from fleetsim.study.replicates import check_seeds

__all__ = ["PlanResult", "plan_fleet", "describe_load", "pipeline_overrides"]


def _rank(table: pd.DataFrame) -> pd.DataFrame:
    """Rank the rows that meet the SLO by mean $/Mtok; a row whose interval overlaps the best's is a tie."""
    table["rank"] = None
    table["tie_with_best"] = None
    met = table[table["met"]].sort_values(["usd_per_million_tokens", "usd_per_hour"], kind="stable")
    if met.empty:
        return table
    b = met.iloc[0]
    for rank, (idx, r) in enumerate(met.iterrows(), start=1):
        table.at[idx, "rank"] = rank
        tie = (
            r["usd_per_million_tokens_lo"] <= b["usd_per_million_tokens_hi"]
            and b["usd_per_million_tokens_lo"] <= r["usd_per_million_tokens_hi"]
        )
        table.at[idx, "tie_with_best"] = bool(tie)
    return table


def peak_overrides(spec: ScenarioSpec) -> dict:
    """Overrides that replace a time-varying (diurnal) load by a steady Poisson load at its peak
    rate, to size for the peak rather than the day's mean; {} for other arrival kinds."""
    a = spec.workload.arrival
    if a.kind != "diurnal":
        return {}
    peak = max(a.rates_per_s) if a.is_piecewise else a.mean_rate_per_s * (a.peak_to_mean or 1.0)
    return {"workload.arrival": {"kind": "poisson", "rate_per_s": float(peak)}}


def plan_fleet(
    scenario: Any,
    gpus: Iterable[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    tp_options: Iterable[int] | None = None,
    weight_dtypes: Iterable[str] | None = None,
    kv_dtypes: Iterable[Any] | None = None,
    max_replicas: int = 256,
    seeds: int = 1,
    prices: Mapping[str, float] | None = None,
    spares: int = 0,
    size_for_peak: bool = False,
) -> PlanResult:
    """The cheapest fleet of each GPU type meeting the scenario's SLO at its load.

    tp_options: tensor-parallel degrees to try (default: every valid degree of the model up to the
    GPUs of one server, that fits); weight_dtypes / kv_dtypes: precisions to try (default: the
    scenario's; a KV entry is 'fp8' for keys and values or 'q8_0/q4_0' for keys/values).
    A GPU type where nothing fits, has no price or meets no SLO is a row with met=False and a reason.
    gpus: default every catalog GPU. seeds: the found fleet (and one fewer) re-run over R seeds;
    the SLO is met when attainment's 95% lower bound reaches the target (else a replica is added),
    and rows whose $/Mtok intervals overlap the cheapest's are ties. prices: {gpu: USD per
    GPU-hour} for rental (a 1-GPU offer replacing catalog/offers.yaml). spares: N+k hot-spare
    replicas priced and powered like the rest. size_for_peak: a diurnal load is planned as a
    steady Poisson load at its peak rate.
    """
    gpus = [g for g in dict.fromkeys(gpu_names() if gpus is None else gpus)]
    if not gpus:
        raise SpecError("plan: no GPU types given (--gpus h100-sxm,h200,...)")
    if max_replicas < 1:
        raise SpecError(f"plan: max_replicas must be >= 1 (got {max_replicas})")
    check_seeds(seeds)
    if isinstance(spares, bool) or not isinstance(spares, int) or not 0 <= spares <= 1024:
        raise SpecError(f"plan: spares {spares!r} is not valid; give a whole number of spare replicas from 0 to 1024")
    overrides = dict(overrides or {})
    given = load_scenario(scenario, overrides)
    if given.disaggregation is not None:
        raise SpecError(
            "plan: the scenario's fleet is prefill/decode disaggregated (disaggregation:); size its pools with "
            "`fleetsim plan SCENARIO --pd` (or drop disaggregation to plan one pool)"
        )
    if given.fleet.groups:
        overrides["fleet.groups"] = None  # a mixed fleet is planned from its workload and SLO (plan --mix: both)
    if given.autoscaling is not None:
        # The plan sizes the fixed fleet that meets the SLO over the same traffic (what to buy, or
        # the ceiling of the autoscaler); the scenario's own autoscaled fleet is its contrast.
        overrides["autoscaling"] = None
    if size_for_peak:
        overrides.update(peak_overrides(load_scenario(scenario, overrides)))
    base = load_scenario(scenario, overrides)
    prices = {load_gpu(g).name: float(v) for g, v in (prices or {}).items()}
    for g in gpus:
        load_gpu(g)  # an unknown name is a typo: one clear error, before any simulation

    bar = None
    note: Callable[[str], None] = lambda text: None  # noqa: E731
    if progress:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = Progress(
            SpinnerColumn(),
            TextColumn("plan {task.description}"),
            TextColumn("({task.completed} runs)"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        task = bar.add_task("", total=None)
        bar.start()

        def note(text: str) -> None:
            bar.update(task, description=text, advance=1)

    rows, options, evaluations = [], [], []
    try:
        for gpu_name in gpus:
            gpu = load_gpu(gpu_name)
            fits, misfits = configs(base, gpu_name, tp_options, weight_dtypes, kv_dtypes, prices.get(gpu.name))
            for m in misfits:
                options.append(
                    {
                        **option_cols(m),
                        "replicas": None,
                        "met": False,
                        "usd_per_hour": None,
                        "usd_per_million_tokens": None,
                        "reason": m["reason"],
                    }
                )
            best: dict | None = None
            best_usd = math.inf
            misses = []
            for cfg in fits:
                n_before = len(evaluations)
                search = ReplicaSearch(base, cfg, max_replicas, evaluations, note)
                spec1 = load_scenario(base, {**cfg, "fleet.replicas": 1})

                def lower_bound(r: int, cfg=cfg, spec1=spec1, gpu=gpu) -> float:
                    # GPUs alone (no energy, no rounding up): a floor under any fleet of r replicas.
                    return floor_usd_per_hour(spec1, gpu, r * spec1.fleet.gpus_per_replica)

                try:
                    replicas, why = search.run(lower_bound, best_usd)
                except FleetsimError as exc:  # e.g. a request class the model cannot take
                    replicas, why = None, str(exc)
                sims = len(evaluations) - n_before
                if replicas is None:
                    misses.append(why)
                    options.append(
                        {
                            **option_cols(cfg),
                            "replicas": None,
                            "met": False,
                            "usd_per_hour": None,
                            "usd_per_million_tokens": None,
                            "reason": why,
                            "simulations": sims,
                        }
                    )
                    continue
                row = {**option_cols(cfg), **row_from(search, replicas, 1, spares), "simulations": sims}
                row["_search"] = search
                options.append(
                    {
                        **option_cols(cfg),
                        "replicas": replicas,
                        "met": True,
                        "usd_per_hour": row["usd_per_hour"],
                        "usd_per_million_tokens": row["usd_per_million_tokens"],
                        "reason": "",
                        "simulations": sims,
                    }
                )
                key = (row["usd_per_hour"], row["usd_per_million_tokens"] or math.inf, row["gpus"])
                if best is None or key < (
                    best["usd_per_hour"],
                    best["usd_per_million_tokens"] or math.inf,
                    best["gpus"],
                ):
                    best, best_usd = row, row["usd_per_hour"]
            if best is None:
                if not fits:
                    other = [m for m in misfits if not m["capacity"]]
                    if other:  # e.g. no calibration profile for this GPU: the same for every tp
                        reason = other[0]["reason"]
                    else:
                        tried = ", ".join(
                            f"{m['fleet.tp']}"
                            + (f" x pp {m['fleet.pipeline.stages']}" if "fleet.pipeline.stages" in m else "")
                            for m in misfits
                        )
                        reason = f"does not fit at tp {tried}: {misfits[-1]['reason']}"
                else:
                    reason = next(
                        (m for m in misses if not m.startswith("dearer")), misses[0] if misses else "SLO missed"
                    )
                rows.append(
                    {
                        "gpu": gpu_name,
                        "met": False,
                        "reason": reason,
                        "simulations": sum(o.get("simulations") or 0 for o in options if o["gpu"] == gpu_name),
                    }
                )
            else:
                search = best.pop("_search")
                if seeds > 1:  # the winner of this GPU type, re-run over the seeds
                    best = {**best, **row_from(search, int(best["replicas"]), seeds, spares)}
                searched = sum(o.get("simulations") or 0 for o in options if o["gpu"] == gpu_name)
                best["simulations"] = searched + search.seed_runs
                rows.append(best)
    finally:
        if bar is not None:
            bar.stop()

    for r in rows:
        r.pop("_search", None)
    table = pd.DataFrame(rows).reindex(columns=list(TABLE_COLUMNS) + list(EXTRA_COLUMNS))
    table["met"] = table["met"].astype(bool)
    table["reason"] = table["reason"].fillna("")
    table = _rank(table)
    result = PlanResult(
        scenario=base,
        overrides=overrides,
        table=table,
        options=pd.DataFrame(options).reindex(
            columns=[
                "gpu",
                "tp",
                "weight_dtype",
                "key_dtype",
                "value_dtype",
                "replicas",
                "met",
                "usd_per_hour",
                "usd_per_million_tokens",
                "simulations",
                "reason",
            ]
        ),
        evaluations=pd.DataFrame(evaluations).reindex(
            columns=[
                "gpu",
                "tp",
                "weight_dtype",
                "key_dtype",
                "value_dtype",
                "replicas",
                "met",
                "slo_attainment",
                "usd_per_hour",
                "usd_per_million_tokens",
                "ttft_p99_s",
                "tpot_p99_s",
            ]
        ),
        max_replicas=max_replicas,
        seeds=seeds,
        spares=spares,
    )
    if out_dir is not None:
        result.save(out_dir)
    return result
