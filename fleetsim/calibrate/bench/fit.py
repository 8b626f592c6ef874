"""Fit the engine terms of a profile to benchmark points of one deployment.

    fit = BenchFit(load_scenario("deploy.yaml"), read_bench_files(files))
    result = fit.run()
    result.profile                         # the fitted EngineProfile (provenance fitted_to_benchmark)
    result.rows()                          # per point and metric: published, before, after, errors

The scenario says what was benchmarked (model, GPU, TP, precisions, scheduler limits, engine kind
and version); its engine profile (shipped, or the file engine.profile names) is the prior and
the start, its GPU profile stays fixed. Parameters, in log space: host.iteration_s,
host.per_sequence_s, launch.per_layer_gpu_s, host.serial_fraction (when the engine overlaps host
and GPU work), allreduce_latency_s (when tp > 1) and launch.per_layer_eager_s (when it runs
without CUDA graphs), with the priors of fleetsim/calibrate/published/priors.yaml
(engine_parameters: the standard deviation of ln x and the bounds; the mean is the prior
profile's own value).

Residuals, as in fleetsim.calibrate.published.fit: ln(predicted / published) / CASE_SIGMA for
every measured number a point's closed form predicts (fleetsim.calibrate.bench.model), and
(ln x - ln prior) / sd for every parameter; scipy least_squares, trf with bounds, soft-L1 loss
(a few odd numbers do not drag the rest). Request-rate points are not fitted (no closed form;
one simulation per evaluation would take the fit from seconds to hours): they are simulated
once with the prior and once with the fitted profile (fleetsim.simulate, a run of the point's
length) and reported beside the fit.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

from fleetsim.calibrate.bench.model import PointModel, Target
from fleetsim.calibrate.bench.readers import BenchPoint
from fleetsim.calibrate.published.fit import CASE_SIGMA
from fleetsim.calibrate.published.params import priors
from fleetsim.catalog import load_gpu
from fleetsim.errors import SpecError
from fleetsim.profile import load_engine_profile, load_profile, with_overrides
from fleetsim.scenario import load_scenario
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.scenario import ScenarioSpec

#: Longest simulated run of a request-rate point, and most requests it may hold.
SIM_MAX_DURATION_S = 600.0
SIM_MAX_REQUESTS = 20_000
SIM_DEFAULT_DURATION_S = 120.0

# name in priors.yaml engine_parameters -> (part of the profile, field)
FIELDS = {
    "host_iteration_s": ("host", "iteration_s"),
    "host_per_sequence_s": ("host", "per_sequence_s"),
    "per_layer_gpu_s": ("launch", "per_layer_gpu_s"),
    "per_layer_eager_s": ("launch", "per_layer_eager_s"),
    "serial_fraction": ("host", "serial_fraction"),
    "allreduce_latency_s": (None, "allreduce_latency_s"),
}


@dataclass(frozen=True)
class FitParam:
    name: str  # key of FIELDS / priors.yaml engine_parameters
    mean: float  # the prior profile's value (clipped into the bounds)
    sd: float  # of ln x
    lo: float
    hi: float


def fit_params(
    prior: EngineProfile, effective: EngineProfile, tp: int, gpu_allreduce_latency_s: float
) -> list[FitParam]:
    """The parameters a benchmark fit moves, with their priors."""
    spec = priors()["engine_parameters"]
    names = ["host_iteration_s", "host_per_sequence_s", "per_layer_gpu_s"]
    if not effective.launch.cuda_graphs:
        names.append("per_layer_eager_s")
    if effective.host.overlap:
        names.append("serial_fraction")
    if tp > 1:
        names.append("allreduce_latency_s")
    out = []
    for n in names:
        part, key = FIELDS[n]
        value = getattr(getattr(prior, part), key) if part else getattr(prior, key)
        if value is None:  # the engine uses the GPU profile's NCCL latency
            value = gpu_allreduce_latency_s
        lo, hi = float(spec[n]["lo"]), float(spec[n]["hi"])
        out.append(FitParam(n, min(max(float(value), lo), hi), float(spec[n]["sd"]), lo, hi))
    return out


def with_values(profile: EngineProfile, values: dict[str, float]) -> EngineProfile:
    """The profile with the named engine terms replaced."""
    parts: dict[str, dict] = {"host": {}, "launch": {}}
    top: dict = {}
    for name, v in values.items():
        part, key = FIELDS[name]
        (parts[part] if part else top)[key] = float(v)
    update = dict(top)
    for part, changes in parts.items():
        if changes:
            update[part] = getattr(profile, part).model_copy(update=changes)
    return profile.model_copy(update=update)


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}") if x and math.isfinite(x) else x


@dataclass
class PointResult:
    point: BenchPoint
    model: PointModel
    targets: list[Target]
    before: dict[tuple[str, str], float]
    after: dict[tuple[str, str], float]
    used: dict[tuple[str, str], bool]
    notes: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class BenchFitResult:
    prior: EngineProfile
    profile: EngineProfile
    values: dict[str, float]
    prior_values: dict[str, float]
    points: list[PointResult]
    cost: float
    nfev: int
    success: bool
    message: str

    def rows(self) -> list[dict]:
        """Per point and metric: published, before (prior profile), after (fitted), errors (%)."""
        out = []
        for pr in self.points:
            for t in pr.targets:
                b, a = pr.before.get(t.key), pr.after.get(t.key)
                out.append({
                    "point": pr.point.label,
                    "load": pr.point.load,
                    "metric": t.metric,
                    "statistic": t.statistic,
                    "published": t.published,
                    "before": b,
                    "before_error_pct": _err(b, t.published),
                    "after": a,
                    "after_error_pct": _err(a, t.published),
                    "fitted": pr.used.get(t.key, False),
                    "note": pr.notes.get(t.key, ""),
                })  # fmt: skip
        return out

    def errors(self, which: str = "after", fitted_only: bool = True) -> np.ndarray:
        """|error| (%) of every compared number."""
        key = f"{which}_error_pct"
        return np.array([abs(r[key]) for r in self.rows() if r[key] is not None and (r["fitted"] or not fitted_only)])


def _err(pred: float | None, published: float) -> float | None:
    if pred is None or not math.isfinite(pred):
        return None
    return 100.0 * (pred / published - 1.0)


class BenchFit:
    """Benchmark points of one deployment (the scenario), ready to fit."""

    def __init__(self, scenario: ScenarioSpec | str | Path, points: list[BenchPoint]):
        if not points:
            raise SpecError("--from-bench: no benchmark points to fit")
        self.scenario = scenario if isinstance(scenario, ScenarioSpec) else load_scenario(scenario)
        s = self.scenario
        gpu = load_gpu(s.fleet.gpu)
        self.gpu_profile = load_profile(gpu.name, s.fleet.profile)
        self.prior = load_engine_profile(s.engine)
        effective = with_overrides(self.prior, s.engine)
        self.params = fit_params(self.prior, effective, s.fleet.tp, self.gpu_profile.collectives.allreduce_latency_s)
        self.models = [PointModel(p, s, self.gpu_profile) for p in points]
        self.residual_index: list[tuple[int, Target]] = [
            (i, t) for i, m in enumerate(self.models) for t in m.targets if t.key not in m.unpredicted
        ]
        if not self.residual_index:
            raise SpecError(
                "--from-bench: no point has a number the closed form predicts (request-rate points are "
                "simulated, not fitted); add a concurrency or all-at-once run"
            )

    # ------------------------------------------------------------------ vectors
    def x0(self) -> np.ndarray:
        return np.log([p.mean for p in self.params])

    def values(self, x: np.ndarray) -> dict[str, float]:
        return {p.name: float(math.exp(v)) for p, v in zip(self.params, x)}

    def engine(self, x: np.ndarray) -> EngineProfile:
        return with_values(self.prior, self.values(x))

    def predict(self, engine: EngineProfile) -> list[dict]:
        return [m.predict(engine) for m in self.models]

    def residuals(self, x: np.ndarray) -> np.ndarray:
        preds = self.predict(self.engine(x))
        r = np.empty(len(self.residual_index))
        for k, (i, t) in enumerate(self.residual_index):
            v = preds[i].get(t.key, math.nan)
            r[k] = math.log(v / t.published) / CASE_SIGMA if v > 0 and math.isfinite(v) else 50.0
        prior = np.array([(xi - math.log(p.mean)) / p.sd for p, xi in zip(self.params, x)])
        return np.concatenate([r, prior])

    # ------------------------------------------------------------------ fit
    def run(
        self, max_nfev: int = 200, simulate_rate_points: bool = True, sources: list[str] | None = None
    ) -> BenchFitResult:
        lo = np.log([p.lo for p in self.params])
        hi = np.log([p.hi for p in self.params])
        x0 = np.clip(self.x0(), lo + 1e-9, hi - 1e-9)
        sol = least_squares(self.residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=1.0, method="trf",
                            x_scale=1.0, max_nfev=max_nfev, diff_step=1e-3)  # fmt: skip
        values = {k: _sig(v) for k, v in self.values(sol.x).items()}
        prior_values = self.values(self.x0())
        before = self.predict(self.prior)
        fitted = with_values(self.prior, values)
        after = self.predict(fitted)
        results = []
        for m, b, a in zip(self.models, before, after):
            used = {t.key: t.key not in m.unpredicted and t.key in a for t in m.targets}
            results.append(PointResult(m.point, m, m.targets, b, a, used, dict(m.unpredicted)))
        if simulate_rate_points:
            for pr in results:
                if pr.model.kind == "poisson":
                    pr.before = simulate_point(pr.model, self.prior)
                    pr.after = simulate_point(pr.model, fitted)
                    pr.notes = {t.key: "simulated (fleetsim.simulate), not fitted" for t in pr.targets}
        result = BenchFitResult(self.prior, fitted, values, prior_values, results, float(sol.cost), int(sol.nfev),
                                bool(sol.success), str(sol.message))  # fmt: skip
        result.profile = fitted_profile(result, self.scenario, sources or sorted({p.point.file for p in results}))
        return result


def fitted_profile(result: BenchFitResult, scenario: ScenarioSpec, sources: list[str]) -> EngineProfile:
    """The fitted profile with its provenance: fitted_to_benchmark, the files, the points used
    and the largest |error| per metric after the fit."""
    rows = result.rows()
    used_points = sorted({r["point"] for r in rows if r["fitted"]})
    residuals: dict[str, float] = {}
    for r in rows:
        if r["fitted"] and r["after_error_pct"] is not None:
            residuals[f"{r['point']}:{r['metric']}"] = round(r["after_error_pct"] / 100.0, 4)
    skipped = sorted({r["point"] for r in rows if not r["fitted"]})
    s = scenario
    notes = (
        f"Engine terms ({', '.join(result.values)}) fitted by `fleetsim calibrate --from-bench` to "
        f"{len(used_points)} benchmark points of {s.model} on {s.fleet.tp}x {s.fleet.gpu} "
        f"(weights {s.weight_dtype}, KV {s.kv_cache.key_dtype}/{s.kv_cache.value_dtype}), scenario "
        f"'{s.name}'; prior {result.prior.name} ({result.prior.provenance.kind}); GPU kernel terms from the "
        f"scenario's GPU profile, kept fixed (host terms are scaled by its host_time_scale when used)."
    )
    if skipped:
        notes += f" Not fitted (request rate): {', '.join(skipped)}."
    provenance = result.prior.provenance.model_copy(
        update={"kind": "fitted_to_benchmark", "date": datetime.date.today().isoformat(),
                "sources": tuple(sources), "notes": notes, "figures": len(used_points),
                "transferred_from": None}
    )  # fmt: skip
    profile = result.profile.model_copy(update={"provenance": provenance, "fit_residuals": residuals})
    return EngineProfile.model_validate(profile.model_dump())


HEADER = (
    "# Engine profile fitted to benchmark results by `fleetsim calibrate --from-bench`.\n"
    "# Use it with engine: {{kind: {engine}, profile: THIS_FILE}}; provenance says what it was fitted to.\n"
)


def profile_yaml(profile: EngineProfile) -> str:
    data = profile.model_dump(mode="json", exclude_none=True)
    return HEADER.format(engine=profile.engine) + yaml.safe_dump(data, sort_keys=False, width=110, allow_unicode=True)


def write_engine_profile(profile: EngineProfile, path: str | Path) -> Path:
    """Write the profile YAML whole (a temporary sibling renamed into place)."""
    from fleetsim.output import replacing

    with replacing(path) as tmp:
        tmp.write_text(profile_yaml(profile))
    return Path(path)


# --------------------------------------------------------------------------- request-rate points


def simulate_point(model: PointModel, engine: EngineProfile) -> dict[tuple[str, str], float]:
    """A request-rate point simulated with `engine` (a run as long as the benchmark's: its
    requests at its rate, capped at SIM_MAX_DURATION_S and SIM_MAX_REQUESTS): the summary's
    whole-run output tokens/s and latency statistics."""
    import tempfile

    from fleetsim.simulation import simulate

    point = model.point
    rate = float(point.request_rate_per_s)
    duration = (point.completed / rate) if point.completed else SIM_DEFAULT_DURATION_S
    duration = min(max(duration, 10.0), SIM_MAX_DURATION_S, SIM_MAX_REQUESTS / rate)
    with tempfile.TemporaryDirectory(prefix="fleetsim-bench-") as tmp:
        path = Path(tmp) / "engine.yaml"
        path.write_text(profile_yaml(engine))
        engine_spec = {**model.spec.engine.model_dump(mode="json", exclude_none=True), "profile": str(path)}
        engine_spec.pop("version", None)
        result = simulate(model.spec, {"engine": engine_spec, "run.duration_s": duration})
    s = result.summary
    lat = s.get("latency_s", {})
    out: dict[tuple[str, str], float] = {}
    tput = s.get("throughput", {}).get("whole_run_output_tokens_per_s")
    if tput:
        out[("output_tokens_per_s", "mean")] = float(tput)
    for metric, name in (("ttft_s", "ttft"), ("tpot_s", "tpot"), ("itl_s", "itl")):
        stats = lat.get(name) or {}
        for stat in ("mean", "p50"):
            if stats.get(stat) is not None:
                out[(metric, stat)] = float(stats[stat])
    return out
