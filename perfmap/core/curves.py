"""Closed-form curves for phantoms, tests and the PHAE physics decoder.

Everything here is plain NumPy and vectorised over voxels: parameters may be
scalars or arrays of shape ``(n,)``; time is the last axis.

Conventions (DESIGN section 4): concentrations are in units of the transverse
relaxation rate change dR2* (1/s), so tissue and arterial curves share units;
the tissue curve is the convolution (Ostergaard et al. 1996, MRM 36:715)::

    C_t(t) = F * integral_0^t C_a(tau) R(t - tau) dtau

with the flow ``F`` in 1/s and ``R(0) = 1``. A flow in ml/100 g/min converts
with :func:`flow_per_second`.

References
----------
Thompson HK et al. Indicator transit time considered as a gamma variate.
    Circ Res 1964;14:502-515 (gamma-variate bolus).
Ostergaard L et al. High resolution measurement of cerebral blood flow using
    intravascular tracer bolus passages. Part I. MRM 1996;36:715-725.
Calamante F, Gadian DG, Connelly A. Quantification of bolus-tracking MRI:
    improved characterization of the tissue residue function using Tikhonov
    regularization. MRM 2003;50:1237-1247 (exponential, linear, Lorentzian-like
    residue shapes).
Mouridsen K et al. Bayesian estimation of cerebral perfusion using a
    physiological model of microvasculature. NeuroImage 2006;33:570-579
    (gamma transit-time distribution, shape lambda).
Calamante F et al. Delay and dispersion effects in dynamic susceptibility
    contrast MRI. MRM 2000;44:466-473 (exponential dispersion kernel).
"""

from __future__ import annotations

import numpy as np

from .interpolate import interpolate_rows, linear_weights

#: Hematocrit correction and brain density defaults (DESIGN section 4).
DEFAULT_KH = 0.73
DEFAULT_RHO = 1.04  # g/ml


def flow_per_second(cbf_ml_100g_min, kh: float = DEFAULT_KH, rho: float = DEFAULT_RHO):
    """Convert CBF in ml/100 g/min into the model flow ``F`` in 1/s.

    Inverse of ``CBF = (kH / rho) * 100 * 60 * F`` (DESIGN section 4).
    """
    return np.asarray(cbf_ml_100g_min, dtype=np.float64) * rho / (kh * 100.0 * 60.0)


def gamma_variate(t, t0=10.0, alpha=3.0, beta=1.5, peak=1.0):
    """Gamma-variate bolus ``A (t - t0)^alpha exp(-(t - t0)/beta)`` for t > t0.

    Thompson et al. 1964. Scaled so that its maximum (reached at
    ``t0 + alpha * beta``) equals ``peak``.

    Parameters
    ----------
    t : array_like
        Times in seconds.
    t0 : float
        Bolus arrival time in seconds.
    alpha, beta : float
        Shape (dimensionless) and scale (s).
    peak : float
        Maximum value of the curve.

    Examples
    --------
    >>> import numpy as np
    >>> c = gamma_variate(np.array([10.0, 14.5, 30.0]), t0=10, alpha=3, beta=1.5)
    >>> float(c[1])
    1.0
    """
    t = np.asarray(t, dtype=np.float64)
    s = np.clip(t - t0, 0.0, None)
    tpk = alpha * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        shape = np.where(s > 0, (s / tpk) ** alpha * np.exp(-(s - tpk) / beta), 0.0)
    return peak * shape


def residue_function(t, mtt, shape: str = "exponential", lam: float = 2.0):
    """Residue function ``R(t)`` with ``R(0) = 1`` and ``integral R = mtt``.

    Parameters
    ----------
    t : array_like, shape (T,)
        Times in seconds (t >= 0).
    mtt : float or array_like, shape (n,)
        Mean transit time in seconds.
    shape : {"exponential", "lorentzian", "gamma", "linear", "boxcar"}
        ``exponential``: ``exp(-t/MTT)``.
        ``lorentzian``: ``1 / (1 + (pi t / (2 MTT))^2)``, a Lorentzian whose
        integral is MTT (the PHAE decoder's residue, after Calamante 2003).
        ``gamma``: ``1 - P(lam, lam t / MTT)``, one minus the gamma transit-time
        distribution of mean MTT and shape ``lam`` (Mouridsen 2006); ``lam=1``
        is the exponential, large ``lam`` approaches the boxcar.
        ``linear``: ``max(0, 1 - t / (2 MTT))``.
        ``boxcar``: ``1`` for ``t < MTT``, else 0 (plug flow).
    lam : float
        Shape of the gamma transit-time distribution.

    Returns
    -------
    ndarray, shape broadcast of ``mtt[..., None]`` and ``t``.
    """
    t = np.asarray(t, dtype=np.float64)
    m = np.asarray(mtt, dtype=np.float64)[..., None]
    if shape == "exponential":
        return np.exp(-t / m)
    if shape == "lorentzian":
        return 1.0 / (1.0 + (np.pi * t / (2.0 * m)) ** 2)
    if shape == "gamma":
        from scipy import special  # lazy: scipy.special costs 0.2 s to import

        return special.gammaincc(lam, lam * t / m)
    if shape == "linear":
        return np.clip(1.0 - t / (2.0 * m), 0.0, None)
    if shape == "boxcar":
        return (t < m).astype(np.float64)
    raise ValueError(
        f"unknown residue shape {shape!r}; choose exponential, lorentzian, gamma, linear or boxcar"
    )


