"""What `fleetsim calibrate --from-bench` calls: plain functions, no CLI logic.

result = calibrate_from_bench([Path("c1.json")], Path("deploy.yaml"))
for title, table in point_tables(result): ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fleetsim.calibrate.bench.fit import BenchFit, BenchFitResult
from fleetsim.calibrate.bench.readers import read_bench_files
from fleetsim.scenario import load_scenario

_UNITS = {"output_tokens_per_s": ("output tokens/s", 1.0), "ttft_s": ("TTFT ms", 1e3), "tpot_s": ("TPOT ms", 1e3),
          "itl_s": ("ITL ms", 1e3)}  # fmt: skip


def calibrate_from_bench(
    files: list[Path],
    scenario: Path,
    bench_format: str = "auto",
    *,
    max_nfev: int = 200,
    simulate_rate_points: bool = True,
) -> BenchFitResult:
    """Read the result files, fit the scenario's engine terms to them, return the fit."""
    spec = load_scenario(scenario)
    points = read_bench_files(files, bench_format)
    fit = BenchFit(spec, points)
    return fit.run(max_nfev=max_nfev, simulate_rate_points=simulate_rate_points, sources=[str(f) for f in files])


def point_tables(result: BenchFitResult) -> list[tuple[str, pd.DataFrame]]:
    """One table per point: each metric published, before (prior profile), after (fitted), error %."""
    out = []
    for pr in result.points:
        rows = []
        for r in result.rows():
            if r["point"] != pr.point.label:
                continue
            unit, scale = _UNITS[r["metric"]]
            rows.append({
                "metric": f"{unit} ({r['statistic']})",
                "published": r["published"] * scale,
                "before": None if r["before"] is None else r["before"] * scale,
                "before %": r["before_error_pct"],
                "after": None if r["after"] is None else r["after"] * scale,
                "after %": r["after_error_pct"],
                "fitted": "yes" if r["fitted"] else "no",
                "note": r["note"],
            })  # fmt: skip
        df = pd.DataFrame(rows)
        if not (df["note"] != "").any():
            df = df.drop(columns=["note"])
        p = pr.point
        title = (f"{p.label} ({p.tool}, {p.load}, {p.mean_input_tokens:,.0f} in / "
                 f"{p.mean_output_tokens:,.0f} out tokens)")  # fmt: skip
        out.append((title, df))
    return out


def parameter_table(result: BenchFitResult) -> pd.DataFrame:
    return pd.DataFrame(
        [{"parameter": k, "prior": result.prior_values[k], "fitted": v, "ratio": v / result.prior_values[k]}
         for k, v in result.values.items()]
    )  # fmt: skip


def summary_line(result: BenchFitResult) -> str:
    before, after = result.errors("before"), result.errors("after")
    n = len(after)
    return (
        f"{n} fitted numbers from {len([p for p in result.points if any(p.used.values())])} points: "
        f"mean |error| {np.mean(before):.1f}% -> {np.mean(after):.1f}%, median {np.median(before):.1f}% -> "
        f"{np.median(after):.1f}% (prior {result.prior.name} -> fitted); {result.nfev} evaluations"
    )
