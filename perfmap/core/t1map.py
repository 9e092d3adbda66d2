"""Variable-flip-angle (VFA) T1 and M0 mapping from SPGR images.

For flip angles ``a_i`` at one TR the SPGR signal (see :mod:`perfmap.core.spgr`)
is ``S_i = M0 sin(a_i) (1 - E1) / (1 - cos(a_i) E1)``, ``E1 = exp(-TR / T1)``.

1. **Linear (DESPOT1).** Dividing by ``sin(a_i)`` gives a straight line
   (Gupta 1977; Deoni, Rutt & Peters 2003)::

       S_i / sin(a_i) = E1 * S_i / tan(a_i) + M0 (1 - E1)

   whose slope, from an ordinary least-squares fit per voxel (closed form,
   vectorised), is ``E1``; ``T1 = -TR / ln(E1)`` and ``M0 = intercept / (1 - E1)``.
2. **Non-linear refinement.** The signal equation itself is fitted by least
   squares in ``(M0, R1 = 1/T1)``, started from step 1, with
   :func:`perfmap.core.lsq.batched_lm` on all voxels of a chunk at once and the
   analytic Jacobian::

       dS/dM0 = sin(a) (1 - E1) / (1 - cos(a) E1)
       dS/dR1 = -TR E1 * M0 sin(a) (cos(a) - 1) / (1 - cos(a) E1)^2

   with ``R1`` bounded to ``[1/t1_max, 1/t1_min]`` (so ``T1 > 0``).

A voxel whose signals are not finite, whose linear slope is not in (0, 1)
(method ``"linear"``), whose refinement does not converge or ends on a T1 bound
is NaN and counted; it is never given the starting value.

References
----------
Gupta RK. A new look at the method of variable nutation angle for the
    measurement of spin-lattice relaxation times using Fourier transform NMR.
    J Magn Reson 1977;25:231-235.
Deoni SCL, Rutt BK, Peters TM. Rapid combined T1 and T2 mapping using
    gradient recalled acquisition in the steady state. Magn Reson Med
    2003;49:515-526.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, ShapeError
from .lsq import batched_lm

METHODS = ("linear", "nonlinear")


@dataclass
class VfaFit:
    """T1 and M0 of ``n`` voxels from a VFA series.

    Attributes
    ----------
    t1 : ndarray, shape (n,), float32
        T1 in seconds; NaN where the voxel could not be fitted.
    m0 : ndarray, shape (n,), float32
        Equilibrium signal (units of the input); NaN where not fitted.
    failed : ndarray of bool, shape (n,)
        True where the voxel could not be fitted.
    info : dict
        Method, bounds and failure counts (JSON-serialisable).
    """

    t1: np.ndarray
    m0: np.ndarray
    failed: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        """Number of voxels that could not be fitted."""
        return int(np.count_nonzero(self.failed))


def despot1(signal, flip_angles_rad):
    """Closed-form DESPOT1 line fit (Deoni et al. 2003) of every row.

    Parameters
    ----------
    signal : array_like, shape (n, K)
        VFA signals.
    flip_angles_rad : array_like, shape (K,) or (n, K)
        Actual flip angles in radians.

    Returns
    -------
    e1, m0 : ndarray, shape (n,), float64
        Slope ``E1 = exp(-TR/T1)`` of ``S/sin(a)`` against ``S/tan(a)`` and
        ``M0 = intercept / (1 - E1)``; not checked (``E1`` may fall outside (0, 1)).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.deg2rad([3.0, 15.0, 35.0]); e1 = np.exp(-0.005 / 1.2)
    >>> s = 900 * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)
    >>> e, m = despot1(s[None], a)
    >>> round(float(-0.005 / np.log(e[0])), 6), round(float(m[0]), 6)
    (1.2, 900.0)
    """
    s = np.asarray(signal, dtype=np.float64)
    x = s / np.tan(flip_angles_rad)
    y = s / np.sin(flip_angles_rad)
    xm, ym = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = ((x - xm) * (y - ym)).sum(1) / ((x - xm) ** 2).sum(1)
        m0 = (ym[:, 0] - e1 * xm[:, 0]) / (1.0 - e1)
    return e1, m0


def _check(signal, flip_angles_deg, tr, b1):
    s = np.asarray(signal)
    if s.ndim != 2:
        raise ShapeError(f"VFA signal must be 2-D (voxels, flip angles), got shape {s.shape}")
    fa = np.asarray(flip_angles_deg, dtype=np.float64)
    if fa.ndim != 1 or fa.shape[0] != s.shape[1]:
        raise ShapeError(f"{s.shape[1]} signals per voxel but flip angles of shape {fa.shape}")
    if fa.size < 2 or np.unique(fa).size < 2:
        raise ParameterError("VFA T1 mapping needs at least two different flip angles")
    if np.any(~np.isfinite(fa) | (fa <= 0) | (fa >= 90)):
        raise ParameterError(f"VFA flip angles must be in (0, 90) degrees, got {fa.tolist()}")
    if not (np.isfinite(tr) and tr > 0):
        raise ParameterError(f"the repetition time must be positive (s), got {tr!r}")
    if b1 is not None:
        b1 = np.asarray(b1, dtype=np.float64)
        if b1.shape not in ((), (s.shape[0],)):
            raise ShapeError(f"b1 must be one value or one per voxel, got shape {b1.shape}")
    return s, np.deg2rad(fa), b1


def _refine(s, a, tr, e1, m0, r1_bounds, max_iter):
    """Non-linear least squares in (M0, R1); returns (m0, r1, converged)."""
    sin_a, cos_a = np.sin(a), np.cos(a)
    lo, hi = r1_bounds
    r1_0 = np.where((e1 > 0) & (e1 < 1), -np.log(np.clip(e1, 1e-300, 1.0)) / tr, np.nan)
    r1_0 = np.clip(np.nan_to_num(r1_0, nan=1.0), lo, hi)
    f0 = sin_a * (1 - np.exp(-tr * r1_0))[:, None] / (1 - cos_a * np.exp(-tr * r1_0)[:, None])
    m0_ls = (f0 * s).sum(1) / (f0 * f0).sum(1)          # M0 given R1: linear
    m0_0 = np.where(np.isfinite(m0) & (m0 > 0), m0, m0_ls)
    scale = np.maximum(np.abs(m0_0), 1e-300)

    def evaluate(x, rows):
        mm, rr = x[:, 0], x[:, 1]
        e = np.exp(-tr * rr)[:, None]
        den = 1.0 - cos_a[rows] * e
        f = sin_a[rows] * (1.0 - e) / den
        r = mm[:, None] * f - s[rows] / scale[rows, None]
        d_r1 = -tr * e * mm[:, None] * sin_a[rows] * (cos_a[rows] - 1.0) / den ** 2
        J = np.stack([f, d_r1], axis=1)                           # (k, 2, K)
        return (r * r).sum(1), (J * r[:, None]).sum(2), np.einsum("kpa,kqa->kpq", J, J)

    x0 = np.stack([m0_0 / scale, r1_0], axis=1)
    res = batched_lm(evaluate, x0, [0.0, lo], [np.inf, hi], [1.0, 1.0], max_iter=max_iter)
    return res.x[:, 0] * scale, res.x[:, 1], res.converged


def vfa_t1(signal, flip_angles_deg, tr: float, method: str = "nonlinear",
           b1=None, t1_bounds=(1e-3, 100.0), max_iter: int = 50,
           chunk_size: int = 65536) -> VfaFit:
    """T1 (s) and M0 from variable-flip-angle SPGR signals, voxel rows at once.

    Parameters
    ----------
    signal : array_like, shape (n, K)
        Signal of ``n`` voxels at ``K`` flip angles. Not modified.
    flip_angles_deg : array_like, shape (K,)
        Nominal flip angles in degrees, in (0, 90).
    tr : float
        Repetition time (s).
    method : {"nonlinear", "linear"}
        DESPOT1 line fit only, or followed by the non-linear refinement.
    b1 : float or array_like, shape (n,), optional
        Relative B1+ (actual / nominal flip angle) per voxel.
    t1_bounds : (float, float)
        T1 range in seconds; a voxel fitted at either end is failed.
    max_iter : int
        Most refinement iterations.
    chunk_size : int
        Voxels per chunk (bounds memory).

    Returns
    -------
    VfaFit

    Raises
    ------
    ShapeError
        Signal not 2-D or angles not matching its columns.
    ParameterError
        Fewer than two distinct angles, angles outside (0, 90), non-positive TR,
        bad bounds or unknown method.

    Examples
    --------
    >>> import numpy as np
    >>> from perfmap.core.spgr import spgr_signal
    >>> fa = np.array([3.0, 6.0, 9.0, 15.0, 24.0, 35.0])
    >>> s = spgr_signal(1000.0, 1 / np.array([[1.0], [1.44]]), 0.005, fa)
    >>> fit = vfa_t1(s, fa, tr=0.005)
    >>> [round(float(v), 4) for v in fit.t1], fit.n_failed
    ([1.0, 1.44], 0)
    """
    if method not in METHODS:
        raise ParameterError(f"unknown VFA method {method!r}; choose one of: {', '.join(METHODS)}")
    lo_t1, hi_t1 = (float(v) for v in t1_bounds)
    if not (0 < lo_t1 < hi_t1 and np.isfinite(hi_t1)):
        raise ParameterError(f"t1_bounds must satisfy 0 < low < high, got {t1_bounds!r}")
    if int(chunk_size) < 1:
        raise ParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    s_all, a_nom, b1 = _check(signal, flip_angles_deg, tr, b1)
    n = s_all.shape[0]
    t1 = np.full(n, np.nan, np.float32)
    m0 = np.full(n, np.nan, np.float32)
    failed = np.ones(n, bool)
    counts = {"nonfinite_input": 0, "linear_slope_outside_0_1": 0, "not_converged": 0,
              "at_t1_bound": 0}
    r1_bounds = (1.0 / hi_t1, 1.0 / lo_t1)
    for start in range(0, n, int(chunk_size)):
        stop = min(start + int(chunk_size), n)
        s = np.asarray(s_all[start:stop], dtype=np.float64)
        a = np.broadcast_to(a_nom, s.shape) * (1.0 if b1 is None else
                                                np.broadcast_to(b1, (n,))[start:stop, None])
        finite = np.all(np.isfinite(s), axis=1) & np.any(s != 0, axis=1)
        s = np.where(finite[:, None], s, 1.0)
        e1, mm = despot1(s, a)
        if method == "linear":
            ok = finite & (e1 > 0) & (e1 < 1)
            r1 = -np.log(np.where(ok, e1, 0.5)) / tr
            counts["linear_slope_outside_0_1"] += int(np.count_nonzero(finite & ~ok))
        else:
            mm, r1, conv = _refine(s, a, tr, e1, mm, r1_bounds, int(max_iter))
            at_bound = (r1 <= r1_bounds[0] * (1 + 1e-9)) | (r1 >= r1_bounds[1] * (1 - 1e-9))
            ok = finite & conv & ~at_bound
            counts["not_converged"] += int(np.count_nonzero(finite & ~conv))
            counts["at_t1_bound"] += int(np.count_nonzero(finite & conv & at_bound))
        ok &= (r1 >= r1_bounds[0]) & (r1 <= r1_bounds[1]) & np.isfinite(mm)
        counts["nonfinite_input"] += int(np.count_nonzero(~finite))
        t1[start:stop] = np.where(ok, 1.0 / r1, np.nan)
        m0[start:stop] = np.where(ok, mm, np.nan)
        failed[start:stop] = ~ok
    info = {"method": "DESPOT1" + (" + non-linear least squares" if method == "nonlinear" else ""),
            "tr_s": float(tr), "flip_angles_deg": np.asarray(flip_angles_deg, float).tolist(),
            "t1_bounds_s": [lo_t1, hi_t1], "b1_corrected": b1 is not None,
            "failures": counts, "n_failed": int(failed.sum())}
    return VfaFit(t1=t1, m0=m0, failed=failed, info=info)
