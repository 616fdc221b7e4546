"""Training data: plate selection by name, split by well, patch streams, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jumpdenoise.config import load_config
from jumpdenoise.errors import ConfigError, PlateError
from jumpdenoise.train.fields import arrays_to_refs, split_fields
from jumpdenoise.train.patches import PatchStream, augment_batch, val_patches
from jumpdenoise.train.plate_patches import plate_fields, plate_normalization
from fixtures.plates import synthetic_plate


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_plate(tmp_path_factory.mktemp("p") / "plate.zarr", wells=("A01", "A02", "B01", "B02"),
                           n_fields=2, channels=("DNA", "ER", "RNA"), size=64)


def test_channels_by_name_in_given_order_level0_only(plate: Path) -> None:
    info, names, refs = plate_fields(plate, channels=["RNA", "DNA"], wells=["A02", "B01"], fields=[1])
    assert names == ["RNA", "DNA"]
    assert [r.key for r in refs] == ["A02-1", "B01-1"]
    assert all(r.array_path.endswith("/0") for r in refs)  # never a pyramid level
    from jumpdenoise.io.ngff import read_field

    expected = read_field(plate, "A02", 1)[[2, 0]]
    np.testing.assert_array_equal(refs[0].load(), expected)


def test_normalisation_is_the_plate_statistics(plate: Path) -> None:
    info, names, refs = plate_fields(plate, channels=["ER"])
    mean, std, source = plate_normalization(info, names, refs)
    assert mean == [pytest.approx(info.statistics["plate"]["ER"]["mean"])]
    assert std == [pytest.approx(info.statistics["plate"]["ER"]["std"])]
    assert "plate statistics" in source


def test_split_by_well_is_seeded_and_disjoint(plate: Path) -> None:
    _, _, refs = plate_fields(plate)
    a = split_fields(refs, seed=3, val_fraction=0.25, patch_size=32)
    b = split_fields(refs, seed=3, val_fraction=0.25, patch_size=32)
    assert a.record == b.record and a.mode == "well"
    assert len(a.record["val_wells"]) == 1
    assert not set(a.record["train_wells"]) & set(a.record["val_wells"])
    assert {r.key.split("-")[0] for r in a.val} == set(a.record["val_wells"])
    given = split_fields(refs, seed=3, val_fraction=0.25, patch_size=32, val_groups=["B02"])
    assert given.record["val_wells"] == ["B02"] and len(given.train) == 6
    json.dumps(a.record)


def test_split_falls_back_to_fields_then_rows() -> None:
    imgs = [np.zeros((1, 64, 80), np.uint16)]
    one = split_fields(arrays_to_refs(imgs), seed=1, val_fraction=0.1, patch_size=16)
    assert one.mode == "region"
    assert one.train[0].rows == (0, 48) and one.val[0].rows == (48, 64)
    with pytest.raises(ConfigError, match="patch_size 64"):
        split_fields(arrays_to_refs(imgs), seed=1, val_fraction=0.1, patch_size=64)


def test_one_well_splits_by_field(plate: Path) -> None:
    _, _, refs = plate_fields(plate, wells=["A01"])
    s = split_fields(refs, seed=1, val_fraction=0.1, patch_size=16)
    assert s.mode == "field" and len(s.train) == 1 and len(s.val) == 1
    assert s.train[0].key != s.val[0].key


def _stream(refs, rank: int = 0, seed: int = 1, **kw) -> PatchStream:
    return PatchStream(refs, [100.0], [10.0], patch_size=16, batch_size=4, batches_per_epoch=3, seed=seed,
                       rank=rank, augmentations=[{"name": "XYFlip", "p": 0.5}], **kw)


def test_stream_batches_are_normalised_and_differ_by_rank_and_epoch() -> None:
    rng = np.random.default_rng(0)
    refs = arrays_to_refs([rng.normal(100, 10, (1, 64, 64)).astype(np.float32) for _ in range(3)])
    s0, s1 = _stream(refs, rank=0), _stream(refs, rank=1)
    e0 = list(s0)
    e1 = list(s0)
    r1 = list(s1)
    assert len(e0) == 3 and e0[0].shape == (4, 1, 16, 16) and e0[0].dtype == torch.float32
    allx = torch.cat(e0 + e1 + r1)
    assert abs(float(allx.mean())) < 0.2 and abs(float(allx.std()) - 1) < 0.2
    assert not torch.equal(e0[0], e1[0])  # next epoch, new patches
    assert not torch.equal(e0[0], r1[0])  # other rank, other patches
    again = list(_stream(refs, rank=0))
    assert all(torch.equal(a, b) for a, b in zip(e0, again))  # seeded


def test_workers_draw_different_patches() -> None:
    rng = np.random.default_rng(0)
    refs = arrays_to_refs([rng.normal(100, 10, (1, 64, 64)).astype(np.float32) for _ in range(2)])
    stream = PatchStream(refs, [100.0], [10.0], patch_size=16, batch_size=4, batches_per_epoch=4, seed=1)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    batches = list(loader)
    assert len(batches) == 4
    assert not torch.equal(batches[0], batches[1])  # worker 0 and worker 1 interleave


def test_field_cache_is_bounded() -> None:
    loads = []

    class Counting(PatchStream):
        def _load(self, index: int, rng: np.random.Generator) -> np.ndarray:
            loads.append(index)
            return super()._load(index, rng)

    refs = arrays_to_refs([np.full((1, 32, 32), i, np.float32) for i in range(50)])
    s = Counting(refs, [0.0], [1.0], patch_size=16, batch_size=8, batches_per_epoch=10, seed=1,
                 regions_in_cache=4, patches_per_region=8)
    list(s)
    # 4 fields first, then one replacement per slot every 4 batches: far fewer than 50 fields
    assert 4 <= len(loads) <= 4 + 10 * 4
    assert len(s.refs) == 50


def test_field_cache_turns_over_one_slot_at_a_time() -> None:
    loads: list[int] = []
    batches = [0]

    class Counting(PatchStream):
        def _load(self, index: int, rng: np.random.Generator) -> np.ndarray:
            loads.append(batches[0])
            return super()._load(index, rng)

    refs = arrays_to_refs([np.full((1, 32, 32), i, np.float32) for i in range(50)])
    s = Counting(refs, [0.0], [1.0], patch_size=16, batch_size=8, batches_per_epoch=40, seed=1,
                 regions_in_cache=8, patches_per_region=8)
    for _ in s:
        batches[0] += 1
    per_batch = np.bincount(loads)
    assert per_batch[0] == 8  # the cache filled before the first batch
    # every field serves 8 patches, one per batch: 8 replacements per 8 batches, spread one per batch,
    # so the batches never switch from one set of fields to another all at once
    assert per_batch[1:].max() == 1 and per_batch[1:].sum() >= 32


def test_fields_in_memory_are_drawn_in_proportion_to_their_area() -> None:
    # a 32 x 128 image (value 0) and a 32 x 32 one (value 1): 4:1 in pixels, so 1 patch in 5 from the small one
    refs = arrays_to_refs([np.zeros((1, 32, 128), np.float32), np.ones((1, 32, 32), np.float32)])
    s = PatchStream(refs, [0.0], [1.0], patch_size=16, batch_size=64, batches_per_epoch=20, seed=3)
    patches = torch.cat(list(s))
    assert patches.shape == (1280, 1, 16, 16)
    from_small = patches.mean(dim=(1, 2, 3)).numpy()
    assert set(np.unique(from_small)) == {0.0, 1.0}
    assert 0.16 < from_small.mean() < 0.24  # 0.2 expected (about 0.011 standard deviation); 0.5 if drawn uniformly


def test_plate_field_window_reads_that_region_of_its_rows(plate: Path) -> None:
    _, _, refs = plate_fields(plate, channels=["RNA", "DNA"])
    full = refs[0].load()
    assert np.array_equal(refs[0].load((5, 7, 20, 30)), full[:, 5:25, 7:37])
    band = refs[0].with_rows(10, 50)
    assert np.array_equal(band.load((2, 3, 8, 8)), full[:, 12:20, 3:11])  # relative to the band's first row
    with pytest.raises(ValueError, match="outside field"):
        band.load((35, 0, 8, 8))


def test_a_turning_over_cache_holds_regions_and_a_cache_of_every_field_whole_fields(plate: Path) -> None:
    _, _, refs = plate_fields(plate, channels=["DNA", "ER"])  # 8 fields of 64 x 64
    shapes: list[tuple] = []

    class Recording(PatchStream):
        def _load(self, index: int, rng: np.random.Generator) -> np.ndarray:
            arr = super()._load(index, rng)
            shapes.append(arr.shape)
            return arr

    kw = dict(patch_size=16, batch_size=8, batches_per_epoch=12, seed=2, region_side=32)
    batches = list(Recording(refs, [0.0, 0.0], [1.0, 1.0], regions_in_cache=3, patches_per_region=8, **kw))
    assert len(batches) == 12 and batches[0].shape == (8, 2, 16, 16)
    assert len(shapes) > 3 and set(shapes) == {(2, 32, 32)}  # regions, replaced as they wear out
    shapes.clear()
    list(Recording(refs, [0.0, 0.0], [1.0, 1.0], regions_in_cache=8, **kw))
    assert shapes == [(2, 64, 64)] * 8  # every field fits: whole fields, loaded once


def test_batches_mix_every_field_in_memory_and_a_bounded_cache_of_plate_fields(plate: Path) -> None:
    from jumpdenoise.train.patches import REGIONS_IN_CACHE, regions_in_cache

    arrays = arrays_to_refs([np.zeros((1, 32, 32), np.float32) for _ in range(REGIONS_IN_CACHE + 5)])
    assert regions_in_cache(arrays) == REGIONS_IN_CACHE + 5  # views of arrays already in memory: all of them
    _, _, refs = plate_fields(plate, channels=["DNA"])
    assert regions_in_cache(refs) == REGIONS_IN_CACHE  # decoded from the plate: a bounded cache


def test_augmentations_follow_careamics_semantics() -> None:
    x = np.arange(2 * 8 * 8, dtype=np.float32).reshape(1, 2, 8, 8).repeat(64, 0)
    out = augment_batch(x.copy(), [{"name": "XYFlip", "flip_x": True, "flip_y": False, "p": 0.5},
                                   {"name": "XYRandomRotate90", "p": 0.5}], np.random.default_rng(0))
    allowed = [np.rot90(v, k, axes=(-2, -1)) for v in (x[0], x[0][..., ::-1]) for k in range(4)]
    seen = set()
    for o in out:
        matches = [i for i, a in enumerate(allowed) if np.array_equal(o, a)]
        assert matches, "not a flip/rotation of the input"
        seen.add(matches[0])
    assert len(seen) >= 6  # identity, flips and rotations all occur


def test_val_patches_fixed(plate: Path) -> None:
    _, _, refs = plate_fields(plate, channels=["DNA"])
    a = val_patches(refs, [300.0], [50.0], n=10, patch_size=16, seed=5)
    b = val_patches(refs, [300.0], [50.0], n=10, patch_size=16, seed=5)
    assert a.shape == (10, 1, 16, 16) and np.array_equal(a, b)


def _config(tmp_path: Path, plate: Path, **train) -> object:
    return load_config(overrides={"paths": {"workdir": str(tmp_path), "raw_plate": str(plate)},
                                  "train": train})


def test_bad_inputs_are_named(tmp_path: Path, plate: Path) -> None:
    from jumpdenoise.stages.session import PlateSession
    from jumpdenoise.stages.train import prepare

    with pytest.raises(PlateError, match="plate not found.*nowhere.zarr"):
        prepare(_config(tmp_path, tmp_path / "nowhere.zarr"), PlateSession())
    with pytest.raises(PlateError, match=r"train\.channels.*'Mito'.*DNA"):
        prepare(_config(tmp_path, plate, channels=["DNA", "Mito"]), PlateSession())
    with pytest.raises(PlateError, match=r"train\.wells.*'Z09'"):
        prepare(_config(tmp_path, plate, wells=["A01", "Z09"]), PlateSession())
    with pytest.raises(ConfigError, match=r"train\.patch_size 128 is larger than the fields.*64x64"):
        prepare(_config(tmp_path, plate, patch_size=128), PlateSession())
    assert not (tmp_path / "model").exists()  # nothing written for a bad input


def test_prepare_writes_the_run_header(tmp_path: Path, plate: Path) -> None:
    from jumpdenoise.stages.session import PlateSession
    from jumpdenoise.stages.train import plan, prepare

    cfg = _config(tmp_path, plate, channels=["ER", "DNA"], patch_size=32)
    prepare(cfg, PlateSession())
    run = tmp_path / "model"
    norm = json.loads((run / "normalization.json").read_text())
    assert norm["channels"] == ["ER", "DNA"] and len(norm["mean"]) == 2 and str(plate) in norm["source"]
    split = json.loads((run / "split.json").read_text())
    assert split["seed"] == 1 and split["mode"] == "well" and split["val_wells"]
    assert (run / "careamics_config.yaml").is_file() and (run / "config.yaml").is_file()
    assert np.load(run / "example_input.npy").shape == (1, 2, 64, 64)
    assert [u.key for u in plan(cfg)] == ["train"]


def test_stream_with_loader_masking_yields_masked_triples_seeded_per_batch() -> None:
    from jumpdenoise.compat import n2v_manipulate_config
    from jumpdenoise.train.masking import LoaderMasking

    rng = np.random.default_rng(0)
    refs = arrays_to_refs([rng.normal(100, 10, (2, 64, 64)).astype(np.float32) for _ in range(3)])
    masking = LoaderMasking(n2v_manipulate_config(masked_pixel_percentage=5.0, roi_size=5).model_dump())
    plain = list(_stream(refs, seed=4))
    from jumpdenoise.train.masking import densify

    sparse = list(_stream(refs, seed=4, masking=masking))
    assert len(sparse) == 3 and all(len(b) == 3 and b[1].dtype == torch.int64 for b in sparse)
    masked = [densify(*b) for b in sparse]
    for (m, x, mask), p in zip(masked, plain):
        assert m.shape == x.shape == mask.shape == (4, 2, 16, 16) and mask.dtype == torch.uint8
        assert torch.equal(x, p)  # the same patches as without masking
        assert 0 < int(mask.sum()) and torch.equal(m[mask == 0], x[mask == 0])  # only masked pixels change
    assert not torch.equal(masked[0][2], masked[1][2])  # every batch its own masks
    again = [densify(*b) for b in _stream(refs, seed=4, masking=masking)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(masked, again))
    dense = masking(masked[0][1], seed=0)  # sparse and dense forms are the same masking
    assert all(torch.equal(a, b) for a, b in zip(densify(*masking.sparse(masked[0][1], seed=0)), dense))


def test_data_module_streams_this_ranks_patches_and_masks_validation_once() -> None:
    """Under DDP each rank builds its stream with its global rank: ranks draw different patches."""
    from types import SimpleNamespace

    from jumpdenoise.compat import n2v_manipulate_config
    from jumpdenoise.train.masking import LoaderMasking
    from jumpdenoise.train.module import PatchDataModule

    rng = np.random.default_rng(0)
    refs = arrays_to_refs([rng.normal(100, 10, (1, 64, 64)).astype(np.float32) for _ in range(3)])
    masking = LoaderMasking(n2v_manipulate_config(masked_pixel_percentage=5.0, roi_size=5).model_dump())
    firsts = []
    for rank in (0, 1):
        data = PatchDataModule(refs, refs[:1], [100.0], [10.0], patch_size=16, batch_size=4, patches_per_epoch=32,
                               n_val_patches=8, seed=3, augmentations=[], masking=masking)
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2, accelerator=object())
        data.setup("fit")
        assert data.train_stream.rank == rank and len(data.train_stream) == 4  # 32 / (4 x 2 ranks)
        masked, original, mask = data._val
        assert masked.shape == original.shape == mask.shape == (8, 1, 16, 16) and int(mask.sum()) > 0
        firsts.append(next(iter(data.train_dataloader()))[0])
    assert not torch.equal(firsts[0], firsts[1])
