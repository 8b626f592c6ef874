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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fleetsim.catalog import load_gpu, load_model
from fleetsim.cost import hourly_cost_usd
from fleetsim.errors import CapacityError, FleetsimError, SpecError
from fleetsim.memory import valid_tp_degrees
from fleetsim.precision import KV_DTYPES, WEIGHT_DTYPES
from fleetsim.scenario import load_scenario
from fleetsim.simulation import build, simulate
from fleetsim.spec.scenario import ScenarioSpec

__all__ = ["PlanResult", "plan_fleet", "describe_load"]

TABLE_COLUMNS = (
    "gpu",
    "met",
    "tp",
    "weight_dtype",
    "key_dtype",
    "value_dtype",
    "replicas",
    "gpus",
    "servers",
    "racks",
    "it_kw",
    "facility_kw",
    "cooling_tons",
    "usd_per_hour",
    "usd_per_million_tokens",
    "usd_per_million_output_tokens",
    "slo_attainment",
    "ttft_at_percentile_s",
    "tpot_at_percentile_s",
    "replicas_one_fewer",
    "slo_attainment_one_fewer",
    "met_one_fewer",
    "simulations",
    "reason",
)


def describe_load(spec: ScenarioSpec) -> str:
    """The arrival process in words: 'Poisson 20 req/s'."""
    a = spec.workload.arrival
    if a.kind == "poisson":
        return f"Poisson {a.rate_per_s:g} req/s"
    if a.kind == "gamma":
        return f"{a.rate_per_s:g} req/s (gamma, cv {a.cv:g})"
    if a.kind == "diurnal":
        if a.is_piecewise:
            return f"diurnal, {min(a.rates_per_s):g}-{max(a.rates_per_s):g} req/s"
        return f"diurnal, mean {a.mean_rate_per_s:g} req/s (peak x{a.peak_to_mean or 1:g})"
    if a.kind == "trace":
        return f"trace {Path(a.path).name} (x{a.speedup:g})"
    if a.kind == "closed":
        return f"{a.users} closed-loop users"
    return f"{a.requests} requests at once (offline)"


def _kv_pair(kv: Any) -> tuple[str, str]:
    """'fp8' -> ('fp8', 'fp8'); 'q8_0/q4_0' or ('q8_0', 'q4_0') -> keys q8_0, values q4_0."""
    if isinstance(kv, (tuple, list)) and len(kv) == 2:
        k, v = kv
    elif isinstance(kv, str) and "/" in kv:
        k, v = kv.split("/", 1)
    else:
        k = v = kv
    for d in (k, v):
        if d not in KV_DTYPES:
            raise SpecError(
                f"plan: KV precision '{d}' is unknown; choose one of {', '.join(KV_DTYPES)} "
                "(or KEY/VALUE, e.g. q8_0/q4_0)"
            )
    return str(k), str(v)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):  # numpy scalars
        return _clean(x.item())
    return x


