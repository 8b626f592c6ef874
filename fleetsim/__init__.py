"""fleetsim: capacity planning and cost simulation for GPU fleets serving LLMs.

Names are imported on first use (PEP 562 module __getattr__), so `import fleetsim` and a
command that needs one part of it do not pay for the rest (pandas, SimPy, plotting)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "SimulationResult": "fleetsim.api",
    "gpu_table": "fleetsim.api",
    "kv_cache_spec": "fleetsim.api",
    "kv_report": "fleetsim.api",
    "kv_table": "fleetsim.api",
    "load_scenario": "fleetsim.api",
    "memory_plan": "fleetsim.api",
    "model_table": "fleetsim.api",
    "simulate": "fleetsim.api",
    "CapacityError": "fleetsim.errors",
    "CatalogError": "fleetsim.errors",
    "FleetsimError": "fleetsim.errors",
    "SpecError": "fleetsim.errors",
    "PlanResult": "fleetsim.plan",
    "plan_fleet": "fleetsim.plan",
    "MixPlan": "fleetsim.plan_mix",
    "plan_mix": "fleetsim.plan_mix",
    "load_sweep": "fleetsim.sweep",
    "parse_grid": "fleetsim.sweep",
    "run_sweep": "fleetsim.sweep",
    "run_validation": "fleetsim.validation",
    # models below the simulator (not yet in a run: see README "Building blocks")
    "bill_of": "fleetsim.bill",
    "plan_disaggregation": "fleetsim.kv_transfer",
    "pipeline_plan": "fleetsim.pipeline",
    "mtp_pays_at_batch": "fleetsim.speculative",
    "speculative_step": "fleetsim.speculative",
}
_ALIASES = {"validate": ("fleetsim.validation", "run_validation")}

if TYPE_CHECKING:
    from fleetsim.api import (
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
    from fleetsim.bill import bill_of
    from fleetsim.errors import CapacityError, CatalogError, FleetsimError, SpecError
    from fleetsim.kv_transfer import plan_disaggregation
    from fleetsim.pipeline import pipeline_plan
    from fleetsim.plan import PlanResult, plan_fleet
    from fleetsim.plan_mix import MixPlan, plan_mix
    from fleetsim.speculative import mtp_pays_at_batch, speculative_step
    from fleetsim.sweep import load_sweep, parse_grid, run_sweep
    from fleetsim.validation import run_validation

    validate = run_validation


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
        value = getattr(importlib.import_module(module), attr)
    elif not name.startswith("__"):
        # A submodule (fleetsim.sweep, fleetsim.plan, fleetsim.report, ...), as before when this
        # package imported them eagerly.
        try:
            value = importlib.import_module(f"fleetsim.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"fleetsim.{name}":
                raise
            raise AttributeError(f"module 'fleetsim' has no attribute '{name}'") from None
    else:
        raise AttributeError(f"module 'fleetsim' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_ALIASES))


def write_report(source, output, overrides=None):
    """Write the self-contained HTML procurement report (see fleetsim.report.html).
    Imported on first use: plotting libraries are not needed to simulate."""
    from fleetsim.report.html import write_report as _write

    return _write(source, output, overrides=overrides)


# `fleetsim.sweep`, `fleetsim.plan` and `fleetsim.report` stay the submodules (their names
# would be shadowed by function aliases); the functions are run_sweep, plan_fleet, write_report.

__all__ = [
    "bill_of",
    "mtp_pays_at_batch",
    "pipeline_plan",
    "plan_disaggregation",
    "speculative_step",
    "MixPlan",
    "PlanResult",
    "load_sweep",
    "parse_grid",
    "plan_fleet",
    "plan_mix",
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
