"""Error classes of jumpdenoise.

Every message names the file, field or value at fault so that a user can act on it
without reading a traceback.
"""

from __future__ import annotations


class JumpDenoiseError(Exception):
    """Base class of all errors raised on purpose by jumpdenoise."""


class ConfigError(JumpDenoiseError):
    """A configuration value is invalid (the message names the field and value)."""


class SourceError(JumpDenoiseError):
    """A source plate (Index XML, load_data CSV, TIFF folder) cannot be read."""


class ImageError(JumpDenoiseError):
    """One image file is missing, corrupt, truncated or unlike the rest of the plate."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class PlateError(JumpDenoiseError):
    """An OME-Zarr plate is missing, malformed, or lacks what is asked of it."""


class OutputExistsError(JumpDenoiseError):
    """The output exists and ``--overwrite`` was not given."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        super().__init__(f"output {path} already exists; pass --overwrite to replace it")


class UnsafeOutputError(JumpDenoiseError):
    """An output would destroy or overlap what jumpdenoise did not write (an input, a user's folder)."""


class OutputInUseError(JumpDenoiseError):
    """Another run holds the lock of this output (the message names its host, pid and start)."""


class OutputWriteError(JumpDenoiseError):
    """The output cannot be written: read-only file system, permission denied, no space left.

    Attributes
    ----------
    path
        The file or folder that could not be written.
    cause
        What the operating system said, in words (with free bytes for a full disk).
    """

    def __init__(self, path: str, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"cannot write {path}: {cause}")


class ModelError(JumpDenoiseError):
    """A model (run folder, checkpoint, BioImage Model Zoo zip) cannot be used."""


class ClusterError(JumpDenoiseError):
    """A SLURM / Dask setting is inconsistent or a job cannot be submitted."""


class UnitFailures(JumpDenoiseError):
    """Some units of a stage failed; the others completed.

    Parameters
    ----------
    stage
        Name of the stage.
    failures
        Mapping of unit key to error message.
    """

    def __init__(self, stage: str, failures: dict[str, str]) -> None:
        self.stage = stage
        self.failures = dict(failures)
        lines = [f"{stage}: {len(failures)} unit(s) failed:"]
        lines += [f"  {key}: {msg}" for key, msg in sorted(self.failures.items())]
        super().__init__("\n".join(lines))