@dataclass
class PlanResult:
    """The cheapest fleet per GPU type (table), every configuration tried (options) and every
    simulation run (evaluations)."""

    scenario: ScenarioSpec
    overrides: dict
    table: pd.DataFrame
    options: pd.DataFrame
    evaluations: pd.DataFrame
    max_replicas: int = 256
    files: list = field(default_factory=list)

    # ------------------------------------------------------------------ views
    def best(self) -> dict | None:
        """The cheapest row that meets the SLO (by $/hour, then $/Mtok), or None."""
        met = self.table[self.table["met"]]
        if met.empty:
            return None
        met = met.sort_values(["usd_per_hour", "usd_per_million_tokens", "gpus"], kind="stable")
        return {k: _clean(v) for k, v in met.iloc[0].to_dict().items()}

    def fleet_overrides(self, row: Mapping) -> dict:
        """The overrides (on top of the plan's own) that reproduce a row's fleet with simulate()."""
        return {
            **self.overrides,
            "fleet.gpu": row["gpu"],
            "fleet.tp": int(row["tp"]),
            "fleet.replicas": int(row["replicas"]),
            "weight_dtype": row["weight_dtype"],
            "kv_cache.key_dtype": row["key_dtype"],
            "kv_cache.value_dtype": row["value_dtype"],
        }

    def slo_text(self) -> str:
        s = self.scenario.slo
        return f"TTFT <= {s.ttft_s:g} s and TPOT <= {s.tpot_s:g} s for {s.attainment_target:.0%} of requests"

    def title(self) -> str:
        return (
            f"Cheapest fleet per GPU type: {self.scenario.model} at {describe_load(self.scenario)}, "
            f"SLO {self.slo_text()}"
        )

    def recommendation(self) -> str:
        b = self.best()
        if b is None:
            why = "; ".join(f"{r.gpu}: {r.reason}" for r in self.table.itertuples())
            return f"No GPU type meets the SLO ({self.slo_text()}) within {self.max_replicas} replicas: {why}."
        n, g = int(b["replicas"]), int(b["gpus"])
        return (
            f"Cheapest: {n} {b['gpu']} replica{'s' if n != 1 else ''} at tp={int(b['tp'])} "
            f"({g} GPU{'s' if g != 1 else ''}, {b['weight_dtype']} weights, KV {b['key_dtype']}/{b['value_dtype']}) "
            f"for ${b['usd_per_hour']:,.2f}/hour, ${b['usd_per_million_tokens']:,.4f} per million tokens, "
            f"meeting the SLO with {b['slo_attainment']:.2%} attainment "
            f"({n - 1} replica{'s' if n - 1 != 1 else ''}: {b['slo_attainment_one_fewer']:.2%})."
        )

    def display_table(self) -> pd.DataFrame:
        """The table for a terminal: short headings, the first clause of each note."""
        cols = {
            "gpu": "gpu",
            "met": "met",
            "tp": "tp",
            "replicas": "replicas",
            "gpus": "GPUs",
            "racks": "racks",
            "it_kw": "IT kW",
            "cooling_tons": "cooling t",
            "usd_per_hour": "$/hour",
            "usd_per_million_tokens": "$/Mtok",
            "slo_attainment": "SLO attain.",
            "slo_attainment_one_fewer": "one fewer",
            "reason": "note",
        }
        df = self.table[list(cols)].rename(columns=cols).copy()
        for c in ("tp", "replicas", "GPUs", "racks"):
            df[c] = [("-" if pd.isna(v) else str(int(v))) for v in df[c]]
        df["note"] = [str(v).split(";")[0] for v in df["note"].fillna("")]
        return df.round({"IT kW": 2, "cooling t": 2, "$/hour": 2, "$/Mtok": 4, "SLO attain.": 4, "one fewer": 4})

    def to_dict(self) -> dict:
        def records(df: pd.DataFrame) -> list[dict]:
            return [{k: _clean(v) for k, v in r.items()} for r in df.to_dict(orient="records")]

        s = self.scenario
        return {
            "title": self.title(),
            "scenario": s.name,
            "model": s.model,
            "load": describe_load(s),
            "slo": s.slo.model_dump(mode="json"),
            "overrides": self.overrides,
            "max_replicas": self.max_replicas,
            "recommendation": self.recommendation(),
            "best": self.best(),
            "rows": records(self.table),
            "options": records(self.options),
            "evaluations": records(self.evaluations),
        }

    def save(self, out_dir: str | Path) -> list[Path]:
        """plan.json (through the one JSON writer, fleetsim.output.write_json: a non-finite value is
        null with a reason), plan.csv (the table), options.csv, evaluations.csv and scenario.yaml."""
        from fleetsim.output import json_text, write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "plan.json", self.to_dict())
        self.table.to_csv(out / "plan.csv", index=False)
        self.options.to_csv(out / "options.csv", index=False)
        self.evaluations.to_csv(out / "evaluations.csv", index=False)
        (out / "scenario.yaml").write_text(
            f"# The scenario planned for (base + overrides {json_text(self.overrides, indent=None)}).\n"
            + yaml.safe_dump(self.scenario.model_dump(mode="json"), sort_keys=False)
        )
        self.files = [out / n for n in ("plan.json", "plan.csv", "options.csv", "evaluations.csv", "scenario.yaml")]
        return self.files


