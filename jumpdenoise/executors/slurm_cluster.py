"""What the SLURM cluster offers, from ``sinfo``, ``scontrol show config`` and ``sbatch --help``:
partitions with their nodes' CPUs, memory, GPUs, features and time limit, the largest job array,
and the options sbatch accepts.

Used to check a profile before anything is submitted (``jumpdenoise submit --dry-run``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from jumpdenoise.errors import ClusterError

SINFO_FORMAT = "%P|%l|%c|%m|%G|%f|%N"


@dataclass
class Partition:
    """One partition as ``sinfo`` reports it (maxima over its nodes)."""

    name: str
    default: bool = False
    nodes: set[str] = field(default_factory=set)
    cpus: int = 0
    mem_mb: int = 0
    gpus: int = 0
    features: set[str] = field(default_factory=set)
    time_limit_min: int | None = None  # None: infinite


def parse_time_min(text: str) -> int | None:
    """Minutes of a SLURM time (``"infinite"``, ``"MM"``, ``"MM:SS"``, ``"HH:MM:SS"``, ``"D-HH[:MM[:SS]]"``).

    Raises
    ------
    ValueError
        If ``text`` is none of these forms.
    """
    text = text.strip()
    if text in {"infinite", "UNLIMITED", "-1"}:
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ValueError(f"not a SLURM time: {text!r}")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
    elif c is not None:  # HH:MM:SS
        hours, minutes, seconds = int(a), int(b), int(c)
    else:  # MM or MM:SS
        hours, minutes, seconds = 0, int(a), int(b or 0)
    return int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def _gpus(gres: str) -> int:
    """GPUs per node in a ``%G`` field (``"gpu:4"``, ``"gpu:a100:4(S:0-1)"``, ``"(null)"``)."""
    total = 0
    for item in gres.split(","):
        m = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if m:
            total += int(m.group(1))
    return total


def parse_sinfo(text: str) -> dict[str, Partition]:
    """Partitions from ``sinfo -h -N -o SINFO_FORMAT`` output (one line per node and partition)."""
    parts: dict[str, Partition] = {}
    for line in text.splitlines():
        cols = line.strip().split("|")
        if len(cols) != 7:
            continue
        name, limit, cpus, mem, gres, features, node = cols
        p = parts.setdefault(name.rstrip("*"), Partition(name.rstrip("*")))
        p.default = p.default or name.endswith("*")
        p.nodes.add(node)
        p.cpus = max(p.cpus, int(re.sub(r"\D.*", "", cpus) or 0))
        p.mem_mb = max(p.mem_mb, int(re.sub(r"\D.*", "", mem) or 0))
        p.gpus = max(p.gpus, _gpus(gres))
        p.features |= {f for f in features.split(",") if f and f != "(null)"}
        try:
            p.time_limit_min = parse_time_min(limit)
        except ValueError:
            p.time_limit_min = None
    return parts


def cluster_partitions() -> dict[str, Partition]:
    """The partitions of the cluster this machine submits to (one ``sinfo`` call).

    Raises
    ------
    ClusterError
        When ``sinfo`` is missing or fails.
    """
    if shutil.which("sinfo") is None:
        raise ClusterError("sinfo not found: SLURM is not available on this machine")
    cmd = ["sinfo", "-h", "-N", "-o", SINFO_FORMAT]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise ClusterError(f"{' '.join(cmd)} failed: {exc}") from exc
    return parse_sinfo(out)


def sbatch_options() -> set[str]:
    """The long options ``sbatch --help`` lists (without dashes); empty when sbatch is missing."""
    if shutil.which("sbatch") is None:
        return set()
    try:
        res = subprocess.run(["sbatch", "--help"], capture_output=True, text=True, timeout=60)
    except (subprocess.SubprocessError, OSError):
        return set()
    return set(re.findall(r"--([a-z][a-z0-9-]*)", res.stdout + res.stderr))


def max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` (``scontrol show config``; array indices go up to it minus 1),
    or ``None`` when scontrol is missing or does not say."""
    if shutil.which("scontrol") is None:
        return None
    try:
        res = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
    except (subprocess.SubprocessError, OSError):
        return None
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", res.stdout, re.MULTILINE)
    return int(m.group(1)) if m else None
