"""Overlapping cubic patches of a 4D series: where they go, and moving data in and out.

A patch is a box of ``p = (px, py, pz)`` voxels (odd sizes) at a start corner
``(sx, sy, sz)``; its ``N = px * py * pz`` voxels and ``T`` frames form an
``N x T`` matrix. Along each axis of size ``S`` the starts form a grid from 0
to ``S - p`` whose spacing is at most ``step`` (:func:`axis_starts`); every
start of the full grid is used when ``step = 1``, as in DIPY's ``genpca``.

Which patches are computed (:func:`select_patches`): each grid start owns the
voxels nearer to its patch centre than to the neighbouring centres (both
when equidistant; the first and last also own the image border). A patch is
computed when the box it owns holds a mask voxel. With ``step = 1`` that is
every patch centred on a mask voxel (DIPY's rule) plus, for mask voxels
within ``(p - 1) / 2`` of the image border, the patch against that border,
so every mask voxel is covered. The rule is symmetric, so flipping the
image flips the set of patches. Owned boxes lie inside their patch when
``step <= p - 1``, which guarantees that coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ParameterError


def axis_starts(size: int, p: int, step: int) -> np.ndarray:
    """Patch starts along one axis: 0 ... ``size - p``, spacing at most ``step``.

    The grid is symmetric (``g`` and ``size - p - g`` are both starts), so a
    flipped image gets the mirrored grid.

    Parameters
    ----------
    size : int
        Number of voxels along the axis.
    p : int
        Patch size along the axis (``1 <= p <= size``).
    step : int
        Largest spacing between consecutive starts (voxels, >= 1).

    Returns
    -------
    ndarray of int64
        Sorted, unique patch starts.

    Examples
    --------
    >>> axis_starts(9, 5, 1).tolist()
    [0, 1, 2, 3, 4]
    >>> axis_starts(12, 5, 2).tolist()
    [0, 2, 3, 4, 5, 7]
    """
    last = size - p
    if last <= 0:
        return np.zeros(1, np.int64)
    n = -(-last // step) + 1
    pos = np.linspace(0.0, last, n)
    half = np.floor(pos[: (n + 1) // 2] + 0.5).astype(np.int64)
    return np.unique(np.concatenate([half, last - half]))


def _owned(starts: np.ndarray, size: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive first and last voxel owned by each start (see the module docstring)."""
    centre2 = 2 * starts + (p - 1)              # twice the patch centres
    mid4 = centre2[:-1] + centre2[1:]           # four times the midpoints
    lo = np.concatenate([[0], (mid4 + 3) // 4])     # ceil(midpoint)
    hi = np.concatenate([mid4 // 4, [size - 1]])    # floor(midpoint)
    return lo, hi


def select_patches(mask: np.ndarray, patch, step) -> np.ndarray:
    """Start corners of the patches that cover ``mask``.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels to denoise.
    patch : tuple of 3 int
        Patch size per axis (odd, at most the image size).
    step : tuple of 3 int
        Largest spacing of the patch grid per axis (``1 <= step <= max(1, p - 1)``).

    Returns
    -------
    ndarray of int64, shape (n_patches, 3)
        Start corners in C order (x slowest), every mask voxel in at least one patch.

    Examples
    --------
    >>> m = np.zeros((7, 7, 1), bool); m[3, 3, 0] = True
    >>> select_patches(m, (3, 3, 1), (1, 1, 1)).tolist()
    [[2, 2, 0]]
    """
    grids, boxes = [], []
    for size, p, s in zip(mask.shape, patch, step):
        g = axis_starts(size, p, s)
        grids.append(g)
        boxes.append(_owned(g, size, p))
    # Summed-area table: voxel count of the mask in any box, for all boxes at once.
    sat = np.zeros(tuple(n + 1 for n in mask.shape), np.int64)
    sat[1:, 1:, 1:] = mask.cumsum(0, dtype=np.int64).cumsum(1).cumsum(2)
    (lx, hx), (ly, hy), (lz, hz) = boxes
    count = np.zeros((lx.size, ly.size, lz.size), np.int64)
    for sign, ix, iy, iz in ((1, hx + 1, hy + 1, hz + 1), (-1, lx, hy + 1, hz + 1),
                             (-1, hx + 1, ly, hz + 1), (-1, hx + 1, hy + 1, lz),
                             (1, lx, ly, hz + 1), (1, lx, hy + 1, lz), (1, hx + 1, ly, lz),
                             (-1, lx, ly, lz)):
        count += sign * sat[np.ix_(ix, iy, iz)]
    kx, ky, kz = np.nonzero(count > 0)
    return np.stack([grids[0][kx], grids[1][ky], grids[2][kz]], axis=1)


def auto_patch(shape, n_frames: int, base: int = 5) -> tuple[int, int, int]:
    """Default patch size: a ``base`` cube grown until ``N - 1 >= T`` (odd sides, inside the image).

    Veraart et al. (2016) advise at least as many patch voxels as frames so
    that the noise eigenvalues fill the Marchenko-Pastur bulk; with the mean
    removed a patch has ``N - 1`` degrees of freedom. Sides are clipped to the
    largest odd number that fits the image; a thin axis is compensated by the
    others.

    Examples
    --------
    >>> auto_patch((64, 64, 20), 60)
    (5, 5, 5)
    >>> auto_patch((64, 64, 20), 200)
    (7, 7, 7)
    >>> auto_patch((64, 64, 1), 60)
    (9, 9, 1)
    """
    fit = [s if s % 2 else s - 1 for s in shape]
    side = base
    while True:
        p = tuple(min(side, f) for f in fit)
        if int(np.prod(p)) - 1 >= n_frames or p == tuple(fit):
            return p
        side += 2


def check_patch(patch, shape) -> tuple[int, int, int]:
    """Validate a patch size (int or 3 ints, odd, inside the image); return 3 ints.

    Raises
    ------
    ParameterError
        Not one or three odd positive integers, fewer than 2 voxels, or larger
        than the image.

    Examples
    --------
    >>> check_patch(5, (64, 64, 20))
    (5, 5, 5)
    >>> check_patch((7, 7, 3), (64, 64, 2))
    Traceback (most recent call last):
    ...
    perfmap.errors.ParameterError: patch 7x7x3 is larger than the image 64x64x2
    """
    sizes = (patch,) * 3 if np.isscalar(patch) else tuple(patch)
    try:
        sizes = tuple(int(s) for s in sizes)
    except (TypeError, ValueError):
        raise ParameterError(f"patch must be an odd integer or three, got {patch!r}") from None
    if len(sizes) != 3 or any(s < 1 or s % 2 == 0 for s in sizes):
        raise ParameterError(f"patch must be one or three odd positive integers, got {patch!r}")
    if any(s > n for s, n in zip(sizes, shape)):
        raise ParameterError(f"patch {'x'.join(map(str, sizes))} is larger than the image "
                             f"{'x'.join(map(str, shape))}")
    if int(np.prod(sizes)) < 2:
        raise ParameterError("a patch needs at least 2 voxels")
    return sizes


def check_step(step, patch) -> tuple[int, int, int]:
    """Validate the grid spacing against the patch; return it per axis.

    ``1 <= step <= p - 1`` must hold on every axis with ``p > 1`` (see the
    module docstring); axes with ``p = 1`` get step 1.

    Examples
    --------
    >>> check_step(2, (5, 5, 1))
    (2, 2, 1)
    """
    try:
        s = int(step)
    except (TypeError, ValueError):
        raise ParameterError(f"step must be a positive integer, got {step!r}") from None
    if s != step or s < 1:
        raise ParameterError(f"step must be a positive integer, got {step!r}")
    limit = min((p - 1 for p in patch if p > 1), default=1)
    if s > limit:
        raise ParameterError(f"step {s} leaves voxels uncovered by patches of "
                             f"{'x'.join(map(str, patch))}; use at most {limit}")
    return tuple(min(s, max(1, p - 1)) for p in patch)


@dataclass
class PatchIndex:
    """Flat row indices of every patch voxel in an ``(X*Y*Z, T)`` view of the series.

    ``rows(starts)`` gives, for patches at ``starts`` (n, 3), an ``(n, N)``
    array of rows; ``offsets`` (N,) are those of the voxels of a patch
    relative to its start corner (x slowest).

    Examples
    --------
    >>> idx = PatchIndex((4, 4, 4), (3, 3, 3))
    >>> idx.rows(np.array([[0, 0, 0], [1, 1, 1]]))[:, :3].tolist()
    [[0, 1, 2], [21, 22, 23]]
    """

    shape: tuple
    patch: tuple

    def __post_init__(self):
        X, Y, Z = self.shape
        self.strides = np.array([Y * Z, Z, 1], np.int64)
        px, py, pz = self.patch
        grid = np.meshgrid(np.arange(px), np.arange(py), np.arange(pz), indexing="ij")
        self.offsets = sum(g.ravel() * s for g, s in zip(grid, self.strides)).astype(np.int64)

    def base(self, starts: np.ndarray) -> np.ndarray:
        """Flat index of each start corner, shape (n,)."""
        return starts @ self.strides

    def rows(self, starts: np.ndarray) -> np.ndarray:
        """Flat index of every voxel of each patch, shape (n, N)."""
        return self.base(starts)[:, None] + self.offsets[None, :]
