"""How well the numbers of a run are grounded: the grades of the GPU and engine profiles it used,
and a warning wherever a result leans on a profile that was not fitted to figures of that GPU or
engine. Shown beside every answer (run, plan, report)."""

from __future__ import annotations

from fleetsim.perf import StepModel
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.profile import CalibrationProfile


def calibration_status(gpu_profile: CalibrationProfile, engine: EngineProfile, step: StepModel | None = None) -> dict:
    gp, ep = gpu_profile.provenance, engine.provenance
    together = gp.figures_by_engine.get(engine.name, 0)
    warnings = []
    if gp.kind == "transferred":
        warnings.append(
            f"the {gpu_profile.gpu} kernel profile is transferred from {gp.transferred_from} (no published figure of "
            f"{gpu_profile.gpu} was fitted): its times and power lean on that transfer"
        )
    elif gp.kind == "prior":
        warnings.append(f"the {gpu_profile.gpu} kernel profile holds prior values, not fitted to any figure")
    elif gp.kind == "fitted_to_published" and not gp.power_figures:
        warnings.append(
            f"the {gpu_profile.gpu} power coefficients are priors (no published power or energy figure of "
            f"{gpu_profile.gpu} was fitted; its {gp.figures} figures are times and rates): watts, energy per "
            "token and the power part of cost lean on them"
        )
    if ep.kind == "transferred":
        warnings.append(
            f"the {engine.name} engine profile is transferred from {ep.transferred_from}: its host and launch terms "
            "were not fitted to figures of this release"
        )
    elif ep.kind == "prior":
        warnings.append(f"the {engine.name} engine profile holds prior values, not fitted to any figure")
    if gp.kind == "fitted_to_published" and ep.kind == "fitted_to_published" and not together:
        warnings.append(
            f"no published figure of {gpu_profile.gpu} with {engine.name} was fitted: the GPU and engine profiles "
            "were fitted on other pairings"
        )
    notes = []
    if step is not None and step.gemm.note:
        notes.append(step.gemm.note)
    return {
        "gpu_profile": gpu_profile.gpu,
        "gpu_grade": gpu_profile.grade,
        "engine_profile": engine.name,
        "engine_grade": engine.grade,
        "figures_of_this_gpu_and_engine": together,
        "warnings": warnings,
        "notes": notes,
    }
