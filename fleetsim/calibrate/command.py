"""What `fleetsim calibrate` and `fleetsim calibrate --report` call: plain functions, no CLI logic.

    run_calibration(0, Path("calibration/h100-sxm.yaml"), quick=True)
    calibration_report(Path("calibration/h100-sxm.yaml"), Path("calibration/h100-sxm.png"))

torch and pynvml are imported only when run_calibration opens the GPU. The profile written is a
schema-2 CalibrationProfile with provenance.kind measured: the terms a kernel measurement gives
are fitted (fleetsim.calibrate.fit), the others copied from the GPU's shipped profile.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from fleetsim.calibrate.energy import describe_reasons
from fleetsim.calibrate.fit import base_profile_for, fit_profile
from fleetsim.calibrate.kernels import KernelCase, calibration_grid
from fleetsim.calibrate.profile_io import read_profile, read_profile_samples, samples_path_for, write_profile
from fleetsim.calibrate.report import comparison_table, plot_comparison
from fleetsim.calibrate.samples import read_samples, samples_frame
from fleetsim.errors import CatalogError, FleetsimError, SpecError
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.profile import CalibrationProfile, Provenance

KERNEL_SOURCE = (
    "fleetsim calibrate: torch reference kernels (paged decode attention, KV append, SDPA prefill, GEMMs), "
    "CUDA events, NVML energy counter"
)


def run_calibration(
    gpu_index: int,
    out_path: Path | None,
    quick: bool,
    *,
    gpu_spec: GpuSpec | str | None = None,
    base_profile: CalibrationProfile | str | None = None,
    compile_kernels: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Measure the kernel grid on GPU `gpu_index` (NVML numbering), fit, and write the profile.

    Writes `out_path` (the profile YAML; None: calibration/<catalog gpu>.yaml) and
    `<stem>.samples.csv` beside it; returns the profile path.
    gpu_spec: the catalog GPU whose datasheet peaks the efficiencies are relative to (a GpuSpec
    or a catalog name); by default matched from the name NVML reports. base_profile: where the
    terms a kernel measurement cannot give come from (default: the shipped profile of that GPU).
    Raises DeviceError (one line) when there is no NVIDIA GPU, NVML, or torch with CUDA.
    """
    from fleetsim.calibrate import harness  # imports torch/pynvml only inside its functions

    settings = harness.settings_for(quick, compile_kernels=compile_kernels)
    session = harness.GpuSession.open(gpu_index, settings)
    try:
        with interrupt_on_sigterm():
            return calibrate_session(
                session,
                out_path,
                calibration_grid(quick),
                gpu_spec=gpu_spec,
                base_profile=base_profile,
                progress=progress,
            )
    finally:
        session.close()


@contextmanager
def interrupt_on_sigterm():
    """SIGTERM (what `timeout` sends at a time budget) and SIGINT, even where the shell that started
    the run ignores it, end a measurement as Ctrl-C does: what was measured is fitted and kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, interrupt)
    if previous[signal.SIGINT] == signal.SIG_IGN:
        signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def calibrate_session(
    session,
    out_path: Path | None,
    cases: Sequence[KernelCase],
    *,
    gpu_spec: GpuSpec | str | None = None,
    base_profile: CalibrationProfile | str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Measure `cases` with an open session (harness.GpuSession), fit, write profile and samples.

    The catalog GPU and the base profile are resolved before anything is measured. When the run
    is interrupted (Ctrl-C), what was measured is fitted and written, marked partial, and the
    KeyboardInterrupt is raised again.
    """
    from fleetsim.calibrate import harness

    say = progress or _stderr
    env = session.environment()
    spec = resolve_gpu_spec(gpu_spec, env["gpu_name"], env["memory_total_bytes"])
    base = base_profile_for(spec.name, base_profile)
    out_path = Path(out_path) if out_path is not None else Path("calibration") / f"{spec.name}.yaml"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    problems = session.self_check()
    for problem in problems:
        say(f"WARNING self-check: {problem}")
    minutes = harness.estimate_duration_s(cases, session.settings) / 60
    say(
        f"calibrating {env['gpu_name']} ({env['device']}, catalog '{spec.name}'): {len(cases)} cases, "
        f"about {minutes:.0f} min; collectives and host_time_scale from the shipped profile '{base.gpu}'"
    )
    samples_path = samples_path_for(out_path)
    samples = session.run(cases, spec, progress=say, checkpoint=samples_path)
    partial = f"interrupted after {session.cases_done} of {len(cases)} cases" if session.interrupted else ""
    provenance = measured_provenance(
        env, session.settings, problems, samples_path.name, samples, partial=partial, cases=len(cases)
    )
    try:
        profile = fit_profile(samples, spec, provenance, base=base, cap_w=env.get("power_limit_w"))
    except FleetsimError as error:
        raise SpecError(f"{error} (the samples are kept in {samples_path})") from None
    write_profile(profile, out_path)
    say(f"wrote {out_path} and {samples_path}" + (f" (partial: {partial})" if partial else ""))
    if session.interrupted:
        raise KeyboardInterrupt
    return out_path


