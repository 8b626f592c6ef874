"""One error family. The CLI turns any FleetsimError into one line and exit status 2."""


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
