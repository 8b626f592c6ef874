"""Running validation cases: every case's scenario is built and checked before anything runs; a
case that cannot be built becomes an error row (the rest still run); unsupported cases are not
simulated. Distinct scenarios run in a local process pool.

Metrics. Latencies come from the run's summary over requests (fleetsim's inter-token latency of
a request is its TPOT, so itl_s and tpot_s read the same column; p50 / p99 are over requests).
Throughput, GPU power and energy per output token come from
- the summary's steady-state window (no `window_s`);
- the whole run (`window_s: run`), as offline benchmarks report them (MLPerf Offline,
  trtllm-bench): output tokens of the run over the time until the last request finished;
- a window [a, b] (`window_s: [a, b]`): two runs of the same seed that stop (no drain) at a and at
  b are identical up to a, so the difference of their GPU energy is the energy of the window; the
  output tokens are those emitted within [a, b] (a request's first token at its first_token_s,
  the rest evenly until its finish; one still running at b at the window's median TPOT). This
  matches benchmarks that count streamed tokens over a steady-state window (ML.ENERGY).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fleetsim.errors import FleetsimError, SpecError
from fleetsim.validation.cases import (
    BUILTIN_SCENARIO,
    LATENCY_METRICS,
    UNITS,
    Case,
    load_cases,
    shipped_case_files,
)


def _set_dotted(data: dict, dotted: str, value: Any, where: str) -> None:
    """Set a dotted path in place (fleetsim.scenario.set_path, the one override setter); integer
    parts index into lists (workload.classes.0.input_tokens)."""
    from fleetsim.scenario import set_path

    set_path(data, dotted, value, prefix=f"{where}: overrides.")


def _shipped_gpu_profile(name: str) -> str | None:
    f = resources.files("fleetsim.profiles").joinpath("gpus").joinpath(f"{name}.yaml")
    return str(f) if f.is_file() else None


def scenario_data(case: Case, case_dir: Path) -> tuple[dict, Path | None]:
    """The scenario mapping of a case (base + overrides) and the folder relative paths resolve in."""
    where = f"case '{case.id}'"
    if case.base == "builtin":
        data, base_dir = copy.deepcopy(BUILTIN_SCENARIO), None
    else:
        path = Path(case.base)
        if not path.is_absolute():
            path = case_dir / path
        if not path.is_file():
            raise SpecError(f"{where}: base: scenario '{case.base[:80]}' does not exist (looked in {path.parent})")
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            raise SpecError(f"{where}: base: '{path}' is not valid YAML") from None
        if not isinstance(data, dict):
            raise SpecError(f"{where}: base: '{path}' is not a scenario mapping")
        base_dir = path.parent.resolve()
    for dotted, value in case.overrides.items():
        _set_dotted(data, dotted, value, where)
    prof = (data.get("fleet") or {}).get("profile")
    if isinstance(prof, str) and "/" not in prof and not prof.endswith((".yaml", ".yml")):
        shipped = _shipped_gpu_profile(prof)
        if shipped is None:
            raise SpecError(f"{where}: overrides.fleet.profile: no shipped GPU profile named '{prof[:80]}'")
        data["fleet"]["profile"] = shipped
    return data, base_dir


def build_case(data: dict, base_dir: Path | None, where: str):
    """The case's ScenarioSpec, checked by building it (catalog, profiles, memory plan)."""
    from fleetsim.scenario import scenario_from_dict
    from fleetsim.simulation import build

    spec = scenario_from_dict(copy.deepcopy(data), where=where, base=base_dir)
    build(spec)
    return spec


def _simulate(spec, run_changes: dict | None = None):
    from fleetsim.simulation import simulate

    if run_changes:
        spec = spec.model_copy(update={"run": spec.run.model_copy(update=run_changes)})
    return simulate(spec)


