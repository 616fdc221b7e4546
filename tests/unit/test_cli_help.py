"""Every command's ``--help`` follows the same conventions (:mod:`jumpdenoise.cli.options`)."""

from __future__ import annotations

import re

import click
import pytest
import typer
from typer.testing import CliRunner

from jumpdenoise.cli import app
from jumpdenoise.cli.options import OVERWRITE_MEANING

ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)
REMOVED_PREDICT_FLAGS = ("--compile", "--network-variant", "--autotune", "--wells-per-unit")


def _params(name: str) -> list[click.Parameter]:
    return ROOT.params if name == "" else ROOT.commands[name].params


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_help_texts_follow_the_conventions(name: str) -> None:
    for p in _params(name):
        text = getattr(p, "help", None) or ""
        assert getattr(p, "show_default", True) is True, f"{name} {p.name}: typer shows literal defaults"
        for match in re.finditer(r"(.)default(.)", text, flags=re.IGNORECASE):
            assert match.group(0) == "(default:", f"{name} {p.name}: write '(default: X)', not {text!r}"
        if "--overwrite" in getattr(p, "opts", []):
            assert text.startswith(f"{OVERWRITE_MEANING} Without it, "), f"{name}: {text!r}"


def test_overwrite_is_offered_where_outputs_are_replaced() -> None:
    having = {n for n in COMMANDS if any("--overwrite" in getattr(p, "opts", []) for p in _params(n))}
    assert having == {"convert", "predict", "export-tiff", "export-zarr", "evaluate"}


def test_predict_offers_no_benchmark_switches() -> None:
    res = CliRunner().invoke(app, ["predict", "--help"], terminal_width=200)
    assert res.exit_code == 0
    opts = {o for p in _params("predict") for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    assert "--tta" in opts
    for flag in REMOVED_PREDICT_FLAGS:
        assert flag not in opts and flag not in res.output
