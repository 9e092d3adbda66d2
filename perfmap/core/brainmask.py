"""Automatic brain mask from the baseline (pre-bolus) image.

Algorithm (:func:`auto_brain_mask`):

1. Otsu's threshold (Otsu 1979) on the finite values of the baseline image;
   voxels above it are foreground.
2. Binary opening with a 3 x 3 in-plane cross (one voxel of erosion then
   dilation per slice; DSC slices are thick, so nothing is done across them):
   removes isolated bright noise voxels and thin bridges to the scalp.
3. The largest 3D connected component (26-connectivity), i.e. the head.
4. Hole filling in every slice and then in 3D (``scipy.ndimage.binary_fill_holes``):
   dark ventricles, necrotic tumour cores and flow voids lie inside the brain.

The mask is a head mask on images without fat suppression of the scalp; for
DSC EPI the scalp is usually dark and the result is close to a brain mask.

References
----------
Otsu N. A threshold selection method from gray-level histograms.
    IEEE Trans Syst Man Cybern 1979;9:62-66.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, ShapeError


def auto_brain_mask(baseline_image) -> np.ndarray:
    """Brain (head) mask of a 3D baseline image.

    Parameters
    ----------
    baseline_image : array_like, shape (X, Y, Z)
        Mean of the baseline frames; non-finite values count as background.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)

    Raises
    ------
    ShapeError
        The image is not 3D.
    InputDataError
        The image is constant or the mask comes out empty.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((20, 20, 3))
    >>> img[5:15, 4:16, :] = 800.0
    >>> int(auto_brain_mask(img).sum())  # the 10 x 12 block less its corners (opening)
    348
    """
    # Imported here: only --mask auto needs them, and they cost ~0.1 s at start-up.
    from scipy import ndimage
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    img = np.asarray(baseline_image, dtype=np.float64)
    if img.ndim != 3:
        raise ShapeError(f"the baseline image must be 3D, got shape {img.shape}")
    finite = np.isfinite(img)
    values = img[finite]
    if values.size == 0 or np.ptp(values) == 0:
        raise InputDataError("cannot compute a brain mask: the baseline image is constant")
    thr = float(threshold_otsu(values))
    fg = finite & (img > thr)
    # In-plane cross (no connection across slices).
    fg = ndimage.binary_opening(fg, structure=ndimage.generate_binary_structure(2, 1)[:, :, None])
    if not fg.any():
        raise InputDataError("the automatic brain mask is empty (no bright structure in the "
                             "baseline image); give a mask explicitly")
    lab = label(fg, connectivity=3)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    mask = lab == int(np.argmax(sizes))
    for z in range(mask.shape[2]):  # per slice, not per voxel
        mask[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    return ndimage.binary_fill_holes(mask)
