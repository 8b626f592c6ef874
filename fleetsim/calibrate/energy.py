"""GPU energy over windows, from NVML's cumulative energy counter.

Energy is the difference of nvmlDeviceGetTotalEnergyConsumption (millijoules since the driver
loaded) read before and after a window of several seconds of back-to-back work. Polling
nvmlDeviceGetPowerUsage is not used: on Ampere (except GA100) and newer it returns a 1 s average,
and nvidia-smi-style power readings observe only part of the run time (see calibration/README.md).
During a window the SM and memory clocks, the temperature and the clocks-event (throttle) reasons
are sampled between chunks of work; a window whose reasons include a thermal or power slowdown is
marked throttled and left out of fits.

pynvml (the nvidia-ml-py package) is imported only by `open_device`; everything else takes any
object with the methods of `NvmlDevice`, so it runs in tests without a GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleetsim.errors import DeviceError

README = "calibration/README.md"

# NVML clocks-event ("throttle") reason bits (nvml.h: nvmlClocksEventReason*).
REASON_NAMES = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
# Reasons that mean the clocks were held down by power or heat: such energy windows are not
# fitted (the power model's cap is cap_w; its linear part is fitted below the cap).
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x200
# Heat and hardware slowdowns: a case timed under these is not fitted. Running at the software
# power cap (0x4) or board limit (0x200) is how the GPU works at its enforced power limit, so a
# time measured there is kept (the reason bits are recorded).
SLOWDOWN_MASK = 0x8 | 0x20 | 0x40 | 0x80


def is_throttled(reasons: int) -> bool:
    """Power or thermal throttling: the energy window is left out of the power fit."""
    return bool(int(reasons) & THROTTLE_MASK)


def is_slowed_down(reasons: int) -> bool:
    """Thermal or hardware slowdown: the timing is left out of the step-time fit."""
    return bool(int(reasons) & SLOWDOWN_MASK)


def describe_reasons(reasons: int) -> str:
    """'sw_power_cap|hw_thermal_slowdown', or 'none'."""
    names = [name for bit, name in REASON_NAMES.items() if int(reasons) & bit]
    return "|".join(names) if names else "none"


@dataclass(frozen=True)
class Snapshot:
    sm_clock_mhz: float
    mem_clock_mhz: float
    temperature_c: float
    reasons: int


@dataclass(frozen=True)
class EnergyWindow:
    """One window: energy from the counter, its length by the host clock, and device state."""

    energy_j: float
    window_s: float
    reps: int  # kernel repetitions completed inside the window (0 for idle)
    sm_clock_mhz: float  # mean of the samples taken during the window
    mem_clock_mhz: float
    temperature_c: float  # highest sampled
    throttle_reasons: int  # OR of every sample's reason bits
    throttled: bool

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.window_s if self.window_s > 0 else math.nan

    def row(self) -> dict:
        return {
            "energy_j": self.energy_j,
            "window_s": self.window_s,
            "reps": self.reps,
            "mean_power_w": self.mean_power_w,
            "sm_clock_mhz": self.sm_clock_mhz,
            "mem_clock_mhz": self.mem_clock_mhz,
            "temperature_c": self.temperature_c,
            "throttle_reasons": self.throttle_reasons,
            "throttled": self.throttled,
        }


def measure_window(
    device,
    work: Callable[[], int] | None,
    sync: Callable[[], None],
    seconds: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    idle_poll_s: float = 0.1,
) -> EnergyWindow:
    """Energy of `seconds` of `work` repeated back to back (or of rest, when work is None).

    `work` launches one chunk of repetitions (about 50 ms of GPU time) and returns how many it
    launched; `sync` waits for the GPU. The counter is read after a sync at both ends, so the
    window holds exactly the completed chunks.
    """
    sync()
    snapshots = [device.snapshot()]
    start_j = device.total_energy_j()
    start_s = clock()
    reps = 0
    while True:
        if work is None:
            sleep(max(0.0, min(idle_poll_s, seconds - (clock() - start_s))))
            snapshots.append(device.snapshot())
        else:
            reps += work()
            snapshots.append(device.snapshot())  # while the chunk runs: clocks under load
            sync()
        if clock() - start_s >= seconds:
            break
    end_j = device.total_energy_j()
    end_s = clock()
    reasons = 0
    for snap in snapshots:
        reasons |= int(snap.reasons)
    return EnergyWindow(
        energy_j=end_j - start_j,
        window_s=end_s - start_s,
        reps=reps,
        sm_clock_mhz=_mean(s.sm_clock_mhz for s in snapshots),
        mem_clock_mhz=_mean(s.mem_clock_mhz for s in snapshots),
        temperature_c=max((s.temperature_c for s in snapshots), default=math.nan),
        throttle_reasons=reasons,
        throttled=is_throttled(reasons),
    )


def measure_windows(
    device,
    work: Callable[[], int] | None,
    sync: Callable[[], None],
    *,
    seconds: float,
    count: int,
    warmup_s: float,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> list[EnergyWindow]:
    """`count` consecutive windows after `warmup_s` of the same work (clocks and heat settle)."""
    if warmup_s > 0:
        measure_window(device, work, sync, warmup_s, clock=clock, sleep=sleep)
    return [measure_window(device, work, sync, seconds, clock=clock, sleep=sleep) for _ in range(count)]


def _mean(values) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return sum(values) / len(values) if values else math.nan


class NvmlDevice:
    """The NVML queries the harness needs, on one GPU. Close it when done."""

    def __init__(self, nvml, handle, index: int):
        self._nvml = nvml
        self._handle = handle
        self.index = index

    # -- identity ------------------------------------------------------------------------------
    def name(self) -> str:
        return _text(self._nvml.nvmlDeviceGetName(self._handle))

    def uuid(self) -> str:
        return _text(self._nvml.nvmlDeviceGetUUID(self._handle))

    def driver_version(self) -> str:
        return _text(self._nvml.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self) -> str:
        """The CUDA version the driver supports, e.g. '12.4'."""
        try:
            version = int(self._nvml.nvmlSystemGetCudaDriverVersion())
        except self._nvml.NVMLError:
            return "unknown"
        return f"{version // 1000}.{(version % 1000) // 10}"

    def memory_total_bytes(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).total)

    def pci_bus_id(self) -> str:
        try:
            return _text(self._nvml.nvmlDeviceGetPciInfo(self._handle).busId)
        except self._nvml.NVMLError:
            return ""

    def max_clocks_mhz(self) -> str:
        """The highest SM and memory clocks the GPU may run at, e.g. 'SM 1980 MHz, memory 2619 MHz'."""
        nvml, handle = self._nvml, self._handle
        sm = self._query(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM))
        mem = self._query(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM))
        return f"SM {sm:.0f} MHz, memory {mem:.0f} MHz"

    def power_limit_w(self) -> float:
        """The enforced power limit (W): the cap of the power model."""
        try:
            return self._nvml.nvmlDeviceGetEnforcedPowerLimit(self._handle) / 1000.0
        except self._nvml.NVMLError:
            return math.nan

    # -- measurement ---------------------------------------------------------------------------
    def total_energy_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0

    def snapshot(self) -> Snapshot:
        nvml, handle = self._nvml, self._handle
        return Snapshot(
            sm_clock_mhz=self._query(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            mem_clock_mhz=self._query(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            temperature_c=self._query(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            reasons=self.reasons(),
        )

    def reasons(self) -> int:
        """Current clocks-event reasons (the newer name of 'clocks throttle reasons')."""
        for getter in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            fn = getattr(self._nvml, getter, None)
            if fn is None:
                continue
            try:
                return int(fn(self._handle))
            except self._nvml.NVMLError:
                continue
        return 0

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass

    def _query(self, fn) -> float:
        try:
            return float(fn())
        except self._nvml.NVMLError:
            return math.nan


def nvml_record(device) -> dict:
    """What NVML says about the GPU now, for the record beside a profile: identity (name, driver,
    CUDA driver; no serial number, no UUID), limits, clocks, temperature and clocks-event reasons."""
    snap = device.snapshot()
    return {
        "index": device.index,
        "name": device.name(),
        "driver": device.driver_version(),
        "cuda_driver": device.cuda_driver_version(),
        "memory_total_bytes": device.memory_total_bytes(),
        "power_limit_w": device.power_limit_w(),
        "max_clocks": device.max_clocks_mhz(),
        "sm_clock_mhz": snap.sm_clock_mhz,
        "mem_clock_mhz": snap.mem_clock_mhz,
        "temperature_c": snap.temperature_c,
        "clocks_event_reasons": describe_reasons(snap.reasons),
        "energy_counter_j": device.total_energy_j(),
    }


def open_device(index: int) -> NvmlDevice:
    """NVML's view of GPU `index` (nvidia-smi numbering); DeviceError, one line, when there is none."""
    try:
        import pynvml as nvml
    except ImportError:
        raise DeviceError(
            f"no NVIDIA GPU found (NVML: nvidia-ml-py is not installed); fleetsim calibrate needs one — see {README}"
        ) from None
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError subclasses, or OSError from the loader
        raise DeviceError(
            f"no NVIDIA GPU found (NVML: {_one_line(error)}); fleetsim calibrate needs one — see {README}"
        ) from None
    try:
        count = int(nvml.nvmlDeviceGetCount())
        if count == 0:
            raise DeviceError(f"no NVIDIA GPU found (NVML: 0 devices); fleetsim calibrate needs one — see {README}")
        if not 0 <= index < count:
            raise DeviceError(f"GPU index {index} does not exist: NVML sees {count} GPU(s), 0..{count - 1}")
        device = NvmlDevice(nvml, nvml.nvmlDeviceGetHandleByIndex(index), index)
        try:
            device.total_energy_j()
        except nvml.NVMLError as error:
            raise DeviceError(
                f"GPU {index} ({device.name()}) has no NVML energy counter ({_one_line(error)}); "
                f"calibration needs Volta or newer — see {README}"
            ) from None
        return device
    except DeviceError:
        _shutdown(nvml)
        raise
    except Exception as error:
        _shutdown(nvml)
        raise DeviceError(f"NVML could not open GPU {index} ({_one_line(error)}) — see {README}") from None


def _shutdown(nvml) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