def _window_metrics(spec, window: tuple[float, float]) -> dict:
    """Rates over [a, b] of one run that stops at b (no drain): output tokens and GPU energy from
    the replicas' meters in the time series, interpolated at a and b."""
    a, b = window
    res = _simulate(spec, {"duration_s": b, "drain": False, "warmup_s": 0.0, "max_requests": None})
    ts = res.timeseries
    times = ts["time_s"].to_numpy()
    tokens = float(np.diff(np.interp([a, b], times, ts["output_tokens"]))[0])
    energy = float(np.diff(np.interp([a, b], times, ts["gpu_energy_j"]))[0])
    gpus = int(res.summary["fleet"]["gpus"])
    span = b - a
    gpu_w = energy / (span * gpus)
    req = res.requests
    first = req["first_token_s"].to_numpy(dtype=float)
    prefilled = float(req.loc[(first >= a) & (first < b), "input_tokens"].sum())
    return {
        "output_tokens_per_s": tokens / span,
        "input_tokens_per_s": prefilled / span,
        "gpu_power_w": gpu_w,
        "server_wall_kw": _server_wall_kw(res.summary, gpu_w),
        "energy_per_output_token_j": energy / tokens if tokens > 0 else math.nan,
    }


def _server_wall_kw(summary: dict, gpu_w: float) -> float:
    """Whole-server wall power of the run's servers with every GPU at `gpu_w` (fleetsim.server_power)."""
    from fleetsim.catalog import load_gpu
    from fleetsim.server_power import fleet_wall_kw

    if not math.isfinite(gpu_w):
        return math.nan
    return fleet_wall_kw(int(summary["fleet"]["gpus"]), load_gpu(summary["fleet"]["gpu"]), gpu_w)


def _run_metrics(res) -> dict:
    req = res.requests
    done = req[req["status"] == "completed"]
    sim_s = float(res.summary["simulated_s"])
    energy = float(res.replicas["energy_j"].sum())
    tokens = float(done["output_tokens"].sum())
    gpus = int(res.summary["fleet"]["gpus"])
    gpu_w = energy / (sim_s * gpus) if sim_s > 0 else math.nan
    return {
        "output_tokens_per_s": tokens / sim_s if sim_s > 0 else math.nan,
        "input_tokens_per_s": float(done["input_tokens"].sum()) / sim_s if sim_s > 0 else math.nan,
        "gpu_power_w": gpu_w,
        "server_wall_kw": _server_wall_kw(res.summary, gpu_w),
        "energy_per_output_token_j": energy / tokens if tokens > 0 else math.nan,
    }


def _latencies(summary: dict) -> dict:
    lat = summary["latency_s"]
    return {
        m: {k: (math.nan if v is None else float(v)) for k, v in lat[key].items()}
        for m, key in (("ttft_s", "ttft"), ("tpot_s", "tpot"), ("itl_s", "itl"))
    }


def _summary_metrics(summary: dict) -> dict:
    ept = summary["power"]["joules_per_output_token"]
    wall_kw = summary["power"].get("server_wall_kw")  # the summary's own once metrics.py has it
    return {
        "output_tokens_per_s": summary["throughput"]["output_tokens_per_s"],
        "input_tokens_per_s": summary["throughput"]["input_tokens_per_s"],
        "gpu_power_w": summary["power"]["gpu_mean_w"],
        "server_wall_kw": _server_wall_kw(summary, summary["power"]["gpu_mean_w"]) if wall_kw is None else wall_kw,
        "energy_per_output_token_j": math.nan if ept is None else ept,
    }


def predicted_value(case: Case, measured: dict) -> float:
    if case.metric not in LATENCY_METRICS:
        return float(measured["rates"][case.metric])
    lat = measured["latency"]
    if lat is None:
        return math.nan
    return lat[case.metric]["mean" if case.statistic == "mean" else case.statistic]