# --------------------------------------------------------------------------- the search
class _Search:
    """Smallest replica count meeting the SLO for one configuration (exponential + bisection)."""

    def __init__(
        self, base: ScenarioSpec, config: dict, max_replicas: int, evaluations: list, note: Callable[[str], None]
    ):
        self.base, self.config, self.max_replicas = base, config, max_replicas
        self.evaluations, self.note = evaluations, note
        self.results: dict[int, dict] = {}

    def evaluate(self, replicas: int) -> dict:
        if replicas not in self.results:
            self.note(f"{self.config['fleet.gpu']} tp={self.config['fleet.tp']}: {replicas} replica(s)")
            spec = load_scenario(self.base, {**self.config, "fleet.replicas": replicas})
            s = simulate(spec).summary
            self.results[replicas] = s
            self.evaluations.append(
                {
                    "gpu": self.config["fleet.gpu"],
                    "tp": self.config["fleet.tp"],
                    "weight_dtype": self.config["weight_dtype"],
                    "key_dtype": self.config["kv_cache.key_dtype"],
                    "value_dtype": self.config["kv_cache.value_dtype"],
                    "replicas": replicas,
                    "met": s["slo"]["met"],
                    "slo_attainment": s["slo"]["attainment"],
                    "usd_per_hour": s["cost"]["usd_per_hour"],
                    "usd_per_million_tokens": s["cost"]["usd_per_million_tokens"],
                    "ttft_p99_s": s["latency_s"]["ttft"]["p99"],
                    "tpot_p99_s": s["latency_s"]["tpot"]["p99"],
                }
            )
        return self.results[replicas]

    def run(self, lower_bound_usd: Callable[[int], float], best_usd: float) -> tuple[int | None, str]:
        """(smallest replicas meeting the SLO, note). None when none up to max_replicas does, or
        when every fleet that might is dearer than best_usd (then the note says so)."""
        lo, r = 0, 1  # lo: largest count known to miss (0: none simulated)
        while True:
            if lower_bound_usd(r) >= best_usd:
                return None, "dearer than a cheaper configuration before it meets the SLO"
            s = self.evaluate(r)
            if s["slo"]["met"]:
                hi = r
                break
            if s["cost"]["usd_per_hour"] >= best_usd:
                return None, "dearer than a cheaper configuration before it meets the SLO"
            lo = r
            if r >= self.max_replicas:
                att = s["slo"]["attainment"]
                return None, (
                    f"SLO missed up to {self.max_replicas} replicas (attainment {att:.2%} at {self.max_replicas})"
                )
            r = min(2 * r, self.max_replicas)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.evaluate(mid)["slo"]["met"]:
                hi = mid
            else:
                lo = mid
        return hi, ""


def _configs(base: ScenarioSpec, gpu_name: str, tp_options, weight_dtypes, kv_dtypes) -> tuple[list[dict], list[dict]]:
    """Configurations of one GPU type that fit in memory, and those that do not (with why)."""
    arch = load_model(base.model)
    gpu = load_gpu(gpu_name)
    tps = list(tp_options) if tp_options else valid_tp_degrees(arch, limit=gpu.gpus_per_server)
    wds = list(weight_dtypes) if weight_dtypes else [base.weight_dtype]
    kvs = [_kv_pair(k) for k in kv_dtypes] if kv_dtypes else [(base.kv_cache.key_dtype, base.kv_cache.value_dtype)]
    fits, misfits = [], []
    for wd in wds:
        if wd not in WEIGHT_DTYPES:
            raise SpecError(f"plan: weight dtype '{wd}' is unknown; choose one of {', '.join(WEIGHT_DTYPES)}")
        for kd, vd in kvs:
            for tp in tps:
                cfg = {
                    "fleet.gpu": gpu_name,
                    "fleet.tp": int(tp),
                    "weight_dtype": wd,
                    "kv_cache.key_dtype": kd,
                    "kv_cache.value_dtype": vd,
                }
                try:
                    spec = load_scenario(base, {**cfg, "fleet.replicas": 1})
                    build(spec)
                    # A price is needed to compare fleets: a GPU without one is a row with the reason.
                    hourly_cost_usd(
                        spec.cost,
                        gpu,
                        int(tp),
                        0.0,
                        spec.facility.pue,
                        server_overhead_w=spec.facility.server_overhead_w,
                    )
                except FleetsimError as exc:
                    misfits.append({**cfg, "reason": str(exc), "capacity": isinstance(exc, CapacityError)})
                    continue
                fits.append(cfg)
    return fits, misfits


