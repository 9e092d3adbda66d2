"""Linear interpolation of many curves onto one new time grid (the only interpolator).

Resampling jittered frames onto a uniform grid, placing acquired curves on the
PHAE model grid and sampling simulated curves at the frame times all need
the same operation: many rows sampled at the same ``x_old`` evaluated at the
same ``x_new``. The weights are computed once (:func:`linear_weights`) and
applied to any number of rows (:func:`interpolate_rows`), so the cost is two
gathers and a blend, whatever the number of rows.
"""

from __future__ import annotations

import numpy as np


def linear_weights(x_new, x_old) -> tuple[np.ndarray, np.ndarray]:
    """Left-neighbour indices and right weights of linear interpolation.

    Parameters
    ----------
    x_new : array_like, shape (L,)
        Where to evaluate (e.g. times in s).
    x_old : array_like, shape (T,)
        Increasing sample positions, ``T >= 2``. Points outside
        ``[x_old[0], x_old[-1]]`` take the end values (as :func:`numpy.interp`).

    Returns
    -------
    i0 : ndarray of intp, shape (L,)
        Index of the left sample, in ``[0, T - 2]``.
    w : ndarray of float64, shape (L,)
        Weight of the right sample, in ``[0, 1]``.

    Examples
    --------
    >>> i0, w = linear_weights([0.5, 2.5, 9.0], [0.0, 1.0, 2.0, 3.0])
    >>> i0.tolist(), w.tolist()
    ([0, 2, 2], [0.5, 0.5, 1.0])
    """
    x_old = np.asarray(x_old, dtype=np.float64)
    if x_old.ndim != 1 or x_old.size < 2:
        raise ValueError("x_old must be 1-D with at least 2 samples")
    pos = np.interp(np.asarray(x_new, dtype=np.float64), x_old, np.arange(x_old.size))
    i0 = np.clip(np.floor(pos).astype(np.intp), 0, x_old.size - 2)
    return i0, pos - i0


def interpolate_rows(rows, i0, w) -> np.ndarray:
    """Apply :func:`linear_weights` to curves along their last axis.

    Parameters
    ----------
    rows : array_like, shape (..., T)
    i0, w : ndarray, shape (L,)
        From :func:`linear_weights`. ``w`` may be float32 to keep float32 rows
        in float32.

    Returns
    -------
    ndarray, shape (..., L)

    Examples
    --------
    >>> import numpy as np
    >>> i0, w = linear_weights([0.25, 1.5], [0.0, 1.0, 2.0])
    >>> interpolate_rows(np.array([[0.0, 4.0, 8.0]]), i0, w).tolist()
    [[1.0, 6.0]]
    """
    rows = np.asarray(rows)
    return rows[..., i0] * (1 - w) + rows[..., i0 + 1] * w