@dataclass
class CaseResult:
    id: str
    group: str
    split: str
    metric: str
    statistic: str
    unit: str
    published: float  # in `unit`
    predicted: float  # in `unit`
    error_pct: float  # signed: (predicted / published - 1) x 100
    tolerance_pct: float
    status: str  # ok | unsupported | error
    reason: str
    source_entry: str
    source_reference: str
    source_note: str
    gpu: str
    model: str
    engine: str
    seconds: float

    @property
    def fitted(self) -> bool:
        return self.split == "fit"

    @property
    def abs_error_pct(self) -> float:
        return abs(self.error_pct)

    @property
    def within_tolerance(self) -> bool:
        return bool(self.abs_error_pct <= self.tolerance_pct)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["abs_error_pct"] = self.abs_error_pct
        d["within_tolerance"] = self.within_tolerance
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _engine_label(data: dict) -> str:
    e = data.get("engine") or {}
    kind = e.get("kind", "vllm")
    return e.get("profile") or f"{kind}-{e.get('version', 'latest')}"


def _row(case: Case, data: dict, status: str, reason: str, predicted_si: float, seconds: float) -> CaseResult:
    factor = UNITS[case.metric][case.unit]
    err = (predicted_si / case.published_si - 1.0) * 100.0 if math.isfinite(predicted_si) else math.nan
    fleet = data.get("fleet") or {}
    return CaseResult(
        id=case.id,
        group=case.group,
        split=case.split,
        metric=case.metric,
        statistic=case.statistic,
        unit=case.unit,
        published=case.published,
        predicted=predicted_si / factor,
        error_pct=err,
        tolerance_pct=case.tolerance_pct,
        status=status,
        reason=reason,
        source_entry=case.source.entry,
        source_reference=case.source.reference,
        source_note=case.source.note,
        gpu=str(fleet.get("gpu", "")),
        model=str(data.get("model", "")),
        engine=_engine_label(data),
        seconds=seconds,
    )


def _window(case: Case):
    return tuple(case.window_s) if isinstance(case.window_s, (list, tuple)) else case.window_s


def _measure_all(jobs: dict[str, tuple], workers: int | None) -> dict[str, dict | str]:
    keys = list(jobs)
    n = workers if workers is not None else min(len(keys), os.cpu_count() or 1, 8)
    results: dict[str, dict | str] = {}
    if n > 1 and len(keys) > 1:
        with ProcessPoolExecutor(max_workers=n) as pool:
            futures = {k: pool.submit(measure, jobs[k]) for k in keys}
            for k, fut in futures.items():
                try:
                    results[k] = fut.result()
                except FleetsimError as exc:
                    results[k] = str(exc)
                except Exception as exc:  # a case must not take the others down with it
                    results[k] = f"internal error {type(exc).__name__}: {str(exc)[:200]}"
    else:
        for k in keys:
            try:
                results[k] = measure(jobs[k])
            except FleetsimError as exc:
                results[k] = str(exc)
            except Exception as exc:
                results[k] = f"internal error {type(exc).__name__}: {str(exc)[:200]}"
    return results


def _scaled_rate(spec, factor: float):
    arrival = spec.workload.arrival
    wl = spec.workload.model_copy(
        update={"arrival": arrival.model_copy(update={"rate_per_s": arrival.rate_per_s * factor})}
    )
    return spec.model_copy(update={"workload": wl})


SEARCH_LO, SEARCH_HI, SEARCH_STEPS = 0.5, 1.3, 7  # rate multipliers searched; 2^-7 of the span


