"""Checking a model file's bytes before loading it (re-exported by :mod:`jumpdenoise.predict.model`).

A damaged checkpoint often still loads and predicts garbage; its digests tell: the
``<checkpoint>.sha256`` file the train stage writes beside it
(:func:`jumpdenoise.train.run_folder.write_checkpoint_digest`) and the CRC-32 that every
member of a zip-format file carries (``torch.save`` files, BioImage Model Zoo zips).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from jumpdenoise.errors import ModelError

__all__ = ["verify_checkpoint"]


def verify_checkpoint(path: Path) -> None:
    """Check a checkpoint's bytes against the digests it carries, before loading it.

    - ``<checkpoint>.sha256`` beside it (written with the checkpoint by the train stage):
      the SHA-256 of the whole file;
    - the CRC-32 of every member of a zip-format file (what ``torch.save`` writes, and BMZ
      zips): ``torch.load`` does not check them.

    Raises
    ------
    ModelError
        Naming the file, when a digest does not match (damaged bytes).
    """
    import hashlib

    from jumpdenoise.train.run_folder import checkpoint_digest_path

    sidecar = checkpoint_digest_path(path)
    if sidecar.is_file():
        try:
            expected = sidecar.read_text().split()[0].lower()
        except (OSError, IndexError) as exc:
            raise ModelError(f"{sidecar}: unreadable checkpoint digest ({exc})") from None
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ModelError(f"{path}: damaged checkpoint: its SHA-256 does not match {sidecar.name} (the file changed "
                             "after it was written; restore it, or delete the digest file if the change is wanted)")
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise ModelError(f"{path}: damaged checkpoint: {bad} fails its CRC-32 (bytes changed since it was written)")
