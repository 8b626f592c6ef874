"""A plan's answer as data: the table's columns, PlanResult (the cheapest fleet per GPU type, every
configuration tried and every simulation, with its views, JSON and files) and the words for a
load and a pipelined row. Its own module: what a plan returns, apart from how it is searched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fleetsim.catalog import load_model
from fleetsim.pipeline import vllm_partition
from fleetsim.spec.scenario import ScenarioSpec

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
            rates = a.rates_per_s  # set whenever the load is piecewise
            return f"diurnal, {min(rates):g}-{max(rates):g} req/s"  # type: ignore[arg-type]
        return f"diurnal, mean {a.mean_rate_per_s:g} req/s (peak x{a.peak_to_mean or 1:g})"
    if a.kind == "trace":
        return f"trace {Path(a.path).name} (x{a.speedup:g})"
    if a.kind == "closed":
        return f"{a.users} closed-loop users"
    return f"{a.requests} requests at once (offline)"


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
