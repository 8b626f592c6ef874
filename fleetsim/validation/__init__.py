"""Validation against published measurements: predicted vs published, case by case.

A case is a small YAML record (fleetsim/validation/cases.yaml holds the shipped set)::

    - id: vllm-itl-h100-bf16-ctx8192
      base: builtin                 # or a scenario YAML (relative to the case file)
      overrides:                    # dotted paths; list items by index (workload.classes.0....)
        fleet.gpu: h100-sxm
        workload.classes.0.input_tokens: {kind: fixed, tokens: 8192}
      metric: itl_s                 # output_tokens_per_s | ttft_s | tpot_s | itl_s | gpu_power_w
                                    # | energy_per_output_token_j
      statistic: mean               # mean | p50 (latency metrics); mean otherwise
      published: 6.798
      unit: ms                      # s | ms for latencies; tokens/s; W; J/token
      source: {entry: vllm_itl_model_llama31_8b_h100_bf16kv, reference: "...", note: "..."}
      tolerance_pct: 15
      status: ok                    # ok | unsupported (then `reason` says what fleetsim lacks)
      window_s: [60, 240]           # optional: steady-state window for rates, power and energy
      fitted: true                  # optional: the shipped profile was fitted to this point
                                    # (in-sample); false marks an out-of-sample check

Metrics. Latencies come from the run's summary over requests (fleetsim's inter-token latency of
a request is its TPOT, so itl_s and tpot_s read the same column). Throughput, GPU power and
energy per output token come from the summary, or, when the case gives `window_s: [a, b]`, from
the steady state between a and b simulated seconds: two runs of the same seed that stop (no
drain) at a and at b are identical up to a, so the difference of their GPU energy is the energy
of the window; the output tokens are those emitted within [a, b] (a request's first token at its
first_token_s, the rest evenly until its finish; one still running at b at the window's median
TPOT). This matches benchmarks that report a steady-state window and count streamed tokens
(ML.ENERGY); counting the tokens of the requests completed in the window instead under-counts
while the in-flight work still grows (large batches, long outputs).

`fleet.profile` may name a shipped profile (e.g. `h100-sxm-splitwise2023`) instead of a path.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from fleetsim.errors import FleetsimError, SpecError, first_error_line
from fleetsim.spec.base import Spec
from fleetsim.spec.yaml_file import read_yaml

METRICS = ("output_tokens_per_s", "ttft_s", "tpot_s", "itl_s", "gpu_power_w", "energy_per_output_token_j")
LATENCY_METRICS = ("ttft_s", "tpot_s", "itl_s")
RATE_METRICS = ("output_tokens_per_s",)
POWER_METRICS = ("gpu_power_w",)
# Units a case may give its published value in, per metric, with the factor to SI.
UNITS: dict[str, dict[str, float]] = {
    "output_tokens_per_s": {"tokens/s": 1.0},
    "ttft_s": {"s": 1.0, "ms": 1e-3},
    "tpot_s": {"s": 1.0, "ms": 1e-3},
    "itl_s": {"s": 1.0, "ms": 1e-3},
    "gpu_power_w": {"W": 1.0},
    "energy_per_output_token_j": {"J/token": 1.0},
}
# The acceptance bounds on the shipped set (cases with status ok).
MEDIAN_BOUND_PCT = 15.0
WORST_BOUND_PCT = 40.0

# The "builtin" base: one replica of Llama 3.1 8B on one H100 SXM, one closed-loop user.
BUILTIN_SCENARIO: dict[str, Any] = {
    "name": "validation",
    "model": "llama-3.1-8b",
    "weight_dtype": "bf16",
    "kv_cache": {"key_dtype": "bf16", "value_dtype": "bf16"},
    "fleet": {"gpu": "h100-sxm", "replicas": 1, "tp": 1},
    "scheduler": {"max_batched_tokens": 8192, "max_running_seqs": 256, "chunked_prefill": True},
    "workload": {
        "arrival": {"kind": "closed", "users": 1},
        "classes": [
            {
                "name": "request",
                "input_tokens": {"kind": "fixed", "tokens": 1024},
                "output_tokens": {"kind": "fixed", "tokens": 128},
            }
        ],
    },
    "run": {"duration_s": 60.0, "seed": 0},
    # Cost does not enter any validated metric; a nominal price keeps GPUs without a catalog
    # rental price runnable.
    "cost": {"mode": "rental", "rental_usd_per_gpu_hour": 1.0},
}


# --------------------------------------------------------------------------- the case schema


class CaseSource(Spec):
    entry: str = Field(min_length=1)  # public_figures id
    reference: str = Field(min_length=1)  # where the figure is published
    note: str = ""


class Case(Spec):
    id: str = Field(min_length=1)
    base: str = "builtin"
    overrides: dict[str, Any] = Field(default_factory=dict)
    metric: Literal["output_tokens_per_s", "ttft_s", "tpot_s", "itl_s", "gpu_power_w", "energy_per_output_token_j"]
    statistic: Literal["mean", "p50"] = "mean"
    published: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    unit: str
    source: CaseSource
    tolerance_pct: Annotated[float, Field(gt=0)] = 15.0
    status: Literal["ok", "unsupported"] = "ok"
    reason: str = Field(default="", validate_default=True)
    window_s: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(gt=0)]] | None = None
    fitted: bool = False  # in-sample: the shipped profile was fitted to this published point

    @field_validator("overrides")
    @classmethod
    def _dotted(cls, v: dict) -> dict:
        for key in v:
            if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
                raise ValueError(f"'{key}' is not a dotted path (e.g. fleet.gpu)")
        return v

    @field_validator("statistic")
    @classmethod
    def _statistic(cls, v: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if v == "p50" and metric is not None and metric not in LATENCY_METRICS:
            raise ValueError(f"p50 applies to latency metrics only, not {metric}; use mean")
        return v

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if metric is not None and v not in UNITS[metric]:
            raise ValueError(f"'{v}' is not a unit of {metric}; use {' or '.join(UNITS[metric])}")
        return v

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("status") == "unsupported" and not v.strip():
            raise ValueError("an unsupported case needs a reason (what fleetsim cannot model yet)")
        return v

    @field_validator("window_s")
    @classmethod
    def _window(cls, v, info: ValidationInfo):
        if v is None:
            return v
        a, b = v
        if not b > a:
            raise ValueError(f"{list(v)}: the end must be after the start")
        if info.data.get("metric") in LATENCY_METRICS:
            raise ValueError("a window applies to throughput, power and energy metrics, not latencies")
        return v

    @property
    def published_si(self) -> float:
        return self.published * UNITS[self.metric][self.unit]


def shipped_cases_path() -> Path:
    return Path(str(resources.files("fleetsim.validation").joinpath("cases.yaml")))


def load_cases(path: str | Path) -> list[Case]:
    """The cases of one file; any problem is a SpecError naming the file, case and field."""
    p = Path(path)
    data = read_yaml(p, "validation cases")
    if isinstance(data, dict) and "cases" in data:
        extra = sorted(set(data) - {"cases"})
        if extra:
            raise SpecError(f"{p}: unknown top-level key '{extra[0]}' (a case file holds `cases:`)")
        data = data["cases"]
    if not isinstance(data, list) or not data:
        raise SpecError(f"{p}: a case file is a non-empty list of cases (or a mapping with `cases:`)")
    cases, seen = [], set()
    for i, raw in enumerate(data):
        name = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        label = f"case '{name}' (#{i + 1})" if name else f"case #{i + 1}"
        if not isinstance(raw, dict):
            raise SpecError(f"{p}: {label}: a case must be a mapping, not {type(raw).__name__}")
        try:
            case = Case.model_validate(raw)
        except ValidationError as exc:
            raise SpecError(f"{p}: {label}: {first_error_line(exc)}") from None
        if case.id in seen:
            raise SpecError(f"{p}: {label}: id: duplicate case id '{case.id}'")
        seen.add(case.id)
        cases.append(case)
    return cases


# --------------------------------------------------------------------------- running a case


def _set_dotted(data: dict, dotted: str, value: Any, where: str) -> None:
    """Set a dotted path; integer parts index into lists (workload.classes.0.input_tokens)."""
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"{where}: overrides.{dotted}: '{here}' needs an index below {len(node)}")
            if last:
                node[int(part)] = copy.deepcopy(value)
                return
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = copy.deepcopy(value)
                return
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise SpecError(f"{where}: overrides.{dotted}: '{'.'.join(parts[:i])}' is not a mapping or list")


def _shipped_profile_path(name: str) -> str | None:
    root = resources.files("fleetsim.catalog").joinpath("profiles")
    f = root.joinpath(f"{name}.yaml")
    return str(f) if f.is_file() else None


def scenario_data(case: Case, case_dir: Path) -> tuple[dict, Path | None]:
    """The scenario mapping of a case (base + overrides) and the folder relative paths resolve in."""
    where = f"case '{case.id}'"
    if case.base == "builtin":
        data, base_dir = copy.deepcopy(BUILTIN_SCENARIO), None
    else:
        path = Path(case.base)
        if not path.is_absolute():
            path = (case_dir / path) if (case_dir / path).exists() else path
        if not path.is_file():
            raise SpecError(f"{where}: base: scenario '{case.base}' does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"{where}: base: '{path}' is not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise SpecError(f"{where}: base: '{path}' is not a scenario mapping")
        base_dir = path.parent.resolve()
    for dotted, value in case.overrides.items():
        _set_dotted(data, dotted, value, where)
    prof = (data.get("fleet") or {}).get("profile")
    if isinstance(prof, str) and "/" not in prof and not prof.endswith((".yaml", ".yml")):
        shipped = _shipped_profile_path(prof)
        if shipped is None:
            raise SpecError(f"{where}: overrides.fleet.profile: no shipped profile named '{prof}'")
        data["fleet"]["profile"] = shipped
    return data, base_dir


def _simulate(data: dict, base_dir: Path | None, where: str, run_changes: dict | None = None):
    from fleetsim.scenario import scenario_from_dict
    from fleetsim.simulation import simulate

    d = copy.deepcopy(data)
    if run_changes:
        d["run"] = {**(d.get("run") or {}), **run_changes}
    spec = scenario_from_dict(d, where=where, base=base_dir)
    return simulate(spec)


@dataclass
class _Measured:
    summary: dict
    window: dict | None = None  # tokens_per_s, gpu_power_w, energy_per_output_token_j


def emitted_tokens(requests: pd.DataFrame, t: float, step_s: float) -> float:
    """Output tokens the requests of a run had emitted by time t. A request emits its first token
    at first_token_s and the rest one per iteration until finish_s (spread evenly over that span);
    one that had not finished when the run stopped is taken at one token per `step_s` from its
    first token, capped at its length."""
    first = requests["first_token_s"].to_numpy(dtype=float)
    finish = requests["finish_s"].to_numpy(dtype=float)
    out = requests["output_tokens"].to_numpy(dtype=float)
    started = np.isfinite(first) & (first <= t)
    done = np.isfinite(finish)
    span = np.where(done & (finish > first), finish - first, 1.0)
    after_first = np.where(
        done,
        (out - 1.0) * np.clip((t - first) / span, 0.0, 1.0),
        np.minimum(out - 1.0, np.floor(np.maximum(t - first, 0.0) / step_s)),
    )
    return float(np.sum(np.where(started, 1.0 + after_first, 0.0)))


def _window_metrics(data: dict, base_dir: Path | None, where: str, window: tuple[float, float]) -> dict:
    """Steady-state rates over [a, b] from two runs of the same seed that stop (no drain) at a and
    at b, identical up to a: GPU energy is the difference of theirs; output tokens are those
    emitted within [a, b], as a benchmark's streaming token counter sees them (emitted_tokens of
    the run to b; a request still in flight at b is taken at the median TPOT of those that
    finished in the window)."""
    a, b = window
    ends = []
    for t in (a, b):
        res = _simulate(data, base_dir, where, {"duration_s": t, "drain": False, "warmup_s": 0.0})
        ends.append((res, float(res.replicas["energy_j"].sum()), int(res.summary["fleet"]["gpus"])))
    (_, e0, _), (res, e1, gpus) = ends
    req = res.requests
    tpot = req.loc[(req["status"] == "completed") & (req["finish_s"] >= a), "tpot_s"]
    step = float(tpot.median()) if tpot.notna().any() else (b - a)
    tokens = emitted_tokens(req, b, step) - emitted_tokens(req, a, step)
    span = b - a
    energy = e1 - e0
    return {
        "output_tokens_per_s": tokens / span,
        "gpu_power_w": energy / (span * gpus),
        "energy_per_output_token_j": energy / tokens if tokens > 0 else math.nan,
        "window_tokens": tokens,
    }


def predicted_value(case: Case, measured: _Measured) -> float:
    m = case.metric
    if m in ("output_tokens_per_s", "gpu_power_w", "energy_per_output_token_j") and measured.window is not None:
        return float(measured.window[m])
    s = measured.summary
    if m == "output_tokens_per_s":
        return float(s["throughput"]["output_tokens_per_s"])
    if m == "gpu_power_w":
        return float(s["power"]["gpu_mean_w"])
    if m == "energy_per_output_token_j":
        v = s["power"]["joules_per_output_token"]
        return math.nan if v is None else float(v)
    key = {"ttft_s": "ttft", "tpot_s": "tpot", "itl_s": "tpot"}[m]
    v = s["latency_s"][key][case.statistic]
    return math.nan if v is None else float(v)


# --------------------------------------------------------------------------- results


@dataclass
class CaseResult:
    id: str
    metric: str
    statistic: str
    unit: str
    published: float  # in `unit`
    predicted: float  # in `unit`
    error_pct: float  # signed: (predicted / published - 1) x 100
    tolerance_pct: float
    status: str
    reason: str
    source_entry: str
    source_reference: str
    source_note: str
    gpu: str
    model: str
    fitted: bool
    seconds: float

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


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:,.4g}"


@dataclass
class ValidationResult:
    cases: list[CaseResult]
    sources: list[str]
    elapsed_s: float
    date: str = field(default_factory=lambda: _dt.date.today().isoformat())
    version: str = field(default_factory=lambda: _fleetsim_version())

    # ---- summaries
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([c.as_dict() for c in self.cases])

    def metric_summary(self) -> list[dict]:
        """Per metric, over cases with status ok: count, median and worst absolute error."""
        rows = []
        for metric in METRICS:
            ok = [c for c in self.cases if c.metric == metric and c.status == "ok"]
            unsupported = [c for c in self.cases if c.metric == metric and c.status != "ok"]
            if not ok and not unsupported:
                continue
            errs = np.array([c.abs_error_pct for c in ok], dtype=float)
            worst = max(ok, key=lambda c: c.abs_error_pct) if ok else None
            rows.append(
                {
                    "metric": metric,
                    "cases": len(ok),
                    "out_of_sample": int(sum(not c.fitted for c in ok)),
                    "unsupported": len(unsupported),
                    "median_abs_error_pct": float(np.median(errs)) if len(errs) else None,
                    "worst_abs_error_pct": float(errs.max()) if len(errs) else None,
                    "worst_case": worst.id if worst else None,
                    "within_tolerance": int(sum(c.within_tolerance for c in ok)),
                }
            )
        return rows

    def bound_violations(self) -> list[str]:
        """The acceptance bounds, on cases with status ok: median |error| <= 15% per metric for
        throughput, latency and GPU power (and over throughput + latency together), no case
        worse than 40%. Empty when met."""
        out = []
        for row in self.metric_summary():
            if row["metric"] in RATE_METRICS + LATENCY_METRICS + POWER_METRICS and row["cases"]:
                if row["median_abs_error_pct"] > MEDIAN_BOUND_PCT:
                    out.append(
                        f"{row['metric']}: median |error| {row['median_abs_error_pct']:.1f}% > {MEDIAN_BOUND_PCT:g}%"
                    )
        group = [c.abs_error_pct for c in self.cases if c.status == "ok" and c.metric in RATE_METRICS + LATENCY_METRICS]
        if group and float(np.median(group)) > MEDIAN_BOUND_PCT:
            out.append(
                f"throughput and latency metrics: median |error| {np.median(group):.1f}% > {MEDIAN_BOUND_PCT:g}%"
            )
        for c in self.cases:
            if c.status == "ok" and not (c.abs_error_pct <= WORST_BOUND_PCT):
                out.append(f"{c.id}: |error| {c.abs_error_pct:.1f}% > {WORST_BOUND_PCT:g}%")
        return out

    # ---- tables
    def display_table(self) -> pd.DataFrame:
        rows = []
        for c in self.cases:
            rows.append(
                {
                    "case": c.id,
                    "metric": c.metric if c.statistic == "mean" else f"{c.metric} ({c.statistic})",
                    "unit": c.unit,
                    "published": c.published,
                    "predicted": c.predicted,
                    "error %": round(c.error_pct, 1) if math.isfinite(c.error_pct) else math.nan,
                    "tol %": c.tolerance_pct,
                    "fit": "in" if c.fitted else "out",
                    "status": c.status if c.status != "ok" else ("ok" if c.within_tolerance else "ok (outside tol)"),
                    "source": c.source_entry,
                }
            )
        return pd.DataFrame(rows)

    def summary_table(self) -> pd.DataFrame:
        rows = []
        for r in self.metric_summary():
            rows.append(
                {
                    "metric": r["metric"],
                    "cases": r["cases"],
                    "out of sample": r["out_of_sample"],
                    "unsupported": r["unsupported"],
                    "median |err| %": r["median_abs_error_pct"] if r["median_abs_error_pct"] is not None else math.nan,
                    "worst |err| %": r["worst_abs_error_pct"] if r["worst_abs_error_pct"] is not None else math.nan,
                    "worst case": r["worst_case"] or "-",
                    "within tol": r["within_tolerance"],
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        violations = self.bound_violations()
        return {
            "fleetsim_version": self.version,
            "date": self.date,
            "case_files": self.sources,
            "elapsed_s": self.elapsed_s,
            "bounds": {
                "median_abs_error_pct": MEDIAN_BOUND_PCT,
                "worst_abs_error_pct": WORST_BOUND_PCT,
                "met": not violations,
                "violations": violations,
            },
            "summary": self.metric_summary(),
            "cases": [c.as_dict() for c in self.cases],
        }

    def to_markdown(self) -> str:
        lines = [
            "# fleetsim validation against published measurements",
            "",
            f"Generated by `fleetsim validate` on {self.date} with fleetsim {self.version} "
            f"({len(self.cases)} cases from {', '.join(Path(s).name for s in self.sources)}; "
            f"{self.elapsed_s:.0f} s). Error = predicted / published - 1. Cases marked unsupported "
            "need something fleetsim does not model yet; they are shown but not counted in the summary. "
            "fit = in: the shipped calibration profile was fitted to that published point (the case checks "
            "that the full simulator reproduces it); out: an out-of-sample check. "
            "Provenance of the calibration profiles: calibration/PUBLISHED.md.",
            "",
            "## Summary (cases with status ok)",
            "",
            "| metric | cases | of which out of sample | unsupported | median abs error % | worst abs error % | worst case | within tolerance |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for r in self.metric_summary():
            med = "-" if r["median_abs_error_pct"] is None else f"{r['median_abs_error_pct']:.1f}"
            worst = "-" if r["worst_abs_error_pct"] is None else f"{r['worst_abs_error_pct']:.1f}"
            lines.append(
                f"| {r['metric']} | {r['cases']} | {r['out_of_sample']} | {r['unsupported']} | {med} | {worst} | "
                f"{r['worst_case'] or '-'} | {r['within_tolerance']}/{r['cases']} |"
            )
        violations = self.bound_violations()
        lines += [
            "",
            "Acceptance bounds (median abs error <= 15% for throughput, latency and GPU power; "
            "no case worse than 40%): "
            + ("**met**." if not violations else "**not met**: " + "; ".join(violations) + "."),
            "",
        ]
        lines += [
            "## Cases",
            "",
            "| case | metric | published | predicted | unit | error % | tol % | fit | status | source |",
            "|---|---|---:|---:|---|---:|---:|---|---|---|",
        ]
        for c in self.cases:
            metric = c.metric if c.statistic == "mean" else f"{c.metric} ({c.statistic})"
            status = c.status if c.status == "ok" else f"unsupported: {c.reason}"
            if c.status == "ok" and not c.within_tolerance:
                status = "ok (outside tolerance)"
            err = f"{c.error_pct:+.1f}" if math.isfinite(c.error_pct) else "-"
            lines.append(
                f"| {c.id} | {metric} | {_fmt(c.published)} | {_fmt(c.predicted)} | {c.unit} | "
                f"{err} | {c.tolerance_pct:g} | {'in' if c.fitted else 'out'} | {status} | {c.source_entry} |"
            )
        lines += ["", "## Sources", ""]
        refs = {}
        for c in self.cases:
            refs.setdefault(c.source_entry, c.source_reference)
        for entry, ref in refs.items():
            lines.append(f"- `{entry}`: {ref}")
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path) -> Path:
        """Write validation.csv (one row per case), summary.json and VALIDATION.md."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(out / "validation.csv", index=False)
        (out / "summary.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        (out / "VALIDATION.md").write_text(self.to_markdown())
        return out


def _fleetsim_version() -> str:
    try:
        from fleetsim import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - the package always defines it
        return "unknown"


# --------------------------------------------------------------------------- entry point


def run_validation(paths: list[Path] | None = None) -> ValidationResult:
    """Run every case of the given files (default: the shipped fleetsim/validation/cases.yaml)
    through fleetsim.simulate and compare with the published value."""
    files = [Path(p) for p in paths] if paths else [shipped_cases_path()]
    loaded = [(f, load_cases(f)) for f in files]  # every file is checked before anything runs
    seen: dict[str, Path] = {}
    for f, cases in loaded:
        for c in cases:
            if c.id in seen:
                raise SpecError(f"{f}: case '{c.id}': id: duplicate of a case in {seen[c.id]}")
            seen[c.id] = f
    start = time.perf_counter()
    cache: dict[str, _Measured] = {}
    results: list[CaseResult] = []
    for f, cases in loaded:
        for case in cases:
            t0 = time.perf_counter()
            data, base_dir = scenario_data(case, f.parent)
            where = f"case '{case.id}'"
            key = json.dumps([data, str(base_dir), case.window_s], sort_keys=True, default=str)
            measured = cache.get(key)
            if measured is None:
                try:
                    if case.window_s is not None:
                        window = _window_metrics(data, base_dir, where, case.window_s)
                        measured = _Measured(summary={}, window=window)
                    else:
                        measured = _Measured(summary=_simulate(data, base_dir, where).summary)
                except FleetsimError as exc:
                    msg = str(exc)
                    raise type(exc)(msg if msg.startswith(where) else f"{where}: {msg}") from None
                cache[key] = measured
            pred_si = predicted_value(case, measured)
            factor = UNITS[case.metric][case.unit]
            pred = pred_si / factor
            err = (pred_si / case.published_si - 1.0) * 100.0 if math.isfinite(pred_si) else math.nan
            fleet = data.get("fleet") or {}
            results.append(
                CaseResult(
                    id=case.id,
                    metric=case.metric,
                    statistic=case.statistic,
                    unit=case.unit,
                    published=case.published,
                    predicted=pred,
                    error_pct=err,
                    tolerance_pct=case.tolerance_pct,
                    status=case.status,
                    reason=case.reason,
                    source_entry=case.source.entry,
                    source_reference=case.source.reference,
                    source_note=case.source.note,
                    gpu=str(fleet.get("gpu", "")),
                    model=str(data.get("model", "")),
                    fitted=case.fitted,
                    seconds=time.perf_counter() - t0,
                )
            )
    return ValidationResult(cases=results, sources=[str(f) for f in files], elapsed_s=time.perf_counter() - start)


__all__ = [
    "Case",
    "CaseResult",
    "ValidationResult",
    "load_cases",
    "run_validation",
    "shipped_cases_path",
    "BUILTIN_SCENARIO",
    "METRICS",
]
