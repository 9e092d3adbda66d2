"""Contrast-agent leakage correction of DSC dR2* curves (BSW and bidirectional).

**Boxerman-Schmainda-Weisskoff (BSW)** (Weisskoff et al. 1994; Boxerman et
al. 2006, AJNR 27:859; DESIGN section 4): each voxel's curve is modelled as a
multiple of the mean curve of non-enhancing brain, ``ref``, minus a leakage
term proportional to its running integral::

    dR2*(t) = K1 * ref(t) - K2 * integral_0^t ref(tau) dtau

K1 (dimensionless) and K2 (1/s) are found per voxel by linear least squares
(the 2 x 2 normal equations, shared by every voxel, applied to all rows at
once), and the corrected curve is::

    dR2*_corr(t) = dR2*(t) + K2 * integral_0^t ref(tau) dtau

T1-dominant leakage (signal rises above baseline: single-echo GE-EPI with a
large flip angle) lowers dR2*, so ``K2 > 0``; T2*-dominant leakage gives
``K2 < 0``. Integrals are cumulative trapezoids.

**Bidirectional** (Leu et al. 2016, AJNR 37:1440): the extravasated tracer
also flows back with rate ``kep`` (1/s)::

    dR2*(t) = K1 * ref(t) - K2 * integral_0^t ref(tau) exp(-kep (t - tau)) dtau

which is linear in three parameters once the model's own integral is
substituted (the linearisation Murase 2004 applied to the Tofts model),
so that no non-linear search over kep is needed::

    dR2*(t) = K1 ref(t) - (K2 - K1 kep) integral ref - kep integral dR2*

so K1, ``K2 - K1 kep`` and kep come from one 3 x 3 least-squares problem per
voxel (normal equations solved for all rows at once) and
``K2 = (K2 - K1 kep) + K1 kep``. Corrected curve:
``dR2* + K2 * integral ref(tau) exp(-kep (t - tau))``, the exponential
convolution computed by a recursion over time for all voxels together. Where
kep comes out non-positive (no back-flux detectable) or faster than one frame
(``kep >= 1/dt``), the BSW fit of that voxel is used (``kep = 0``, its limit);
``info["kep_fallback_to_bsw"]`` counts them.

**Which voxels are corrected** is decided by a gate on the BSW K2 (for both
methods; :mod:`perfmap.core.leakage_gate`, where its design and measurement
are documented): by default K2 must lie outside the spread of K2 in the
non-enhancing reference voxels (:mod:`perfmap.core.leakage_reference`).

**Limits, measured** (``benchmarks/leakage_accuracy.py``; leaky phantoms,
SNR 30, default gate; errors of the tumour/NAWM CBV ratio against the
leak-free truth):

* BSW assumes the tumour's transit time is the reference's. With tumour MTT
  within 15 % of the reference tissue's, 30 deg: uncorrected -31 %,
  corrected -4 % and -9 % (two phantoms). With MTT 1.4-1.5 times longer
  (three phantoms): corrected -19 to -27 % (uncorrected -20 to -31 %): K2
  partly measures the MTT difference (Bjornerud 2011).
* Large flip angles without preload (the MTT-matched phantom at -4 %): uncorrected
  tumour CBV is negative (ratio error -134 % at 60 deg, -241 % at 90 deg);
  BSW gives -17 % and -29 %, the bidirectional model -15 % and -27 %: the T1
  effect saturates (SPGR) and washes out, which neither model describes.
  Over the five phantoms uncorrected tumour CBV is negative in 4 at 60 deg
  (the fifth keeps 6 % of its true value) and in all 5 at 90 deg; BSW
  gives -17 to -30 % at 60 deg and -29 to -43 % at 90 deg.
* Real single-echo curves (OSIPI LCB-BNI, TE 30 ms, 60 deg; ROI curves, so
  the NAWM curve is the reference): uncorrected tumour/NAWM CBV ratio -3.2,
  BSW 0.17, bidirectional 0.18, against 4.29 from the T1-free dual echo.
  The tumour's T1 effect (single minus dual echo) is already -11 1/s at the
  bolus peak and then nearly flat, not proportional to the integral of the
  reference, so the fit puts it into K1. The dual-echo ratio itself holds a
  T2*-dominant leakage plateau (BSW on the dual-echo curves: K2 -0.035 /s,
  ratio 1.15).

References
----------
Weisskoff RM, Boxerman JL, Sorensen AG et al. Simultaneous blood volume and
    permeability mapping using a single Gd-based contrast injection. Proc
    SMR 1994:279.
Boxerman JL, Schmainda KM, Weisskoff RM. Relative cerebral blood volume maps
    corrected for contrast agent extravasation significantly correlate with
    glioma tumor grade, whereas uncorrected maps do not. AJNR 2006;27:859-867.
Leu K, Boxerman JL, Cloughesy TF et al. Improved leakage correction for
    single-echo dynamic susceptibility contrast perfusion MRI estimates of
    relative cerebral blood volume in high-grade gliomas by accounting for
    bidirectional contrast agent exchange. AJNR 2016;37:1440-1446.
Murase K. Efficient method for calculating kinetic parameters using
    T1-weighted dynamic contrast-enhanced magnetic resonance imaging. MRM
    2004;51:858-862 (linearised least squares of the Tofts model).
Bjornerud A, Sorensen AG, Mouridsen K, Emblem KE. T1- and T2*-dominant
    extravasation correction in DSC-MRI: Part I. JCBFM 2011;31:2041-2053.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import InputDataError, ParameterError, ShapeError
from .concentration import BaselineWindow
from .leakage_gate import DEFAULT_CV_LIMIT, DEFAULT_Z, GATES, gate_voxels

METHODS = ("bsw", "bidirectional")
#: Voxels fitted per chunk (bounds the float64 temporaries).
CHUNK_VOXELS = 16384


@dataclass
class LeakageResult:
    """Leakage-corrected curves and the per-voxel leakage parameters.

    Attributes
    ----------
    corrected : ndarray, shape (n, T), float32
        Corrected dR2* (1/s): the measured curve plus the fitted leakage term
        where ``corrected_mask``, the measured curve elsewhere; NaN rows where
        the input row was not finite.
    k1 : ndarray, shape (n,), float32
        Scale of the reference curve (dimensionless); NaN where not fitted.
    k2 : ndarray, shape (n,), float32
        Leakage rate K2 in 1/s (> 0: T1-dominant, < 0: T2*-dominant).
    kep : ndarray, shape (n,), float32, or None
        Back-flux rate in 1/s (bidirectional only; 0 where BSW was used).
    k2_cv : ndarray, shape (n,), float32
        Coefficient of variation of K2 in % (the toolbox's CV gate statistic).
    corrected_mask : ndarray, shape (n,), bool
        Voxels whose curve was corrected.
    reference_curve : ndarray, shape (T,), float64
        The non-enhancing reference dR2* used (1/s).
    info : dict
        JSON-serialisable summary: method, gate and its limits, counts.
    """

    corrected: np.ndarray
    k1: np.ndarray
    k2: np.ndarray
    kep: Optional[np.ndarray]
    k2_cv: np.ndarray
    corrected_mask: np.ndarray
    reference_curve: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_corrected(self) -> int:
        """Number of corrected voxels."""
        return int(np.count_nonzero(self.corrected_mask))

    @property
    def n_failed(self) -> int:
        """Number of voxels that could not be fitted (non-finite curves)."""
        return int(np.count_nonzero(~np.isfinite(self.k2)))


def _times(T: int, dt, times) -> np.ndarray:
    if times is not None:
        t = np.asarray(times, dtype=np.float64)
        if t.shape != (T,) or not np.all(np.diff(t) > 0):
            raise ShapeError(f"times must be {T} increasing values, got shape {t.shape}")
        return t
    if not (dt is not None and np.isfinite(dt) and dt > 0):
        raise ParameterError(f"the sampling interval must be a positive number of seconds, "
                             f"got {dt!r}")
    return np.arange(T) * float(dt)


def cumulative_integral(x, dt: Optional[float] = None, times=None) -> np.ndarray:
    """Cumulative trapezoid integral ``integral_0^t x`` along the last axis, float64.

    Parameters
    ----------
    x : array_like, shape (..., T)
    dt : float
        Sampling interval (s); ignored when ``times`` is given.
    times : array_like, shape (T,), optional
        Sample times (s).

    Returns
    -------
    ndarray, shape (..., T)
        0 at the first sample (units of ``x`` times s).

    Examples
    --------
    >>> cumulative_integral([0.0, 2.0, 2.0, 0.0], dt=0.5).tolist()
    [0.0, 0.5, 1.5, 2.0]
    """
    x = np.asarray(x, dtype=np.float64)
    h = np.diff(_times(x.shape[-1], dt, times))
    out = np.zeros_like(x)
    np.cumsum(0.5 * h * (x[..., 1:] + x[..., :-1]), axis=-1, out=out[..., 1:])
    return out


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products, computed the same way for every row (order-independent)."""
    return (a * b).sum(axis=-1)


def _window(baseline, T: int) -> Optional[tuple[int, int]]:
    if baseline is None:
        return None
    start, stop = (baseline.start, baseline.stop) if isinstance(baseline, BaselineWindow) \
        else (int(baseline[0]), int(baseline[1]))
    if not 0 <= start < stop - 1 < T:
        raise ParameterError(f"baseline frames [{start}, {stop}) must hold at least 2 of the "
                             f"{T} frames")
    return start, stop


def _fit_bsw(y: np.ndarray, ref: np.ndarray, iref: np.ndarray):
    """BSW least squares of float64 rows ``y`` (m, T): K1, K2, residual variance, (A^T A)^-1."""
    a = np.stack([ref, -iref], axis=1)                     # (T, 2)
    ginv = np.linalg.inv(a.T @ a)
    p = np.stack([_rowdot(y, ref), -_rowdot(y, iref)], axis=1)
    coef = p @ ginv
    resid = y - coef[:, :1] * ref + coef[:, 1:] * iref
    var = _rowdot(resid, resid) / max(y.shape[1] - 2, 1)
    return coef[:, 0], coef[:, 1], var, ginv


def _fit_bidirectional(y, ref, iref, times):
    """Leu 2016 linearised fit of rows ``y``: K1, K2, kep (1/s); NaN kep where unusable."""
    iy = cumulative_integral(y, times=times)
    cols = [np.broadcast_to(ref, y.shape), np.broadcast_to(-iref, y.shape), -iy]
    g = np.empty((y.shape[0], 3, 3))
    for i in range(3):
        for j in range(i, 3):
            g[:, i, j] = g[:, j, i] = _rowdot(cols[i], cols[j])
    b = np.stack([_rowdot(c, y) for c in cols], axis=1)
    scale = np.sqrt(np.einsum("nii->ni", g))                # Jacobi scaling: condition
    ok = np.all(scale > 0, axis=1)
    scale[~ok] = 1.0
    gs = g / scale[:, :, None] / scale[:, None, :]
    ok &= np.abs(np.linalg.det(gs)) > 1e-10
    gs[~ok] = np.eye(3)
    coef = np.linalg.solve(gs, (b / scale)[..., None])[..., 0] / scale
    k1, k2p, kep = coef.T
    kep = np.where(ok, kep, np.nan)
    return k1, k2p + k1 * kep, kep


def _exp_leak_integral(ref, kep, times):
    """``integral_0^t ref(tau) exp(-kep (t - tau)) dtau`` for each kep (m,), trapezoid, (m, T)."""
    out = np.zeros((kep.size, ref.size))
    for i in range(1, ref.size):                            # a recursion over time, not voxels
        decay = np.exp(-kep * (times[i] - times[i - 1]))
        out[:, i] = decay * out[:, i - 1] + 0.5 * (times[i] - times[i - 1]) * (
            ref[i] + decay * ref[i - 1])
    return out


def _check_inputs(conc, ref, method, gate, reference):
    conc = np.asarray(conc)
    if conc.ndim != 2:
        raise ShapeError(f"conc must be 2-D (voxels, time), got shape {conc.shape}")
    ref = np.asarray(ref, dtype=np.float64)
    if ref.shape != conc.shape[1:]:
        raise ShapeError(f"the reference curve must have {conc.shape[1]} frames, got shape "
                         f"{ref.shape}")
    if not np.all(np.isfinite(ref)) or not np.any(ref > 0):
        raise InputDataError("the reference curve must be finite with a positive bolus")
    if method not in METHODS:
        raise ParameterError(f"unknown leakage method {method!r}; choose {' or '.join(METHODS)}")
    if gate not in GATES:
        raise ParameterError(f"unknown leakage gate {gate!r}; choose one of {', '.join(GATES)}")
    if reference is not None:
        reference = np.asarray(reference, dtype=bool)
        if reference.shape != conc.shape[:1]:
            raise ShapeError(f"the reference voxel mask must have shape ({conc.shape[0]},), "
                             f"got {reference.shape}")
    elif gate == "reference":
        raise ParameterError("gate 'reference' needs the reference voxels (reference=...); "
                             "use gate='cv' or 'none' for curves without them")
    return conc, ref, reference


def correct_leakage(conc, ref, dt: Optional[float] = None, *, method: str = "bsw",
                    gate: str = "reference", reference=None, z: float = DEFAULT_Z,
                    cv_limit: float = DEFAULT_CV_LIMIT, baseline=None, times=None,
                    mask=None, smoothing=(3, 3, 3),
                    chunk_size: int = CHUNK_VOXELS) -> LeakageResult:
    """Fit and remove contrast-agent leakage from dR2* curves (BSW or bidirectional).

    Parameters
    ----------
    conc : array_like, shape (n, T)
        dR2* curves (1/s), time last (float32 is kept). Not modified.
    ref : array_like, shape (T,)
        Mean dR2* of non-enhancing brain (:func:`perfmap.core.leakage_reference.reference_curve`).
    dt : float
        Sampling interval (s); ignored when ``times`` is given.
    method : {"bsw", "bidirectional"}
        Boxerman 2006 or Leu 2016 (module docstring).
    gate : {"reference", "cv", "none"}
        Which voxels are corrected (module docstring).
    reference : array_like of bool, shape (n,), optional
        The rows that are reference voxels (needed by ``gate="reference"``).
    z : float
        ``reference`` gate: robust SDs of the reference K2 a voxel must lie beyond.
    cv_limit : float
        ``cv`` gate: largest coefficient of variation of K2 (%).
    baseline : BaselineWindow or (int, int), optional
        Pre-bolus frames of ``conc``: their SD is the noise of the ``cv``
        statistic (as the toolbox does); default the fit residual's SD.
    times : array_like, shape (T,), optional
        Frame times (s).
    mask : array_like of bool, 3-D, optional
        Where the rows lie: ``conc`` holds the True voxels of ``mask`` in C
        order (``signal[mask]``). The ``reference`` gate then tests K2
        averaged over a ``smoothing`` box (:func:`smooth_rows`); the
        correction itself uses each voxel's own K2.
    smoothing : tuple of int
        Box size (voxels) of that average.
    chunk_size : int
        Voxels per chunk.

    Returns
    -------
    LeakageResult

    Raises
    ------
    ShapeError, ParameterError, InputDataError

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(40) * 1.5
    >>> ref = np.exp(-0.5 * ((t - 20.0) / 3.0) ** 2)
    >>> leaky = 2.0 * ref - 0.01 * cumulative_integral(ref, 1.5)
    >>> res = correct_leakage(leaky[None], ref, 1.5, gate="none")
    >>> round(float(res.k1[0]), 4), round(float(res.k2[0]), 4), res.n_corrected
    (2.0, 0.01, 1)
    >>> bool(np.allclose(res.corrected[0], 2.0 * ref, atol=1e-5))
    True
    """
    conc, ref, reference = _check_inputs(conc, ref, method, gate, reference)
    n, T = conc.shape
    t = _times(T, dt, times)
    iref = cumulative_integral(ref, times=t)
    fits = {k: np.full(n, np.nan) for k in ("k1", "k2", "kep", "cv", "k2_bsw")}
    win = _window(baseline, T)
    for s in range(0, n, chunk_size):
        part = _fit_chunk(conc[s:s + chunk_size], ref, iref, t, win, method)
        for k, v in part.items():
            fits[k][s:s + chunk_size] = v
    todo, gate_info = gate_voxels(gate, fits["k2_bsw"], fits["cv"], reference, z, cv_limit,
                                  mask, smoothing)
    kep = fits["kep"] if method == "bidirectional" else None
    corrected = _apply(conc, todo, fits["k2"], kep, ref, iref, t, chunk_size)
    fitted = np.isfinite(fits["k2"])
    info = {"method": method, "gate": gate, **gate_info, "voxels": n,
            "reference_voxels": None if reference is None else int(reference.sum()),
            "corrected": int(np.count_nonzero(todo)), "failed": int(np.count_nonzero(~fitted)),
            "k2_median_corrected_per_s": float(np.median(fits["k2"][todo])) if todo.any()
            else None}
    if kep is not None:
        info["kep_fallback_to_bsw"] = int(np.count_nonzero(fitted & (kep == 0)))
    f32 = (lambda x: None if x is None else x.astype(np.float32))
    return LeakageResult(corrected=corrected, k1=f32(fits["k1"]), k2=f32(fits["k2"]),
                         kep=f32(kep), k2_cv=f32(fits["cv"]), corrected_mask=todo,
                         reference_curve=ref, info=info)


def _fit_chunk(rows, ref, iref, t, win, method) -> dict:
    """K1, K2, kep (0 for BSW or where it falls back), CV of the BSW K2 and the BSW K2."""
    y = np.array(rows, dtype=np.float64)
    bad = ~np.all(np.isfinite(y), axis=1)
    y[bad] = 0.0
    k1, k2, var, ginv = _fit_bsw(y, ref, iref)
    if win is not None:
        var = y[:, win[0]:win[1]].var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = 100.0 * np.sqrt(var * ginv[1, 1]) / np.abs(k2)
    out = {"k2_bsw": k2, "cv": cv, "k1": k1, "k2": k2, "kep": np.zeros(y.shape[0])}
    if method == "bidirectional":
        a, b, e = _fit_bidirectional(y, ref, iref, t)
        use = np.isfinite(e) & (e > 0) & (e < 1.0 / np.min(np.diff(t)))
        out.update(k1=np.where(use, a, k1), k2=np.where(use, b, k2), kep=np.where(use, e, 0.0))
    return {k: np.where(bad, np.nan, v) for k, v in out.items()}


def _apply(conc, todo, k2, kep, ref, iref, t, chunk_size) -> np.ndarray:
    """float32 copy of ``conc`` plus ``K2 *`` the leakage integral on the rows ``todo``."""
    corrected = np.array(conc, dtype=np.float32)
    corrected[~np.isfinite(k2)] = np.nan
    for s in range(0, conc.shape[0], chunk_size):
        rows = s + np.flatnonzero(todo[s:s + chunk_size])
        if rows.size:
            leak = iref[None, :] if kep is None else _exp_leak_integral(ref, kep[rows], t)
            corrected[rows] = (conc[rows] + k2[rows, None] * leak).astype(np.float32)
    return corrected
