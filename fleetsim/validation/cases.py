"""Validation cases: a published measurement and the conditions that reproduce it.

A case is a small YAML record; the shipped sets (fleetsim/validation/cases/*.yaml) are generated
by calibration/make_cases.py from the reference figures and their conditions::

    - id: trtllm-70b-h100-sxm-tp2-1000-1000
      group: trtllm-perf-70b      # the family of runs (what a hold-out holds out whole)
      split: fit                  # fit: the shipped profiles were fitted to it (in-sample); holdout: never
      base: builtin               # or a scenario YAML (relative to the case file)
      overrides:                  # dotted paths; list items by index (workload.classes.0....)
        engine: {kind: trtllm, version: "1.0"}
        fleet.gpu: h100-sxm
      metric: output_tokens_per_s # output_tokens_per_s | input_tokens_per_s | ttft_s | tpot_s | itl_s | gpu_power_w | server_wall_kw
                                  # | energy_per_output_token_j
      statistic: mean             # mean | p50 | p99 (latency metrics); mean otherwise
      published: 4205
      unit: tokens/s              # s | ms for latencies; tokens/s; W; J/token
      source: {entry: <reference id>, reference: "...", note: "..."}
      tolerance_pct: 15
      status: ok                  # ok | unsupported (then `reason` says what fleetsim lacks; not simulated)
      window_s: run               # optional: run (whole run, as offline benchmarks report) or [a, b]
                                  # (a steady-state window); default: the summary's steady-state window

`fleet.profile` may name a shipped GPU profile and `engine.profile` a shipped engine profile.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from fleetsim.errors import SpecError, first_error_line
from fleetsim.spec.base import Spec
from fleetsim.spec.yaml_file import read_yaml

Metric = Literal[
    "output_tokens_per_s",
    "input_tokens_per_s",
    "ttft_s",
    "tpot_s",
    "itl_s",
    "gpu_power_w",
    "server_wall_kw",
    "energy_per_output_token_j",
]
METRICS: tuple[str, ...] = get_args(Metric)
LATENCY_METRICS = ("ttft_s", "tpot_s", "itl_s")
RATE_METRICS = ("output_tokens_per_s", "input_tokens_per_s")
# server_wall_kw: whole-server AC wall power of the servers the run's GPUs occupy (MLPerf Power).
POWER_METRICS = ("gpu_power_w", "server_wall_kw")
# Units a case may give its published value in, per metric, with the factor to SI.
UNITS: dict[str, dict[str, float]] = {
    "output_tokens_per_s": {"tokens/s": 1.0},
    "input_tokens_per_s": {"tokens/s": 1.0},  # prompt tokens prefilled (a prefill pool's throughput)
    "ttft_s": {"s": 1.0, "ms": 1e-3},
    "tpot_s": {"s": 1.0, "ms": 1e-3},
    "itl_s": {"s": 1.0, "ms": 1e-3},
    "gpu_power_w": {"W": 1.0},
    "server_wall_kw": {"kW": 1.0, "W": 1e-3},
    "energy_per_output_token_j": {"J/token": 1.0},
}

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


class CaseSource(Spec):
    entry: str = Field(min_length=1, max_length=300)  # reference figure id
    reference: str = Field(min_length=1, max_length=2000)  # where the figure is published
    note: str = Field(default="", max_length=4000)


Window = tuple[Annotated[float, Field(ge=0, le=1e6)], Annotated[float, Field(gt=0, le=1e6)]]


class Case(Spec):
    id: str = Field(min_length=1, max_length=200)
    group: str = Field(default="ungrouped", min_length=1, max_length=200)
    split: Literal["fit", "holdout"] = "holdout"
    base: str = "builtin"
    overrides: dict[str, Any] = Field(default_factory=dict)
    metric: Metric
    statistic: Literal["mean", "p50", "p99"] = "mean"
    published: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]
    unit: str
    source: CaseSource
    tolerance_pct: Annotated[float, Field(gt=0, le=1000)] = 15.0
    status: Literal["ok", "unsupported"] = "ok"
    reason: str = Field(default="", validate_default=True, max_length=4000)
    window_s: Window | Literal["run"] | None = None
    # MLPerf Server's rule: the run offers the highest Poisson rate whose p99 TTFT and p99 TPOT
    # stay within these limits (s). The runner searches that rate (from the scenario's rate), so
    # the case compares capacity under the latency constraints and the latencies at it, rather
    # than latencies at a fixed rate 1-5% from saturation, where they hinge on a 1% capacity error.
    max_rate_within: dict[Literal["ttft_p99_s", "tpot_p99_s"], Annotated[float, Field(gt=0, le=3600)]] | None = None

    @field_validator("overrides")
    @classmethod
    def _dotted(cls, v: dict) -> dict:
        for key in v:
            if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
                raise ValueError(f"'{str(key)[:80]}' is not a dotted path (e.g. fleet.gpu)")
        return v

    @field_validator("statistic")
    @classmethod
    def _statistic(cls, v: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if v != "mean" and metric is not None and metric not in LATENCY_METRICS:
            raise ValueError(f"{v} applies to latency metrics only, not {metric}; use mean")
        return v

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if metric is not None and v not in UNITS[metric]:
            raise ValueError(f"'{v[:40]}' is not a unit of {metric}; use {' or '.join(UNITS[metric])}")
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
        if v is None or v == "run":
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

    @property
    def fitted(self) -> bool:
        return self.split == "fit"


def shipped_case_files() -> list[Path]:
    """The shipped case files, in name order."""
    root = resources.files("fleetsim.validation").joinpath("cases")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml"))


def load_cases(path: str | Path) -> list[Case]:
    """The cases of one file; any problem is a SpecError naming the file, case and field."""
    p = Path(path)
    data = read_yaml(p, "validation cases")
    if isinstance(data, dict) and "cases" in data:
        extra = sorted(set(data) - {"cases"})
        if extra:
            raise SpecError(f"{p}: unknown top-level key '{str(extra[0])[:80]}' (a case file holds `cases:`)")
        data = data["cases"]
    if not isinstance(data, list) or not data:
        raise SpecError(f"{p}: a case file is a non-empty list of cases (or a mapping with `cases:`)")
    cases, seen = [], set()
    for i, raw in enumerate(data):
        name = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        label = f"case '{name[:80]}' (#{i + 1})" if name else f"case #{i + 1}"
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
