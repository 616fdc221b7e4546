"""Scratch space for third-party calls that leave files in the system's temporary folder.

CAREamics' BioImage Model Zoo export and load (through ``bioimageio.spec``) unpack archives and
write cover images into folders made with ``tempfile.mkdtemp`` and never remove them: about
300 KB per model load, on every node of a SLURM array. :func:`contained_tempdir` points
``tempfile`` at a private folder for the duration of such a call and removes it afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["contained_tempdir"]

_LOCK = threading.RLock()  # re-entrant: a contained call may contain another


@contextmanager
def contained_tempdir(prefix: str = "jd-scratch-") -> Iterator[Path]:
    """Redirect ``tempfile``'s default folder to a private one, removed on exit.

    Parameters
    ----------
    prefix
        Name prefix of the private folder (made inside the usual temporary folder).

    Yields
    ------
    Path
        The private folder. Temporary files that code inside the block creates without an explicit
        ``dir`` land there and are removed with it, even when the block raises.

    Notes
    -----
    ``tempfile.tempdir`` is process-wide: the redirection also applies to other threads while the block
    runs, so it is meant for short set-up calls (loading or exporting a model), which a lock serialises.
    """
    with _LOCK:
        base = Path(tempfile.mkdtemp(prefix=prefix))
        saved = tempfile.tempdir
        tempfile.tempdir = str(base)
        try:
            yield base
        finally:
            tempfile.tempdir = saved
            shutil.rmtree(base, ignore_errors=True)
