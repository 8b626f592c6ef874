"""Calibration: measure real kernels on an NVIDIA GPU and fit the profiles the simulator reads.

Sits beside the simulator: the simulator reads only the profiles written here (schema-2
fleetsim.spec.profile.CalibrationProfile, provenance.kind measured), never imports this package. Importing it needs
neither torch nor a GPU; `run_calibration` imports torch and pynvml when it opens the GPU.

    from fleetsim.calibrate import run_calibration, calibration_report
    run_calibration(0, Path("calibration/h100-sxm.yaml"), quick=True)   # on the GPU machine
    table = calibration_report(Path("calibration/h100-sxm.yaml"), Path("h100.png"))

Protocol and provenance of shipped profiles: calibration/README.md.
"""

from fleetsim.calibrate.command import (
    calibrate_session,
    calibration_report,
    refit_profile,
    resolve_gpu_spec,
    run_calibration,
)
from fleetsim.calibrate.fit import fit_power_model, fit_profile, fit_terms, residuals_by_family
from fleetsim.calibrate.kernels import KernelCase, calibration_grid
from fleetsim.calibrate.model import CallTerms, call_terms, predict_power_w, predict_time_s
from fleetsim.calibrate.profile_io import read_profile, read_profile_samples, samples_path_for, write_profile
from fleetsim.calibrate.report import comparison_table, plot_comparison
from fleetsim.calibrate.samples import SAMPLE_COLUMNS, read_samples, samples_frame, write_samples

__all__ = [
    "SAMPLE_COLUMNS",
    "CallTerms",
    "KernelCase",
    "calibrate_session",
    "calibration_grid",
    "calibration_report",
    "call_terms",
    "comparison_table",
    "fit_power_model",
    "fit_profile",
    "fit_terms",
    "plot_comparison",
    "predict_power_w",
    "predict_time_s",
    "read_profile",
    "read_profile_samples",
    "read_samples",
    "refit_profile",
    "residuals_by_family",
    "resolve_gpu_spec",
    "run_calibration",
    "samples_frame",
    "samples_path_for",
    "write_profile",
    "write_samples",
]
