"""Calibrate the engine terms of a profile against your own server's benchmark results.

    points = read_bench_files(["c1.json", "c5.json"])          # vLLM, SGLang, GuideLLM, genai-perf, AIPerf
    result = BenchFit("deploy.yaml", points).run()               # engine terms fitted, GPU profile fixed
    write_engine_profile(result.profile, "my-engine.yaml")

`fleetsim calibrate --from-bench FILE... --scenario SCENARIO.yaml --out PROFILE.yaml` runs the
same. Formats and their sources: fleetsim/calibrate/bench/readers.py; how each point is
predicted: model.py; the fit: fit.py. Imports neither torch nor pynvml.
"""

from fleetsim.calibrate.bench.fit import BenchFit, BenchFitResult, fitted_profile, profile_yaml, write_engine_profile
from fleetsim.calibrate.bench.model import PointModel, Target, burst_prediction, targets
from fleetsim.calibrate.bench.readers import BENCH_FORMATS, BenchPoint, detect_format, read_bench_file, read_bench_files

__all__ = [
    "BENCH_FORMATS",
    "BenchFit",
    "BenchFitResult",
    "BenchPoint",
    "PointModel",
    "Target",
    "burst_prediction",
    "detect_format",
    "fitted_profile",
    "profile_yaml",
    "read_bench_file",
    "read_bench_files",
    "targets",
    "write_engine_profile",
]
