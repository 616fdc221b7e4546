"""What the convert stage reports: the run summary, failures, missing images, and the
lazy view of the done markers that the statistics are merged from."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jumpdenoise.io.layout import MissingImage
from jumpdenoise.io.ngff_markers import FAILURES_FILE, MISSING_IMAGES_CSV, sidecar_path



class DonePartials(Mapping):
    """``key -> partial statistics``, each loaded from its done marker when asked for.

    :func:`~jumpdenoise.compute.stats.merge_partials` visits the keys in order and keeps
    two accumulators, so merging a whole plate holds one marker in memory at a time.
    """

    def __init__(self, plate: Path, keys: list[str]) -> None:
        self.plate, self._keys = plate, list(keys)
        self._known = set(self._keys)

    def __getitem__(self, key: str) -> dict:
        from jumpdenoise.io.ngff import load_done

        if key not in self._known:
            raise KeyError(key)
        return load_done(self.plate, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def short_error(text: str | None) -> str:
    """The exception line(s) at the end of a traceback, e.g. ``"ImageError: a.tiff: truncated"``."""
    lines = [ln.rstrip() for ln in (text or "").splitlines() if ln.strip()]
    tail: list[str] = []
    for ln in reversed(lines):  # the message: the unindented lines after the last frame
        if ln[:1].isspace() or ln.startswith("Traceback"):
            break
        tail.append(ln)
    if not tail:
        return lines[-1].strip() if lines else "unknown error"
    tail.reverse()
    head, sep, rest = tail[0].partition(": ")
    if sep and " " not in head:  # "jumpdenoise.errors.ImageError: ..." -> "ImageError: ..."
        tail[0] = head.rsplit(".", 1)[-1] + ": " + rest
    return "\n    ".join(tail)


def write_missing_report(missing: list[MissingImage], path: Path) -> None:
    """CSV of the images the source lists but whose files are missing (header only if none)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["well", "site", "channel", "path"])
        for m in sorted(missing, key=lambda m: (m.well, m.site, m.channel)):
            writer.writerow([m.well, m.site, m.channel, m.path])


@dataclass
class ConvertReport:
    """What one :func:`convert` run did.

    Attributes
    ----------
    plate
        Output plate.
    n_fields
        Fields in the source layout.
    converted
        Fields converted by this run.
    skipped
        Fields already done before this run (resume).
    failures
        Unit key -> short error, for units that failed in this run.
    missing
        Images listed by the source whose files are missing.
    bytes_read
        TIFF bytes converted by this run.
    seconds
        Wall time of the run (discovery to statistics).
    """

    plate: Path
    n_fields: int
    converted: int
    skipped: int
    failures: dict[str, str] = field(default_factory=dict)
    missing: list[MissingImage] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        """Throughput in MB (1e6 bytes) of TIFF per second."""
        return self.bytes_read / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [
            f"plate: {self.plate}",
            f"fields: {self.converted} converted, {self.skipped} already done (skipped), "
            f"{len(self.failures)} unit(s) failed, of {self.n_fields}",
            f"read {self.bytes_read / 1e6:.1f} MB of TIFF in {self.seconds:.1f} s ({self.mb_per_s:.1f} MB/s)",
        ]
        if self.missing:
            lines.append(f"missing images listed by the source: {len(self.missing)} "
                         f"(see {sidecar_path(self.plate, MISSING_IMAGES_CSV)})")
            lines += [f"  {m.well} site {m.site} {m.channel}: {m.path}" for m in self.missing[:10]]
            if len(self.missing) > 10:
                lines.append(f"  ... and {len(self.missing) - 10} more")
        if self.failures:
            lines.append(f"failed (see {sidecar_path(self.plate, FAILURES_FILE)}):")
            lines += [f"  {k}: {v}" for k, v in sorted(self.failures.items())]
        return "\n".join(lines)
