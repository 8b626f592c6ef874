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

from fleetsim.catalog import gpu_names, load_gpu, load_model
from fleetsim.errors import CapacityError, FleetsimError, SpecError
from fleetsim.memory import valid_tp_degrees
from fleetsim.pipeline import vllm_partition
from fleetsim.precision import KV_DTYPES, WEIGHT_DTYPES
from fleetsim.scenario import load_scenario
from fleetsim.simulation import build, simulate
from fleetsim.spec.scenario import ScenarioSpec
from fleetsim.study.economics import fleet_economics, floor_usd_per_hour
from fleetsim.study.replicates import check_seeds, replicate
from fleetsim.study.sources import rental_offers

__all__ = ["PlanResult", "plan_fleet", "describe_load", "pipeline_overrides"]

PIPELINE_OPTIONS = (2, 4)  # pipeline stages plan tries for a model that fits no server

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
# Interval columns (95% Student-t over seeds: <figure>_lo, <figure>_hi), the ranking and ties,
# rent vs own in buyable units, headroom and the facility on peak power.
EXTRA_COLUMNS = (
    "pp",  # pipeline stages, where no in-server tp fits the model (empty: 1)
    "seeds",
    "rank",
    "tie_with_best",
    "usd_per_million_tokens_lo",
    "usd_per_million_tokens_hi",
    "usd_per_million_tokens_by_seed",
    "slo_attainment_lo",
    "slo_attainment_hi",
    "ttft_at_percentile_s_lo",
    "ttft_at_percentile_s_hi",
    "tpot_at_percentile_s_lo",
    "tpot_at_percentile_s_hi",
    "slo_attainment_one_fewer_hi",
    "met_with_confidence",
    "it_kw_lo",
    "it_kw_hi",
    "it_peak_kw",
    "facility_peak_kw",
    "cooling_tons_at_mean",
    "cooling_class",
    "rack_warning",
    "water_l_per_h",
    "carbon_g_per_million_tokens",
    "carbon_g_per_million_tokens_lo",
    "carbon_g_per_million_tokens_hi",
    "tokens_per_s",
    "tokens_per_s_per_mw",
    "cost_mode",
    "rental_provider",
    "rental_source",
    "rental_gpus_per_instance",
    "rental_instances",
    "rental_billed_gpus",
    "rental_usd_per_hour",
    "rental_usd_per_million_tokens",
    "rental_usd_per_million_tokens_lo",
    "rental_usd_per_million_tokens_hi",
    "rental_reason",
    "owned_billed_gpus",
    "owned_capex_usd",
    "owned_usd_per_hour",
    "owned_usd_per_million_tokens",
    "owned_usd_per_million_tokens_lo",
    "owned_usd_per_million_tokens_hi",
    "owned_reason",
    "break_even_utilization",
    "break_even_months",
    "usd_per_million_input_tokens_by_gpu_time",
    "usd_per_million_output_tokens_by_gpu_time",
    "spares",
    "replicas_with_spares",
    "gpus_with_spares",
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


def _range(row: Mapping, col: str, fmt: str) -> str:
    lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
    if lo is None or hi is None or (row.get("seeds") or 1) < 2:
        return ""
    return f" (95% CI {fmt.format(lo)}-{fmt.format(hi)})"


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
    seeds: int = 1
    spares: int = 0
    files: list = field(default_factory=list)

    # ------------------------------------------------------------------ views
    def best(self) -> dict | None:
        """The cheapest row that meets the SLO (by mean $/Mtok over the seeds, then $/hour), or None."""
        met = self.table[self.table["met"]]
        if met.empty:
            return None
        met = met.sort_values(["rank"], kind="stable")
        return {k: _clean(v) for k, v in met.iloc[0].to_dict().items()}

    def runner_up(self) -> dict | None:
        met = self.table[self.table["met"]].sort_values(["rank"], kind="stable")
        return {k: _clean(v) for k, v in met.iloc[1].to_dict().items()} if len(met) > 1 else None

    def ties(self) -> list[str]:
        """GPU types whose $/Mtok interval overlaps the best one's (a tie within noise)."""
        t = self.table
        return [str(g) for g, tie, r in zip(t["gpu"], t["tie_with_best"], t["rank"]) if tie is True and r != 1]

    def fleet_overrides(self, row: Mapping) -> dict:
        """The overrides (on top of the plan's own) that reproduce a row's fleet with simulate()."""
        return {
            **self.overrides,
            "fleet.gpu": row["gpu"],
            "fleet.tp": int(row["tp"]),
            **pipeline_overrides(self.scenario.model, row),
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
        ties = self.ties()
        word = "Tie for cheapest" if ties else "Cheapest"
        text = (
            f"{word}: {n} {b['gpu']} replica{'s' if n != 1 else ''} at tp={int(b['tp'])}{_pp_words(b)} "
            f"({g} GPU{'s' if g != 1 else ''}, {b['weight_dtype']} weights, KV {b['key_dtype']}/{b['value_dtype']}) "
            f"for ${b['usd_per_hour']:,.2f}/hour, ${b['usd_per_million_tokens']:,.4f} per million tokens"
            f"{_range(b, 'usd_per_million_tokens', '{:,.4f}')}, "
            f"meeting the SLO with {b['slo_attainment']:.2%} attainment{_range(b, 'slo_attainment', '{:.2%}')} "
            f"({n - 1} replica{'s' if n - 1 != 1 else ''}: {b['slo_attainment_one_fewer']:.2%})."
        )
        unpriced = [str(r.gpu) for r in self.table.itertuples() if str(r.reason).startswith("no rental price")]
        if unpriced:
            text += f" Not priced: {', '.join(unpriced)} (give --price GPU=USD_PER_GPU_HOUR)."
        if ties:
            text += (
                f" Tie: {', '.join(ties)} {'is' if len(ties) == 1 else 'are'} within the {self.seeds}-seed "
                "95% interval of its $/Mtok; the difference is noise, not a recommendation."
            )
        return text

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
        if self.seeds > 1:
            df.insert(
                df.columns.get_loc("$/Mtok") + 1,
                "95% CI",
                [
                    "-" if pd.isna(lo) else f"{lo:.4f}-{hi:.4f}"
                    for lo, hi in zip(self.table["usd_per_million_tokens_lo"], self.table["usd_per_million_tokens_hi"])
                ],
            )
        df.insert(
            df.columns.get_loc("met") + 1,
            "rank",
            [
                "-" if pd.isna(r) else (f"{int(r)} (tie)" if t is True and r != 1 else str(int(r)))
                for r, t in zip(self.table["rank"], self.table["tie_with_best"])
            ],
        )
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
            "seeds": self.seeds,
            "interval": f"95% Student-t over {self.seeds} seed(s) (run.seed + 0..{self.seeds - 1})",
            "spares": self.spares,
            "recommendation": self.recommendation(),
            "best": self.best(),
            "runner_up": self.runner_up(),
            "ties": self.ties(),
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
        self.gpu = load_gpu(config["fleet.gpu"])
        self.seed_runs = 0  # runs at other seeds than the scenario's (intervals)

    def replicate(self, replicas: int, seeds: int):
        cache = {self.base.run.seed: self.results[replicas]} if replicas in self.results else {}
        self.seed_runs += seeds - len(cache)
        self.note(f"{self.config['fleet.gpu']} tp={self.config['fleet.tp']}: {replicas} replica(s) x {seeds} seeds")
        reps = replicate(self.spec(replicas), seeds=seeds, cache=cache)
        self.results.setdefault(replicas, reps.summaries[0])
        return reps

    def spec(self, replicas: int) -> ScenarioSpec:
        return load_scenario(self.base, {**self.config, "fleet.replicas": replicas})

    def usd_per_hour(self, replicas: int) -> float:
        """The buyable fleet's cost per hour (whole instances or servers) of a simulated count."""
        c = fleet_economics(self.spec(replicas), self.gpu, [self.results[replicas]])["usd_per_hour"]
        return math.inf if c is None else float(c)

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
                    "seed": s["seed"],
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
            if self.usd_per_hour(r) >= best_usd:
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


def _configs(
    base: ScenarioSpec, gpu_name: str, tp_options, weight_dtypes, kv_dtypes, price: float | None = None
) -> tuple[list[dict], list[dict]]:
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
            layouts = [(int(tp), 1) for tp in tps]
            if not tp_options and tps and base.fleet.pipeline.stages == 1:
                # A model no server holds: the widest in-server tp over 2 or 4 pipeline stages
                # (tried only when every in-server tp is short of memory).
                layouts += [(int(max(tps)), pp) for pp in PIPELINE_OPTIONS]
            found = False
            for tp, pp in layouts:
                if pp > 1 and (found or any(not m["capacity"] for m in misfits)):
                    break
                cfg = {
                    "fleet.gpu": gpu_name,
                    "fleet.tp": tp,
                    "weight_dtype": wd,
                    "kv_cache.key_dtype": kd,
                    "kv_cache.value_dtype": vd,
                }
                if pp > 1:
                    cfg["fleet.pipeline.stages"] = pp
                    if arch.num_layers % pp:
                        cfg["fleet.pipeline.layers_per_stage"] = list(vllm_partition(arch.num_layers, pp))
                if price is not None:
                    cfg["cost.rental_usd_per_gpu_hour"] = price
                try:
                    spec = load_scenario(base, {**cfg, "fleet.replicas": 1})
                    build(spec)
                    # A price is needed to compare fleets: a GPU without one is a row with the reason.
                    _check_price(spec, gpu)
                except FleetsimError as exc:
                    misfits.append({**cfg, "reason": str(exc), "capacity": isinstance(exc, CapacityError)})
                    continue
                fits.append(cfg)
                found = True
    return fits, misfits


def _check_price(spec: ScenarioSpec, gpu) -> None:
    if spec.cost.mode == "rental" and not rental_offers(gpu, spec.cost.rental_usd_per_gpu_hour):
        raise SpecError(
            f"no rental price; give --price {gpu.name}=USD_PER_GPU_HOUR (or set cost.rental_usd_per_gpu_hour)"
        )
    if spec.cost.mode == "owned" and spec.cost.capex_usd_per_gpu is None and gpu.capex_usd_per_gpu is None:
        raise SpecError(f"no purchase price for {gpu.name}: set cost.capex_usd_per_gpu")


def _confirm(search: _Search, replicas: int, seeds: int) -> tuple[int, Any]:
    """Re-run the found fleet over `seeds` seeds (the search's run is seed 0); while the lower
    bound of attainment's interval misses the target, add a replica (up to max_replicas)."""
    while True:
        reps = search.replicate(replicas, seeds)
        if reps.met_with_confidence() or replicas >= search.max_replicas:
            return replicas, reps
        replicas += 1


def _row_from(search: _Search, replicas: int, seeds: int, spares: int) -> dict:
    replicas, reps = _confirm(search, replicas, seeds)
    s = reps.summaries[0]
    fewer_reps = None
    if replicas > 1:
        fewer_reps = search.replicate(replicas - 1, seeds)
    econ = fleet_economics(search.spec(replicas), search.gpu, reps.summaries, spares=spares)
    iv = reps.columns()
    fewer_att = fewer_reps.interval("slo_attainment") if fewer_reps else None
    return {
        **econ,
        "met": True,
        "seeds": seeds,
        "met_with_confidence": reps.met_with_confidence(),
        "replicas": replicas,
        "gpus": s["fleet"]["gpus"],
        "slo_attainment": iv["slo_attainment"],
        "slo_attainment_lo": iv["slo_attainment_lo"],
        "slo_attainment_hi": iv["slo_attainment_hi"],
        "ttft_at_percentile_s": iv["ttft_at_percentile_s"],
        "ttft_at_percentile_s_lo": iv["ttft_at_percentile_s_lo"],
        "ttft_at_percentile_s_hi": iv["ttft_at_percentile_s_hi"],
        "tpot_at_percentile_s": iv["tpot_at_percentile_s"],
        "tpot_at_percentile_s_lo": iv["tpot_at_percentile_s_lo"],
        "tpot_at_percentile_s_hi": iv["tpot_at_percentile_s_hi"],
        "replicas_one_fewer": replicas - 1,
        # Zero replicas serve nothing: attainment 0 by definition.
        "slo_attainment_one_fewer": fewer_att.mean if fewer_att else 0.0,
        "slo_attainment_one_fewer_hi": fewer_att.hi if fewer_att else 0.0,
        "met_one_fewer": bool(fewer_reps.met_with_confidence()) if fewer_reps else False,
        "reason": "",
    }


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
            fits, misfits = _configs(base, gpu_name, tp_options, weight_dtypes, kv_dtypes, prices.get(gpu.name))
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
                row = {**_option_cols(cfg), **_row_from(search, replicas, 1, spares), "simulations": sims}
                row["_search"] = search
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
                    best = {**best, **_row_from(search, int(best["replicas"]), seeds, spares)}
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


def pipeline_overrides(model: str, row: Mapping) -> dict:
    """The fleet.pipeline overrides of a plan row (its pp column; none for an in-server row)."""
    pp = row.get("pp")
    if pp is None or pp != pp or pp <= 1:  # pp != pp: NaN (an in-server row)
        return {}
    layers = load_model(model).num_layers
    split = {} if layers % pp == 0 else {"fleet.pipeline.layers_per_stage": list(vllm_partition(layers, int(pp)))}
    return {"fleet.pipeline.stages": int(pp), **split}


def _pp_words(row: Mapping) -> str:
    pp = row.get("pp")
    return f" x pp={int(pp)}" if pp == pp and pp and pp > 1 else ""  # pp == pp: not NaN


def _option_cols(cfg: Mapping) -> dict:
    pp = {"pp": cfg["fleet.pipeline.stages"]} if "fleet.pipeline.stages" in cfg else {}
    return {
        "gpu": cfg["fleet.gpu"],
        "tp": cfg["fleet.tp"],
        **pp,
        "weight_dtype": cfg["weight_dtype"],
        "key_dtype": cfg["kv_cache.key_dtype"],
        "value_dtype": cfg["kv_cache.value_dtype"],
    }
