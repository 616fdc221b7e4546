"""The first-field plausibility check of prediction: a working denoiser passes, broken outputs do not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from jumpdenoise.predict.pipeline import ImplausibleOutput, check_plausible
from fixtures.plates import noisy_blobs

CHANNELS = ["DNA", "ER"]


@pytest.fixture()
def raw() -> np.ndarray:
    return noisy_blobs(2, (96, 96), seed=4)


def test_a_denoised_looking_field_passes(raw: np.ndarray) -> None:
    smooth = np.stack([gaussian_filter(raw[c].astype(np.float32), 1.5) for c in range(2)])
    check_plausible(raw, smooth, CHANNELS, np.array([raw[0].std(), raw[1].std()]), "field A01/0")
    dark = np.zeros_like(raw)  # an empty field: raw and output both at the floor
    check_plausible(dark, dark.astype(np.float32) + 0.5, CHANNELS, np.array([50.0, 50.0]), "field A01/1")


def test_an_output_far_outside_the_raw_range_names_the_channel(raw: np.ndarray) -> None:
    out = raw.astype(np.float32)
    out[1] *= 40  # e.g. damaged weights: mean 40x the raw one
    with pytest.raises(ImplausibleOutput, match=r"field A01/0, channel 'ER': the denoised mean .* far outside"):
        check_plausible(raw, out, CHANNELS, np.array([raw[0].std(), raw[1].std()]), "field A01/0")


def test_non_finite_values_name_the_channel(raw: np.ndarray) -> None:
    out = raw.astype(np.float32)
    out[0, 3, 4] = np.nan
    with pytest.raises(ImplausibleOutput, match=r"channel 'DNA': the denoised field has 1 non-finite"):
        check_plausible(raw, out, CHANNELS, np.array([1.0, 1.0]), "field A01/0")
