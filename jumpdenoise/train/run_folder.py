"""The training run folder (``docs/FORMATS.md``): paths, header files, curves, resume, best.

Only global rank 0 writes (see :func:`is_global_zero`); every rank can read.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jumpdenoise.errors import ModelError

log = logging.getLogger("jumpdenoise.train")

CURVE_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "learning_rate", "patches_per_s", "seconds"]


def is_global_zero() -> bool:
    """Whether this process is global rank 0 (before Lightning starts; env of torch/SLURM)."""
    for var in ("RANK", "SLURM_PROCID", "PMI_RANK"):
        if var in os.environ:
            return os.environ[var] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


@dataclass(frozen=True)
class RunFolder:
    """Paths of a run folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    config = property(lambda self: self.path / "config.yaml")
    careamics_config = property(lambda self: self.path / "careamics_config.yaml")
    normalization = property(lambda self: self.path / "normalization.json")
    split = property(lambda self: self.path / "split.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last = property(lambda self: self.path / "checkpoints" / "last.ckpt")
    curves_csv = property(lambda self: self.path / "curves.csv")
    curves_png = property(lambda self: self.path / "curves.png")
    log = property(lambda self: self.path / "train.log")
    best = property(lambda self: self.path / "best.json")
    noise_correlation = property(lambda self: self.path / "noise_correlation.json")
    export_dir = property(lambda self: self.path / "export")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (tmp + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_header(run: RunFolder, *, config: dict, careamics_config: Any, normalization: dict,
                 split: dict) -> None:
    """Write config.yaml, careamics_config.yaml, normalization.json and split.json."""
    from jumpdenoise.compat import save_careamics_configuration

    run.path.mkdir(parents=True, exist_ok=True)
    run.checkpoints.mkdir(exist_ok=True)
    run.config.write_text(yaml.safe_dump(config, sort_keys=False))
    save_careamics_configuration(careamics_config, run.careamics_config)
    write_json(run.normalization, normalization)
    write_json(run.split, split)


def checkpoint_loads(path: Path) -> dict | None:
    """The checkpoint's epoch/step info when ``path`` is a readable Lightning checkpoint."""
    from jumpdenoise.predict.model import read_checkpoint

    try:
        ckpt = read_checkpoint(path)
        return {"epoch": int(ckpt["epoch"]), "global_step": int(ckpt["global_step"])}
    except (ModelError, KeyError, TypeError, ValueError) as exc:  # truncated by a kill during the write
        log.warning("checkpoint %s cannot be read (%s): ignored", path, exc)
        return None


def resume_checkpoint(run: RunFolder) -> Path | None:
    """Checkpoint to resume from: ``last.ckpt``, or the newest readable one when it is damaged."""
    if run.last.is_file() and checkpoint_loads(run.last) is not None:
        return run.last
    others = sorted(run.checkpoints.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in others:
        if p != run.last and checkpoint_loads(p) is not None:
            return p
    return None


def append_curve(run: RunFolder, row: dict) -> None:
    """Add (or replace, after a resume) the row of one epoch in curves.csv."""
    rows = read_curves(run)
    rows = [r for r in rows if int(r["epoch"]) < int(row["epoch"])] + [row]
    tmp = run.curves_csv.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, CURVE_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in CURVE_COLUMNS})
    os.replace(tmp, run.curves_csv)


def read_curves(run: RunFolder | str | Path) -> list[dict]:
    """Rows of curves.csv (empty list when absent)."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    if not run.curves_csv.is_file():
        return []
    with open(run.curves_csv, newline="") as fh:
        return list(csv.DictReader(fh))


def plot_curves(run: RunFolder) -> None:
    """Draw train/val loss and learning rate per epoch into curves.png."""
    rows = read_curves(run)
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    epochs = col("epoch")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, col("train_loss"), label="train")
    ax1.plot(epochs, col("val_loss"), label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("N2V loss")
    ax1.legend()
    ax2.plot(epochs, col("learning_rate"))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("learning rate")
    ax2.set_yscale("log")
    fig.tight_layout()
    fig.savefig(run.curves_png, dpi=100)
    plt.close(fig)


def write_best(run: RunFolder, *, best_path: str | None, best_score: float | None, epochs_done: int) -> None:
    """Write best.json: the best checkpoint by val_loss, last.ckpt, epochs completed."""
    best = Path(best_path) if best_path else run.last
    full, root = best.resolve(), run.path.resolve()  # both absolute: relative run folders work too
    rel = full.relative_to(root) if root in full.parents else full
    write_json(run.best, {"best": str(rel), "val_loss": best_score, "last": "checkpoints/last.ckpt",
                          "epochs_done": epochs_done})


def run_checkpoint(run: str | Path | RunFolder, checkpoint: str | None = None) -> Path:
    """The checkpoint a run folder gives for prediction, export or the train stage's summary.

    The choice: the one ``best.json`` names (written by the train stage), else
    ``checkpoints/last.ckpt``, else the newest ``*.ckpt`` under ``checkpoints/``.

    Parameters
    ----------
    run
        The run folder.
    checkpoint
        ``None`` or ``"best"``: the choice above; ``"last"``: skip ``best.json``; any other
        value: a checkpoint path (relative to the run folder unless absolute).

    Raises
    ------
    ModelError
        If the run has no checkpoint, ``best.json`` is unreadable or the named checkpoint
        does not exist.
    """
    rf = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    if checkpoint not in (None, "best", "last"):
        named = Path(checkpoint)
        named = named if named.is_absolute() else rf.path / named
        if not named.is_file():
            raise ModelError(f"{rf.path}: checkpoint {checkpoint} not found")
        return named
    if checkpoint != "last" and rf.best.is_file():
        try:
            best = json.loads(rf.best.read_text()).get("best")
        except (OSError, ValueError) as exc:
            raise ModelError(f"{rf.best}: unreadable ({exc})") from None
        if best:
            named = Path(best) if Path(best).is_absolute() else rf.path / best
            if named.is_file():
                return named
    if rf.last.is_file():
        return rf.last
    found = sorted(rf.checkpoints.glob("**/*.ckpt"), key=lambda q: q.stat().st_mtime, reverse=True) \
        if rf.checkpoints.is_dir() else []
    if not found:
        raise ModelError(f"{rf.path}: no checkpoint (expected {rf.best.name} or checkpoints/{rf.last.name})")
    return found[0]


def epochs_done(run: RunFolder) -> int:
    """Epochs completed according to best.json (0 when unknown)."""
    if run.best.is_file():
        return int(json.loads(run.best.read_text()).get("epochs_done", 0))
    return 0


def attach_log_file(run: RunFolder) -> logging.Handler:
    """Send jumpdenoise and Lightning log records to train.log (appending)."""
    handler = logging.FileHandler(run.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("jumpdenoise", "lightning.pytorch"):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    """Undo :func:`attach_log_file`."""
    for name in ("jumpdenoise", "lightning.pytorch"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def checkpoint_digest_path(checkpoint: str | Path) -> Path:
    """The digest file of a checkpoint: ``<checkpoint>.sha256`` beside it."""
    path = Path(checkpoint)
    return path.with_name(path.name + ".sha256")


def write_checkpoint_digest(checkpoint: str | Path) -> Path:
    """Write the SHA-256 of a checkpoint's bytes beside it (``sha256sum`` format), atomically.

    Call it right after the checkpoint is written; :func:`jumpdenoise.predict.model.load_model`
    refuses a checkpoint that no longer matches its digest. Returns the digest file.
    """
    import hashlib

    path = Path(checkpoint)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    target = checkpoint_digest_path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(f"{digest.hexdigest()}  {path.name}\n")
    os.replace(tmp, target)
    return target
