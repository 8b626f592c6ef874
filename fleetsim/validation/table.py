"""Validation results as tables: per case, per metric, and per engine and GPU family, for the
in-sample (fit) and hold-out cases separately, with the acceptance bounds."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fleetsim.validation.cases import LATENCY_METRICS, METRICS, POWER_METRICS, RATE_METRICS
from fleetsim.validation.runner import CaseResult

# Acceptance bounds on hold-out cases (status ok): median |error| per metric, and no case worse.
HOLDOUT_MEDIAN_BOUND_PCT = {
    "output_tokens_per_s": 10.0,
    "ttft_s": 20.0,
    "tpot_s": 20.0,
    "itl_s": 20.0,
    "gpu_power_w": 10.0,
}
HOLDOUT_WORST_BOUND_PCT = 50.0
# In-sample: the fit reproduces what it was fitted to.
FIT_MEDIAN_BOUND_PCT = 20.0


def gpu_family(gpu: str) -> str:
    g = gpu.lower()
    for prefix, fam in (
        ("gb", "Blackwell"),
        ("b2", "Blackwell"),
        ("b3", "Blackwell"),
        ("h", "Hopper"),
        ("gh", "Hopper"),
        ("a100", "Ampere"),
        ("l40", "Ada"),
        ("mi", "AMD Instinct"),
    ):
        if g.startswith(prefix):
            return fam
    return gpu or "-"


def _fmt(x: float | None) -> str:
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

    def _ok(self, split: str | None = None) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "ok" and (split is None or c.split == split)]

    def summary_rows(self, by: str = "metric") -> list[dict]:
        """Count, median and worst |error| per split and `by` (metric, engine or family), ok cases."""
        rows = []
        for split in ("fit", "holdout"):
            groups: dict[tuple, list[CaseResult]] = {}
            for c in self._ok(split):
                key = {"metric": (c.metric,), "engine": (c.engine, c.metric), "family": (gpu_family(c.gpu), c.metric)}[
                    by
                ]
                groups.setdefault(key, []).append(c)
            order = sorted(
                groups, key=lambda k: (k[:-1], METRICS.index(k[-1])) if by != "metric" else METRICS.index(k[0])
            )
            for key in order:
                cs = groups[key]
                errs = np.array([c.abs_error_pct for c in cs], dtype=float)
                worst = max(cs, key=lambda c: c.abs_error_pct)
                row = {"split": split}
                if by != "metric":
                    row[by] = key[0]
                row.update(
                    {
                        "metric": key[-1],
                        "cases": len(cs),
                        "median_abs_error_pct": float(np.median(errs)),
                        "worst_abs_error_pct": float(errs.max()),
                        "worst_case": worst.id,
                        "within_tolerance": int(sum(c.within_tolerance for c in cs)),
                    }
                )
                rows.append(row)
        return rows

    def counts(self) -> dict:
        out = {"cases": len(self.cases)}
        for s in ("ok", "unsupported", "error"):
            out[s] = sum(c.status == s for c in self.cases)
        return out

    def bound_violations(self) -> list[str]:
        """Hold-out bounds (median |error| per metric; no case worse than 50%) and the in-sample
        median bound. Empty when met."""
        out = []
        for row in self.summary_rows("metric"):
            m, med = row["metric"], row["median_abs_error_pct"]
            if row["split"] == "holdout" and m in HOLDOUT_MEDIAN_BOUND_PCT and med > HOLDOUT_MEDIAN_BOUND_PCT[m]:
                out.append(f"holdout {m}: median |error| {med:.1f}% > {HOLDOUT_MEDIAN_BOUND_PCT[m]:g}%")
            if (
                row["split"] == "fit"
                and m in RATE_METRICS + LATENCY_METRICS + POWER_METRICS
                and med > FIT_MEDIAN_BOUND_PCT
            ):
                out.append(f"fit {m}: median |error| {med:.1f}% > {FIT_MEDIAN_BOUND_PCT:g}%")
        for c in self._ok("holdout"):
            if not c.abs_error_pct <= HOLDOUT_WORST_BOUND_PCT:
                out.append(f"{c.id}: |error| {c.abs_error_pct:.1f}% > {HOLDOUT_WORST_BOUND_PCT:g}%")
        return out

    # ---- tables
    def display_table(self) -> pd.DataFrame:
        rows = []
        for c in self.cases:
            rows.append(
                {
                    "case": c.id,
                    "split": c.split,
                    "metric": c.metric if c.statistic == "mean" else f"{c.metric} ({c.statistic})",
                    "unit": c.unit,
                    "published": c.published,
                    "predicted": c.predicted,
                    "error %": round(c.error_pct, 1) if math.isfinite(c.error_pct) else math.nan,
                    "status": c.status if c.status != "ok" else ("ok" if c.within_tolerance else "ok (outside tol)"),
                }
            )
        return pd.DataFrame(rows)

    def summary_table(self, by: str = "metric") -> pd.DataFrame:
        rows = []
        for r in self.summary_rows(by):
            row = {"split": r["split"]}
            if by != "metric":
                row[by] = r[by]
            row.update(
                {
                    "metric": r["metric"],
                    "cases": r["cases"],
                    "median |err| %": r["median_abs_error_pct"],
                    "worst |err| %": r["worst_abs_error_pct"],
                    "worst case": r["worst_case"],
                }
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        violations = self.bound_violations()
        return {
            "fleetsim_version": self.version,
            "date": self.date,
            "case_files": self.sources,
            "elapsed_s": self.elapsed_s,
            "counts": self.counts(),
            "bounds": {
                "holdout_median_abs_error_pct": HOLDOUT_MEDIAN_BOUND_PCT,
                "holdout_worst_abs_error_pct": HOLDOUT_WORST_BOUND_PCT,
                "fit_median_abs_error_pct": FIT_MEDIAN_BOUND_PCT,
                "met": not violations,
                "violations": violations,
            },
            "summary": self.summary_rows("metric"),
            "by_engine": self.summary_rows("engine"),
            "by_gpu_family": self.summary_rows("family"),
            "cases": [c.as_dict() for c in self.cases],
        }

    def markdown_summary(self) -> list[str]:
        """The per-metric tables (in-sample and hold-out) and the per engine / GPU family tables."""
        lines = []
        for by, title in (("metric", "By metric"), ("engine", "By engine"), ("family", "By GPU family")):
            lines += [f"### {title}", ""]
            head = (
                "| split | "
                + (f"{by} | " if by != "metric" else "")
                + "metric | cases | median abs error % | worst abs error % | worst case |"
            )
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            for r in self.summary_rows(by):
                lead = f"| {r['split']} | " + (f"{r[by]} | " if by != "metric" else "")
                lines.append(
                    f"{lead}{r['metric']} | {r['cases']} | {r['median_abs_error_pct']:.1f} | "
                    f"{r['worst_abs_error_pct']:.1f} | {r['worst_case']} |"
                )
            lines.append("")
        c = self.counts()
        violations = self.bound_violations()
        lines.append(
            f"{c['cases']} cases: {c['ok']} run, {c['unsupported']} unsupported (shown, not counted), "
            f"{c['error']} errors. Hold-out bounds (median abs error <= 10% throughput, <= 20% TTFT/TPOT/ITL, "
            "<= 10% GPU power; no hold-out case worse than 50%) and in-sample median <= 20%: "
            + (
                "**met**."
                if not violations
                else "**not met**: "
                + "; ".join(violations[:12])
                + (f"; and {len(violations) - 12} more" if len(violations) > 12 else "")
                + "."
            )
        )
        return lines

    def to_markdown(self) -> str:
        lines = [
            "# fleetsim validation against published measurements",
            "",
            f"Generated by `fleetsim validate` on {self.date} with fleetsim {self.version} "
            f"({len(self.cases)} cases from {len(self.sources)} files; {self.elapsed_s:.0f} s). "
            "Error = predicted / published - 1. split = fit: the shipped profiles were fitted to that case's "
            "group (in-sample); holdout: its whole group was left out of the fit. Unsupported cases need something "
            "fleetsim does not model yet: shown with the reason, not simulated, not counted.",
            "",
        ]
        lines += self.markdown_summary()
        lines += [
            "",
            "## Cases",
            "",
            "| case | split | metric | published | predicted | unit | error % | status | source |",
            "|---|---|---|---:|---:|---|---:|---|---|",
        ]
        for c in self.cases:
            metric = c.metric if c.statistic == "mean" else f"{c.metric} ({c.statistic})"
            status = c.status if c.status == "ok" else f"{c.status}: {c.reason}"
            if c.status == "ok" and not c.within_tolerance:
                status = "ok (outside tolerance)"
            err = f"{c.error_pct:+.1f}" if math.isfinite(c.error_pct) else "-"
            lines.append(
                f"| {c.id} | {c.split} | {metric} | {_fmt(c.published)} | {_fmt(c.predicted)} | {c.unit} | "
                f"{err} | {status} | {c.source_entry} |"
            )
        lines += ["", "## Sources", ""]
        refs: dict[str, str] = {}
        for c in self.cases:
            refs.setdefault(c.source_entry, c.source_reference)
        for entry, ref in refs.items():
            lines.append(f"- `{entry}`: {ref}")
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path) -> Path:
        """Write validation.csv (one row per case), summary.json (through the one JSON writer,
        fleetsim.output.write_json: a non-finite value is null with a reason) and VALIDATION.md."""
        from fleetsim.output import write_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(out / "validation.csv", index=False)
        write_json(out / "summary.json", self.to_dict())
        (out / "VALIDATION.md").write_text(self.to_markdown())
        return out


def _fleetsim_version() -> str:
    from fleetsim import __version__

    return str(__version__)
