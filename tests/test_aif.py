"""Arterial input function from a mask and by automatic cluster analysis."""

from __future__ import annotations

import numpy as np
import pytest

from perfmap.core.aif import AifSelection, aif_from_mask, auto_aif
from perfmap.core.concentration import detect_baseline, dsc_concentration
from perfmap.core.phantom import make_phantom
from perfmap.errors import InputDataError, ShapeError


def _prepare(ph):
    """Concentration from the detected baseline, non-steady-state frames dropped."""
    brain = ph.masks["brain"]
    w = detect_baseline(ph.signal[brain].mean(axis=0))
    conc, invalid = dsc_concentration(ph.signal, ph.te, w)
    return conc[..., w.start:], brain & ~invalid, ph.aif[w.start:]


@pytest.fixture(scope="module")
def snr50():
    ph = make_phantom(shape=(48, 48, 8), snr=50.0, seed=11)
    return (ph,) + _prepare(ph)


def test_aif_from_mask_mean_and_nan_voxels():
    rng = np.random.default_rng(0)
    conc = rng.random((4, 3, 2, 10)).astype(np.float32)
    mask = np.zeros((4, 3, 2), bool)
    mask[0, 0, 0] = mask[1, 2, 1] = mask[3, 1, 0] = True
    conc[3, 1, 0, 4] = np.nan
    sel = aif_from_mask(conc, mask)
    assert isinstance(sel, AifSelection) and sel.method == "mask"
    assert sel.curve.dtype == np.float64 and sel.curve.shape == (10,)
    np.testing.assert_allclose(sel.curve, (conc[0, 0, 0] + conc[1, 2, 1]) / 2.0, rtol=1e-6)
    assert sel.indices.tolist() == [[0, 0, 0], [1, 2, 1]]
    assert sel.params == {"voxels_in_mask": 3, "voxels_used": 2}


def test_aif_from_mask_errors():
    conc = np.ones((4, 3, 2, 10))
    with pytest.raises(InputDataError, match="empty"):
        aif_from_mask(conc, np.zeros((4, 3, 2), bool))
    mask = np.zeros((4, 3, 2), bool)
    mask[1, 1, 1] = True
    conc[1, 1, 1, 0] = np.inf
    with pytest.raises(InputDataError, match="no usable voxel"):
        aif_from_mask(conc, mask)
    with pytest.raises(ShapeError):
        aif_from_mask(conc, np.ones((4, 3, 3), bool))


def test_aif_from_phantom_mask_matches_truth(snr50):
    ph, conc, brain, aif = snr50
    sel = aif_from_mask(conc, ph.masks["aif"])
    assert sel.n_voxels == int(ph.masks["aif"].sum())
    assert np.corrcoef(sel.curve, aif)[0, 1] > 0.999
    assert abs(sel.curve.max() / aif.max() - 1.0) < 0.05


def test_auto_aif_finds_the_artery(snr50):
    ph, conc, brain, aif = snr50
    sel = auto_aif(conc, brain, ph.tr)
    assert sel.method == "auto"
    inside = ph.masks["aif"][tuple(sel.indices.T)]
    assert inside.mean() >= 0.8
    assert 3 <= sel.n_voxels <= 40
    assert np.corrcoef(sel.curve, aif)[0, 1] > 0.99
    counts = sel.params["counts"]
    assert counts["brain"] >= counts["auc"] >= counts["roughness"] >= counts["selected"]
    assert counts["selected"] == sel.n_voxels
    area = np.trapezoid(conc[brain], dx=ph.tr, axis=-1)
    assert counts["auc"] == pytest.approx(0.10 * np.count_nonzero(area > 0), abs=2)
    assert sel.params["rounds"] and sel.params["method"] == "Mouridsen 2006"


def test_auto_aif_is_deterministic(snr50):
    ph, conc, brain, aif = snr50
    a = auto_aif(conc, brain, ph.tr, seed=3)
    b = auto_aif(conc.copy(), brain.copy(), ph.tr, seed=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.curve, b.curve)
    assert a.params == b.params


@pytest.mark.parametrize("snr,seed", [(None, 12), (20.0, 13)])
def test_auto_aif_other_noise_levels(snr, seed):
    ph = make_phantom(shape=(32, 32, 6), snr=snr, seed=seed)
    conc, brain, aif = _prepare(ph)
    sel = auto_aif(conc, brain, ph.tr)
    assert ph.masks["aif"][tuple(sel.indices.T)].mean() >= 0.8
    assert np.corrcoef(sel.curve, aif)[0, 1] > (0.9999 if snr is None else 0.98)


def test_auto_aif_refuses_brain_without_artery(snr50):
    ph, conc, brain, aif = snr50
    with pytest.raises(InputDataError, match="no plausible arterial voxel"):
        auto_aif(conc, brain & ~ph.masks["aif"], ph.tr)


def test_auto_aif_bad_inputs(snr50):
    ph, conc, brain, aif = snr50
    with pytest.raises(ShapeError):
        auto_aif(conc[..., 0], brain, ph.tr)
    with pytest.raises(InputDataError, match="finite"):
        auto_aif(np.full_like(conc, np.nan), brain, ph.tr)


def test_auto_aif_on_gathered_rows_matches_the_volume_and_any_float_type(snr50):
    """The pipeline passes the brain's rows (float32) instead of a 4D grid: same voxels."""
    from perfmap.core.aif import auto_aif_from_curves

    ph, conc, brain, aif = snr50
    ref = auto_aif(conc, brain, ph.tr)
    rows = conc[brain]
    for dtype in (np.float64, np.float32):
        sel = auto_aif_from_curves(rows.astype(dtype), np.argwhere(brain), ph.tr)
        np.testing.assert_array_equal(sel.indices, ref.indices)
        np.testing.assert_allclose(sel.curve, ref.curve, rtol=1e-6)
        assert sel.params["counts"] == ref.params["counts"]
    with pytest.raises(ValueError, match="indices"):
        auto_aif_from_curves(rows, np.argwhere(brain)[:-1], ph.tr)
