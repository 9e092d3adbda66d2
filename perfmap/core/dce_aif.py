"""DCE arterial input functions: the Parker population AIF and automatic selection.

**Population AIF.** Parker et al. 2006 (MRM 56:993, eq. 1 and Table 1) fitted
the mean of 67 measured *blood* AIFs (0.1 mmol/kg Gd-DTPA) with two Gaussians
and a sigmoid-modulated exponential, **time t in minutes**::

    Cb(t) = sum_n A_n / (s_n sqrt(2 pi)) exp(-(t - T_n)^2 / (2 s_n^2))
            + alpha exp(-beta t) / (1 + exp(-s (t - tau)))           [mM]

    A1 = 0.809 mmol min, A2 = 0.330 mmol min, T1 = 0.17046 min, T2 = 0.365 min,
    s1 = 0.0563 min, s2 = 0.132 min, alpha = 1.050 mM, beta = 0.1685 /min,
    s = 38.078 /min, tau = 0.483 min.

perfmap works in seconds: :func:`parker_aif` takes times in s, converts them to
minutes, and is zero before the bolus ``delay`` (as in the OSIPI reference
tables). The plasma AIF is ``Cb / (1 - Hct)`` (:func:`plasma_from_blood`,
default Hct 0.42). :func:`fit_parker_delay` aligns the AIF with a measured curve.

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

References
----------
Parker GJM, Roberts C, Macdonald A, et al. Experimentally-derived functional
    form for a population-averaged high-temporal-resolution arterial input
    function for dynamic contrast-enhanced MRI. Magn Reson Med
    2006;56:993-1000.
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

#: Parker et al. 2006, Table 1 (times in minutes, concentrations in mM).
PARKER_2006 = dict(A1=0.809, A2=0.330, T1=0.17046, T2=0.365, sigma1=0.0563, sigma2=0.132,
                   alpha=1.050, beta=0.1685, s=38.078, tau=0.483)
DEFAULT_HCT = 0.42


def parker_aif(times, delay=0.0) -> np.ndarray:
    """Parker 2006 population *blood* AIF (mM) at ``times`` (s), zero before ``delay`` (s).

    Parameters
    ----------
    times : array_like
        Times in seconds.
    delay : float or array_like
        Bolus arrival: the AIF's own time origin, in seconds (broadcast
        against ``times``).

    Returns
    -------
    ndarray, float64
        Blood concentration (mM).

    Examples
    --------
    The first-pass peak, about 6.1 mM, 10.2 s after the origin:

    >>> round(float(parker_aif(0.17046 * 60)), 2)
    6.07
    """
    p = PARKER_2006
    t = (np.asarray(times, dtype=np.float64) - np.asarray(delay, dtype=np.float64)) / 60.0  # min
    out = np.zeros_like(t)
    for a, c, s in ((p["A1"], p["T1"], p["sigma1"]), (p["A2"], p["T2"], p["sigma2"])):
        out += a / (s * np.sqrt(2 * np.pi)) * np.exp(-((t - c) ** 2) / (2 * s * s))
    with np.errstate(over="ignore"):
        out += p["alpha"] * np.exp(-p["beta"] * t) / (1.0 + np.exp(-p["s"] * (t - p["tau"])))
    return np.where(t >= 0, out, 0.0)


def plasma_from_blood(blood, hct: float = DEFAULT_HCT) -> np.ndarray:
    """Plasma concentration ``Cb / (1 - Hct)`` from a blood AIF.

    Examples
    --------
    >>> float(plasma_from_blood(1.0, hct=0.5))
    2.0
    """
    if not (np.isfinite(hct) and 0 <= hct < 1):
        raise ParameterError(f"the haematocrit must be in [0, 1), got {hct!r}")
    return np.asarray(blood, dtype=np.float64) / (1.0 - hct)


def fit_parker_delay(curve, times, step: float = 0.1, search=None) -> tuple:
    """Arrival time (s) and scale aligning the Parker AIF with a measured curve.

    Least squares ``min_{d, a >= 0} sum (curve - a * parker_aif(t, d))^2`` over
    the frames up to the curve's peak (its first-pass upslope), with the scale
    ``a`` in closed form for each delay of a grid (``step`` s) and a parabolic
    refinement of the best grid delay. On an arterial curve this matches the
    bolus arrival; on a tissue curve (e.g. the mean early-enhancing curve) it
    aligns the upslopes, so the delay is then later than the arterial one.

    Parameters
    ----------
    curve : array_like, shape (T,)
        Measured concentration (any scale).
    times : array_like, shape (T,)
        Frame times (s).
    step : float
        Grid step of the delay search (s).
    search : (float, float), optional
        Delay range (s); default from ``times[0] - 30`` to the curve's peak time.

    Returns
    -------
    delay : float
        Arrival time in seconds.
    scale : float
        Amplitude factor ``a`` (``curve`` units per mM).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0, 300.0, 2.0)
    >>> d, a = fit_parker_delay(0.8 * parker_aif(t, 23.4), t)
    >>> round(d, 3), round(a, 4)
    (23.4, 0.8)
    """
    c = np.asarray(curve, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if c.ndim != 1 or t.shape != c.shape:
        raise ShapeError(f"curve and times must be 1-D of one length, got {c.shape} and {t.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(t)) and np.all(np.diff(t) > 0)):
        raise InputDataError("the curve and its times must be finite, times strictly increasing")
    if not (np.isfinite(step) and step > 0):
        raise ParameterError(f"step must be positive (s), got {step!r}")
    peak = int(np.argmax(c))
    if c[peak] <= 0:
        raise InputDataError("the curve has no positive value to align the Parker AIF with")
    lo, hi = search if search is not None else (t[0] - 30.0, t[peak])
    grid = np.arange(lo, hi + step / 2, step)
    w = slice(0, peak + 1)

    def costs(delays):
        P = parker_aif(t[w][None, :], np.asarray(delays)[:, None])
        pc, pp = P @ c[w], (P * P).sum(1)
        a = np.where(pp > 0, np.maximum(pc, 0) / np.where(pp > 0, pp, 1), 0.0)
        return ((c[w][None] - a[:, None] * P) ** 2).sum(1), a

    cost, _ = costs(grid)
    j = int(np.argmin(cost))
    d = grid[j]
    if 0 < j < grid.size - 1:
        curv = cost[j - 1] - 2 * cost[j] + cost[j + 1]
        if curv > 0:
            d += float(np.clip(0.5 * (cost[j - 1] - cost[j + 1]) / curv, -0.5, 0.5)) * step
    (c_ref, c_grid), (a_ref, a_grid) = costs([d, grid[j]])
    return (float(d), float(a_ref)) if c_ref <= c_grid else (float(grid[j]), float(a_grid))


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
