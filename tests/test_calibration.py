"""Calibration: the schema-2 fit, profile files, report and the GPU-free parts of the harness.

The fit is checked the way a measurement would be: samples are synthesised from KNOWN terms with
the step model's formulas for one kernel call (written out again here, independently of
fleetsim.calibrate.model) plus 2 % multiplicative noise, fitted, and the known numbers recovered.
The harness's torch code runs on CPU torch where torch is installed (not in CI: torch is not a
test dependency), with a recorded stand-in for NVML.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

from fleetsim.calibrate import (
    calibrate_session,
    calibration_grid,
    calibration_report,
    call_terms,
    comparison_table,
    fit_profile,
    harness,
    kernels,
    plot_comparison,
    read_profile,
    read_samples,
    run_calibration,
    samples_frame,
    torch_kernels,
    write_profile,
)
from fleetsim.calibrate.command import match_catalog_gpu
from fleetsim.calibrate.energy import Snapshot, describe_reasons, is_throttled, measure_windows, nvml_record
from fleetsim.calibrate.harness import estimate_duration_s, settings_for
from fleetsim.calibrate.kernels import KV_DTYPES, LAYOUTS, decode_attention_case, kv_append_case
from fleetsim.calibrate.model import predict_time_s
from fleetsim.errors import DeviceError, SpecError
from fleetsim.profile import load_profile
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import AttentionEfficiency, CalibrationProfile, EfficiencyCurve, PowerModel, Provenance

GPU = GpuSpec(
    name="test-h100",
    vendor="nvidia",
    memory_bytes=80 * 10**9,
    hbm_bandwidth_bytes_per_s=3.35e12,
    peak_flops_per_s={"bf16": 989e12, "fp8": 1979e12},
    tdp_w=700,
    interconnect_bandwidth_bytes_per_s=450e9,
    interconnect="nvlink4",
)
BASE = load_profile("h100-sxm")  # the shipped published-fit profile: collectives, host_time_scale

# The truth the synthetic samples are drawn from: profile terms ...
MEMORY = (0.82, 16e6)
COMPUTE = {"bf16": (0.68, 8e9), "fp8": (0.55, 12e9)}
PREFILL_ETA = 0.45
RAW_KV = {"bf16": 0.5, "fp8": 0.45, "int8": 0.4, "int4": 0.3}  # the reference kernel vs the memory curve
POWER = PowerModel(idle_w=75.0, compute_w=420.0, memory_w=260.0, cap_w=700.0)
# ... and per-call terms of the measured kernels (not profile terms)
LAUNCH_S = 6e-6
DECODE_FIXED_S = {"bf16": 25e-6, "fp8": 30e-6, "int8": 30e-6, "int4": 45e-6}
APPEND_FIXED_S = {"bf16": 12e-6, "fp8": 15e-6, "int8": 15e-6, "int4": 30e-6}

TOLERANCE = 0.05  # relative, on every recovered number


def true_time_s(row: dict, raw_kv: dict = RAW_KV) -> float:
    """One kernel call's time, written out from the step model's terms (fleetsim.perf)."""
    family, flops, work, kv_bytes = row["family"], row["flops"], row["bytes"], row["bytes_kv"]
    eta_m, half_m = MEMORY
    bw = GPU.hbm_bandwidth_bytes_per_s
    bf16_peak = GPU.peak_flops("bf16")
    if family == "launch":
        return LAUNCH_S
    if family in ("gemm_decode", "gemm_prefill"):
        eta_c, half_c = COMPUTE[row["compute_dtype"]]
        peak = GPU.peak_flops(row["compute_dtype"])
        return LAUNCH_S + max((flops + half_c) / (eta_c * peak), (work + half_m) / (eta_m * bw))
    if family == "prefill_attention":
        return LAUNCH_S + max(work / (eta_m * bw), flops / (PREFILL_ETA * bf16_peak))
    dtype = row["kv_dtype"]
    if family == "decode_attention":
        read = (work - kv_bytes + kv_bytes / raw_kv[dtype]) / (eta_m * bw)
        return DECODE_FIXED_S[dtype] + max(read, flops / (PREFILL_ETA * bf16_peak))
    assert family == "kv_append"
    return APPEND_FIXED_S[dtype] + work / (eta_m * bw)


def synthetic_samples(seed: int = 7, noise: float = 0.02, window_s: float = 5.0, raw_kv: dict = RAW_KV):
    rng = np.random.default_rng(seed)
    p = POWER
    rows = []
    for case in calibration_grid(quick=False):
        row = case.row()
        row["peak_flops_per_s"] = GPU.peak_flops(case.compute_dtype) if case.compute_dtype else math.nan
        row["hbm_bandwidth_bytes_per_s"] = GPU.hbm_bandwidth_bytes_per_s
        row["power_limit_w"] = p.cap_w
        if case.kernel == "idle":
            for window in range(3):
                power = p.idle_w * (1 + noise * rng.standard_normal())
                rows.append({**row, "window": window, "reps": 0, "window_s": window_s, "mean_power_w": power})
            continue
        t = true_time_s(row, raw_kv)
        row.update(time_s=t * (1 + noise * rng.standard_normal()), time_s_p10=t * 0.98, time_s_p90=t * 1.02)
        if not case.energy:
            rows.append(row)
            continue
        for window in range(3):
            reps = max(1, round(window_s / t))
            per_rep = window_s / reps
            u_compute = row["flops"] / (per_rep * row["peak_flops_per_s"])
            u_memory = row["bytes"] / (per_rep * GPU.hbm_bandwidth_bytes_per_s)
            clean = p.idle_w + p.compute_w * u_compute + p.memory_w * u_memory
            power = min(p.cap_w, clean) * (1 + noise * rng.standard_normal())
            rows.append(
                {**row, "window": window, "reps": reps, "window_s": window_s, "energy_j": power * window_s}
                | {"mean_power_w": power, "throttled": clean >= p.cap_w}  # at the cap NVML reports sw_power_cap
            )
    return samples_frame(rows)


PROVENANCE = Provenance(kind="measured", date="2026-01-01", gpu_name="NVIDIA H100 80GB HBM3")


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return synthetic_samples()


@pytest.fixture(scope="module")
def fitted(samples) -> CalibrationProfile:
    return fit_profile(samples, GPU, PROVENANCE, base=BASE)


def close(got: float, want: float, tol: float = TOLERANCE) -> bool:
    return abs(got / want - 1) <= tol


# --- fitting ----------------------------------------------------------------------------------


def test_fit_recovers_the_terms_a_kernel_measurement_gives(fitted):
    assert fitted.schema_version == 2 and fitted.provenance.kind == "measured"
    assert close(fitted.memory.eta_max, MEMORY[0]) and close(fitted.memory.half_work, MEMORY[1])
    assert set(fitted.compute) == {"bf16", "fp8"}
    for dtype, (eta, half) in COMPUTE.items():
        assert close(fitted.compute[dtype].eta_max, eta), dtype
        assert close(fitted.compute[dtype].half_work, half, 0.1), dtype
    assert close(fitted.attention.prefill_eta, PREFILL_ETA)
    for dtype, raw in RAW_KV.items():  # relative to bf16 = 1 (a fused kernel reads bf16 at the memory curve)
        assert close(fitted.attention.kv_read_efficiency[dtype], raw / RAW_KV["bf16"]), dtype
    assert fitted.attention.kv_read_efficiency["bf16"] == 1.0


def test_fit_recovers_the_power_model(fitted):
    assert close(fitted.power.idle_w, POWER.idle_w)
    assert close(fitted.power.compute_w, POWER.compute_w)
    assert close(fitted.power.memory_w, POWER.memory_w)
    assert fitted.power.cap_w == POWER.cap_w  # the enforced power limit the samples carry


def test_terms_a_kernel_cannot_give_come_from_the_shipped_profile_and_the_notes_say_so(fitted):
    assert fitted.collectives == BASE.collectives
    assert fitted.host_time_scale == BASE.host_time_scale
    notes = fitted.provenance.notes
    for words in ("measured here: memory", "collectives", "host_time_scale", "engine profiles", "launch floor"):
        assert words in notes, words
    assert "fleetsim/profiles/gpus/h100-sxm.yaml" in fitted.provenance.sources
    dumped = fitted.model_dump()
    assert "overhead_s" not in dumped and "tp" not in dumped  # engine and call terms are not profile terms


def test_compute_dtypes_not_measured_are_copied_and_named(samples):
    b200 = load_profile("b200")
    profile = fit_profile(samples, GPU, PROVENANCE, base=b200)
    assert profile.compute["fp4"] == b200.compute["fp4"] and profile.compute["bf16"] != b200.compute["bf16"]
    assert "compute.fp4 (not measured)" in profile.provenance.notes


def test_call_terms_are_recovered_from_the_samples_and_the_profile(fitted, samples):
    terms = call_terms(samples, fitted, GPU)
    assert close(terms.launch_s, LAUNCH_S)
    assert close(terms.decode_read_factor, RAW_KV["bf16"])
    for dtype in KV_DTYPES:
        assert close(terms.decode_fixed_s[dtype], DECODE_FIXED_S[dtype], 0.1), dtype
        assert close(terms.append_fixed_s[dtype], APPEND_FIXED_S[dtype], 0.1), dtype


def test_fit_residuals_per_family_are_at_the_noise_level(fitted, samples):
    families = set(samples["family"]) - {"idle"}
    assert families <= set(fitted.fit_residuals)
    for family in families:
        assert fitted.fit_residuals[family] < 0.04, family  # 2 % noise
    assert fitted.fit_residuals["power"] < 0.04


def test_kv_efficiency_relative_to_weight_streaming(samples):
    profile = fit_profile(samples, GPU, {"kind": "measured", "date": "d"}, base=BASE, kv_reference="weights")
    for dtype, raw in RAW_KV.items():
        assert close(profile.attention.kv_read_efficiency[dtype], raw), dtype
    assert close(call_terms(samples, profile, GPU).decode_read_factor, 1.0, 0.02)
    with pytest.raises(SpecError, match="kv_reference"):
        fit_profile(samples, GPU, PROVENANCE, base=BASE, kv_reference="bytes")


def test_prediction_is_the_step_model_formula(samples, fitted):
    rows = samples.drop_duplicates("case_id")
    rows = rows[rows["family"] != "idle"]
    truth = fitted.model_copy(
        update={
            "memory": EfficiencyCurve(eta_max=MEMORY[0], half_work=MEMORY[1]),
            "compute": {d: EfficiencyCurve(eta_max=e, half_work=h) for d, (e, h) in COMPUTE.items()},
            "attention": AttentionEfficiency(prefill_eta=PREFILL_ETA, kv_read_efficiency=RAW_KV),
        }
    )
    terms = call_terms(samples, truth, GPU)
    terms = replace(terms, launch_s=LAUNCH_S, decode_fixed_s=DECODE_FIXED_S, append_fixed_s=APPEND_FIXED_S)
    terms = replace(terms, decode_read_factor=1.0)
    expected = [true_time_s(r) for r in rows.to_dict("records")]
    assert np.allclose(predict_time_s(rows, truth, GPU, terms), expected, rtol=1e-12)


def test_the_row_model_is_the_simulators_step_model(fitted):
    """A decode-attention case over Llama-3-8B's layout (GQA 32/8, head_dim 128) and the GEMMs of
    a decode step cost what fleetsim.perf charges for them, per layer and per iteration."""
    from fleetsim.calibrate import CallTerms
    from fleetsim.catalog import load_model
    from fleetsim.memory import kv_footprint
    from fleetsim.perf import StepModel
    from fleetsim.profile import load_engine_profile
    from fleetsim.spec.engine import EngineSpec
    from fleetsim.spec.kvcache import KvCacheSpec

    arch = load_model("llama-3-8b")
    engine = load_engine_profile(EngineSpec(kind="vllm"))
    engine = engine.model_copy(update={"gemm_efficiency_scale": 1.0, "attention_efficiency_scale": 1.0})
    terms = CallTerms(launch_s=0.0, decode_fixed_s={d: 0.0 for d in KV_DTYPES})
    for dtype in ("bf16", "fp8", "int4"):
        kv = KvCacheSpec(key_dtype=dtype, value_dtype=dtype)
        step = StepModel(arch, GPU, fitted, engine, 1, "bf16", kv, kv_footprint(arch, kv, 1))
        case = decode_attention_case("gqa4", dtype, batch=16, context_tokens=4096)
        row = case.row() | {"bytes": case.bytes_kv}  # perf counts the KV read only
        per_layer = predict_time_s(samples_frame([row]), fitted, GPU, terms)[0]
        whole = step.breakdown(16, arch.num_layers * case.bytes_kv)["attention_decode_s"]
        assert per_layer == pytest.approx(whole / arch.num_layers, rel=1e-9), dtype
    tokens = 64
    gemm = kernels.gemm_case(tokens, 1, 1, "bf16", "gemm_decode").row()
    gemm |= {"flops": step.linear_flops(tokens, tokens), "bytes": step.weight_bytes_per_gpu(tokens)}
    assert predict_time_s(samples_frame([gemm]), fitted, GPU, terms)[0] == pytest.approx(
        step.dense_time_s(tokens, tokens), rel=1e-9
    )


def test_a_gpu_without_a_shipped_profile_needs_a_base(samples):
    with pytest.raises(SpecError) as error:
        fit_profile(samples, GPU, PROVENANCE)  # 'test-h100' ships no profile
    assert "\n" not in str(error.value) and "test-h100" in str(error.value)


def test_samples_without_gemms_cannot_be_fitted(samples):
    no_gemm = samples[~samples["family"].str.startswith("gemm")]
    with pytest.raises(SpecError, match="GEMM"):
        fit_profile(no_gemm, GPU, PROVENANCE, base=BASE)


def test_missing_energy_windows_keep_the_shipped_power_and_say_so(samples):
    timed_only = samples[samples["window"].isna()]
    profile = fit_profile(timed_only, GPU, PROVENANCE, base=BASE)
    assert profile.power == BASE.power and "power (fewer than 2 usable energy windows" in profile.provenance.notes


# --- profile files ----------------------------------------------------------------------------


def test_profile_yaml_round_trip_with_samples_beside_it(fitted, samples, tmp_path):
    path = write_profile(fitted, tmp_path / "h100.yaml", samples=samples)
    back = read_profile(path)
    assert back.provenance.raw_samples == "h100.samples.csv" and back.schema_version == 2
    assert back.model_copy(update={"provenance": fitted.provenance}) == fitted
    assert load_profile("h100-sxm", path) == back  # what fleet.profile reads
    csv = read_samples(tmp_path / "h100.samples.csv")
    assert list(csv["case_id"]) == list(samples["case_id"])
    assert np.allclose(csv["time_s"], samples["time_s"], equal_nan=True)
    assert csv["throttled"].dtype == bool and csv["throttled"].sum() == samples["throttled"].sum()


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d["memory"].pop("eta_max"), "memory.eta_max"),
        (lambda d: d.pop("power"), "power"),
        (lambda d: d["memory"].update(eta_max=1.5), "memory.eta_max"),
        (lambda d: d["compute"]["bf16"].update(eta_max=0), "compute.bf16.eta_max"),
        (lambda d: d.update(overhead_ms=1.0), "overhead_ms"),
        (lambda d: d["power"].update(idle_watts=50), "power.idle_watts"),
        (lambda d: d["attention"]["kv_read_efficiency"].update(fp8="fast"), "attention.kv_read_efficiency.fp8"),
        (lambda d: d.pop("collectives"), "collectives"),
    ],
)
def test_malformed_profile_is_a_one_line_spec_error_naming_file_and_field(fitted, tmp_path, change, field):
    data = fitted.model_dump(mode="json", exclude_none=True)
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as error:
        read_profile(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message and f"{field}:" in message


def test_schema_1_profile_is_one_line_saying_to_regenerate(tmp_path):
    old = {"gpu": "h100-sxm", "provenance": {"kind": "measured", "date": "2025-01-01"}, "overhead_s": 6e-6}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    with pytest.raises(SpecError) as error:
        read_profile(path)
    assert "\n" not in str(error.value) and "schema-1" in str(error.value) and "fleetsim calibrate" in str(error.value)


@pytest.mark.parametrize("text", ["memory: [1, 2", "- just\n- a list\n", ""])
def test_profile_that_is_not_a_mapping_is_a_spec_error(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="bad.yaml"):
        read_profile(path)


def test_missing_profile_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        read_profile(tmp_path / "nope.yaml")


# --- report -----------------------------------------------------------------------------------


def test_report_table_compares_measured_with_fitted_and_draws_a_png(fitted, samples, tmp_path):
    path = write_profile(fitted, tmp_path / "h100.yaml", samples=samples)
    png = tmp_path / "report.png"
    table = calibration_report(path, png, full=True)
    for column in ("measured_time_s", "fitted_time_s", "time_rel_error", "measured_power_w", "fitted_power_w"):
        assert column in table.columns
    summary = calibration_report(path, None)
    assert list(summary.columns[:3]) == ["case_id", "measured_time_s", "fitted_time_s"]
    assert summary.shape[1] < 10 and len(summary) == len(table) == samples["case_id"].nunique()
    timed = table.dropna(subset=["time_rel_error"])
    assert set(timed["family"]) == set(samples["family"]) - {"idle"}
    assert (timed["time_rel_error"].abs() < 0.1).all()
    used = table.set_index("family")["used_in_fit"]
    assert used["gemm_prefill"].all() and not used["kv_append"].any()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_report_on_a_schema_2_profile(fitted, samples, tmp_path):
    first = list(dict.fromkeys(samples["case_id"]))[:40]  # idle, launch, GEMMs: a short table to print
    path = write_profile(fitted, tmp_path / "h100.yaml", samples=samples[samples["case_id"].isin(first)])
    png = tmp_path / "fit.png"
    r = run_cli("calibrate", "--report", path, "--plot", png)
    assert r.returncode == 0, r.stderr
    assert "measured vs fitted" in r.stdout and "gemm/bf16/m8192" in r.stdout and png.exists()


def test_report_needs_raw_samples(fitted, tmp_path):
    path = write_profile(fitted, tmp_path / "published.yaml")
    with pytest.raises(SpecError, match="no raw samples"):
        calibration_report(path, None)
    r = run_cli("calibrate", "--report", path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no raw samples" in r.stderr


def test_report_table_shows_the_kv_memory_check(fitted, samples, tmp_path):
    measured = samples.copy()
    measured["mem_used_bytes"] = measured["mem_predicted_bytes"] * 1.001
    table = comparison_table(measured, fitted, GPU)
    cached = table.dropna(subset=["mem_ratio"])
    assert set(cached["kernel"]) == {"decode_attention", "kv_append"}
    assert np.allclose(cached["mem_ratio"], 1.001)
    assert plot_comparison(table.iloc[:0], tmp_path / "empty.png").exists()  # an empty table still draws


# --- without a GPU ----------------------------------------------------------------------------


def run_cli(*args):
    code = "from fleetsim.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)


def _skip_if_nvml_works():
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:
        return
    pytest.skip("this machine has a working NVML")


def test_run_calibration_without_a_gpu_is_a_one_line_device_error(tmp_path):
    _skip_if_nvml_works()
    with pytest.raises(DeviceError) as error:
        run_calibration(0, tmp_path / "gpu.yaml", quick=True)
    message = str(error.value)
    assert "\n" not in message
    assert "no NVIDIA GPU found" in message and "calibration/README.md" in message
    assert not (tmp_path / "gpu.yaml").exists()


def test_cli_calibrate_without_a_gpu_says_so_in_one_line(tmp_path):
    _skip_if_nvml_works()
    r = run_cli("calibrate", "--gpu", "0", "--quick", "--out", tmp_path / "gpu.yaml")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "no NVIDIA GPU found" in r.stderr


def test_missing_nvml_binding_is_a_device_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(DeviceError, match="nvidia-ml-py is not installed"):
        run_calibration(0, tmp_path / "gpu.yaml", quick=False)


def test_importing_calibrate_needs_no_torch_or_nvml():
    code = "import sys, fleetsim.calibrate; print('torch' in sys.modules, 'pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


class FakeGpu:
    """Energy counter and sensors driven by a fake clock: power 300 W while working, 60 W idle."""

    def __init__(self, reasons: int = 0):
        self.now = 0.0
        self.joules = 0.0
        self.busy = False
        self.reasons = reasons

    def advance(self, seconds: float) -> None:
        self.joules += (300.0 if self.busy else 60.0) * seconds
        self.now += seconds

    def total_energy_j(self) -> float:
        return self.joules

    def snapshot(self) -> Snapshot:
        return Snapshot(1980.0, 2619.0, 61.0, self.reasons)

    def work(self) -> int:
        self.busy = True
        self.advance(0.05)
        self.busy = False
        return 10


def test_energy_windows_difference_the_counter_over_back_to_back_work():
    gpu = FakeGpu()
    windows = measure_windows(
        gpu, gpu.work, lambda: None, seconds=2.0, count=3, warmup_s=1.0, clock=lambda: gpu.now, sleep=gpu.advance
    )
    assert len(windows) == 3
    for window in windows:
        assert window.window_s == pytest.approx(2.0, abs=0.05)
        assert window.mean_power_w == pytest.approx(300.0)
        assert window.reps == 10 * round(window.window_s / 0.05)
        assert not window.throttled
    assert gpu.now == pytest.approx(7.0, abs=0.2)  # warm-up + 3 windows


def test_idle_windows_and_throttled_windows():
    gpu = FakeGpu(reasons=0x1 | 0x4)  # idle + software power cap
    (window,) = measure_windows(
        gpu, None, lambda: None, seconds=2.0, count=1, warmup_s=0.0, clock=lambda: gpu.now, sleep=gpu.advance
    )
    assert window.mean_power_w == pytest.approx(60.0) and window.reps == 0
    assert window.throttled and describe_reasons(window.throttle_reasons) == "gpu_idle|sw_power_cap"
    assert not is_throttled(0x1) and not is_throttled(0x2)  # idle, application clocks: not throttling
    assert is_throttled(0x40) and is_throttled(0x8)  # thermal, hardware slowdown


# --- the grid ---------------------------------------------------------------------------------


def test_grids_fit_their_time_budgets():
    quick = estimate_duration_s(calibration_grid(True), settings_for(True))
    full = estimate_duration_s(calibration_grid(False), settings_for(False))
    assert quick < 0.55 * 600  # --quick: under 10 minutes, and inside device_run.sh's budget
    assert full < 0.6 * 3600  # full: under an hour
    assert settings_for(True).windows >= 3 and settings_for(False).window_s >= 5


@pytest.mark.parametrize("quick", [True, False])
def test_grid_covers_layouts_precisions_and_kernels(quick):
    cases = calibration_grid(quick)
    decode = [c for c in cases if c.kernel == "decode_attention"]
    assert {(c.layout, c.kv_dtype) for c in decode} == {(l, d) for l in LAYOUTS for d in KV_DTYPES}
    families = ["idle", "launch", "gemm_decode", "gemm_prefill", "prefill_attention", "decode_attention", "kv_append"]
    assert {c.family for c in cases} == set(families)
    first = [min(i for i, c in enumerate(cases) if c.family == f) for f in families]
    assert first == sorted(first)  # what the fit needs first: a run cut short still fits
    assert any(c.energy for c in cases[:20])  # power windows early too
    gemm_m = {c.m for c in cases if c.kernel == "gemm"}
    assert min(gemm_m) == 1 and max(c.m for c in cases if c.family == "gemm_decode") == 256
    assert max(gemm_m) == 8192
    assert {c.compute_dtype for c in cases if c.kernel == "gemm"} == {"bf16", "fp8"}
    assert len({c.case_id for c in cases}) == len(cases)
    assert [c.tag for c in cases if c.kernel == "idle"] == ["start", "end"]


def test_kv_memory_prediction_follows_the_layout():
    gqa = decode_attention_case("gqa4", "bf16", batch=2, context_tokens=100)
    slots = 2 * 7 * 16  # ceil(100 / 16) blocks of 16 per sequence
    assert gqa.mem_predicted_bytes == slots * 8 * 128 * (2 + 2)
    assert gqa.bytes_kv == 2 * 100 * 8 * 128 * 4
    assert gqa.flops == 2 * 2 * 32 * 100 * (128 + 128)
    mla = decode_attention_case("mla", "fp8", batch=1, context_tokens=32)
    assert mla.mem_predicted_bytes == 32 * (512 + 64) * 1  # one latent + rope key, no K/V pair
    int4 = kv_append_case("mha", "int4", batch=1, new_tokens=1, context_tokens=15)
    assert int4.mem_predicted_bytes == 16 * 32 * 128 * 2 * 4.125 / 8


def test_nvml_names_match_catalog_gpus():
    catalog = {
        "h100-sxm": 80 * 10**9,
        "h100-pcie": 80 * 10**9,
        "h200": 141 * 10**9,
        "gb200": 186 * 10**9,
        "a100-40gb": 40 * 10**9,
        "a100-80gb": 80 * 10**9,
        "l40s": 48 * 10**9,
        "b200": 180 * 10**9,
    }
    gib = 2**30
    assert match_catalog_gpu("NVIDIA H100 80GB HBM3", 79.6 * gib, catalog) == "h100-sxm"
    assert match_catalog_gpu("NVIDIA H100 PCIe", 79.6 * gib, catalog) == "h100-pcie"
    assert match_catalog_gpu("NVIDIA H200", 140 * gib, catalog) == "h200"
    assert match_catalog_gpu("NVIDIA A100-SXM4-40GB", 39.4 * gib, catalog) == "a100-40gb"
    assert match_catalog_gpu("NVIDIA A100-SXM4-80GB", 79.2 * gib, catalog) == "a100-80gb"
    assert match_catalog_gpu("NVIDIA L40S", 44.5 * gib, catalog) == "l40s"
    assert match_catalog_gpu("NVIDIA GeForce RTX 4090", 24 * gib, catalog) is None


# --- harness plumbing, with stand-ins for torch and NVML --------------------------------------


class RecordedNvml:
    """NVML as recorded on an H100 SXM (names, limits, clocks), its energy counter running at
    `watts` by the host clock; what GpuSession and nvml_record read."""

    index = 0

    def __init__(self, watts: float = 250.0, reasons: int = 0):
        import time

        self._clock = time.perf_counter
        self.start = self._clock()
        self.watts = watts
        self._reasons = reasons

    def name(self) -> str:
        return "NVIDIA H100 80GB HBM3"

    def uuid(self) -> str:
        return "GPU-00000000-1111-2222-3333-444444444444"

    def driver_version(self) -> str:
        return "550.90.07"

    def cuda_driver_version(self) -> str:
        return "12.4"

    def memory_total_bytes(self) -> int:
        return 85_520_809_984

    def max_clocks_mhz(self) -> str:
        return "SM 1980 MHz, memory 2619 MHz"

    def total_energy_j(self) -> float:
        return self.watts * (self._clock() - self.start)

    def snapshot(self) -> Snapshot:
        return Snapshot(1980.0, 2619.0, 55.0, self._reasons)

    def reasons(self) -> int:
        return self._reasons

    def power_limit_w(self) -> float:
        return 700.0

    def close(self) -> None:
        pass


def test_nvml_record_has_no_serial_or_uuid():
    record = nvml_record(RecordedNvml(reasons=0x4))
    assert record["name"] == "NVIDIA H100 80GB HBM3" and record["clocks_event_reasons"] == "sw_power_cap"
    text = repr(record).lower()
    assert "uuid" not in text and "serial" not in text and "0000-1111" not in text


class _Event:
    def __init__(self, enable_timing: bool = True):
        self.at = 0.0

    def record(self) -> None:
        self.at = _FakeTorch.gpu_clock

    def elapsed_time(self, end: _Event) -> float:  # milliseconds, like torch.cuda.Event
        return (end.at - self.at) * 1e3


class _Buffer:
    def zero_(self):
        return self


class _FakeCuda:
    Event = _Event
    OutOfMemoryError = type("OutOfMemoryError", (RuntimeError,), {})

    def synchronize(self, device=None) -> None:
        pass

    def get_device_properties(self, device):
        from types import SimpleNamespace

        return SimpleNamespace(L2_cache_size=50 * 2**20)

    def get_device_capability(self, device):
        return (9, 0)

    def empty_cache(self) -> None:
        pass


class _FakeTorch:
    """Just what GpuSession touches outside the kernels: events, sync, a flush buffer."""

    __version__ = "0.0-stand-in"
    version = type("version", (), {"cuda": "12.4"})
    gpu_clock = 0.0
    uint8 = "uint8"
    cuda = _FakeCuda()

    @staticmethod
    def empty(size, dtype=None, device=None):
        return _Buffer()


FAST = replace(
    settings_for(True),
    window_s=0.03,
    window_warmup_s=0.01,
    idle_settle_s=0.0,
    global_warmup_s=0.0,
    timing_target_s=0.001,
    min_reps=5,
    max_reps=20,
)


def _fake_build(case, torch, device, *, compile_kernels=False):
    if case.compute_dtype == "fp8":
        raise torch_kernels.Unsupported("fp8 GEMM needs compute capability 8.9 or newer; this GPU has 8.0")
    if case.kernel == "prefill_attention":
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.\nTried to allocate 8 GiB")

    def run():
        _FakeTorch.gpu_clock += 1e-5 + case.bytes / 2.5e12

    return torch_kernels.BuiltKernel(run, "fake", cache_bytes=case.mem_predicted_bytes * 1.01)


def test_session_turns_cases_into_sample_rows(monkeypatch, tmp_path):
    monkeypatch.setattr(torch_kernels, "build", _fake_build)
    session = harness.GpuSession(_FakeTorch, "cuda:0", 0, RecordedNvml(), FAST)
    cases = [
        kernels.idle_case("start"),
        kernels.launch_case("start"),
        replace(decode_attention_case("gqa8", "int4", 4, 1024), energy=True),
        kernels.gemm_case(16, 4096, 4096, "fp8", "gemm_decode"),
        kernels.prefill_attention_case("mha", 1, 4096),
    ]
    lines: list[str] = []
    checkpoint = tmp_path / "partial.samples.csv"
    frame = session.run(cases, GPU, progress=lines.append, checkpoint=checkpoint)

    assert list(frame.groupby("case_id", sort=False).size()) == [3, 1, 3, 1, 1]
    idle = frame[frame["family"] == "idle"]
    assert list(idle["window"]) == [0, 1, 2] and (idle["mean_power_w"].round() == 250).all()
    decode = frame[frame["family"] == "decode_attention"]
    assert (decode["time_s"] > 0).all() and (decode["reps"] > 0).all() and list(decode["window"]) == [0, 1, 2]
    assert np.allclose(decode["mem_used_bytes"] / decode["mem_predicted_bytes"], 1.01)
    assert decode["peak_flops_per_s"].iloc[0] == GPU.peak_flops("bf16")
    skipped = frame.set_index("kernel")["skipped_reason"]
    assert skipped["gemm"].startswith("fp8 GEMM needs compute capability")
    assert skipped["prefill_attention"] == "out of GPU memory"
    assert not frame["throttled"].any() and not frame["timing_throttled"].any()
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == len(cases) and "skipped" in progress[3]
    assert lines[1].startswith("warm-up")  # after the idle windows, before the first kernel
    assert len(read_samples(checkpoint)) == len(frame)
    env = session.environment()
    assert env["gpu_name"] == "NVIDIA H100 80GB HBM3" and env["compute_capability"] == "9.0"
    assert "uuid" not in repr(env).lower()


def test_samples_are_checkpointed_every_20_cases_and_on_ctrl_c(monkeypatch, tmp_path):
    monkeypatch.setattr(torch_kernels, "build", _fake_build)
    written: list[int] = []
    real_write = harness.write_samples
    monkeypatch.setattr(
        harness, "write_samples", lambda frame, path: (written.append(len(frame)), real_write(frame, path))[1]
    )
    cases = [kernels.launch_case(f"n{i}") for i in range(45)]
    session = harness.GpuSession(_FakeTorch, "cuda:0", 0, RecordedNvml(), FAST)
    monkeypatch.setattr(session, "_release", lambda: None)  # no gc.collect per case: a fast test
    session.run(cases, GPU, checkpoint=tmp_path / "s.csv")
    assert written == [20, 40, 45] and not session.interrupted

    measure = session.measure_case

    def interrupting(case, gpu):
        if case.tag == "n30":
            raise KeyboardInterrupt
        return measure(case, gpu)

    monkeypatch.setattr(session, "measure_case", interrupting)
    written.clear()
    frame = session.run(cases, GPU, checkpoint=tmp_path / "s.csv")
    assert session.interrupted and session.cases_done == 30 and len(frame) == 30
    assert written == [20, 30] and len(read_samples(tmp_path / "s.csv")) == 30


class _SessionReplaying:
    """A session whose run returns synthetic samples (the command path without torch)."""

    settings = settings_for(False)

    def __init__(self, samples: pd.DataFrame, interrupt_after: int | None = None):
        self.samples = samples
        self.interrupt_after = interrupt_after
        self.cases_done, self.interrupted = 0, False

    def environment(self) -> dict:
        return {
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "driver": "550.90.07",
            "cuda_driver": "12.4",
            "torch": "2.13.0",
            "torch_cuda": "12.8",
            "device": "cuda:0",
            "compute_capability": "9.0",
            "memory_total_bytes": 85_520_809_984,
            "power_limit_w": 700.0,
            "max_clocks_mhz": "SM 1980 MHz, memory 2619 MHz",
            "date": "2026-12-02",
        }

    def self_check(self) -> list[str]:
        return []

    def run(self, cases, gpu, *, progress, checkpoint):
        ids = list(dict.fromkeys(self.samples["case_id"]))
        keep = ids if self.interrupt_after is None else ids[: self.interrupt_after]
        self.cases_done, self.interrupted = len(keep), self.interrupt_after is not None
        frame = self.samples[self.samples["case_id"].isin(keep)]
        frame.to_csv(checkpoint, index=False)
        return frame


def test_calibrate_session_writes_a_measured_schema_2_profile(samples, tmp_path):
    out = calibrate_session(
        _SessionReplaying(samples), tmp_path / "h100.yaml", calibration_grid(False), gpu_spec=GPU, base_profile=BASE
    )
    profile = read_profile(out)
    p = profile.provenance
    assert p.kind == "measured" and p.gpu_name == "NVIDIA H100 80GB HBM3" and p.driver == "550.90.07"
    assert p.raw_samples == "h100.samples.csv" and (tmp_path / "h100.samples.csv").exists()
    for words in ("torch=2.13.0", "cuda_driver=12.4", "max_clocks=SM 1980", "clocks_event_reasons_seen=", "grid=full"):
        assert words in p.notes, words
    assert profile.collectives == BASE.collectives
    assert "uuid" not in out.read_text().lower() and "serial" not in out.read_text().lower()


def test_an_interrupted_run_writes_what_it_measured_then_stops(samples, tmp_path):
    session = _SessionReplaying(samples, interrupt_after=120)  # the GEMMs, prefill and the first decode cases
    with pytest.raises(KeyboardInterrupt):
        calibrate_session(session, tmp_path / "h100.yaml", calibration_grid(False), gpu_spec=GPU, base_profile=BASE)
    profile = read_profile(tmp_path / "h100.yaml")
    assert "partial: interrupted after 120 of" in profile.provenance.notes
    assert close(profile.memory.eta_max, MEMORY[0])


def test_sigterm_ends_a_measurement_as_ctrl_c_does():
    import os
    import signal
    import time

    from fleetsim.calibrate.command import interrupt_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), interrupt_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)  # what `timeout` sends at device_run.sh's budget
        time.sleep(5)  # not reached: the handler raises at once
    assert signal.getsignal(signal.SIGTERM) is before


# --- the torch code itself, on CPU torch ------------------------------------------------------

CPU = GpuSpec(
    name="cpu-stand-in",
    vendor="none",
    description="peaks for a CPU, so the fitted efficiencies of a CPU run stay in (0, 1]",
    memory_bytes=16 * 10**9,
    hbm_bandwidth_bytes_per_s=400e9,
    peak_flops_per_s={"bf16": 20e12},
    tdp_w=700,
    interconnect_bandwidth_bytes_per_s=1e9,
    interconnect="none",
)


def cpu_cases() -> list[kernels.KernelCase]:
    """Small shapes of every kernel that has a CPU form, and an fp8 GEMM (CUDA only)."""
    cases = [kernels.idle_case("start"), kernels.launch_case("start")]
    for dtype in ("bf16", "fp8"):
        cases += [kernels.gemm_case(m, 512, 512, dtype, "gemm_decode") for m in (1, 8)]
        cases += [replace(kernels.gemm_case(m, 512, 512, dtype, "gemm_prefill"), energy=True) for m in (64, 256)]
    cases += [kernels.prefill_attention_case(layout, 1, s) for layout in ("mha", "gqa4") for s in (64, 128)]
    for dtype in KV_DTYPES:
        cases += [kernels.decode_attention_case("gqa4", dtype, b, ctx) for b, ctx in ((1, 40), (4, 128))]
        cases += [kernels.decode_attention_case("mla", dtype, 2, 48), kernels.kv_append_case("gqa4", dtype, 2, 3, 37)]
    return cases + [kernels.launch_case("end"), kernels.idle_case("end")]


def test_harness_torch_code_runs_on_cpu_torch(tmp_path, capsys):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed (not a test dependency): CPU kernel run skipped"
    )
    settings = replace(FAST, timing_target_s=0.002, warmup_reps_min=1, min_reps=2, max_reps=50, window_s=0.02)
    session = harness.GpuSession(torch, torch.device("cpu"), 0, RecordedNvml(watts=250.0), settings)
    assert session.self_check() == []
    lines: list[str] = []
    out = calibrate_session(
        session, tmp_path / "cpu.yaml", cpu_cases(), gpu_spec=CPU, base_profile=BASE, progress=lines.append
    )
    profile = read_profile(out)
    samples = read_samples(tmp_path / "cpu.samples.csv")
    ran = samples.drop_duplicates("case_id").set_index("case_id")
    skipped = ran[ran["skipped_reason"] != ""]
    assert set(skipped["compute_dtype"]) == {"fp8"} and set(skipped["kernel"]) == {"gemm"}
    assert skipped["skipped_reason"].str.contains("needs a CUDA GPU").all()
    timed = ran[(ran["skipped_reason"] == "") & (ran["family"] != "idle")]
    assert (timed["time_s"] > 0).all() and set(timed["kv_dtype"]) >= set(KV_DTYPES)
    cached = timed.dropna(subset=["mem_predicted_bytes"])
    assert np.allclose(cached["mem_used_bytes"] / cached["mem_predicted_bytes"], 1.0, atol=0.005)
    assert profile.provenance.kind == "measured" and set(profile.compute) >= {"bf16"}
    assert "compute.fp8 (not measured)" in profile.provenance.notes and "device=cpu" in profile.provenance.notes
    with capsys.disabled():  # the numbers, for the record of a run with torch
        per_family = timed.groupby("family")["time_s"].median() * 1e6
        print(f"\nCPU torch {torch.__version__}: median us per call: {per_family.round(1).to_dict()}")
        print(
            f"fitted: memory {profile.memory.eta_max}, bf16 {profile.compute['bf16'].eta_max}, prefill_eta "
            f"{profile.attention.prefill_eta}, kv {profile.attention.kv_read_efficiency}"
        )
