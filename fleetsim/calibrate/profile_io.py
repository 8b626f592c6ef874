"""Read and write calibration profiles (YAML, validated by CalibrationProfile) and their samples.

A measured profile `calibration/<gpu>.yaml` has its raw samples beside it in
`calibration/<gpu>.samples.csv`; provenance.raw_samples holds that path relative to the profile.
Any malformed profile raises SpecError with one line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import ValidationError

from fleetsim.calibrate.samples import read_samples, write_samples
from fleetsim.errors import SpecError
from fleetsim.spec.profile import CalibrationProfile

HEADER = "# fleetsim calibration profile (schema: fleetsim.spec.profile.CalibrationProfile)\n"


def samples_path_for(profile_path: Path) -> Path:
    """Where a profile's raw samples live: beside it, `<stem>.samples.csv`."""
    profile_path = Path(profile_path)
    return profile_path.with_name(profile_path.stem + ".samples.csv")


def write_profile(profile: CalibrationProfile, path: Path, samples: pd.DataFrame | None = None) -> Path:
    """Write `profile` as YAML at `path`; with `samples`, also the samples CSV beside it (and
    provenance.raw_samples pointing at it). Returns the profile path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if samples is not None:
        csv = write_samples(samples, samples_path_for(path))
        provenance = profile.provenance.model_copy(update={"raw_samples": csv.name})
        profile = profile.model_copy(update={"provenance": provenance})
    data = profile.model_dump(mode="json", exclude_none=True)
    path.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def read_profile(path: Path) -> CalibrationProfile:
    """A validated profile from YAML; SpecError (one line, file and field) when malformed."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: profile file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read profile ({_one_line(error)})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or _one_line(error)
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a profile must be a YAML mapping, not {type(data).__name__}")
    try:
        return CalibrationProfile.model_validate(data)
    except ValidationError as error:
        raise SpecError(f"{path}: {validation_line(error)}") from None


def read_profile_samples(path: Path, profile: CalibrationProfile | None = None) -> pd.DataFrame | None:
    """The raw samples of the profile at `path` (provenance.raw_samples, else the default name
    beside it), or None when there are none."""
    path = Path(path)
    profile = profile if profile is not None else read_profile(path)
    candidates = []
    if profile.provenance.raw_samples:
        candidates.append(path.parent / profile.provenance.raw_samples)
    candidates.append(samples_path_for(path))
    for candidate in candidates:
        if candidate.exists():
            return read_samples(candidate)
    return None


def validation_line(error: ValidationError) -> str:
    """The first pydantic error as 'field.path: message (got value)', plus a count of the rest."""
    errors = error.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or "(profile)"
    message = first.get("msg", "invalid")
    kind = first.get("type", "")
    line = f"field '{field}': {message}"
    if kind not in ("missing", "extra_forbidden") and "input" in first and not isinstance(first["input"], (dict, list)):
        line += f" (got {first['input']!r})"
    if len(errors) > 1:
        line += f" (+{len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return line


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
