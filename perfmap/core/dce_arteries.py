"""Automatic arterial voxels and the mean early-enhancing curve for T1-weighted DCE.

**Automatic arterial voxels** (:func:`auto_dce_aif`), on T1-weighted
concentration curves, keeps voxels whose first pass is high, early and narrow,
the criteria of Rijpkema et al. 2001 (relative enhancement, then early bolus
arrival) and Parker et al. 2003 (peak height, arrival, width), in stages:

1. **height**: the ``peak_fraction`` of voxels with the highest peak;
2. **arrival**: of those, the ``early_fraction`` whose curve first reaches half
   its peak earliest;
3. **width**: of those, the ``narrow_fraction`` with the smallest full width at
   half maximum of the first pass (a curve that never falls back below half its
   peak has the width from its rise to the end);
4. the ``n_voxels`` highest peaks of what remains are averaged.

Every ranking is a stable sort on (value, voxel index), so ties are broken by
the index and the result does not depend on the order of the rows.

**Mean early-enhancing curve** (:func:`early_enhancing_curve`): the average of
the strongly enhancing voxels that reach half their peak first, the curve to
which :func:`perfmap.core.dce_aif.fit_parker_delay` aligns the population AIF
when no arterial voxel is trusted.

References
----------
Rijpkema M, Kaanders JHAM, Joosten FBM, van der Kogel AJ, Heerschap A. Method
    for quantitative mapping of dynamic MRI contrast agent uptake in human
    tumors. J Magn Reson Imaging 2001;14:457-463.
Parker GJM, Jackson A, Waterton JC, Buckley DL. Automated arterial input
    function extraction for T1-weighted DCE-MRI. Proc ISMRM 2003;11:1264.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, ParameterError, ShapeError
from .aif import AifSelection


def _half_max_times(curves, t):
    """First time each curve reaches half its peak, and its first-pass FWHM (s)."""
    n, T = curves.shape
    pk = curves.max(axis=1, keepdims=True)
    above = curves >= 0.5 * pk
    i_up = np.argmax(above, axis=1)
    i_pk = np.argmax(curves, axis=1)
    after = ~above & (np.arange(T)[None, :] > i_pk[:, None])
    has_down = after.any(axis=1)
    i_dn = np.where(has_down, np.argmax(after, axis=1), T - 1)
    rows = np.arange(n)

    def cross(i0, i1):                   # interpolated half-maximum crossing on [i0, i1]
        c0, c1 = curves[rows, i0], curves[rows, i1]
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(c1 != c0, (0.5 * pk[:, 0] - c0) / (c1 - c0), 0.0)
        return t[i0] + np.clip(f, 0, 1) * (t[i1] - t[i0])

    t_up = np.where(i_up > 0, cross(np.maximum(i_up - 1, 0), i_up), t[i_up])
    t_dn = np.where(has_down, cross(np.maximum(i_dn - 1, 0), i_dn), t[-1])
    return t_up, t_dn - t_up


def early_enhancing_curve(conc, indices, times, fraction: float = 0.05) -> np.ndarray:
    """Mean curve of the earliest-enhancing voxels, to align the Parker AIF with.

    Of the finite curves whose peak is above the median peak of the enhancing
    ones (peak > 0), the ``fraction`` that first reach half their peak
    earliest are averaged (ties by voxel index: independent of row order).
    Pass the result to :func:`fit_parker_delay`.

    Parameters
    ----------
    conc : array_like, shape (n, T)
        Concentration curves (mM).
    indices : array_like of int, shape (n, 3)
        Voxel indices of the rows.
    times : array_like, shape (T,)
        Frame times (s).
    fraction : float
        Fraction of the candidates averaged (at least one voxel).

    Returns
    -------
    ndarray, shape (T,), float64

    Raises
    ------
    InputDataError
        No finite curve with a positive peak.

    Examples
    --------
    >>> import numpy as np
    >>> from perfmap.core.dce_aif import fit_parker_delay, parker_aif
    >>> t = np.arange(0, 120.0, 2.0)
    >>> curves = np.array([parker_aif(t, d) for d in (10.0, 20.0, 30.0, 40.0)])
    >>> idx = np.argwhere(np.ones((4, 1, 1)))
    >>> early = early_enhancing_curve(curves, idx, t, fraction=0.25)
    >>> round(fit_parker_delay(early, t)[0], 1)
    10.0
    """
    c = np.asarray(conc, dtype=np.float64)
    idx = np.asarray(indices)
    t = np.asarray(times, dtype=np.float64)
    if c.ndim != 2 or idx.shape != (c.shape[0], 3) or t.shape != (c.shape[1],):
        raise ShapeError(f"need conc (n, T), indices (n, 3) and times (T,), got {c.shape}, "
                         f"{idx.shape} and {t.shape}")
    if not 0 < fraction <= 1:
        raise ParameterError(f"fraction must be in (0, 1], got {fraction!r}")
    ok = np.all(np.isfinite(c), axis=1)
    ok[ok] = c[ok].max(axis=1) > 0
    if not ok.any():
        raise InputDataError("no finite curve enhances: no early-enhancing curve")
    c, idx = c[ok], idx[ok]
    peak = c.max(axis=1)
    strong = peak >= np.median(peak)
    c, idx = c[strong], idx[strong]
    t_half, _ = _half_max_times(c, t)
    keep = _keep(t_half, idx, fraction, 1)
    keep = keep[np.lexsort((idx[keep, 2], idx[keep, 1], idx[keep, 0]))]
    return c[keep].mean(axis=0)


def _keep(order_key, idx, fraction, minimum):
    """Indices (into order_key) of the best ``fraction`` (at least ``minimum``), ties by index."""
    order = np.lexsort((idx[:, 2], idx[:, 1], idx[:, 0], order_key))
    count = max(int(np.ceil(fraction * order.size)), min(minimum, order.size))
    return order[:count]


def auto_dce_aif(conc, indices, times, n_voxels: int = 10, peak_fraction: float = 0.05,
                 early_fraction: float = 0.5, narrow_fraction: float = 0.5,
                 min_peak_ratio: float = 3.0) -> AifSelection:
    """Arterial voxels chosen automatically from T1-weighted concentration curves.

    Parameters
    ----------
    conc : array_like, shape (n, T)
        Concentration curves (mM); rows with NaN/Inf are ignored.
    indices : array_like of int, shape (n, 3)
        Voxel indices of the rows (unique); they break ties.
    times : array_like, shape (T,)
        Frame times (s).
    n_voxels : int
        Voxels averaged into the AIF.
    peak_fraction, early_fraction, narrow_fraction : float
        Fractions kept by the height, arrival and width stages (each stage
        keeps at least ``n_voxels``).
    min_peak_ratio : float
        The AIF peak must exceed this multiple of the mean curve's peak.

    Returns
    -------
    AifSelection
        Mean curve of the selected voxels (averaged in index order), their
        indices (sorted) and the counts of each stage in ``params``.

    Raises
    ------
    ShapeError
        Mismatched shapes.
    ParameterError
        Fractions outside (0, 1] or ``n_voxels < 1``.
    InputDataError
        Too few finite curves, or no curve plausibly arterial.

    Examples
    --------
    >>> import numpy as np
    >>> from perfmap.core.dce_aif import parker_aif
    >>> t = np.arange(0, 120.0, 2.0)
    >>> tissue = np.tile(0.3 * (1 - np.exp(-np.clip(t - 20, 0, None) / 60)), (90, 1))
    >>> artery = np.tile(parker_aif(t, 10.0) / 0.58, (10, 1))
    >>> idx = np.argwhere(np.ones((10, 10, 1)))
    >>> sel = auto_dce_aif(np.vstack([tissue, artery]), idx, t)
    >>> sel.indices[:, 0].tolist() == [9] * 10
    True
    """
    c = np.asarray(conc)
    idx = np.asarray(indices)
    t = np.asarray(times, dtype=np.float64)
    if c.ndim != 2 or idx.shape != (c.shape[0], 3) or t.shape != (c.shape[1],):
        raise ShapeError(f"need conc (n, T), indices (n, 3) and times (T,), got {c.shape}, "
                         f"{idx.shape} and {t.shape}")
    fr = (peak_fraction, early_fraction, narrow_fraction)
    if int(n_voxels) < 1 or not all(0 < f <= 1 for f in fr):
        raise ParameterError("n_voxels must be >= 1 and the fractions in (0, 1]")
    finite = np.all(np.isfinite(c), axis=1)
    if finite.sum() < n_voxels:
        raise InputDataError(f"no automatic AIF: only {int(finite.sum())} finite curves, "
                             f"{n_voxels} needed")
    c, idx = c[finite].astype(np.float64), idx[finite]
    counts = {"finite": int(len(c))}
    peak = c.max(axis=1)
    keep = _keep(-peak, idx, peak_fraction, n_voxels)
    counts["height"] = int(keep.size)
    t_half, width = _half_max_times(c[keep], t)
    sub = _keep(t_half, idx[keep], early_fraction, n_voxels)
    keep, width = keep[sub], width[sub]
    counts["arrival"] = int(keep.size)
    keep = keep[_keep(width, idx[keep], narrow_fraction, n_voxels)]
    counts["width"] = int(keep.size)
    keep = keep[_keep(-peak[keep], idx[keep], 1.0, n_voxels)[:n_voxels]]
    keep = keep[np.lexsort((idx[keep, 2], idx[keep, 1], idx[keep, 0]))]
    curve = c[keep].mean(axis=0)
    mean_peak = float(c.mean(axis=0).max())
    params = {"method": "height/arrival/width (Rijpkema 2001; Parker 2003)",
              "n_voxels": int(n_voxels), "peak_fraction": peak_fraction,
              "early_fraction": early_fraction, "narrow_fraction": narrow_fraction,
              "counts": counts, "peak": float(curve.max()), "mean_curve_peak": mean_peak}
    if not (mean_peak > 0 and curve.max() >= min_peak_ratio * mean_peak):
        raise InputDataError(f"no plausible arterial voxel: the selected curve peaks at "
                             f"{curve.max():.3g} mM, less than {min_peak_ratio:g} times the "
                             f"mean curve ({mean_peak:.3g} mM); give an AIF explicitly")
    return AifSelection(curve=curve, indices=idx[keep].astype(int), method="auto", params=params)
