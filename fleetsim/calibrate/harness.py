"""Measure the calibration grid on one NVIDIA GPU: CUDA-event timings and NVML energy windows.

torch and pynvml are imported when a session opens, never at module import, so this module (its
settings and duration estimate) loads on any machine. A session also runs on a CPU torch device
(host-clock timings; the tests do so with a stand-in for NVML). Protocol (calibration/README.md):

1. open NVML and torch on the GPU (DeviceError, one line, when either is missing); self-check the
   kernels on tiny inputs;
2. idle windows on the rested GPU; then a global warm-up (a large GEMM back to back);
3. per case: build its inputs; time it with CUDA events (warm-up repetitions, then many timed
   ones, each after an L2 flush, except the launch-floor case; median, p10, p90); for cases chosen
   for energy, run it back to back for a warm-up, then for `windows` windows of `window_s`,
   reading NVML's energy counter at both ends of each and sampling clocks, temperature and
   clocks-event reasons in between;
4. idle windows again at the end, after a settle.

A case that cannot run (no fp8 GEMM, out of memory, a torch error) becomes one row with its
skipped_reason; the run goes on. Samples are checkpointed every 20 cases; Ctrl-C (SIGINT, as
`timeout -s INT` sends it) ends the run after the case in progress, keeping what was measured.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from fleetsim.calibrate import kernels, torch_kernels
from fleetsim.calibrate.energy import (
    README,
    NvmlDevice,
    is_slowed_down,
    is_throttled,
    measure_windows,
    open_device,
)
from fleetsim.calibrate.kernels import KernelCase
from fleetsim.calibrate.samples import samples_frame, write_samples
from fleetsim.errors import DeviceError


@dataclass(frozen=True)
class Settings:
    quick: bool
    window_s: float  # one energy window
    windows: int  # energy windows per case (>= 3)
    window_warmup_s: float  # back-to-back work before a case's first window
    global_warmup_s: float  # a large GEMM before the first timed case
    idle_settle_s: float  # rest before idle windows
    timing_target_s: float  # timed repetitions per case add up to about this
    warmup_reps_min: int
    min_reps: int
    max_reps: int
    chunk_s: float = 0.05  # GPU time launched between two syncs inside a window
    compile_kernels: bool = False
    case_setup_s: float = 0.5  # build + estimate + warm-up per case, for the duration estimate
    flush_bytes: int | None = None  # buffer zeroed before each timed call; None: 4 x L2, >= 256 MiB (CPU: 32 MiB)


# quick (budget: under 10 minutes on an H100) and full (under an hour)
_QUICK = dict(window_s=2.0, window_warmup_s=1.0, global_warmup_s=5.0, idle_settle_s=3.0, timing_target_s=0.25)
_QUICK.update(warmup_reps_min=3, min_reps=10, max_reps=1000, case_setup_s=0.5)
_FULL = dict(window_s=5.0, window_warmup_s=2.0, global_warmup_s=15.0, idle_settle_s=10.0, timing_target_s=0.5)
_FULL.update(warmup_reps_min=5, min_reps=20, max_reps=3000, case_setup_s=1.0)


def settings_for(quick: bool, *, compile_kernels: bool = False) -> Settings:
    return Settings(quick=quick, windows=3, compile_kernels=compile_kernels, **(_QUICK if quick else _FULL))


def estimate_duration_s(cases: Sequence[KernelCase], settings: Settings) -> float:
    """Rough wall time of a run (compile time not included)."""
    total = settings.global_warmup_s
    for case in cases:
        windows = settings.windows * settings.window_s
        if case.kernel == "idle":
            total += settings.idle_settle_s + windows
            continue
        total += settings.case_setup_s + 1.1 * settings.timing_target_s
        if case.energy:
            total += settings.window_warmup_s + windows
    return total


@dataclass(frozen=True)
class Timing:
    median_s: float
    p10_s: float
    p90_s: float
    reps: int


def timing_of(times_s: Sequence[float]) -> Timing:
    values = np.asarray(times_s, dtype=float)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return Timing(float(median), float(p10), float(p90), len(values))


class GpuSession:
    """torch and NVML opened on one GPU; measures cases into sample rows."""

    CHECKPOINT_EVERY = 20  # cases between two writes of the samples file

    def __init__(self, torch, device, torch_index: int, nvml: NvmlDevice, settings: Settings):
        self.torch = torch
        self.device = device
        self.torch_index = torch_index
        self.nvml = nvml
        self.settings = settings
        self.cuda = torch_kernels.is_cuda(device)
        flush = settings.flush_bytes
        if flush is None and self.cuda:
            props = torch.cuda.get_device_properties(device)
            flush = max(4 * (int(getattr(props, "L2_cache_size", 0) or 0) or 64 * 2**20), 256 * 2**20)
        self._flush = torch.empty(flush if flush is not None else 32 * 2**20, dtype=torch.uint8, device=device)
        self._power_limit_w = nvml.power_limit_w()
        self.cases_done = 0
        self.interrupted = False

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, gpu_index: int, settings: Settings) -> GpuSession:
        """NVML first (is there an NVIDIA GPU at all?), then torch with CUDA on the same GPU."""
        nvml = open_device(gpu_index)
        try:
            torch = _import_torch()
            torch_index = _torch_index(torch, nvml)
            device = torch.device("cuda", torch_index)
            torch.cuda.set_device(device)
            return cls(torch, device, torch_index, nvml, settings)
        except BaseException:
            nvml.close()
            raise

    def close(self) -> None:
        self._flush = None
        self.nvml.close()

    def sync(self) -> None:
        torch_kernels.synchronize(self.torch, self.device)

    def environment(self) -> dict:
        """What the profile's provenance records about this machine (no serial number, no UUID)."""
        torch, nvml = self.torch, self.nvml
        capability = torch.cuda.get_device_capability(self.device) if self.cuda else None
        return {
            "gpu_name": nvml.name(),
            "driver": nvml.driver_version(),
            "cuda_driver": nvml.cuda_driver_version(),
            "torch": str(torch.__version__),
            "torch_cuda": str(getattr(torch.version, "cuda", None)),
            "device": str(self.device),
            "compute_capability": f"{capability[0]}.{capability[1]}" if capability else "n/a",
            "memory_total_bytes": nvml.memory_total_bytes(),
            "power_limit_w": self._power_limit_w,
            "max_clocks_mhz": _safe(getattr(nvml, "max_clocks_mhz", lambda: "")) or "n/a",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        }

    def self_check(self) -> list[str]:
        try:
            return torch_kernels.self_check(self.torch, self.device)
        except Exception as error:
            return [f"self-check could not run: {type(error).__name__}: {_one_line(error)[:200]}"]

    # -- timing --------------------------------------------------------------------------------
    def time_kernel(self, fn: Callable[[], object], *, flush: bool) -> Timing:
        """Time of one call on the device's clock (CUDA events; the host clock on a CPU): warm-up
        calls, then `reps` timed calls (caches flushed first)."""
        torch, s = self.torch, self.settings
        fn()
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        estimate_s = max(time.perf_counter() - start, 1e-6)
        for _ in range(_clamp(int(0.1 * s.timing_target_s / estimate_s), s.warmup_reps_min, 100)):
            fn()
        reps = _clamp(int(s.timing_target_s / estimate_s), s.min_reps, s.max_reps)
        if not self.cuda:  # the CPU runs each call to its end before returning
            times = []
            for _ in range(reps):
                if flush:
                    self._flush.zero_()
                begin_s = time.perf_counter()
                fn()
                times.append(time.perf_counter() - begin_s)
            return timing_of(times)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        self.sync()
        for begin, end in zip(starts, ends):
            if flush:
                self._flush.zero_()
            begin.record()
            fn()
            end.record()
        self.sync()
        return timing_of([begin.elapsed_time(end) * 1e-3 for begin, end in zip(starts, ends)])

    def warm_up(self, seconds: float) -> None:
        """A large bf16 GEMM back to back: clocks and temperature reach their working range."""
        if seconds <= 0:
            return
        case = kernels.gemm_case(8192, 8192, 8192, "bf16", "gemm_prefill")
        built = torch_kernels.build(case, self.torch, self.device)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for _ in range(10):
                built.fn()
            self.sync()
        del built
        self._release()

    # -- cases ---------------------------------------------------------------------------------
    def measure_case(self, case: KernelCase, gpu) -> list[dict]:
        """Sample rows of one case: one per energy window, or one when only timed or skipped."""
        s = self.settings
        base = case.row()
        base["peak_flops_per_s"] = _peak(gpu, case.compute_dtype) if case.compute_dtype else math.nan
        base["hbm_bandwidth_bytes_per_s"] = float(gpu.hbm_bandwidth_bytes_per_s)
        base["power_limit_w"] = self._power_limit_w
        if case.kernel == "idle":
            self.sync()
            time.sleep(s.idle_settle_s)
            windows = measure_windows(self.nvml, None, self.sync, seconds=s.window_s, count=s.windows, warmup_s=0.0)
            return [{**base, "impl": "no work", "window": i, **w.row()} for i, w in enumerate(windows)]

        torch = self.torch
        oom = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
        built = fn = work = None
        try:
            built = torch_kernels.build(case, torch, self.device, compile_kernels=s.compile_kernels)
            impl, cache_bytes = built.impl, built.cache_bytes
            reasons = self.nvml.reasons()
            timing = self.time_kernel(built.fn, flush=case.kernel != "launch")
            reasons |= self.nvml.reasons()
            windows = []
            if case.energy:
                per_chunk = _clamp(round(s.chunk_s / max(timing.median_s, 1e-7)), 1, 100_000)
                fn = built.fn

                def work() -> int:
                    for _ in range(per_chunk):
                        fn()
                    return per_chunk

                windows = measure_windows(
                    self.nvml, work, self.sync, seconds=s.window_s, count=s.windows, warmup_s=s.window_warmup_s
                )
        except torch_kernels.Unsupported as error:
            return [{**base, "skipped_reason": _one_line(error)}]
        except oom:
            return [{**base, "skipped_reason": "out of GPU memory"}]
        except Exception as error:  # a torch error on this build/GPU: record it, keep measuring
            return [{**base, "skipped_reason": f"{type(error).__name__}: {_one_line(error)[:300]}"}]
        finally:
            built = fn = work = None  # drop the inputs before the next case allocates its own
            self._release()

        timed = {
            **base,
            "impl": impl,
            "mem_used_bytes": cache_bytes,
            "time_s": timing.median_s,
            "time_s_p10": timing.p10_s,
            "time_s_p90": timing.p90_s,
            "timing_reps": timing.reps,
            "throttle_reasons": reasons,
            "throttled": is_throttled(reasons),
            "timing_throttled": is_slowed_down(reasons),
        }
        if not windows:
            return [timed]
        rows = []
        for i, window in enumerate(windows):
            rows.append({**timed, "window": i, **window.row()})  # throttled: the window's own
        return rows

    def run(
        self,
        cases: Sequence[KernelCase],
        gpu,
        *,
        progress: Callable[[str], None] = lambda line: None,
        checkpoint: Path | None = None,
    ) -> pd.DataFrame:
        """Measure every case in order; the global warm-up runs before the first non-idle case.
        The samples so far go to `checkpoint` every CHECKPOINT_EVERY cases and at the end. Ctrl-C
        ends the run early: `interrupted` is then True and the rows measured are returned."""
        rows: list[dict] = []
        warmed = False
        self.cases_done, self.interrupted = 0, False
        try:
            for number, case in enumerate(cases, start=1):
                if not warmed and case.kernel != "idle":
                    progress(f"warm-up: {self.settings.global_warmup_s:.0f} s of bf16 GEMMs")
                    self.warm_up(self.settings.global_warmup_s)
                    warmed = True
                new = self.measure_case(case, gpu)
                rows += new
                self.cases_done = number
                progress(f"[{number}/{len(cases)}] {case.case_id}: {_summary(new)}")
                if checkpoint is not None and number % self.CHECKPOINT_EVERY == 0 and number < len(cases):
                    write_samples(samples_frame(rows), checkpoint)
        except KeyboardInterrupt:
            self.interrupted = True
            progress(f"interrupted after {self.cases_done} of {len(cases)} cases; keeping what was measured")
        if checkpoint is not None:
            write_samples(samples_frame(rows), checkpoint)
        return samples_frame(rows)

    def _release(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()


def _import_torch():
    try:
        import torch
    except ImportError:
        raise DeviceError(
            f"PyTorch is not installed; fleetsim calibrate needs torch with CUDA — see {README}"
        ) from None
    if not torch.cuda.is_available():
        raise DeviceError(
            f"torch {torch.__version__} cannot use the GPU (CUDA not available; torch built for "
            f"CUDA {getattr(torch.version, 'cuda', None)}); fleetsim calibrate needs one — see {README}"
        )
    return torch


def _torch_index(torch, nvml: NvmlDevice) -> int:
    """torch's index of the GPU NVML calls `nvml.index` (their orders can differ)."""
    count = torch.cuda.device_count()
    wanted = _safe(nvml.uuid).lower().removeprefix("gpu-")
    for index in range(count):
        uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "")).lower().removeprefix("gpu-")
        if wanted and uuid == wanted:
            return index
    bus = _parse_bus_id(nvml.pci_bus_id())
    if bus is not None:
        for index in range(count):
            props = torch.cuda.get_device_properties(index)
            ids = tuple(getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
            if None not in ids and ids == bus:
                return index
    if "CUDA_VISIBLE_DEVICES" not in os.environ and nvml.index < count:
        return nvml.index
    raise DeviceError(
        f"GPU {nvml.index} ({nvml.name()}) is not visible to torch "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}); "
        f"unset it or pick a visible GPU — see {README}"
    )


