"""Validation against published measurements: predicted vs published, case by case, for the
in-sample (fit) and hold-out cases. Modules: cases (the case schema and files), runner (build,
check and simulate), table (summaries and bounds)."""

from __future__ import annotations

import time
from pathlib import Path

from fleetsim.validation.cases import BUILTIN_SCENARIO, METRICS, Case, load_cases, shipped_case_files
from fleetsim.validation.runner import CaseResult, load_case_files, run_cases
from fleetsim.validation.table import ValidationResult


def run_validation(
    paths: list[Path] | None = None,
    *,
    groups: list[str] | None = None,
    cases: set[str] | None = None,
    workers: int | None = None,
) -> ValidationResult:
    """Run every case of the given files (default: the shipped fleetsim/validation/cases/*.yaml),
    optionally only some groups or case ids, through fleetsim.simulate and compare with the
    published value."""
    loaded = load_case_files(paths)
    if cases is not None:
        loaded = [(f, [c for c in cs if c.id in cases]) for f, cs in loaded]
        loaded = [(f, cs) for f, cs in loaded if cs]
    if groups:
        wanted = {c.id for _, cs in loaded for c in cs if c.group in groups}
        loaded = [(f, [c for c in cs if c.id in wanted]) for f, cs in loaded]
        loaded = [(f, cs) for f, cs in loaded if cs]
    start = time.perf_counter()
    rows = run_cases(loaded, workers=workers)
    return ValidationResult(cases=rows, sources=[str(f) for f, _ in loaded], elapsed_s=time.perf_counter() - start)


__all__ = [
    "BUILTIN_SCENARIO",
    "METRICS",
    "Case",
    "CaseResult",
    "ValidationResult",
    "load_cases",
    "run_validation",
    "shipped_case_files",
]