def _row_from(search: _Search, replicas: int) -> dict:
    s = search.results[replicas]
    fewer = search.results.get(replicas - 1)
    q = s["slo"]["percentile"]
    return {
        "met": True,
        "replicas": replicas,
        "gpus": s["fleet"]["gpus"],
        "servers": s["fleet"]["servers"],
        "racks": s["fleet"]["racks"],
        "it_kw": s["power"]["it_mean_kw"],
        "facility_kw": s["power"]["facility_mean_kw"],
        "cooling_tons": s["cooling"]["tons"],
        "usd_per_hour": s["cost"]["usd_per_hour"],
        "usd_per_million_tokens": s["cost"]["usd_per_million_tokens"],
        "usd_per_million_output_tokens": s["cost"]["usd_per_million_output_tokens"],
        "slo_attainment": s["slo"]["attainment"],
        "ttft_at_percentile_s": s["slo"][f"ttft_p{q:g}_s"],
        "tpot_at_percentile_s": s["slo"][f"tpot_p{q:g}_s"],
        "replicas_one_fewer": replicas - 1,
        # Zero replicas serve nothing: attainment 0 by definition.
        "slo_attainment_one_fewer": fewer["slo"]["attainment"] if fewer else 0.0,
        "met_one_fewer": bool(fewer["slo"]["met"]) if fewer else False,
        "reason": "",
    }


def plan_fleet(
    scenario: Any,
    gpus: Iterable[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    tp_options: Iterable[int] | None = None,
    weight_dtypes: Iterable[str] | None = None,
    kv_dtypes: Iterable[Any] | None = None,
    max_replicas: int = 256,
) -> PlanResult:
    """The cheapest fleet of each GPU type meeting the scenario's SLO at its load.

    tp_options: tensor-parallel degrees to try (default: every valid degree of the model up to the
    GPUs of one server, that fits); weight_dtypes / kv_dtypes: precisions to try (default: the
    scenario's; a KV entry is 'fp8' for keys and values or 'q8_0/q4_0' for keys/values).
    A GPU type where nothing fits or nothing meets the SLO is a row with met=False and a reason.
    """
    gpus = [g for g in dict.fromkeys(gpus)]
    if not gpus:
        raise SpecError("plan: no GPU types given (--gpus h100-sxm,h200,...)")
    if max_replicas < 1:
        raise SpecError(f"plan: max_replicas must be >= 1 (got {max_replicas})")
    overrides = dict(overrides or {})
    base = load_scenario(scenario, overrides)
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
            fits, misfits = _configs(base, gpu_name, tp_options, weight_dtypes, kv_dtypes)
            for m in misfits:
                options.append(
                    {
                        **_option_cols(m),
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
                search = _Search(base, cfg, max_replicas, evaluations, note)
                spec1 = load_scenario(base, {**cfg, "fleet.replicas": 1})

                def lower_bound(r: int, cfg=cfg, spec1=spec1, gpu=gpu) -> float:
                    # GPUs alone (no energy): a floor under any fleet of r replicas.
                    return hourly_cost_usd(
                        spec1.cost,
                        gpu,
                        r * cfg["fleet.tp"],
                        0.0,
                        spec1.facility.pue,
                        server_overhead_w=spec1.facility.server_overhead_w,
                    ).usd_per_hour

                try:
                    replicas, why = search.run(lower_bound, best_usd)
                except FleetsimError as exc:  # e.g. a request class the model cannot take
                    replicas, why = None, str(exc)
                sims = len(evaluations) - n_before
                if replicas is None:
                    misses.append(why)
                    options.append(
                        {
                            **_option_cols(cfg),
                            "replicas": None,
                            "met": False,
                            "usd_per_hour": None,
                            "usd_per_million_tokens": None,
                            "reason": why,
                            "simulations": sims,
                        }
                    )
                    continue
                row = {**_option_cols(cfg), **_row_from(search, replicas), "simulations": sims}
                options.append(
                    {
                        **_option_cols(cfg),
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
                        tried = ", ".join(str(m["fleet.tp"]) for m in misfits)
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
                best["simulations"] = sum(o.get("simulations") or 0 for o in options if o["gpu"] == gpu_name)
                rows.append(best)
    finally:
        if bar is not None:
            bar.stop()

    table = pd.DataFrame(rows).reindex(columns=list(TABLE_COLUMNS))
    table["met"] = table["met"].astype(bool)
    table["reason"] = table["reason"].fillna("")
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
    )
    if out_dir is not None:
        result.save(out_dir)
    return result


def _option_cols(cfg: Mapping) -> dict:
    return {
        "gpu": cfg["fleet.gpu"],
        "tp": cfg["fleet.tp"],
        "weight_dtype": cfg["weight_dtype"],
        "key_dtype": cfg["kv_cache.key_dtype"],
        "value_dtype": cfg["kv_cache.value_dtype"],
    }