RESIDUE_SHAPES = ("exponential", "lorentzian", "gamma", "linear", "boxcar")


def dispersion_kernel(t, beta_s: float):
    """Exponential vascular transport kernel ``exp(-t/beta)/beta`` (Calamante 2000).

    ``beta_s = 0`` means no dispersion (a unit impulse on the grid).
    """
    t = np.asarray(t, dtype=np.float64)
    if beta_s <= 0:
        k = np.zeros_like(t)
        k[0] = 1.0
        return k
    return np.exp(-t / beta_s) / beta_s


def fft_convolve(a, b, dt: float):
    """Causal discrete convolution ``dt * sum a[j] b[i-j]`` along the last axis (via FFT)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = a.shape[-1]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    out = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[..., :n]
    return out * dt


def tissue_concentration(t, aif_fn, flow, mtt, shape: str = "exponential", lam: float = 2.0,
                         delay: float = 0.0, dispersion: float = 0.0, fine_dt: float = 0.02):
    """Tissue curves ``F * (C_a * R)(t)`` sampled at ``t``, computed on a fine grid.

    The convolution integral is evaluated with a step of ``fine_dt`` seconds,
    far finer than any acquisition, so the sampled curve is the continuous
    model's value (relative error below 1e-3 for smooth AIFs).

    Parameters
    ----------
    t : array_like, shape (T,)
        Acquisition times in seconds (uniform or not, starting at >= 0).
    aif_fn : callable
        ``aif_fn(times) -> concentrations``, the arterial curve in continuous time.
    flow : float or array_like, shape (n,)
        Flow ``F`` in 1/s (see :func:`flow_per_second`).
    mtt : float or array_like, shape (n,)
        Mean transit time in seconds.
    shape, lam : see :func:`residue_function`.
    delay : float
        Arrival delay of the tissue bolus relative to the measured AIF (s).
    dispersion : float
        Time constant of the exponential dispersion kernel applied to the AIF
        before it reaches the tissue (s); 0 for none.

    Returns
    -------
    ndarray, shape (n, T) (or (T,) for scalar parameters).
    """
    t = np.asarray(t, dtype=np.float64)
    flow = np.asarray(flow, dtype=np.float64)
    mtt = np.asarray(mtt, dtype=np.float64)
    scalar = flow.ndim == 0 and mtt.ndim == 0
    flow, mtt = np.broadcast_arrays(np.atleast_1d(flow), np.atleast_1d(mtt))
    tf = np.arange(0.0, t[-1] + fine_dt, fine_dt)
    ca = np.asarray(aif_fn(tf - delay), dtype=np.float64)
    if dispersion > 0:
        ca = fft_convolve(ca, dispersion_kernel(tf, dispersion), fine_dt)
    r = residue_function(tf, mtt, shape, lam)
    # Trapezoid rule: the FFT sum counts both end points fully; remove half of each.
    conv = fft_convolve(r, ca[None, :], fine_dt)
    conv -= 0.5 * fine_dt * (r[:, :1] * ca[None, :] + r * ca[None, :1])
    ct = flow[:, None] * conv
    out = interpolate_rows(ct, *linear_weights(t, tf))
    return out[0] if scalar else out


def gamma_exponential_convolution(t, t0, alpha, beta, mtt, flow=1.0, scale=1.0):
    """Exact ``F * (C_a * exp(-t/MTT))(t)`` for a gamma-variate AIF.

    With ``C_a(t) = scale * (t - t0)^alpha exp(-(t - t0)/beta)``::

        (C_a * R)(t) = scale * exp(-s/MTT) * Gamma(alpha+1) * P(alpha+1, c s) / c^(alpha+1)

    where ``s = t - t0``, ``c = 1/beta - 1/MTT`` (> 0 required) and ``P`` the
    regularised lower incomplete gamma function. Used to verify the numerical
    convolutions and the deconvolution backends against a closed form.
    """
    from scipy import special

    t = np.asarray(t, dtype=np.float64)
    s = np.clip(t - t0, 0.0, None)
    c = 1.0 / beta - 1.0 / mtt
    if c <= 0:
        raise ValueError("closed form needs beta < mtt")
    a1 = alpha + 1.0
    val = np.exp(-s / mtt) * special.gamma(a1) * special.gammainc(a1, c * s) / c ** a1
    return flow * scale * val


def signal_from_concentration(conc, s0, te):
    """DSC signal ``S0 exp(-TE * dR2*)`` (inverse of DESIGN section 4's conversion)."""
    return np.asarray(s0)[..., None] * np.exp(-te * np.asarray(conc, dtype=np.float64)) \
        if np.ndim(s0) else s0 * np.exp(-te * np.asarray(conc, dtype=np.float64))
