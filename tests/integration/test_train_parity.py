"""Training parity with CAREamics: given the same initial weights and the same masked batches,
jumpdenoise's training (its module, trainer, optimizer and scheduler wiring) ends with exactly the
weights that CAREamics' own ``N2VModule`` and ``CAREamist`` trainer reach (channels-first layout:
channels-last changes the last bits of the convolutions, and Adam's first steps amplify them).

jumpdenoise trains unmodified; every batch it trains on is recorded, and CAREamics' module is then
fed those batches in the same order (its masking replaced by the recorded masks). Any gap between
the two at equal steps can then only come from which patches and masks are drawn.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import torch

from jumpdenoise.config import load_config
from fixtures.plates import synthetic_plate

REPO = Path(__file__).resolve().parents[2]
STEPS, BATCH = 4, 4


class Recorder(pl.Callback):
    """Initial weights, every training batch as ``(masked, original, mask)``, final weights."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, ...]] = []
        self.init: dict | None = None
        self.final: dict | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.init = copy.deepcopy(pl_module.model.state_dict())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(tuple(t.clone() for t in pl_module._unpack(batch)))

    def on_train_end(self, trainer, pl_module) -> None:
        self.final = copy.deepcopy(pl_module.model.state_dict())


def test_same_batches_give_careamics_weights_exactly(tmp_path: Path) -> None:
    from careamics import CAREamist

    from jumpdenoise.stages.train import build_training_setup
    from jumpdenoise.train.loop import fit, write_run_header

    plate = synthetic_plate(tmp_path / "plate.zarr", wells=("A01", "A02", "B01"), n_fields=1, channels=("DNA",),
                            size=96)
    cfg = load_config(REPO / "configs" / "n2v_jump.yaml", overrides={
        "paths": {"workdir": str(tmp_path), "raw_plate": str(plate), "run_dir": str(tmp_path / "run")},
        "train": {"channels": ["DNA"], "epochs": 1, "patch_size": 32, "batch_size": BATCH,
                  "patches_per_epoch": STEPS * BATCH, "n_val_patches": 4,
                  "model": {"depth": 2, "num_channels_init": 8},
                  "trainer": {"accelerator": "cpu", "devices": 1, "num_workers": 0, "enable_progress_bar": False},
                  "experimental": {"channels_last": False}}})
    setup = build_training_setup(cfg)
    write_run_header(setup)
    ours = Recorder()
    fit(setup, extra_callbacks=[ours])
    assert len(ours.batches) == STEPS
    assert all(int(b[2].sum()) > 0 for b in ours.batches)  # masked pixels in every batch

    cc = setup.careamics_config()
    cc.training_config.trainer_params.update({"max_epochs": 1, "accelerator": "cpu", "devices": 1,
                                              "num_sanity_val_steps": 0, "enable_progress_bar": False})

    class LoadInit(pl.Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            pl_module.model.load_state_dict(ours.init)

    careamist = CAREamist(cc, work_dir=tmp_path / "careamics", callbacks=[LoadInit()], enable_progress_bar=False)
    module = careamist.model
    masks = iter(ours.batches)
    module.n2v_manipulate = lambda batch, *a, **k: next(masks)
    module.on_fit_start = lambda: None  # CAREamics' hook asks for its own data module
    module.validation_step = lambda *a, **k: module.log("val_loss", torch.tensor(1.0), batch_size=1)
    train = torch.utils.data.DataLoader([(b[1],) for b in ours.batches], batch_size=None)
    careamist.trainer.fit(module, train_dataloaders=train,
                          val_dataloaders=torch.utils.data.DataLoader([0], batch_size=None))

    theirs = module.model.state_dict()
    moved = max(float((theirs[k].float() - ours.init[k].float()).abs().max()) for k in theirs)
    assert moved > 0  # CAREamics trained
    differ = [k for k in theirs if not torch.equal(theirs[k], ours.final[k])]
    assert not differ, differ
