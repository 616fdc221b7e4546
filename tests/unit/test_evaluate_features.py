"""Segmentation, segmentation agreement and per-object features of ``jumpdenoise.evaluate``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from jumpdenoise.config.evaluate import EvaluateConfig
from jumpdenoise.evaluate.features import measure_field, scale_pixels
from jumpdenoise.evaluate.segment import f1_score, match_counts, segment_field


def _cells_field(seed: int = 0, size: int = 128) -> tuple[np.ndarray, int]:
    """(DNA, AGP) field of separated round nuclei in cells with bright borders, and the number of nuclei."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size))
    centres = [(y, x) for y in range(20, size - 10, 36) for x in range(20, size - 10, 36)]
    dna = np.zeros((size, size), np.float32)
    for cy, cx in centres:
        dna[(yy - cy) ** 2 + (xx - cx) ** 2 < 8 ** 2] = 3000
    cells_lab = np.zeros((size, size), np.int32)
    for k, (cy, cx) in enumerate(centres, 1):
        cells_lab[(yy - cy) ** 2 + (xx - cx) ** 2 < 16 ** 2] = k
    border = ndi.morphological_gradient(cells_lab, size=3) > 0
    agp = np.where(cells_lab > 0, 800, 0) + border * 3000.0
    field = np.stack([dna, agp]).astype(np.float32) + 300
    field += rng.normal(0, 20, field.shape).astype(np.float32)
    return ndi.gaussian_filter(field, (0, 1, 1)), len(centres)


def test_classical_segmentation_finds_every_nucleus_and_grows_one_cell_per_nucleus() -> None:
    field, n = _cells_field()
    nuclei, cells = segment_field(field[0], field[1])
    assert nuclei.max() == n
    assert set(np.unique(cells)) - {0} == set(range(1, n + 1))
    assert np.all(cells[nuclei > 0] == nuclei[nuclei > 0])  # cell k holds nucleus k
    assert (cells > 0).sum() > 2 * (nuclei > 0).sum()


