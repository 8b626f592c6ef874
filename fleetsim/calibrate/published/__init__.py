"""Calibration profiles fitted to published figures, through the simulator's own step model.

    python -m fleetsim.calibrate.published [--out fleetsim/profiles] [--report calibration/PUBLISHED.md]

Fits every GPU profile (kernel efficiencies, power) and every engine profile (host, launch,
per-layer and all-reduce terms) at once to the fit split of the shipped validation cases
(fleetsim/validation/cases/*.yaml, generated from the reference figures by
calibration/make_cases.py), with the priors of priors.yaml; GPUs and engines without figures get
transferred profiles, graded so. The figures are data (the case files), not code.
"""

from fleetsim.calibrate.published.fit import Fit, FitResult, fit_cases, residual_table
from fleetsim.calibrate.published.params import make_engine_profile, make_gpu_profile, priors

__all__ = ["Fit", "FitResult", "fit_cases", "make_engine_profile", "make_gpu_profile", "priors", "residual_table"]
