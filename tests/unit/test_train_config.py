"""The N2V seed configuration, value for value, and what CAREamics makes of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jumpdenoise.compat import load_careamics_configuration, save_careamics_configuration
from jumpdenoise.config import load_config
from jumpdenoise.errors import ConfigError
from jumpdenoise.train.careamics_config import build_careamics_config

ROOT = Path(__file__).resolve().parents[2]
SEED_CONFIG = ROOT / "configs" / "n2v_jump.yaml"


def _careamics(overrides: dict | None = None):
    cfg = load_config(SEED_CONFIG, overrides=overrides)
    return cfg, build_careamics_config(cfg.train, n_channels=len(cfg.train.channels),
                                       mean=[100.0, 200, 300, 400], std=[10.0, 20, 30, 40])


def test_seed_config_value_for_value() -> None:
    cfg, cc = _careamics()
    assert cfg.train.channels == ["DNA", "ER", "RNA", "AGP"]
    assert cc.experiment_name == "n2v_jump_cell_painting_chwise"
    m = cc.algorithm_config.model
    assert (m.architecture, m.conv_dims, m.depth, m.num_channels_init) == ("UNet", 2, 2, 32)
    assert (m.in_channels, m.num_classes, m.independent_channels, m.n2v2) == (4, 4, True, False)
    assert m.final_activation == "None"
    assert cc.algorithm_config.optimizer.name == "Adam"
    assert cc.algorithm_config.optimizer.parameters["lr"] == pytest.approx(1e-4)
    assert cc.algorithm_config.lr_scheduler.name == "ReduceLROnPlateau"
    n2v = cc.algorithm_config.n2v_config
    assert (n2v.masked_pixel_percentage, n2v.roi_size, n2v.strategy, n2v.struct_mask) == (0.2, 11, "uniform", None)
    d = cc.data_config
    assert d.axes == "SCYX" and list(d.patching.patch_size) == [64, 64] and d.batch_size == 32
    flip, rot = d.augmentations
    assert (flip.name, flip.flip_x, flip.flip_y, flip.p) == ("XYFlip", True, True, 0.5)
    assert (rot.name, rot.p) == ("XYRandomRotate90", 0.5)
    assert list(d.normalization.input_means) == [100, 200, 300, 400]
    assert cc.training_config.trainer_params["max_epochs"] == 100
    assert cc.training_config.checkpoint_params == {"monitor": "val_loss", "mode": "min", "save_top_k": 3,
                                                    "save_last": True}


def test_yaml_says_masked_pixel_percentage_is_percent() -> None:
    line = next(ln for ln in SEED_CONFIG.read_text().splitlines() if "masked_pixel_percentage" in ln)
    assert "PERCENT" in line and "0.2 %" in line


def test_n2v2_is_one_switch_away() -> None:
    _, cc = _careamics({"train": {"n2v": {"n2v2": True}}})
    assert cc.algorithm_config.model.n2v2 is True
    assert cc.algorithm_config.n2v_config.strategy == "median"


def test_careamics_config_round_trips(tmp_path: Path) -> None:
    _, cc = _careamics()
    path = save_careamics_configuration(cc, tmp_path / "careamics_config.yaml")
    back = load_careamics_configuration(path)
    assert back.algorithm_config.model_dump() == cc.algorithm_config.model_dump()
    for key in ("axes", "patching", "normalization", "augmentations", "batch_size"):
        assert getattr(back.data_config, key) == getattr(cc.data_config, key), key
    assert back.training_config.checkpoint_params == cc.training_config.checkpoint_params
    assert yaml.safe_load(path.read_text())["algorithm_config"]["n2v_config"]["masked_pixel_percentage"] == 0.2


def test_lr_scaling_rule() -> None:
    cfg = load_config(SEED_CONFIG, overrides={"train": {"optimizer": {"scale_lr_with_world_size": True}}})
    cc = build_careamics_config(cfg.train, n_channels=4, mean=[0] * 4, std=[1] * 4, world_size=8)
    assert cc.algorithm_config.optimizer.parameters["lr"] == pytest.approx(8e-4)
    cc1 = build_careamics_config(load_config(SEED_CONFIG).train, n_channels=4, mean=[0] * 4, std=[1] * 4,
                                 world_size=8)
    assert cc1.algorithm_config.optimizer.parameters["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize("train, field", [
    ({"patch_size": 48}, r"train\.patch_size.*power of 2.*48"),
    ({"n2v": {"roi_size": 10}}, r"train\.n2v\.roi_size.*odd"),
    ({"batch_szie": 8}, r"train\.batch_szie"),
    ({"channels": ["DNA", "DNA"]}, r"train\.channels.*duplicates"),
    ({"augmentations": [{"name": "Blur"}]}, r"train\.augmentations"),
    ({"wells": ["A01"], "val_wells": ["B02"]}, r"val_wells.*B02"),
    ({"trainer": {"precision": "8-bit"}}, r"train\.trainer\.precision"),
    ({"trainer": {"masking": "fast"}}, r"train\.trainer\.masking: Extra inputs are not permitted"),
    ({"fields_in_cache": 36}, r"train\.fields_in_cache: Extra inputs"),
    ({"experimental": {"compile": True}}, r"train\.experimental\.compile: Extra inputs"),
])
def test_bad_config_names_the_field(tmp_path: Path, train: dict, field: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"train": train}))
    with pytest.raises(ConfigError, match=field):
        load_config(p)