def test_touching_cells_meet_on_the_bright_membrane_between_them() -> None:
    """A 3 x 3 tessellation of square cells (dim cytoplasm, bright borders) on a dark background:
    every grown cell is its square."""
    side, margin = 40, 12
    size = 3 * side + 2 * margin
    yy, xx = np.indices((size, size)) - margin
    inside = (yy >= 0) & (yy < 3 * side) & (xx >= 0) & (xx < 3 * side)
    truth = np.where(inside, (yy // side) * 3 + xx // side + 1, 0)
    dna = np.zeros((size, size), np.float32)
    for k in range(9):
        cy, cx = (k // 3) * side + side // 2 + (k % 2) * 4, (k % 3) * side + side // 2 - (k % 3) * 3
        dna[(yy - cy) ** 2 + (xx - cx) ** 2 < 7 ** 2] = 3000
    border = (ndi.morphological_gradient(truth, size=3) > 0) & inside
    agp = inside * 800.0 + border * 3000.0 - (dna > 0) * 400.0
    rng = np.random.default_rng(1)
    field = np.stack([dna, agp]).astype(np.float32) + 300 + rng.normal(0, 20, (2, size, size)).astype(np.float32)
    nuclei, cells = segment_field(field[0], field[1])
    assert nuclei.max() == 9
    assert match_counts(truth, cells) == {"n_reference": 9, "n_predicted": 9, "matched": 9}
    centre = truth == 5  # membranes on every side
    label = np.bincount(cells[centre]).argmax()
    assert (cells[centre] == label).mean() > 0.9 and (cells == label).sum() <= centre.sum()


def test_match_counts_and_f1_at_iou_half() -> None:
    ref = np.zeros((40, 40), np.int32)
    ref[2:12, 2:12], ref[20:30, 20:30], ref[2:8, 30:36] = 1, 2, 3
    pred = np.zeros_like(ref)
    pred[3:13, 2:12] = 5          # IoU 90/110 > 0.5 with object 1
    pred[20:30, 26:36] = 7        # IoU 40/160 < 0.5 with object 2
    counts = match_counts(ref, pred, 0.5)
    assert counts == {"n_reference": 3, "n_predicted": 2, "matched": 1}
    assert f1_score(counts) == pytest.approx(2 / 5)
    assert f1_score(match_counts(ref, ref)) == 1.0


def test_features_equal_cp_measure_called_directly() -> None:
    from cp_measure.featurizer import featurize, make_featurizer_config

    field, _ = _cells_field(seed=1)
    nuclei, cells = segment_field(field[0], field[1])
    channels = ["DNA", "AGP"]
    table = measure_field(field, nuclei, cells, channels, ["intensity", "texture"], divisors=[4000.0, 5000.0])
    image = np.clip(field / np.array([4000.0, 5000.0], np.float32)[:, None, None], 0, 1)[None].astype(np.float32)
    masks = np.stack([nuclei, cells])[None]
    for family in ("intensity", "texture"):
        flags = {k: k == family for k in ("intensity", "texture", "granularity", "radial_distribution",
                                          "radial_zernikes", "sizeshape", "zernike", "feret", "correlation_pearson",
                                          "correlation_costes", "correlation_manders_fold", "correlation_rwc")}
        data, columns, rows = featurize(image, masks, make_featurizer_config(channels, objects=["nuclei", "cells"],
                                                                             **flags))
        assert [(r[1], int(r[2])) for r in rows] == list(zip(table.object, table.label))
        ours = table[[f"{family}:{c}" for c in columns]].to_numpy()
        np.testing.assert_array_equal(ours, data)
    assert "intensity:Intensity_MeanIntensity__DNA" in table.columns


def test_scale_pixels_clips_to_unit_range_per_channel() -> None:
    pixels = np.array([[[-5.0, 50.0, 500.0]], [[10.0, 20.0, 40.0]]], np.float32)
    out = scale_pixels(pixels, [100.0, 20.0])
    np.testing.assert_allclose(out, [[[0.0, 0.5, 1.0]], [[0.5, 1.0, 1.0]]])


def test_config_rejects_an_empty_family_list_and_unknown_keys() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least one feature family"):
        EvaluateConfig(families=[])
    with pytest.raises(ValidationError):
        EvaluateConfig(nuclei="DNA")


def test_summary_names_the_family_denoising_hurts_and_moves_most() -> None:
    import pandas as pd

    from jumpdenoise.evaluate.report import render_markdown, summarise

    rng = np.random.default_rng(0)
    n = 40
    intensity, texture = "intensity:MeanIntensity__DNA", "texture:Contrast_3_00_256__DNA"
    truth = {intensity: rng.uniform(1, 2, n), texture: rng.uniform(1, 2, n)}
    noise = {k: rng.normal(0, 0.01, n) for k in truth}
    versions = {
        "truth": truth,
        "raw": {k: v + noise[k] for k, v in truth.items()},
        # denoised: texture ten times cleaner than raw, intensity 10 % too bright and noisier
        "denoised": {intensity: truth[intensity] * 1.1 + rng.normal(0, 0.05, n),
                     texture: truth[texture] + noise[texture] / 10},
    }
    rows = [pd.DataFrame({"version": name, "well": "A01", "field": 0, "object": "nuclei",
                          "label": np.arange(1, n + 1), **columns}) for name, columns in versions.items()]
    result = summarise(pd.concat(rows, ignore_index=True), [])
    moved = result["summary"]["families_moved"]
    assert moved["hurt"] == ["intensity"]
    assert moved["by_family"]["texture"] > 0 > moved["by_family"]["intensity"]
    assert next(iter(moved["shift_by_family"])) == "intensity"
    assert moved["shift_by_family"]["intensity"] == pytest.approx(0.1, abs=0.03)
    assert "Denoising lowers the correlation with the truth for: intensity (" in render_markdown(result, {})
