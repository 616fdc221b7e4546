"""Every example configuration validates; bad values are reported by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jumpdenoise.config import JumpDenoiseConfig, SlurmProfile, load_config, load_profile
from jumpdenoise.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "jumpdenoise" / "configs").glob("*.yaml"))
PROFILES = sorted((ROOT / "slurm" / "profiles").glob("*.yaml"))


def test_there_are_example_configs() -> None:
    assert len(CONFIGS) >= 4, CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, JumpDenoiseConfig)
    raw = yaml.safe_load(path.read_text())
    # every top-level section written in the file survives validation
    for section in raw:
        assert getattr(cfg, section) is not None, section


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_slurm_profile_validates(path: Path) -> None:
    prof = load_profile(path)
    assert isinstance(prof, SlurmProfile)
    assert prof.time_min >= 1


def test_unknown_field_is_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("convert:\n  codex: zstd\n")
    with pytest.raises(ConfigError, match=r"convert\.codex"):
        load_config(p)


def test_bad_value_is_named_with_value(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("convert:\n  clevel: 42\n")
    with pytest.raises(ConfigError, match=r"convert\.clevel.*42"):
        load_config(p)


def test_unknown_slurm_stage_is_named_with_the_valid_names(tmp_path: Path) -> None:
    inline = {"executor": {"kind": "slurm", "profile": {"stages": {"predcit": {"time_min": 5}}}}}
    with pytest.raises(ConfigError) as info:
        load_config(overrides=inline)
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 1, lines  # no noise from the path branch of executor.profile
    assert lines[0].strip().startswith("executor.profile.stages: ") and "'predcit'" in lines[0]
    assert "predict" in lines[0] and "train" in lines[0] and "control" in lines[0]
    profile = tmp_path / "profile.yaml"
    profile.write_text("stages:\n  trian:\n    time_min: 5\n")
    with pytest.raises(ConfigError, match=r"stages: .*'trian'.*stages: .*train"):
        load_profile(profile)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.yaml"
    p.write_text("source:\n  path: plate/Images\npaths:\n  workdir: out\n")
    cfg = load_config(p)
    assert cfg.source.path == (tmp_path / "sub" / "plate" / "Images").resolve()
    assert cfg.paths.raw_plate == (tmp_path / "sub" / "out" / "raw.zarr").resolve()