def refit_profile(
    samples_csv: Path,
    out_path: Path,
    gpu_spec: GpuSpec | str,
    provenance: Provenance | Mapping,
    *,
    base_profile: CalibrationProfile | str | None = None,
) -> Path:
    """Fit a profile again from a samples CSV (e.g. after changing the fit); writes out_path."""
    samples = read_samples(Path(samples_csv))
    spec = resolve_gpu_spec(gpu_spec, "", 0)
    profile = fit_profile(samples, spec, provenance, base=base_profile)
    return write_profile(profile, Path(out_path), samples=samples)


SUMMARY_COLUMNS = (
    "case_id",
    "measured_time_s",
    "fitted_time_s",
    "time_rel_error",
    "measured_power_w",
    "fitted_power_w",
    "power_rel_error",
    "mem_ratio",
    "used_in_fit",
)


def calibration_report(profile_path: Path, out_png: Path | None, *, full: bool = False) -> pd.DataFrame:
    """Measured vs fitted per kernel case for a measured profile; draws out_png when given.

    The table has the SUMMARY_COLUMNS (narrow enough for a terminal); full=True gives every
    column of report.comparison_table (work, shapes, memory check, skipped reasons).
    """
    profile_path = Path(profile_path)
    profile = read_profile(profile_path)
    samples = read_profile_samples(profile_path, profile)
    if samples is None:
        raise SpecError(
            f"{profile_path}: no raw samples beside it (provenance.raw_samples or "
            f"{samples_path_for(profile_path).name}); the report compares measured samples with the fit"
        )
    gpu = _catalog_gpu_or_none(profile.gpu)
    table = comparison_table(samples, profile, gpu)
    if out_png is not None:
        plot_comparison(table, Path(out_png), title=_title(profile))
    return table if full else table[list(SUMMARY_COLUMNS)]


def measured_provenance(
    env: dict,
    settings,
    problems: list[str],
    samples_name: str,
    samples: pd.DataFrame,
    *,
    partial: str = "",
    cases: int | None = None,
) -> Provenance:
    """provenance.kind measured: the GPU as NVML names it, driver, CUDA, torch, date, clocks and
    clocks-event (throttle) reasons seen; no serial number, no UUID."""
    frame = samples_frame(samples)
    loaded = frame[(frame["reps"].fillna(0) > 0) & (frame["skipped_reason"] == "")]
    reasons = 0
    for value in frame["throttle_reasons"].dropna():
        reasons |= int(value)
    notes = [
        f"torch={env['torch']}",
        f"torch_cuda={env['torch_cuda']}",
        f"cuda_driver={env['cuda_driver']}",
        f"compute_capability={env['compute_capability']}",
        f"device={env['device']}",
        f"power_limit_w={env['power_limit_w']}",
        f"max_clocks={env.get('max_clocks_mhz', 'n/a')}",
        f"clocks_under_load_mhz=SM {_median(loaded['sm_clock_mhz'])}, memory {_median(loaded['mem_clock_mhz'])}",
        f"max_temperature_c={_median(frame['temperature_c'], how='max')}",
        f"clocks_event_reasons_seen={describe_reasons(reasons)}",
        f"throttled_rows_excluded_from_power={int(frame['throttled'].sum())}",
        f"slowed_timings_excluded={int(frame.drop_duplicates('case_id')['timing_throttled'].sum())}",
        f"skipped_cases={int((frame.drop_duplicates('case_id')['skipped_reason'] != '').sum())}",
        f"grid={'quick' if settings.quick else 'full'}"
        + (f", {cases} cases" if cases is not None else "")
        + (f" (partial: {partial})" if partial else ""),
        f"energy_windows={settings.windows}x{settings.window_s:g}s",
        "self_check=" + ("ok" if not problems else " | ".join(problems)),
    ]
    return Provenance(
        kind="measured",
        date=env["date"],
        sources=(KERNEL_SOURCE,),
        notes="; ".join(notes),
        gpu_name=env["gpu_name"],
        driver=env["driver"],
        raw_samples=samples_name,
    )


