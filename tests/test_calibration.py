"""Calibration: fitting, profile files, report and the GPU-free parts of the harness.

The fit is checked the way a measurement would be: samples are synthesised from a KNOWN profile
with the simulator's step-time and power formulas (written out again here, independently of
fleetsim.calibrate.fit) plus 2 % multiplicative noise, fitted, and the known numbers recovered.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from fleetsim.calibrate import (
    calibration_grid,
    calibration_report,
    comparison_table,
    fit_profile,
    plot_comparison,
    predict_time_s,
    read_profile,
    read_samples,
    run_calibration,
    samples_frame,
    write_profile,
)
from fleetsim.calibrate.command import match_catalog_gpu
from fleetsim.calibrate.energy import Snapshot, describe_reasons, is_throttled, measure_windows
from fleetsim.calibrate.harness import estimate_duration_s, settings_for
from fleetsim.calibrate.kernels import KV_DTYPES, LAYOUTS, decode_attention_case, kv_append_case
from fleetsim.errors import DeviceError, SpecError
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import CalibrationProfile, EfficiencyCurve, PowerModel, Provenance

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

KNOWN = CalibrationProfile(
    gpu="test-h100",
    provenance=Provenance(kind="measured", date="2026-01-01"),
    overhead_s=6e-6,
    memory=EfficiencyCurve(eta_max=0.82, half_work=16e6),
    compute=EfficiencyCurve(eta_max=0.68, half_work=8e9),
    kv_read_efficiency={"bf16": 1.0, "fp8": 0.9, "int8": 0.8, "int4": 0.6},
    power=PowerModel(idle_w=75.0, compute_w=420.0, memory_w=260.0, cap_w=700.0),
)

TOLERANCE = 0.05  # relative, on every recovered number


def true_time_s(row: dict, profile: CalibrationProfile = KNOWN) -> float:
    """The simulator's step time for one kernel's work, written out from the formula."""
    peak = GPU.peak_flops(row["compute_dtype"] or "bf16")
    kv_bytes = row["bytes_kv"] / profile.kv_efficiency(row["kv_dtype"])
    memory_bytes = row["bytes"] - row["bytes_kv"] + kv_bytes
    t_compute = profile.compute.time_s(row["flops"], peak)
    t_memory = profile.memory.time_s(memory_bytes, GPU.hbm_bandwidth_bytes_per_s)
    return profile.overhead_s + max(t_compute, t_memory)


def synthetic_samples(
    seed: int = 7, noise: float = 0.02, window_s: float = 5.0, profile: CalibrationProfile = KNOWN
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = profile.power
    rows = []
    for case in calibration_grid(quick=False):
        row = case.row()
        row["peak_flops_per_s"] = GPU.peak_flops(case.compute_dtype) if case.compute_dtype else math.nan
        row["hbm_bandwidth_bytes_per_s"] = GPU.hbm_bandwidth_bytes_per_s
        row["power_limit_w"] = p.cap_w
        if case.kernel == "idle":
            for window in range(3):
                power = p.idle_w * (1 + noise * rng.standard_normal())
                rows.append(
                    {
                        **row,
                        "window": window,
                        "reps": 0,
                        "window_s": window_s,
                        "energy_j": power * window_s,
                        "mean_power_w": power,
                    }
                )
            continue
        t = true_time_s(row, profile)
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
                {
                    **row,
                    "window": window,
                    "reps": reps,
                    "window_s": window_s,
                    "energy_j": power * window_s,
                    "mean_power_w": power,
                    "throttled": clean >= p.cap_w,
                }
            )  # at the cap NVML reports sw_power_cap
    return samples_frame(rows)


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return synthetic_samples()


@pytest.fixture(scope="module")
def fitted(samples) -> CalibrationProfile:
    return fit_profile(samples, GPU, Provenance(kind="measured", date="2026-01-01", gpu_name="NVIDIA H100 80GB HBM3"))


def close(got: float, want: float, tol: float = TOLERANCE) -> bool:
    return abs(got / want - 1) <= tol


# --- fitting ----------------------------------------------------------------------------------


def test_fit_recovers_the_step_time_model(fitted):
    assert close(fitted.overhead_s, KNOWN.overhead_s)
    assert close(fitted.memory.eta_max, KNOWN.memory.eta_max)
    assert close(fitted.memory.half_work, KNOWN.memory.half_work)
    assert close(fitted.compute.eta_max, KNOWN.compute.eta_max)
    assert close(fitted.compute.half_work, KNOWN.compute.half_work)
    for dtype in KV_DTYPES:
        assert close(fitted.kv_efficiency(dtype), KNOWN.kv_efficiency(dtype)), dtype
    assert fitted.kv_read_efficiency["bf16"] == 1.0  # the reference


def test_fit_recovers_the_power_model(fitted):
    assert close(fitted.power.idle_w, KNOWN.power.idle_w)
    assert close(fitted.power.compute_w, KNOWN.power.compute_w)
    assert close(fitted.power.memory_w, KNOWN.power.memory_w)
    assert fitted.power.cap_w == KNOWN.power.cap_w  # the enforced power limit the samples carry


def test_fit_residuals_per_family_are_at_the_noise_level(fitted, samples):
    families = set(samples["family"]) - {"idle"}
    assert families <= set(fitted.fit_residuals)
    for family in families:
        assert fitted.fit_residuals[family] < 0.04, family  # 2 % noise
    assert fitted.fit_residuals["power"] < 0.04
    assert fitted.provenance.gpu_name == "NVIDIA H100 80GB HBM3"


def test_vectorised_prediction_is_the_schema_formula(samples):
    rows = samples.drop_duplicates("case_id")
    rows = rows[rows["family"] != "idle"]
    expected = [true_time_s(r) for r in rows.to_dict("records")]
    assert np.allclose(predict_time_s(rows, KNOWN), expected, rtol=1e-12)


def test_throttled_and_skipped_rows_are_left_out(samples, fitted):
    bad = samples[samples["family"].isin(["gemm_prefill", "decode_attention"])].head(40).copy()
    bad["case_id"] = bad["case_id"] + "/bad"
    bad["time_s"] *= 3.0
    bad["mean_power_w"] *= 0.5
    bad["throttled"] = True
    bad["timing_throttled"] = True
    skipped = bad.head(5).assign(
        throttled=False, skipped_reason="out of GPU memory", case_id=lambda f: f["case_id"] + "2"
    )
    refit = fit_profile(pd.concat([samples, bad, skipped]), GPU, fitted.provenance)
    assert refit.memory == fitted.memory and refit.compute == fitted.compute
    assert refit.power == fitted.power


def test_overhead_can_be_fixed_instead_of_fitted(samples):
    profile = fit_profile(samples, GPU, {"kind": "measured", "date": "2026-01-01"}, overhead_s=6e-6)
    assert profile.overhead_s == 6e-6
    assert close(profile.memory.half_work, KNOWN.memory.half_work)


def test_fit_without_compute_bound_rows_is_a_spec_error(samples):
    with pytest.raises(SpecError, match="compute-bound"):
        fit_profile(samples[samples["family"] != "gemm_prefill"], GPU, {"kind": "measured", "date": "d"})


# --- profile files ----------------------------------------------------------------------------


def test_profile_yaml_round_trip_with_samples_beside_it(fitted, samples, tmp_path):
    path = write_profile(fitted, tmp_path / "h100.yaml", samples=samples)
    back = read_profile(path)
    assert back.provenance.raw_samples == "h100.samples.csv"
    assert back.model_copy(update={"provenance": fitted.provenance}) == fitted
    csv = read_samples(tmp_path / "h100.samples.csv")
    assert list(csv["case_id"]) == list(samples["case_id"])
    assert np.allclose(csv["time_s"], samples["time_s"], equal_nan=True)
    assert csv["throttled"].dtype == bool and csv["throttled"].sum() == samples["throttled"].sum()


def _profile_data(fitted) -> dict:
    return fitted.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d["memory"].pop("eta_max"), "memory.eta_max"),
        (lambda d: d.pop("power"), "power"),
        (lambda d: d["memory"].update(eta_max=1.5), "memory.eta_max"),
        (lambda d: d["compute"].update(eta_max=0), "compute.eta_max"),
        (lambda d: d.update(overhead_ms=1.0), "overhead_ms"),
        (lambda d: d["power"].update(idle_watts=50), "power.idle_watts"),
        (lambda d: d["kv_read_efficiency"].update(fp8="fast"), "kv_read_efficiency.fp8"),
    ],
)
def test_malformed_profile_is_a_one_line_spec_error_naming_file_and_field(fitted, tmp_path, change, field):
    data = _profile_data(fitted)
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as error:
        read_profile(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message and f"{field}:" in message


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
    for column in (
        "measured_time_s",
        "fitted_time_s",
        "time_rel_error",
        "measured_power_w",
        "fitted_power_w",
        "mem_used_bytes",
        "mem_predicted_bytes",
        "used_in_fit",
    ):
        assert column in table.columns
    summary = calibration_report(path, None)
    assert list(summary.columns[:3]) == ["case_id", "measured_time_s", "fitted_time_s"]
    assert summary.shape[1] < 10 and len(summary) == len(table)
    assert len(table) == samples["case_id"].nunique()
    timed = table.dropna(subset=["time_rel_error"])
    assert (timed["time_rel_error"].abs() < 0.1).all()
    assert table["used_in_fit"].any() and not table["used_in_fit"].all()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_needs_raw_samples(fitted, tmp_path):
    path = write_profile(fitted, tmp_path / "published.yaml")
    with pytest.raises(SpecError, match="no raw samples"):
        calibration_report(path, None)


def test_report_table_shows_the_kv_memory_check(fitted, samples, tmp_path):
    measured = samples.copy()
    measured["mem_used_bytes"] = measured["mem_predicted_bytes"] * 1.001
    table = comparison_table(measured, fitted, GPU)
    cached = table.dropna(subset=["mem_ratio"])
    assert set(cached["kernel"]) == {"decode_attention", "kv_append"}
    assert np.allclose(cached["mem_ratio"], 1.001)
    assert plot_comparison(table.iloc[:0], tmp_path / "empty.png").exists()  # an empty table still draws


# --- harness without a GPU --------------------------------------------------------------------


def test_run_calibration_without_a_gpu_is_a_one_line_device_error(tmp_path):
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has a working NVML")
    except Exception:
        pass
    with pytest.raises(DeviceError) as error:
        run_calibration(0, tmp_path / "gpu.yaml", quick=True)
    message = str(error.value)
    assert "\n" not in message
    assert "no NVIDIA GPU found" in message and "calibration/README.md" in message
    assert not (tmp_path / "gpu.yaml").exists()


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
    assert quick < 0.6 * 600  # --quick: under 10 minutes, with margin for slow cases
    assert full < 0.6 * 3600  # full: under an hour
    assert settings_for(True).windows >= 3 and settings_for(False).window_s >= 5


@pytest.mark.parametrize("quick", [True, False])
def test_grid_covers_layouts_precisions_and_kernels(quick):
    cases = calibration_grid(quick)
    decode = [c for c in cases if c.kernel == "decode_attention"]
    assert {(c.layout, c.kv_dtype) for c in decode} == {(l, d) for l in LAYOUTS for d in KV_DTYPES}
    assert {c.family for c in cases} == {
        "idle",
        "launch",
        "decode_attention",
        "kv_append",
        "prefill_attention",
        "gemm_decode",
        "gemm_prefill",
    }
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

    def empty_cache(self) -> None:
        pass


class _FakeTorch:
    """Just what GpuSession touches outside the kernels: events, sync, a flush buffer."""

    gpu_clock = 0.0
    uint8 = "uint8"
    cuda = _FakeCuda()

    @staticmethod
    def empty(size, dtype=None, device=None):
        return _Buffer()


class _FakeNvml:
    index = 0

    def __init__(self, watts: float = 250.0):
        import time

        self.start = time.perf_counter()
        self.watts = watts

    def total_energy_j(self) -> float:
        import time

        return self.watts * (time.perf_counter() - self.start)

    def snapshot(self) -> Snapshot:
        return Snapshot(1980.0, 2619.0, 55.0, 0)

    def reasons(self) -> int:
        return 0

    def power_limit_w(self) -> float:
        return 700.0

    def close(self) -> None:
        pass


def test_session_turns_cases_into_sample_rows(monkeypatch, tmp_path):
    from dataclasses import replace

    from fleetsim.calibrate import harness, kernels

    def fake_build(case, torch, device, *, compile_kernels=False):
        if case.compute_dtype == "fp8":
            raise kernels.Unsupported("fp8 GEMM needs compute capability 8.9 or newer; this GPU has 8.0")
        if case.kernel == "prefill_attention":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.\nTried to allocate 8 GiB")

        def run():
            _FakeTorch.gpu_clock += 1e-5 + case.bytes / 2.5e12

        return kernels.BuiltKernel(run, "fake", cache_bytes=case.mem_predicted_bytes * 1.01)

    monkeypatch.setattr(kernels, "build", fake_build)
    settings = replace(
        settings_for(True),
        window_s=0.03,
        windows=3,
        window_warmup_s=0.01,
        idle_settle_s=0.0,
        global_warmup_s=0.0,
        timing_target_s=0.001,
        min_reps=5,
        max_reps=20,
    )
    session = harness.GpuSession(_FakeTorch, "cuda:0", 0, _FakeNvml(), settings)
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


def test_kv_efficiency_relative_to_weight_streaming():
    """When even bf16 attention reads KV slower per byte than GEMMs stream weights, fit every
    KV dtype against the GEMMs' memory curve (kv_reference='weights')."""
    slow = {"bf16": 0.7, "fp8": 0.63, "int8": 0.56, "int4": 0.42}
    samples = synthetic_samples(seed=3, profile=KNOWN.model_copy(update={"kv_read_efficiency": slow}))
    profile = fit_profile(samples, GPU, {"kind": "measured", "date": "d"}, kv_reference="weights")
    for dtype, efficiency in slow.items():
        assert close(profile.kv_read_efficiency[dtype], efficiency), dtype
    assert close(profile.memory.eta_max, KNOWN.memory.eta_max)


def test_power_capped_windows_keep_their_timing_but_not_their_power(samples, fitted):
    capped = samples[samples["family"] == "gemm_prefill"].copy()
    capped = capped[capped["window"].notna()].head(6)
    capped["case_id"] = capped["case_id"] + "/capped"
    capped["throttled"] = True  # sw_power_cap in the window
    capped["throttle_reasons"] = 0x4
    capped["mean_power_w"] = 700.0
    table = comparison_table(pd.concat([samples, capped]), fitted, GPU)
    rows = table[table["case_id"].str.endswith("/capped")]
    assert rows["used_in_fit"].all() and (rows["throttled_windows"] == 3).all()
    refit = fit_profile(pd.concat([samples, capped]), GPU, fitted.provenance)
    assert refit.power == fitted.power