def max_rate_run(spec, limits: dict):
    """The run at the highest Poisson rate (a multiple of the scenario's, by bisection) whose p99
    TTFT and TPOT stay within `limits` and whose window is steady."""

    def ok(res) -> bool:
        lat, s = res.summary["latency_s"], res.summary
        if not s["window"]["steady"]:
            return False
        # A valid MLPerf run holds its rate for ten minutes: the queue at the window's end must not
        # have built up (no more than a second of arrivals waiting).
        ts, w = res.timeseries, s["window"]
        queued_end = float(np.interp(w["end_s"], ts["time_s"], ts["queued"]))
        if queued_end > max(2.0 * s["fleet"]["replicas"], spec.workload.arrival.rate_per_s * scale_of(res)):
            return False
        for key, stat in (("ttft_p99_s", "ttft"), ("tpot_p99_s", "tpot")):
            v = lat[stat]["p99"]
            if key in limits and (v is None or v > limits[key]):
                return False
        return True

    def scale_of(res) -> float:
        return res.scenario.workload.arrival.rate_per_s / spec.workload.arrival.rate_per_s

    lo, hi = SEARCH_LO, SEARCH_HI
    best = _simulate(_scaled_rate(spec, lo))
    if not ok(best):
        return best, lo
    top = _simulate(_scaled_rate(spec, hi))
    if ok(top):
        return top, hi
    for _ in range(SEARCH_STEPS):
        mid = 0.5 * (lo + hi)
        res = _simulate(_scaled_rate(spec, mid))
        if ok(res):
            lo, best = mid, res
        else:
            hi = mid
    return best, lo


def measure(job: tuple) -> dict:
    """Every metric of one scenario under one window kind (runs in a pool worker)."""
    spec, window, search = job
    if isinstance(window, tuple):
        return {"rates": _window_metrics(spec, window), "latency": None}
    if search:
        res, _ = max_rate_run(spec, dict(search))
    else:
        res = _simulate(spec)
    rates = _run_metrics(res) if window == "run" else _summary_metrics(res.summary)
    return {"rates": rates, "latency": _latencies(res.summary)}


def run_cases(loaded: list[tuple[Path, list[Case]]], workers: int | None = None) -> list[CaseResult]:
    """Build every case, simulate the distinct (scenario, window, search) jobs, then compare."""
    prepared: list[tuple[Case, dict, Any, str]] = []  # case, data, spec or None, error
    for f, cases in loaded:
        for case in cases:
            where = f"case '{case.id}'"
            data: dict = {}
            try:
                data, base_dir = scenario_data(case, f.parent)
                spec = build_case(data, base_dir, where) if case.status == "ok" else None
                if spec is not None and case.max_rate_within and spec.workload.arrival.kind != "poisson":
                    raise SpecError(f"{where}: max_rate_within needs a Poisson arrival")
                prepared.append((case, data, spec, ""))
            except FleetsimError as exc:
                msg = str(exc)
                prepared.append((case, data, None, msg if msg.startswith(where) else f"{where}: {msg}"))
    t0 = time.perf_counter()
    jobs: dict[str, tuple] = {}
    keys: dict[str, str] = {}
    for case, _, spec, err in prepared:
        if spec is None or err:
            continue
        search = tuple(sorted(case.max_rate_within.items())) if case.max_rate_within else None
        key = json.dumps([spec.model_dump(mode="json"), _window(case), search], sort_keys=True, default=str)
        keys[case.id] = key
        jobs.setdefault(key, (spec, _window(case), search))
    results = _measure_all(jobs, workers)
    per_job_s = (time.perf_counter() - t0) / max(len(results), 1)
    rows = []
    for case, data, _spec, err in prepared:
        if err:
            rows.append(_row(case, data, "error", err, math.nan, 0.0))
        elif case.status != "ok":
            rows.append(_row(case, data, case.status, case.reason, math.nan, 0.0))
        else:
            got = results[keys[case.id]]
            if isinstance(got, str):
                rows.append(_row(case, data, "error", f"case '{case.id}': {got}", math.nan, per_job_s))
            else:
                rows.append(_row(case, data, "ok", "", predicted_value(case, got), per_job_s))
    return rows


def load_case_files(paths: list[Path] | None) -> list[tuple[Path, list[Case]]]:
    """Every file is read and checked before anything runs; ids are unique across files."""
    files = [Path(p) for p in paths] if paths else shipped_case_files()
    loaded = [(f, load_cases(f)) for f in files]
    seen: dict[str, Path] = {}
    for f, cases in loaded:
        for c in cases:
            if c.id in seen:
                raise SpecError(f"{f}: case '{c.id}': id: duplicate of a case in {seen[c.id]}")
            seen[c.id] = f
    return loaded
