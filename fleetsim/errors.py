"""One error family. The CLI turns any FleetsimError into one line and exit status 2."""

from pydantic import ValidationError


class FleetsimError(Exception):
    """Base of every error caused by input the user can fix."""


class SpecError(FleetsimError):
    """A scenario, catalog entry, profile or config file is malformed."""


class CatalogError(FleetsimError):
    """A model or GPU name is unknown, or a config cannot be interpreted."""


class CapacityError(FleetsimError):
    """The model does not fit, or the KV pool is empty, on the requested hardware."""


class DeviceError(FleetsimError):
    """No usable GPU for calibration."""


def first_error_line(exc: ValidationError, prefix: str = "") -> str:
    """'field.path: message (got VALUE)' for the first error."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    loc = prefix + loc if loc else prefix.rstrip(".")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check spelling; see `fleetsim schema`)"
    if kind == "missing":
        return f"{loc}: required field is missing"
    got = err.get("input")
    if kind.startswith("union_tag") or kind == "literal_error" or "input" not in err or isinstance(got, dict):
        return f"{loc}: {msg}"
    return f"{loc}: {msg} (got {got!r})"
