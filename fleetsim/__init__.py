"""fleetsim: capacity planning and cost simulation for GPU fleets serving LLMs."""

__version__ = "0.1.0"

from fleetsim.api import (  # noqa: E402
    SimulationResult,
    gpu_table,
    kv_cache_spec,
    kv_report,
    kv_table,
    load_scenario,
    memory_plan,
    model_table,
    simulate,
)
from fleetsim.errors import CapacityError, CatalogError, FleetsimError, SpecError  # noqa: E402
from fleetsim.plan import PlanResult, plan_fleet  # noqa: E402
from fleetsim.sweep import load_sweep, parse_grid, run_sweep  # noqa: E402
from fleetsim.validation import run_validation  # noqa: E402


def write_report(source, output, overrides=None):
    """Write the self-contained HTML procurement report (see fleetsim.report.html).
    Imported on first use: plotting libraries are not needed to simulate."""
    from fleetsim.report.html import write_report as _write

    return _write(source, output, overrides=overrides)


# `fleetsim.sweep`, `fleetsim.plan` and `fleetsim.report` stay the submodules (their names
# would be shadowed by function aliases); the functions are run_sweep, plan_fleet, write_report.
validate = run_validation

__all__ = [
    "PlanResult",
    "load_sweep",
    "parse_grid",
    "plan_fleet",
    "run_sweep",
    "run_validation",
    "validate",
    "write_report",
    "CapacityError",
    "CatalogError",
    "FleetsimError",
    "SimulationResult",
    "SpecError",
    "gpu_table",
    "kv_cache_spec",
    "kv_report",
    "kv_table",
    "load_scenario",
    "memory_plan",
    "model_table",
    "simulate",
]
