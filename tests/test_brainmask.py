"""Automatic brain mask from the baseline image."""

from __future__ import annotations

import numpy as np
import pytest

from perfmap.core.brainmask import auto_brain_mask
from perfmap.core.concentration import detect_baseline
from perfmap.core.phantom import make_phantom
from perfmap.errors import InputDataError, ShapeError


def _dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("shape,snr,rician", [
    ((64, 64, 12), 20.0, False), ((48, 48, 8), 10.0, True), ((32, 32, 4), 20.0, False),
])
def test_dice_against_phantom_brain(shape, snr, rician):
    ph = make_phantom(shape=shape, snr=snr, rician=rician, seed=21)
    w = detect_baseline(ph.signal[ph.masks["brain"]].mean(axis=0))
    baseline = ph.signal[..., w.start:w.stop].mean(axis=-1)
    mask = auto_brain_mask(baseline)
    assert mask.dtype == bool and mask.shape == shape
    assert _dice(mask, ph.masks["brain"]) > 0.95


def test_largest_component_and_hole_filling():
    img = np.zeros((40, 40, 3))
    img[5:30, 5:30, :] = 800.0
    img[12:20, 12:20, :] = 10.0           # dark "ventricle" inside
    img[35:38, 35:38, :] = 900.0          # a separate bright blob (eye, fat)
    mask = auto_brain_mask(img)
    assert mask[15, 15, 1] and not mask[36, 36, 1]
    expected = np.zeros_like(mask)
    expected[5:30, 5:30, :] = True
    assert _dice(mask, expected) > 0.98


def test_noise_voxels_removed_by_opening():
    rng = np.random.default_rng(2)
    img = np.abs(5.0 * rng.standard_normal((40, 40, 4)))
    img[10:30, 10:30, :] += 700.0
    img[2, 2, 1] = img[37, 5, 2] = 2000.0   # isolated bright voxels
    mask = auto_brain_mask(img)
    assert not mask[2, 2, 1] and not mask[37, 5, 2]
    assert mask[10:30, 10:30, :].mean() > 0.98


def test_input_not_modified_and_errors():
    img = np.zeros((10, 10, 2))
    with pytest.raises(InputDataError, match="constant"):
        auto_brain_mask(img)
    with pytest.raises(ShapeError):
        auto_brain_mask(np.ones((10, 10)))
    img[3:7, 3:7, :] = 100.0
    img[0, 0, 0] = np.nan
    before = img.copy()
    mask = auto_brain_mask(img)
    np.testing.assert_array_equal(img, before)
    assert not mask[0, 0, 0] and mask[4, 4, 1]
