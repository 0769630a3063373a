"""gpudl's own exceptions: each message says what was expected and what came."""


class GpudlError(Exception):
    """Base class of every gpudl-specific error."""


class BackendUnavailableError(GpudlError, RuntimeError):
    """The asked-for array backend cannot run here (package, driver or device missing)."""


class ModelFileError(GpudlError, ValueError):
    """A model or checkpoint file is not a valid gpudl file (corrupt, truncated, mutated)."""


class DatasetError(GpudlError, ValueError):
    """A dataset file is corrupt, truncated, fails its checksum, or cannot be found."""


class GradcheckError(GpudlError, AssertionError):
    """Analytic and numerical gradients disagree."""
