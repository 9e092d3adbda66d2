"""Gathering voxel curves from 4D series in either memory order."""

import numpy as np
import pytest

from perfmap.pipeline.signal import voxel_curves


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_voxel_curves_equal_boolean_indexing(order, fraction):
    rng = np.random.default_rng(5)
    data = np.asarray(rng.normal(size=(7, 6, 5, 9)).astype(np.float32), order=order)
    mask = rng.random((7, 6, 5)) < fraction
    got = voxel_curves(data, mask)
    expected = data[mask]
    assert got.shape == expected.shape == (mask.sum(), 9)
    np.testing.assert_array_equal(got, expected)
    assert got.flags.c_contiguous and got.dtype == np.float32


def test_voxel_curves_from_a_fortran_view_does_not_touch_the_input():
    data = np.asfortranarray(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5))
    before = data.copy(order="K")
    mask = np.zeros((2, 3, 4), bool)
    mask[1, 2, 0] = mask[0, 0, 3] = mask[1, 0, 1] = True
    np.testing.assert_array_equal(voxel_curves(data, mask), data[mask])
    np.testing.assert_array_equal(data, before)


def test_prepared_signal_rows_follow_the_masks():
    """brain_conc and the extra (AIF) voxels are the rows of conc for their masks."""
    from perfmap.core.phantom import make_phantom
    from perfmap.io.volume import Volume4D
    from perfmap.pipeline.signal import prepare_signal, select_aif

    ph = make_phantom(shape=(24, 24, 4), snr=50.0, seed=2)
    vol = Volume4D(data=ph.signal.astype(np.float32), affine=np.eye(4),
                   frame_times=np.arange(ph.signal.shape[-1]) * ph.tr, tr=ph.tr, te=ph.te,
                   source="phantom")
    brain = ph.masks["brain"].copy()
    aif = ph.masks["aif"]
    brain[aif] = False                                  # arteries outside the brain mask
    prep = prepare_signal(vol, brain_mask=brain, extra_mask=aif)
    np.testing.assert_array_equal(prep.voxels, brain | aif)
    grid = np.full(brain.shape + (prep.conc.shape[1],), np.nan, np.float32)
    grid[prep.voxels] = prep.conc
    np.testing.assert_array_equal(grid[brain], prep.brain_conc)
    np.testing.assert_array_equal(grid[aif], prep.curves_in(aif))
    sel = select_aif(prep, aif_mask=aif)
    np.testing.assert_allclose(sel.curve, grid[aif].astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(sel.indices, np.argwhere(aif))
    with pytest.raises(ValueError, match="not prepared"):
        prep.curves_in(np.ones_like(brain))
