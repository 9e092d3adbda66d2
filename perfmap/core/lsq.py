"""Batched, bounded Levenberg-Marquardt: many small least-squares problems at once.

Every voxel is an independent problem ``min_x sum_t r_t(x)^2`` with a few
parameters (2 to 5) and box bounds. :func:`batched_lm` advances all voxels of a
chunk together, one Marquardt step per iteration, so the Python loop runs over
iterations, never over voxels. The caller supplies the normal equations
(``cost = r.r``, ``grad = J^T r``, ``hess = J^T J``) from an analytic Jacobian,
which keeps this module independent of the models and of the memory layout of
their curves.

The step is Marquardt's scaled one (Marquardt 1963; More 1978)::

    (H + lambda * diag(H)) delta = -g

in variables scaled by ``x_scale``, restricted to the parameters that are not
held at a bound by the gradient (a projected, active-set variant, as in
Kanzow, Yamashita & Fukushima 2004), and followed by a projection onto the box.
A step is accepted when the cost decreases, and ``lambda`` follows the gain
ratio ``rho`` (actual over predicted reduction) as in Nielsen (1999):
``lambda *= max(1/3, 1 - (2 rho - 1)^3)`` on success, ``lambda *= nu, nu *= 2``
on failure.

A voxel has *converged* when an accepted step reduces the cost by less than
``ftol`` relative, or a step (accepted or not) changes no parameter by more than
``xtol * (|x| + x_scale)``, or the scaled projected gradient is below ``gtol``
relative to the cost (``|g_p x_scale_p| <= gtol * cost``: a step of one
``x_scale`` would change the cost by less than that fraction). A voxel that has
not converged after ``max_iter`` iterations, or whose cost is not finite, is
reported as not converged; callers must not use its parameters.

References
----------
Marquardt DW. An algorithm for least-squares estimation of nonlinear
    parameters. J Soc Ind Appl Math 1963;11:431-441.
More JJ. The Levenberg-Marquardt algorithm: implementation and theory.
    Lecture Notes in Mathematics 630, Springer 1978:105-116.
Nielsen HB. Damping parameter in Marquardt's method. Technical report
    IMM-REP-1999-05, Technical University of Denmark, 1999.
Kanzow C, Yamashita N, Fukushima M. Levenberg-Marquardt methods with strong
    local convergence properties for solving nonlinear equations with convex
    constraints. J Comput Appl Math 2004;172:375-397.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import ParameterError, ShapeError

#: ``evaluate(x (k, P), rows (k,)) -> (cost (k,), grad (k, P), hess (k, P, P))``
Evaluate = Callable[[np.ndarray, np.ndarray], tuple]


@dataclass
class LMResult:
    """Outcome of :func:`batched_lm` for ``m`` problems of ``P`` parameters.

    Attributes
    ----------
    x : ndarray, shape (m, P), float64
        Final parameters (within the bounds).
    cost : ndarray, shape (m,)
        Final sum of squared residuals.
    converged : ndarray of bool, shape (m,)
        True where a convergence test was met with a finite cost.
    n_iter : ndarray of int, shape (m,)
        Iterations each problem took.
    """

    x: np.ndarray
    cost: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray


def _check_bounds(x0, lower, upper, x_scale):
    x0 = np.array(x0, dtype=np.float64, ndmin=2)
    P = x0.shape[1]
    lo = np.broadcast_to(np.asarray(lower, np.float64), (P,))
    hi = np.broadcast_to(np.asarray(upper, np.float64), (P,))
    sc = np.broadcast_to(np.asarray(x_scale, np.float64), (P,))
    if x0.ndim != 2:
        raise ShapeError(f"x0 must be 2-D (problems, parameters), got shape {x0.shape}")
    if not np.all(lo < hi):
        raise ParameterError(f"every lower bound must be below its upper bound: {lo} vs {hi}")
    if not np.all(sc > 0):
        raise ParameterError(f"x_scale must be positive, got {sc}")
    return np.clip(x0, lo, hi), lo, hi, sc


def _step(g, H, lam, x, lo, hi, sc):
    """Scaled, projected Marquardt step for a batch; returns delta (k, P)."""
    k, P = g.shape
    gs = g * sc
    Hs = H * sc[:, None] * sc[None, :]
    # parameters held at a bound by the gradient do not move
    held = ((x <= lo) & (gs > 0)) | ((x >= hi) & (gs < 0))
    d = np.einsum("kii->ki", Hs).copy()
    floor = 1e-12 * d.max(axis=1, keepdims=True) + 1e-300
    d = np.maximum(d, floor)
    A = Hs + (lam[:, None] * d)[:, :, None] * np.eye(P)
    b = -gs
    if held.any():
        free = ~held
        A = A * (free[:, :, None] & free[:, None, :]) + held[:, :, None] * np.eye(P)
        b = np.where(held, 0.0, b)
    delta = spd_solve(A, b)
    return delta * sc, held


def spd_solve(A, b):
    """Solve many small symmetric positive-definite systems ``A x = b`` at once.

    Vectorised Cholesky factorisation over the batch (loops over the matrix
    size only), free of per-matrix LAPACK calls. ``A`` (k, P, P), ``b`` (k, P).
    A matrix that is not numerically positive definite gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[[4.0, 2.0], [2.0, 3.0]]]); b = np.array([[2.0, 1.0]])
    >>> spd_solve(A, b).round(6).tolist()
    [[0.5, 0.0]]
    """
    k, P = b.shape
    L = np.zeros_like(A)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(P):
            d = A[:, j, j] - np.einsum("kq,kq->k", L[:, j, :j], L[:, j, :j])
            L[:, j, j] = np.sqrt(np.where(d > 0, d, np.nan))
            for i in range(j + 1, P):
                L[:, i, j] = (A[:, i, j] - np.einsum("kq,kq->k", L[:, i, :j], L[:, j, :j])) / L[:, j, j]
        z = np.empty_like(b)
        for i in range(P):
            z[:, i] = (b[:, i] - np.einsum("kq,kq->k", L[:, i, :i], z[:, :i])) / L[:, i, i]
        x = np.empty_like(b)
        for i in reversed(range(P)):
            x[:, i] = (z[:, i] - np.einsum("kq,kq->k", L[:, i + 1:, i], x[:, i + 1:])) / L[:, i, i]
    return x


def batched_lm(evaluate: Evaluate, x0, lower, upper, x_scale, max_iter: int = 100,
               ftol: float = 1e-9, xtol: float = 1e-7, gtol: float = 1e-8, lam0: float = 1e-3,
               project: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> LMResult:
    """Minimise ``m`` independent bounded least-squares problems together.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(x, rows)`` with ``x`` of shape (k, P) and ``rows`` the
        indices (into ``x0``) of those k problems; returns ``cost`` (k,) = sum
        of squared residuals, ``grad`` (k, P) = J^T r and ``hess`` (k, P, P) =
        J^T J from the analytic Jacobian ``J`` of the residuals ``r``.
    x0 : array_like, shape (m, P)
        Starting points (clipped into the bounds).
    lower, upper : array_like, shape (P,)
        Box bounds (``lower < upper``); may be +-inf.
    x_scale : array_like, shape (P,)
        Typical magnitude of each parameter: scales the step and the
        ``xtol``/``gtol`` tests.
    max_iter : int
        Most iterations per problem.
    ftol, xtol, gtol : float
        Relative cost-reduction, step and gradient tolerances.
    lam0 : float
        Initial damping.
    project : callable, optional
        Maps a trial ``x`` (k, P) onto a feasible set inside the box; applied
        after clipping.

    Returns
    -------
    LMResult

    Examples
    --------
    Fit ``y = a exp(-b t)`` to two noise-free curves at once:

    >>> import numpy as np
    >>> t = np.linspace(0, 4, 20)
    >>> truth = np.array([[2.0, 0.5], [1.0, 1.5]])
    >>> y = truth[:, :1] * np.exp(-truth[:, 1:] * t)
    >>> def evaluate(x, rows):
    ...     e = np.exp(-x[:, 1:] * t)
    ...     r = x[:, :1] * e - y[rows]
    ...     J = np.stack([e, -x[:, :1] * t * e], axis=1)      # (k, P, T)
    ...     return (r * r).sum(1), (J * r[:, None]).sum(2), J @ J.transpose(0, 2, 1)
    >>> res = batched_lm(evaluate, [[1, 1], [1, 1]], [0, 0], [10, 10], [1, 1])
    >>> bool(res.converged.all()), np.round(res.x, 6).tolist()
    (True, [[2.0, 0.5], [1.0, 1.5]])
    """
    if int(max_iter) < 1:
        raise ParameterError(f"max_iter must be a positive integer, got {max_iter!r}")
    x, lo, hi, sc = _check_bounds(x0, lower, upper, x_scale)
    if project is not None:
        x = project(x)
    m, P = x.shape
    cost, g, H = (np.array(a, dtype=np.float64) for a in evaluate(x, np.arange(m)))
    lam = np.full(m, float(lam0))
    nu = np.full(m, 2.0)
    n_iter = np.zeros(m, np.int64)
    ok = _finite(cost, g, H)
    converged = np.zeros(m, bool)
    running = ok.copy()
    for _ in range(int(max_iter)):
        idx = np.flatnonzero(running)
        if idx.size == 0:
            break
        xi, gi, Hi, ci = x[idx], g[idx], H[idx], cost[idx]
        delta, held = _step(gi, Hi, lam[idx], xi, lo, hi, sc)
        x_new = np.clip(xi + delta, lo, hi)
        if project is not None:
            x_new = project(x_new)
        step = x_new - xi
        c_new, g_new, H_new = evaluate(x_new, idx)
        better = _finite(c_new, g_new, H_new) & (c_new < ci)
        predicted = -(2 * np.einsum("kp,kp->k", gi, step)
                      + np.einsum("kp,kpq,kq->k", step, Hi, step))
        with np.errstate(all="ignore"):
            rho = np.where(predicted > 0, (ci - c_new) / predicted, 0.0)
        small_step = np.all(np.abs(step) <= xtol * (np.abs(xi) + sc), axis=1)
        small_red = better & (ci - c_new <= ftol * ci)
        flat = np.all(held | (np.abs(gi * sc) <= gtol * ci[:, None]), axis=1)
        acc = idx[better]
        x[acc], cost[acc], g[acc], H[acc] = x_new[better], c_new[better], g_new[better], H_new[better]
        shrink = np.maximum(1 / 3, 1 - (2 * np.clip(rho, 0, 1) - 1) ** 3)
        lam[idx] = np.clip(np.where(better, lam[idx] * shrink, lam[idx] * nu[idx]), 1e-15, 1e16)
        nu[idx] = np.where(better, 2.0, np.minimum(nu[idx] * 2, 1e6))
        n_iter[idx] += 1
        done = small_step | small_red | flat | (cost[idx] == 0)
        converged[idx[done]] = True
        running[idx[done]] = False
    converged &= ok
    return LMResult(x=x, cost=cost, converged=converged, n_iter=n_iter)


def _finite(cost, g, H):
    return np.isfinite(cost) & np.all(np.isfinite(g), 1) & np.all(np.isfinite(H), (1, 2))
