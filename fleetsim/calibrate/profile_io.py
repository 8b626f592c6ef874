"""Read and write calibration profiles (YAML, validated by CalibrationProfile) and their samples.

A measured profile `calibration/<gpu>.yaml` has its raw samples beside it in
`calibration/<gpu>.samples.csv`; provenance.raw_samples holds that path relative to the profile.
Any malformed profile raises SpecError with one line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from fleetsim.calibrate.samples import read_samples, write_samples
from fleetsim.profile import parse_profile
from fleetsim.spec.profile import CalibrationProfile
from fleetsim.spec.yaml_file import read_mapping

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
    """A validated profile from YAML; SpecError (one line, file and field) when malformed.
    Same reader and schema the simulator uses (fleetsim.profile)."""
    return parse_profile(read_mapping(path, "profile"), str(path))


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
