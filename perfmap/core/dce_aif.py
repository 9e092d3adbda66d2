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
default Hct 0.42). :func:`fit_parker_delay` aligns the AIF with a measured curve,
for instance the mean of the earliest-enhancing voxels
(:func:`early_enhancing_curve`).

**Automatic arterial voxels** and the **mean early-enhancing curve** are in
:mod:`perfmap.core.dce_arteries` (re-exported here: :func:`auto_dce_aif`,
:func:`early_enhancing_curve`).

References
----------
Parker GJM, Roberts C, Macdonald A, et al. Experimentally-derived functional
    form for a population-averaged high-temporal-resolution arterial input
    function for dynamic contrast-enhanced MRI. Magn Reson Med
    2006;56:993-1000.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, ParameterError, ShapeError
from .dce_arteries import auto_dce_aif, early_enhancing_curve  # re-exported

__all__ = ["PARKER_2006", "DEFAULT_HCT", "parker_aif", "plasma_from_blood", "fit_parker_delay",
           "auto_dce_aif", "early_enhancing_curve"]

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

    The contrast agent stays in plasma, a fraction ``1 - Hct`` of blood (e.g.
    Sourbron & Buckley 2012, Phys Med Biol 57:R1).

    Parameters
    ----------
    blood : array_like
        Blood concentration (mM).
    hct : float
        Large-vessel haematocrit, in [0, 1).

    Returns
    -------
    ndarray, float64
        Plasma concentration (mM).

    Raises
    ------
    ParameterError
        Haematocrit outside [0, 1).

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