def _median(values: pd.Series, how: str = "median") -> str:
    values = values.astype(float)
    values = values[np.isfinite(values)]
    if values.empty:
        return "n/a"
    return f"{(values.max() if how == 'max' else values.median()):.0f}"


# ---------------------------------------------------------------------------------------------
# which catalog GPU is this?

_FORM_FACTORS = ("sxm", "pcie", "nvl")


def resolve_gpu_spec(gpu_spec: GpuSpec | str | None, nvml_name: str, memory_bytes: int) -> GpuSpec:
    """The catalog GPU to take datasheet peaks from: given, or matched from NVML's name."""
    if isinstance(gpu_spec, GpuSpec):
        return gpu_spec
    from fleetsim import catalog

    if gpu_spec is not None:
        return catalog.load_gpu(gpu_spec)
    names = list(catalog.gpu_names())
    memories = {}
    for name in names:
        try:
            memories[name] = catalog.load_gpu(name).memory_bytes
        except FleetsimError:
            continue
    match = match_catalog_gpu(nvml_name, memory_bytes, memories)
    if match is None:
        raise CatalogError(
            f"NVML reports '{nvml_name}', which matches no catalog GPU ({', '.join(names)}); "
            "add it to fleetsim/catalog/gpus or pass gpu_spec"
        )
    return catalog.load_gpu(match)


def match_catalog_gpu(nvml_name: str, memory_bytes: int, candidates: Mapping[str, int]) -> str | None:
    """The catalog name for an NVML device name, e.g. 'NVIDIA H100 80GB HBM3' -> 'h100-sxm'.

    candidates: catalog name -> memory_bytes. Matches the model token (h100, a100, l40s, ...),
    then the form factor named in the NVML name (PCIe, NVL; SXM preferred otherwise), then the
    closest memory size.
    """
    words = re.split(r"[^a-z0-9]+", nvml_name.lower())
    models = [w for w in words if _is_model_token(w)]
    if not models:
        return None
    model = models[0]
    pool = [name for name in candidates if model in re.split(r"[^a-z0-9]+", name.lower())]
    if not pool:
        return None
    named = [f for f in _FORM_FACTORS if any(w.startswith(f) for w in words)]
    if named:
        narrowed = [n for n in pool if any(p.startswith(named[0]) for p in re.split(r"[^a-z0-9]+", n.lower()))]
        pool = narrowed or pool
    else:
        other = [n for n in pool if not any(p in ("pcie", "nvl") for p in re.split(r"[^a-z0-9]+", n.lower()))]
        pool = other or pool

    def distance(name: str) -> tuple[float, int]:
        sxm = 0 if "sxm" in name.lower() else 1
        return (abs(candidates[name] - memory_bytes) if memory_bytes else 0, sxm)

    return min(pool, key=distance)


def _is_model_token(word: str) -> bool:
    if not re.fullmatch(r"[a-z]{1,3}\d{2,4}[a-z]?", word):
        return False
    return not (word.startswith(("hbm", "sxm", "pcie", "nvl", "gddr")) or word.endswith("gb"))


def _catalog_gpu_or_none(name: str):
    try:
        from fleetsim import catalog

        return catalog.load_gpu(name)
    except (FleetsimError, ImportError, AttributeError):
        return None


def _title(profile: CalibrationProfile) -> str:
    p = profile.provenance
    who = p.gpu_name or profile.gpu
    return f"{who} — {p.kind} {p.date} (driver {p.driver or 'n/a'})"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
