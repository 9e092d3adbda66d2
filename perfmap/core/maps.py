"""Perfusion maps from concentration curves and a deconvolution fit.

Formulas (DESIGN section 4; Ostergaard et al. 1996, MRM 36:715; central volume
theorem, Stewart 1894 / Meier & Zierler 1954)::

    CBV  = (kH / rho) * 100 * integral C_t dt / integral C_a dt      [ml/100 g]
    CBF  = (kH / rho) * 100 * 60 * max_t k(t)                        [ml/100 g/min]
    MTT  = 60 * CBV / CBF                                            [s]
    Tmax = argmax_t k(t)                                             [s]
    TTP  = argmax_t C_t(t)                                           [s, from the first kept frame]

``k = F R`` is the flow-scaled residue from :class:`perfmap.deconv.DeconvFit`
(1/s). Integrals use the trapezoid rule over the whole kept time series.
Backends that estimate MTT directly (PHAE) report ``k``'s peak as the flow
``F = (integral C_t / integral C_a) / MTT``, so ``CBF = 60 * CBV / MTT`` (the
PHAE paper's Eq. 3) follows from the same formulas, with no special case here.

A backend that fits the tissue amplitude to the whole curve (PHAE2) may also
report its own volume, ``DeconvFit.volume = integral k dt = F MTT`` (the
integral ratio of its noise-free model curve). CBV is then
``(kH / rho) * 100 * volume`` instead of the integral ratio of the measured
curves, so that ``MTT = 60 CBV / CBF`` is the backend's own MTT and
``CBV = CBF MTT / 60`` holds for all three maps. :func:`volume_source` names
which of the two was used (``"fit"`` or ``"integral"``) for the JSON.

A transit time is only defined for a positive volume and flow. Where the
tissue integral is negative (a single-echo tumour curve with T1 leakage whose
signal rises above the baseline after the bolus: measured CBV -64 ml/100 g on
the OSIPI LCB-BNI tumour curve) CBV and CBF are reported as measured, and MTT
is NaN instead of a negative number; the pipeline counts such voxels in the
JSON (``voxels.mtt_undefined``).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .curves import DEFAULT_KH, DEFAULT_RHO

MAP_NAMES = ("cbf", "cbv", "mtt", "tmax", "ttp")

#: Units of each map, for the JSON and the README.
MAP_UNITS = {
    "cbf": "ml/100 g/min",
    "cbv": "ml/100 g",
    "mtt": "s",
    "tmax": "s",
    "ttp": "s",
}


def _float_curves(x) -> np.ndarray:
    """Curves as float32 or float64 (kept as given: no float64 copy of a whole brain)."""
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def trapezoid_integral(x, dt: float, times=None) -> np.ndarray:
    """Trapezoid-rule integral along the last axis, as a product with the rule's weights.

    Same values as :func:`numpy.trapezoid` (to rounding), without its float64
    copies of the ``(n, T)`` curves; the product runs in the curves' own
    precision (float32 or float64; other types are promoted to float64).

    Parameters
    ----------
    x : array_like, shape (..., T)
    dt : float
        Sampling interval (s); ignored when ``times`` is given.
    times : array_like, shape (T,), optional
        Sample times (s).

    Returns
    -------
    ndarray, shape (...,), float64
    """
    x = _float_curves(x)
    n = x.shape[-1]
    h = np.diff(np.asarray(times, np.float64)) if times is not None else np.full(n - 1, float(dt))
    w = np.zeros(n)
    w[:-1] += 0.5 * h
    w[1:] += 0.5 * h
    return np.asarray(x @ w.astype(x.dtype), dtype=np.float64)


def cbv_from_curves(conc, aif, dt: float, kh: float = DEFAULT_KH, rho: float = DEFAULT_RHO,
                    times=None) -> np.ndarray:
    """CBV in ml/100 g from the ratio of tissue and arterial integrals.

    Parameters
    ----------
    conc : ndarray, shape (n, T)
        Tissue concentration curves.
    aif : ndarray, shape (T,)
        Arterial concentration in the same units.
    dt : float
        Sampling interval (s); ignored when ``times`` is given.
    kh, rho : float
        Hematocrit correction (dimensionless) and brain density (g/ml).

    Examples
    --------
    >>> import numpy as np
    >>> aif = np.array([0, 4.0, 2.0, 0])
    >>> float(cbv_from_curves(0.04 * aif[None], aif, 1.0, kh=1, rho=1)[0])
    4.0
    """
    conc = _float_curves(conc)
    aif = np.asarray(aif, dtype=np.float64)
    ia = trapezoid_integral(aif, dt, times)
    if not ia > 0:
        raise ValueError("the AIF integral is not positive")
    return (kh / rho) * 100.0 * trapezoid_integral(conc, dt, times) / ia


def volume_source(fit) -> str:
    """Where :func:`perfusion_maps` takes CBV from for this fit.

    Parameters
    ----------
    fit : perfmap.deconv.DeconvFit

    Returns
    -------
    str
        ``"fit"`` when the backend reports its fitted volume
        (``fit.volume``, PHAE2), ``"integral"`` otherwise (the integral ratio
        of the measured curves, DESIGN section 4).

    Examples
    --------
    >>> import numpy as np
    >>> from perfmap.deconv import DeconvFit
    >>> volume_source(DeconvFit(flow=np.ones(1), tmax=np.zeros(1), failed=np.zeros(1, bool)))
    'integral'
    """
    return "integral" if getattr(fit, "volume", None) is None else "fit"


def perfusion_maps(conc, aif, dt: float, fit, kh: float = DEFAULT_KH, rho: float = DEFAULT_RHO,
                   times=None) -> dict[str, np.ndarray]:
    """All five maps for ``n`` voxels as float32 arrays, NaN where not fitted.

    Parameters
    ----------
    conc : ndarray, shape (n, T)
        Tissue concentration curves (the ones that were deconvolved).
    aif : ndarray, shape (T,)
    dt : float
        Sampling interval (s).
    fit : perfmap.deconv.DeconvFit
        Deconvolution result for the same voxels. When ``fit.volume`` is
        given, CBV is ``(kH/rho) 100 fit.volume`` (module notes); otherwise
        the integral ratio of ``conc`` and ``aif``.
    kh, rho : float
        Hematocrit correction and brain density (g/ml).
    times : ndarray, shape (T,), optional
        Frame times (s) from the first kept frame; default ``arange(T) * dt``.

    Returns
    -------
    dict
        ``{"cbf", "cbv", "mtt", "tmax", "ttp"}`` -> ndarray (n,) float32.
    """
    conc = _float_curves(conc)
    n, T = conc.shape
    if times is None:
        times = np.arange(T) * dt
    if volume_source(fit) == "fit":
        volume = np.asarray(fit.volume, np.float64)
        if volume.shape != (n,):
            raise ShapeError(f"fit.volume has shape {volume.shape}, expected ({n},)")
        cbv = (kh / rho) * 100.0 * volume
    else:
        cbv = cbv_from_curves(conc, aif, dt, kh, rho, times=None)
    failed = np.asarray(fit.failed, bool) | ~np.isfinite(cbv)
    with np.errstate(divide="ignore", invalid="ignore"):
        cbf = (kh / rho) * 100.0 * 60.0 * np.asarray(fit.flow, np.float64)
        mtt = 60.0 * cbv / cbf
    ttp = np.asarray(times, np.float64)[np.argmax(conc, axis=1)]
    out = {
        "cbf": cbf,
        "cbv": cbv,
        "mtt": mtt,
        "tmax": np.asarray(fit.tmax, np.float64),
        "ttp": ttp,
    }
    # A map value is only reported where the fit succeeded and is finite.
    valid = ~failed & np.isfinite(cbf) & np.isfinite(mtt)
    # MTT = CBV / CBF needs both positive (module notes); the other maps stay.
    out["mtt"] = np.where((cbv < 0) | (cbf < 0), np.nan, mtt)
    return {k: np.where(valid, v, np.nan).astype(np.float32) for k, v in out.items()}
