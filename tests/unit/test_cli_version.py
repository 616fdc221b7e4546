"""`jumpdenoise --version` prints the installed version; there is no second way to ask."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from jumpdenoise.cli import app


def test_version_flag_prints_the_installed_version_and_the_command_is_gone() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == version("jumpdenoise")
    assert runner.invoke(app, ["version"]).exit_code != 0
