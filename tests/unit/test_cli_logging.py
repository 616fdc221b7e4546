"""Progress and epoch lines are log records: the CLI shows them by default, ``-q`` hides them,
and library use without any logging set up still shows them."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from jumpdenoise.cli import app, configure_logging
from jumpdenoise.progress import PROGRESS, progress_bar
from fixtures.plates import make_plate

EPOCH_METRICS = {"train_loss": 0.5, "val_loss": 0.25, "learning_rate": 1e-3}


@pytest.fixture
def jumpdenoise_logger():
    """The ``jumpdenoise`` logger, restored (level, handlers) after the test."""
    logger = logging.getLogger("jumpdenoise")
    level, handlers = logger.level, list(logger.handlers)
    levels = [h.level for h in handlers]
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers
    for h, lv in zip(handlers, levels):
        h.setLevel(lv)


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    return make_plate(tmp_path_factory.mktemp("logging") / "p.zarr", shape_yx=(32, 32))


@pytest.mark.parametrize("flags, shown", [([], True), (["-q"], False), (["-v"], True)])
def test_stats_progress_is_shown_by_default_and_hidden_by_quiet(plate: Path, flags: list[str], shown: bool,
                                                                jumpdenoise_logger) -> None:
    res = CliRunner().invoke(app, [*flags, "stats", str(plate)])
    assert res.exit_code == 0, res.output
    assert "statistics of" in res.stdout
    lines = res.stderr.splitlines()
    assert lines == (["stats: 1/2", "stats: 2/2"] if shown else [])


def _epoch_line(tmp_path: Path) -> None:
    """One epoch report of :class:`EpochReport`, as training writes it at the end of an epoch."""
    module = pytest.importorskip("jumpdenoise.train.module")
    from jumpdenoise.train.run_folder import RunFolder

    report = module.EpochReport(RunFolder(tmp_path / "no-run"), batch_size=4)
    trainer = SimpleNamespace(is_global_zero=True, callback_metrics=EPOCH_METRICS, current_epoch=7,
                              global_step=70, world_size=1)
    report.on_train_epoch_end(trainer, None)


@pytest.mark.parametrize("quiet", [False, True])
def test_epoch_line_goes_through_logging_only(tmp_path: Path, capsys, quiet: bool, jumpdenoise_logger) -> None:
    from jumpdenoise.train.run_folder import RunFolder, attach_log_file, detach_log_file

    configure_logging(0, quiet)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    handler = attach_log_file(run)  # lowers the logger's level to INFO for train.log
    try:
        _epoch_line(tmp_path)
    finally:
        detach_log_file(handler)
    err = capsys.readouterr().err
    expected = "epoch   7  loss 0.50000  val_loss 0.25000  lr 1.00e-03"
    assert (expected in err) is not quiet, err
    assert err.count("epoch   7") == (0 if quiet else 1)  # once: no print beside the record
    assert expected in run.log.read_text()  # the run's log file has it either way


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])


LOOP = """
from jumpdenoise.progress import progress_bar
with progress_bar(20, "fields") as advance:
    for _ in range(20):
        advance()
"""


FIELDS = [f"fields: {n}/20" for n in (1, *range(2, 21, 2))]  # the first step, then every 10 %


@pytest.mark.parametrize("setup, expected", [
    ("", FIELDS),  # logging untouched (a notebook, a script): shown
    ("logging.basicConfig(level=logging.INFO)", [f"PROGRESS:jumpdenoise.progress:{ln}" for ln in FIELDS]),
    ("logging.basicConfig()", []),  # a console handler at WARNING: the application's choice
    ("logging.getLogger('jumpdenoise').setLevel(logging.WARNING)", []),
])
def test_progress_without_the_cli(setup: str, expected: list[str]) -> None:
    res = _python(f"import logging\n{setup}\n{LOOP}")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == expected


def test_progress_records_carry_the_progress_level(caplog) -> None:
    caplog.set_level(PROGRESS, logger="jumpdenoise")
    with progress_bar(3, "units") as advance:
        for _ in range(3):
            advance()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (PROGRESS, "units: 1/3"), (PROGRESS, "units: 2/3"), (PROGRESS, "units: 3/3")]
    assert logging.INFO < PROGRESS < logging.WARNING
