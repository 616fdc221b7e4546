"""PlateLayout helpers and the local executor (failures isolated, results in order)."""

from __future__ import annotations

import os

import pytest

from jumpdenoise.executors.local import LocalExecutor
from jumpdenoise.io.layout import Channel, FieldLayout, PlaneRef, PlateLayout, WellLayout, row_letter, split_well, well_id
from jumpdenoise.stages.base import Unit


def test_well_ids() -> None:
    assert well_id("A", 1) == "A01"
    assert split_well("p24") == ("P", 24)
    assert split_well("AF48") == ("AF", 48)
    assert row_letter(16) == "P" and row_letter(27) == "AA" and row_letter(32) == "AF"
    with pytest.raises(ValueError, match="not a well id"):
        split_well("1A")


def _layout() -> PlateLayout:
    planes = {"DNA": PlaneRef(path="/x/a.tif"), "ER": PlaneRef(path="/x/b.tif")}
    return PlateLayout(
        name="P", source_kind="phenix", source_path="/x", n_rows=16, n_columns=24,
        channels=[Channel(name="DNA", source_id="5"), Channel(name="ER", source_id="4")],
        wells=[WellLayout(row="B", column=3, fields=[FieldLayout(index=0, site=1, planes=planes)])],
        shape=(10, 12), dtype="uint16",
    )


def test_layout_round_trip(tmp_path) -> None:
    lay = _layout()
    lay.save(tmp_path / "l.json")
    back = PlateLayout.load(tmp_path / "l.json")
    assert back == lay
    assert [(w.id, f.site, ch, r.path) for w, f in back.iter_fields() for ch, r in f.planes.items()] == \
        [("B03", 1, "DNA", "/x/a.tif"), ("B03", 1, "ER", "/x/b.tif")]
    assert back.well("B03").id == "B03" and back.n_images() == 2


def test_duplicate_channel_names_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate channel names"):
        PlateLayout(
            name="P", source_kind="x", source_path="/", n_rows=1, n_columns=1,
            channels=[Channel(name="DNA", source_id="1"), Channel(name="DNA", source_id="2")],
            wells=[], shape=(1, 1), dtype="uint8",
        )


def _work(unit: Unit) -> dict:
    if unit.key == "bad":
        raise ValueError("unit bad broke")
    return {"key": unit.key, "pid": os.getpid()}


@pytest.mark.parametrize("workers", [1, 2])
def test_local_executor_isolates_failures(workers: int) -> None:
    units = [Unit(stage="t", key=k, items=[k]) for k in ("a", "bad", "c")]
    out = LocalExecutor(workers).map(_work, units, label="t")
    assert [o.key for o in out] == ["a", "bad", "c"]
    assert [o.ok for o in out] == [True, False, True]
    assert "unit bad broke" in out[1].error
    assert out[0].value["key"] == "a" and out[2].value["key"] == "c"
    if workers == 2:
        assert out[0].value["pid"] != os.getpid()
