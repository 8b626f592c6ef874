"""The sample table: one row per measured kernel case and energy window.

A case (one kernel at one shape and precision) is timed once with CUDA events (time_s is the
median, time_s_p10/p90 the spread) and, when chosen for energy, run back to back for several
windows whose energy the NVML counter gives. The table has one row per window of such a case
(window = 0, 1, 2, ...), and one row with window = NA for a case that was only timed. A row's
work columns (flops, bytes, bytes_kv) are what the simulator's models count for that kernel, so
the fit compares like with like; peak_flops_per_s and hbm_bandwidth_bytes_per_s are the
datasheet peaks the harness used, which makes a samples file self-contained.

A row with throttled = True (power or thermal throttling during its energy window, or during the
timing of a case that has no window) is left out of the power fit; a row with
timing_throttled = True (a thermal or hardware slowdown while its case was timed) is left out of
the step-time fit; a row with a skipped_reason is left out of both. All are kept for the record.
Stored as CSV beside the profile it produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from fleetsim.errors import SpecError

STRING_COLUMNS = (
    "case_id",
    "kernel",  # decode_attention | kv_append | prefill_attention | gemm | launch | idle
    "family",  # what the fit groups by: decode_attention, gemm_decode, gemm_prefill, ...
    "layout",  # mha | gqa4 | gqa8 | mla for attention; "" otherwise
    "kv_dtype",
    "compute_dtype",
    "impl",  # which implementation ran (eager torch, sdpa, scaled_mm, ...)
    "skipped_reason",  # why the case did not run here; "" when it ran
)
INT_COLUMNS = (
    "batch",
    "context_tokens",
    "new_tokens",
    "q_heads",
    "kv_heads",
    "head_dim",
    "m",
    "n",
    "k",
    "timing_reps",
    "window",
    "reps",  # repetitions inside the energy window
    "throttle_reasons",  # NVML clocks-event reason bits, OR-ed over the window
)
FLOAT_COLUMNS = (
    "flops",
    "bytes",
    "bytes_kv",
    "peak_flops_per_s",
    "hbm_bandwidth_bytes_per_s",
    "time_s",
    "time_s_p10",
    "time_s_p90",
    "energy_j",
    "window_s",
    "mean_power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temperature_c",
    "power_limit_w",
    "mem_used_bytes",
    "mem_predicted_bytes",
)
BOOL_COLUMNS = ("throttled", "timing_throttled")

SAMPLE_COLUMNS: tuple[str, ...] = (
    "case_id",
    "kernel",
    "family",
    "layout",
    "kv_dtype",
    "compute_dtype",
    "impl",
    "batch",
    "context_tokens",
    "new_tokens",
    "q_heads",
    "kv_heads",
    "head_dim",
    "m",
    "n",
    "k",
    "flops",
    "bytes",
    "bytes_kv",
    "peak_flops_per_s",
    "hbm_bandwidth_bytes_per_s",
    "time_s",
    "time_s_p10",
    "time_s_p90",
    "timing_reps",
    "window",
    "reps",
    "energy_j",
    "window_s",
    "mean_power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temperature_c",
    "throttle_reasons",
    "throttled",
    "timing_throttled",
    "power_limit_w",
    "mem_used_bytes",
    "mem_predicted_bytes",
    "skipped_reason",
)
assert set(SAMPLE_COLUMNS) == set(STRING_COLUMNS + INT_COLUMNS + FLOAT_COLUMNS + BOOL_COLUMNS)

# Columns a samples file must have for the fit to read it.
REQUIRED_COLUMNS = ("case_id", "family", "flops", "bytes", "time_s")


def samples_frame(rows: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """A sample table with every column, in order and typed; missing values become NA.

    Columns that are not sample columns are kept, after the known ones.
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for column in SAMPLE_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    for column in STRING_COLUMNS:
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), "").astype(str)
    for column in INT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in BOOL_COLUMNS:
        values = frame[column]
        if values.dtype != bool:
            values = values.astype(object).map(_truthy)
        frame[column] = values.astype(bool)
    extra = [c for c in frame.columns if c not in SAMPLE_COLUMNS]
    return frame[list(SAMPLE_COLUMNS) + extra].reset_index(drop=True)


def write_samples(samples: pd.DataFrame, path: Path) -> Path:
    """Write a sample table as CSV (full float precision); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples_frame(samples).to_csv(path, index=False)
    return path


def read_samples(path: Path) -> pd.DataFrame:
    """Read a samples CSV written by `write_samples` (or by hand), typed and checked."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, keep_default_na=True, dtype={c: str for c in STRING_COLUMNS})
    except FileNotFoundError:
        raise SpecError(f"{path}: samples file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: not a readable samples CSV ({_one_line(error)})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise SpecError(f"{path}: samples CSV lacks column(s) {', '.join(missing)}")
    return samples_frame(raw)


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return False
    return bool(value)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
