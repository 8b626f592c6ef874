"""Calibration profiles: the shipped default per GPU, or any profile file a scenario names."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from fleetsim.errors import SpecError, first_error_line
from fleetsim.spec.profile import CalibrationProfile
from fleetsim.spec.yaml_file import read_mapping


def profile_names() -> list[str]:
    root = resources.files("fleetsim.catalog").joinpath("profiles")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def parse_profile(data: object, where: str) -> CalibrationProfile:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a calibration profile must be a mapping, not {type(data).__name__}")
    try:
        return CalibrationProfile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{where}: {first_error_line(exc)}") from None


def load_profile(gpu: str, path: str | Path | None = None) -> CalibrationProfile:
    """The profile at `path`, or the shipped default for `gpu`."""
    if path is not None:
        data = read_mapping(path, "fleet.profile")
        return parse_profile(data, str(path))
    name = f"{gpu}.yaml"
    root = resources.files("fleetsim.catalog").joinpath("profiles")
    f = root.joinpath(name)
    if not f.is_file():
        raise SpecError(
            f"fleet.profile: no calibration profile ships for gpu '{gpu}' "
            f"(shipped: {', '.join(profile_names())}); pass fleet.profile=PATH"
        )
    return parse_profile(yaml.safe_load(f.read_text()), f"profile {name}")
