"""Fitting helpers shared by the kinetic models.

- :class:`ArterialInput`: the plasma AIF on the sampling grid, one curve for all
  voxels or one per voxel (a per-voxel delay);
- :func:`normal_equations`: ``r.r``, ``J^T r`` and ``J^T J`` of time-major
  residuals and Jacobian columns, the input of
  :func:`perfmap.core.lsq.batched_lm`;
- :func:`least_squares_start`: per-voxel linear least squares (the linear
  starting estimates of Murase 2004 and Flouri et al. 2016);
- :func:`fit_with_delay_grid`: the per-voxel arterial delay, by a grid search
  and a parabolic refinement (see :mod:`perfmap.kinetics.base`).

Inner products are ``einsum`` rather than BLAS calls: threaded BLAS on many
small products stalls on a busy machine.
"""

from __future__ import annotations

import numpy as np

from ..core.lsq import spd_solve
from .convolution import cumulative_integral, shift_curve


class ArterialInput:
    """The plasma AIF on the sampling grid: one curve (T,) or one per column (T, k).

    Examples
    --------
    >>> inp = ArterialInput([0.0, 2.0, 2.0], [0.0, 1.0, 2.0])
    >>> inp.shared, inp.integral.tolist()
    (True, [0.0, 1.0, 3.0])
    """

    def __init__(self, aif, times):
        self.aif = np.asarray(aif, dtype=np.float64)
        self.times = np.asarray(times, dtype=np.float64)
        self._integral = None

    @property
    def shared(self) -> bool:
        return self.aif.ndim == 1

    @property
    def integral(self) -> np.ndarray:
        """Running integral of the AIF (mM s), same shape as ``aif``."""
        if self._integral is None:
            self._integral = cumulative_integral(self.aif, self.times)
        return self._integral

    def select(self, rows: np.ndarray) -> "ArterialInput":
        """The input of the columns ``rows`` (itself when shared)."""
        if self.shared or rows.size == self.aif.shape[1]:
            return self
        sub = ArterialInput(self.aif[:, rows], self.times)
        if self._integral is not None:
            sub._integral = self._integral[:, rows]
        return sub


def normal_equations(r: np.ndarray, cols: list) -> tuple:
    """``cost = r.r``, ``grad = J^T r``, ``hess = J^T J`` per column of time-major arrays.

    Parameters
    ----------
    r : ndarray, shape (T, k)
        Residuals of ``k`` voxels.
    cols : list of ndarray, each (T, k) or (T,)
        Jacobian columns; a (T,) column is the same for every voxel.

    Returns
    -------
    cost : ndarray, shape (k,)
    grad : ndarray, shape (k, P)
    hess : ndarray, shape (k, P, P)

    Examples
    --------
    >>> import numpy as np
    >>> cost, g, H = normal_equations(np.ones((3, 1)), [np.arange(3.0)])
    >>> float(cost[0]), float(g[0, 0]), float(H[0, 0, 0])
    (3.0, 3.0, 5.0)
    """
    P, k = len(cols), r.shape[1]

    def dot(a, b):            # einsum, not BLAS: threaded BLAS stalls on busy machines
        if a.ndim == 1 and b.ndim == 1:
            return np.full(k, a @ b)
        if a.ndim == 1 or b.ndim == 1:
            v, m = (a, b) if a.ndim == 1 else (b, a)
            return np.einsum("t,tk->k", v, m)
        return np.einsum("tk,tk->k", a, b)

    g = np.empty((k, P))
    H = np.empty((k, P, P))
    for p in range(P):
        g[:, p] = dot(cols[p], r)
        for q in range(p + 1):
            H[:, p, q] = H[:, q, p] = dot(cols[p], cols[q])
    return np.einsum("tk,tk->k", r, r), g, H


def near(x, bound, lo, hi) -> np.ndarray:
    """True where ``x`` is within 1e-6 of the range ``hi - lo`` from ``bound``.

    Examples
    --------
    >>> near(0.9999999, 1.0, 0.0, 1.0), near(0.99, 1.0, 0.0, 1.0)
    (np.True_, np.False_)
    """
    return np.abs(x - bound) <= 1e-6 * (hi - lo)


def least_squares_start(columns: list, y: np.ndarray) -> np.ndarray:
    """Per-voxel linear least squares ``min |sum_p b_p X_p - y|^2``, solved in closed form.

    The columns are scaled to unit norm and a 1e-12 ridge keeps the normal
    equations positive definite.

    Parameters
    ----------
    columns : list of ndarray, each (T, k) or (T,)
        Regressors (shared ones as (T,)).
    y : ndarray, shape (T, k)
        Curves.

    Returns
    -------
    ndarray, shape (k, P)
        Coefficients; NaN where the system is singular.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(5.0)
    >>> least_squares_start([t, np.ones(5)], (2 * t + 1)[:, None]).round(9).tolist()
    [[2.0, 1.0]]
    """
    _, g, H = normal_equations(-y, columns)
    scale = np.sqrt(np.maximum(np.einsum("kii->ki", H), 1e-300))
    Hs = H / scale[:, :, None] / scale[:, None, :]
    Hs += 1e-12 * np.eye(len(columns))
    with np.errstate(all="ignore"):
        return spd_solve(Hs, -g / scale) / scale


def fit_with_delay_grid(model, y, aif, times, grid, step) -> dict:
    """Fit ``model`` with a per-voxel delay: grid search, parabolic refinement, final fit.

    Every voxel of ``y`` (T, k) is fitted (at most 30 iterations) with the AIF
    delayed by each value of ``grid`` (s); the best grid delay is refined by a
    parabola through its cost and its neighbours' (at most half a step), and
    the fit is completed at the refined and at the best grid delay, the lower
    cost winning. Returns ``x``, ``cost``, ``converged``, ``n_iter``, ``delay``
    and ``edge`` (best grid delay at an end of the grid) per voxel.
    """
    k, G, P = y.shape[1], grid.size, len(model.internal)
    shifted = shift_curve(aif, times, grid)                              # (T, G)
    res = model.solve(np.repeat(y, G, axis=1), ArterialInput(np.tile(shifted, (1, k)), times),
                      max_iter=min(model.max_iter, 30))
    cost = np.where(np.isfinite(res.cost), res.cost, np.inf).reshape(k, G)
    j = np.argmin(cost, axis=1)
    best_x = res.x.reshape(k, G, P)[np.arange(k), j]
    jm, jp = np.clip(j - 1, 0, G - 1), np.clip(j + 1, 0, G - 1)
    c0, cm, cp = (cost[np.arange(k), i] for i in (j, jm, jp))
    curv = cm - 2 * c0 + cp
    with np.errstate(all="ignore"):
        off = np.where((j > 0) & (j < G - 1) & (curv > 0) & np.isfinite(curv),
                       np.clip(0.5 * (cm - cp) / curv, -0.5, 0.5), 0.0)
    delays = np.concatenate([grid[j], grid[j] + off * step])
    fin = model.solve(np.hstack([y, y]), ArterialInput(shift_curve(aif, times, delays), times),
                      x0=np.vstack([best_x, best_x]))
    fc = np.where(fin.converged & np.isfinite(fin.cost), fin.cost, np.inf).reshape(2, k)
    pick = np.argmin(fc, axis=0) * k + np.arange(k)
    return dict(x=fin.x[pick], cost=fin.cost[pick], converged=fin.converged[pick],
                n_iter=fin.n_iter[pick] + res.n_iter.reshape(k, G).max(1),
                delay=delays[pick], edge=(j == 0) | (j == G - 1))
