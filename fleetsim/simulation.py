"""simulate(): scenario in, results (data) out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fleetsim.bill import bill_of
from fleetsim.calibration_status import calibration_status
from fleetsim.catalog import load_gpu, load_model
from fleetsim.memory import MemoryPlan
from fleetsim.metrics import summarize
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.replica_model import memory_plan_of
from fleetsim.scenario import load_scenario
from fleetsim.sim.engine import Engine
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.workbudget import check_run


@dataclass
class SimulationResult:
    scenario: ScenarioSpec
    summary: dict
    requests: pd.DataFrame
    timeseries: pd.DataFrame
    replicas: pd.DataFrame
    plan: MemoryPlan = field(repr=False)
    # CPU seconds of each stage of simulate(): build (catalog, memory plan), run (the event loop),
    # summary (metrics). Not part of the result: it varies from machine to machine.
    cpu_s: dict[str, float] = field(default_factory=dict, repr=False, compare=False)
    # Instance lifetimes of an autoscaled or failing run (instance_id, launched_s, ready_s,
    # stopped_s, released_s); None for a fixed fleet (every replica billed the whole period).
    lifetimes: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> str:
        """The summary as JSON through the one writer (fleetsim.output.json_text): an undefined
        value is null with a `<key>_reason` beside it and a `null_fields` list, never NaN."""
        from fleetsim.output import json_text, summary_null_reasons

        return json_text(self.summary, reasons=summary_null_reasons(self.summary))

    def save(self, out_dir: str | Path) -> Path:
        """Write the run's folder whole: summary.json, scenario.json, requests.parquet (one row per
        request), timeseries.parquet, replicas.parquet, then manifest.json (files, sizes, fleetsim
        version, scenario hash, completed: true). The files are written into a temporary sibling
        folder renamed into place at the end, so an earlier run's folder there is replaced as a
        whole; a folder that is not empty and has no manifest.json is refused (SpecError)."""
        from fleetsim.output import output_directory, summary_null_reasons, write_json

        with output_directory(out_dir, scenario=self.scenario) as tmp:
            write_json(tmp / "summary.json", self.summary, reasons=summary_null_reasons(self.summary))
            write_json(tmp / "scenario.json", self.scenario)
            write_requests_parquet(self.requests, tmp / "requests.parquet")
            self.timeseries.to_parquet(tmp / "timeseries.parquet", index=False)
            self.replicas.to_parquet(tmp / "replicas.parquet", index=False)
            if self.lifetimes is not None:
                self.lifetimes.to_parquet(tmp / "lifetimes.parquet", index=False)
        return Path(out_dir)


REQUEST_ROWS_PER_CHUNK = 1_000_000


def write_requests_parquet(requests: pd.DataFrame, path: Path, rows: int = REQUEST_ROWS_PER_CHUNK) -> None:
    """The per-request table as parquet; a table of more than `rows` rows is written a row group of
    `rows` at a time, so no Arrow copy of the whole table is made (request_id is then stored as a
    column-backed index rather than a range: the same values)."""
    if len(requests) <= rows:
        requests.to_parquet(path)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for start in range(0, len(requests), rows):
            chunk = requests.iloc[start : start + rows]
            chunk = chunk.set_axis(pd.Index(chunk.index.to_numpy(), name=requests.index.name))
            table = pa.Table.from_pandas(chunk, preserve_index=True)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def build(scenario: ScenarioSpec):
    """Resolve catalog entries and plan memory: every capacity error surfaces here, and a run that
    would take more requests, samples, events or memory than fleetsim's limits is refused
    (fleetsim.workbudget), all before the clock starts. A P/D scenario: its decode pool's
    (fleetsim.simulation_pd, where both pools are checked)."""
    if scenario.disaggregation is not None:
        from fleetsim.simulation_pd import build_disaggregated

        arch, gpus, profiles, engine, plan, _ = build_disaggregated(scenario)
        return arch, gpus["decode"], profiles["decode"], engine, plan
    arch = load_model(scenario.model)
    if scenario.fleet.groups:
        # A mixed fleet (fleetsim.groups): every group planned; group 0 stands for the fleet's GPU,
        # profile and plan where one is asked for (the work budget counts every group's replicas).
        from fleetsim.groups import build_groups

        engine = load_engine_profile(scenario.engine)
        g0 = build_groups(scenario, arch, engine)[0]
        total = sum(g.replicas for g in scenario.fleet.groups)
        check_run(
            g0.scenario.model_copy(update={"fleet": g0.scenario.fleet.model_copy(update={"replicas": total})}),
            arch,
            g0.gpu,
            g0.plan,
        )
        return arch, g0.gpu, g0.profile, engine, g0.plan
    gpu = load_gpu(scenario.fleet.gpu)
    profile = load_profile(gpu.name, scenario.fleet.profile)
    engine = load_engine_profile(scenario.engine)
    plan = memory_plan_of(scenario, arch, gpu)
    check_run(scenario, arch, gpu, plan)
    return arch, gpu, profile, engine, plan


def summary_scenario(scenario: ScenarioSpec, raw) -> ScenarioSpec:
    """The scenario the summary's fleet, power, cooling and cost blocks describe: an autoscaled
    run's as a fixed fleet of its time-average billed replica count, rounded (at least 1; the
    `autoscaling` block says which); `bill` integrates the real count."""
    if scenario.autoscaling is None or raw.simulated_s <= 0:
        return scenario
    auto = raw.dynamics["autoscaling"]
    mean = max(1, round(auto["replica_hours"] * 3600.0 / raw.simulated_s))
    auto["summary_fleet_replicas"] = mean
    return scenario.model_copy(update={"fleet": scenario.fleet.model_copy(update={"replicas": mean})})


def simulate(
    scenario_or_path: Any,
    overrides: dict | None = None,
    *,
    progress: Callable[[float], None] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    **kw_overrides,
) -> SimulationResult:
    """Run one scenario. Overrides are dotted paths: simulate(path, {"fleet.replicas": 8}) or
    simulate(path, fleet__replicas=8) (double underscore for a dot). A fleet of fleet.pods > 1
    runs one pod per process, on `workers` processes (default: one per CPU, at most one per pod;
    1: all in this process, the same result), or on Dask with `scheduler` ("local": a
    LocalCluster of `workers` processes; "tcp://HOST:PORT": an existing cluster; the same result);
    fleet.pods = 1 runs here."""
    merged = dict(overrides or {})
    merged.update({k.replace("__", "."): v for k, v in kw_overrides.items()})
    t0 = time.process_time()
    scenario = load_scenario(scenario_or_path, merged)
    if scenario.disaggregation is not None:  # a prefill pool and a decode pool: fleetsim.simulation_pd
        from fleetsim.simulation_pd import simulate_disaggregated

        return simulate_disaggregated(scenario, progress)
    arch, gpu, profile, engine_profile, plan = build(scenario)
    groups = None
    if scenario.fleet.groups:
        from fleetsim.groups import build_groups
        from fleetsim.sim.mixed import MixedEngine

        groups = build_groups(scenario, arch, engine_profile)
        engine: Engine = MixedEngine(scenario, arch, groups, engine_profile)
    else:
        engine = Engine(scenario, arch, gpu, profile, plan, engine_profile)
    engine.progress = progress
    t1 = time.process_time()
    if scenario.fleet.pods > 1:
        from fleetsim.sim.pods import run_pods

        raw = run_pods(scenario, arch, gpu, profile, engine_profile, plan, workers, scheduler)
    else:
        raw = engine.run()
    t2 = time.process_time()
    if groups:
        from fleetsim.groups import groups_calibration_status

        status = groups_calibration_status(groups, engine_profile)
    else:
        status = calibration_status(profile, engine_profile, engine.step_model)
    summary = summarize(raw, summary_scenario(scenario, raw), arch, gpu, plan, calibration=status, groups=groups)
    result = SimulationResult(
        scenario, summary, raw.requests, raw.timeseries, raw.replicas, plan, {}, lifetimes=raw.lifetimes
    )
    # The bill of the simulated period (GPU-hours, kWh, water, carbon; rent and own side by side,
    # per class, extrapolated to a month and a year): fleetsim.bill. An autoscaled run is billed by
    # its instances' lifetimes; a failing fixed fleet is billed whole (down replicas are still rented).
    if scenario.autoscaling is not None:
        from fleetsim.autoscaler import replica_series

        billed = replica_series(raw.lifetimes, raw.simulated_s)
        cold = raw.dynamics["autoscaling"]["cold_start_s"]
        summary["bill"] = bill_of(
            result, scenario.billing, replicas=billed, lifetimes=raw.lifetimes, cold_start_s=cold
        ).as_dict()
    else:
        summary["bill"] = bill_of(result, scenario.billing).as_dict()
    summary.update(raw.dynamics)
    if raw.dynamics:
        summary["requests"]["requeued"] = int(raw.requests["requeues"].sum())
    if scenario.failures is not None and scenario.failures.compare_without:
        # The same scenario and seed without failures: its attainment beside this one's.
        base = simulate(scenario.model_copy(update={"failures": None}), workers=workers, scheduler=scheduler)
        summary["slo"]["attainment_without_failures"] = base.summary["slo"]["attainment"]
    result.cpu_s.update(build_s=t1 - t0, run_s=t2 - t1, summary_s=time.process_time() - t2)
    return result