def _parse_bus_id(text: str) -> tuple[int, int, int] | None:
    """'00000000:1B:00.0' -> (domain, bus, device)."""
    try:
        domain, bus, rest = text.split(":")
        return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
    except (ValueError, AttributeError):
        return None


def _peak(gpu, dtype: str) -> float:
    if hasattr(gpu, "peak_flops"):
        return float(gpu.peak_flops(dtype))
    peaks = gpu.peak_flops_per_s
    return float(peaks.get(dtype, peaks["bf16"]))


def _summary(rows: list[dict]) -> str:
    first = rows[0]
    if first.get("skipped_reason"):
        return f"skipped ({first['skipped_reason']})"
    parts = []
    if first.get("time_s") is not None and first.get("time_s") == first.get("time_s"):
        parts.append(f"{first['time_s'] * 1e6:.1f} us")
    powers = [r["mean_power_w"] for r in rows if r.get("mean_power_w") is not None]
    if powers:
        parts.append(f"{np.mean(powers):.0f} W")
    if any(r.get("timing_throttled") for r in rows):
        parts.append("SLOWED DOWN (time not fitted)")
    elif any(r.get("throttled") for r in rows):
        parts.append("throttled window(s)")
    return ", ".join(parts) or "done"


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _safe(getter) -> str:
    try:
        return getter()
    except Exception:
        return ""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
