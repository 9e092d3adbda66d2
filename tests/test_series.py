"""Gathering voxel curves from 4D series in either memory order (perfmap.core.series)."""

import numpy as np
import pytest

from perfmap.core.series import voxel_curves


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
