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

__all__ = [
    "CapacityError", "CatalogError", "FleetsimError", "SimulationResult", "SpecError",
    "gpu_table", "kv_cache_spec", "kv_report", "kv_table", "load_scenario", "memory_plan",
    "model_table", "simulate",
]
