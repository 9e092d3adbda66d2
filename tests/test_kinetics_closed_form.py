"""Kinetic models against closed forms written here, independently of perfmap.

The AIF is a sum of terms ``a t'^p exp(-mu t')`` (``t' = t - t0``, ``p`` 0 or 1):
a gamma-variate first pass and a smooth biexponential washout. Its convolution
with ``exp(-k t)`` and its integral have closed forms, so every model's tissue
curve is known exactly:

- Tofts / extended Tofts: ``vp c_a + Ktrans (c_a * exp(-kep t))``;
- Patlak: ``vp c_a + Ktrans int c_a``;
- 2CXM: the impulse response from the eigen-decomposition of the two-compartment
  matrix (``numpy.linalg.eig``), itself checked against a numerical solution of
  the compartment ODEs (``scipy.integrate.solve_ivp``).

Sampled at 1 s, noise-free curves must give every parameter within 1 %
(a factor-of-1.2 error anywhere fails). The convolution itself must be exact
(1e-11) for a piecewise-linear AIF on a non-uniform grid, against adaptive
quadrature of every linear segment.
"""

from __future__ import annotations

import numpy as np
import pytest

from perfmap.kinetics import get_model
from perfmap.kinetics.convolution import cumulative_integral, exp_convolution, shift_curve

T0 = 10.0
# (coefficient, power, rate): 6 (t'/8) e^(1 - t'/8) + 1.5 (e^(-t'/250) - e^(-t'/15)), mM
TERMS = [(6.0 * np.e / 8.0, 1, 1 / 8.0), (1.5, 0, 1 / 250.0), (-1.5, 0, 1 / 15.0)]
TIMES = np.arange(0.0, 300.0, 1.0)


def aif(t):
    s = np.clip(t - T0, 0, None)
    return sum(a * s ** p * np.exp(-mu * s) for a, p, mu in TERMS)


def conv_exp(t, k):
    """Exact ``int_0^t aif(tau) exp(-k (t - tau)) dtau`` (k = 0: the integral)."""
    s = np.clip(t - T0, 0, None)
    out = np.zeros_like(s)
    for a, p, mu in TERMS:
        d = k - mu
        if p == 0:
            out += a * (np.exp(-mu * s) - np.exp(-k * s)) / d
        else:
            out += a * (np.exp(-mu * s) * (d * s - 1) + np.exp(-k * s)) / d ** 2
    return out


def tcxm_exponentials(fp, ps, vp, ve):
    """Amplitudes and rates (1/s) of the 2CXM impulse response by eigen-decomposition."""
    M = np.array([[-(fp + ps) / vp, ps / vp], [ps / ve, -ps / ve]])
    lam, V = np.linalg.eig(M)
    W = np.linalg.inv(V)
    b = np.array([fp / vp, 0.0])
    c = np.array([vp, ve])
    amps = (c @ V) * (W @ b)
    return amps.real, -lam.real


def tcxm_curve(t, fp, ps, vp, ve):
    amps, rates = tcxm_exponentials(fp, ps, vp, ve)
    return sum(a * conv_exp(t, r) for a, r in zip(amps, rates))


def test_tcxm_closed_form_matches_the_ode():
    from scipy.integrate import solve_ivp

    fp, ps, vp, ve = 0.5 / 60, 0.1 / 60, 0.05, 0.2      # 1/s, 1/s, ml/ml
    rhs = lambda t, y: [(fp * (aif(t) - y[0]) + ps * (y[1] - y[0])) / vp,
                        ps * (y[0] - y[1]) / ve]
    sol = solve_ivp(rhs, (0, TIMES[-1]), [0.0, 0.0], t_eval=TIMES, rtol=1e-10, atol=1e-12,
                    max_step=0.5)
    ode = vp * sol.y[0] + ve * sol.y[1]
    np.testing.assert_allclose(tcxm_curve(TIMES, fp, ps, vp, ve), ode, atol=1e-7)


def test_convolution_is_exact_for_a_piecewise_linear_aif():
    rng = np.random.default_rng(3)
    t = np.concatenate([[0.0], np.cumsum(rng.uniform(0.2, 3.0, 60))])   # non-uniform grid
    a = rng.uniform(0, 5, t.size)
    rates = np.array([0.0, 1e-4, 3e-3, 0.05, 0.7, 6.0])

    def segment_sum(ti, k):
        """Adaptive quadrature, segment by segment, of the linearly interpolated AIF."""
        from scipy.integrate import quad

        total = 0.0
        for j in np.flatnonzero(t[1:] <= ti):
            t0, t1, a0, a1 = t[j], t[j + 1], a[j], a[j + 1]
            f = lambda tau: (a0 + (a1 - a0) * (tau - t0) / (t1 - t0)) * np.exp(-k * (ti - tau))
            total += quad(f, t0, t1, epsabs=0, epsrel=1e-13)[0]
        return total

    F = exp_convolution(a, t, rates)
    rows = np.arange(0, t.size, 6)
    ref = np.array([[segment_sum(t[i], k) for k in rates] for i in rows])
    np.testing.assert_allclose(F[rows], ref, rtol=1e-11, atol=1e-12)
    # per-voxel AIFs give the same numbers
    np.testing.assert_allclose(exp_convolution(np.tile(a[:, None], (1, rates.size)), t, rates),
                               F, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(cumulative_integral(a, t)[rows], ref[:, 0], rtol=1e-12, atol=1e-12)


def test_convolution_converges_to_the_smooth_closed_form():
    # The sampled AIF is linear between samples only approximately: second-order error.
    errors = []
    for dt in (2.0, 1.0, 0.5):
        t = np.arange(0.0, 300.0, dt)
        F = exp_convolution(aif(t), t, np.array([0.02]))[:, 0]
        errors.append(np.max(np.abs(F - conv_exp(t, 0.02))))
    assert errors[0] / errors[1] == pytest.approx(4, rel=0.15)
    assert errors[1] / errors[2] == pytest.approx(4, rel=0.15)


def test_shift_curve_is_linear_interpolation():
    t = np.arange(0.0, 10.0)
    c = np.arange(10.0) ** 2
    np.testing.assert_allclose(shift_curve(c, t, 2.5)[3:], np.interp(t[3:] - 2.5, t, c))
    assert shift_curve(c, t, np.array([0.0, 1.0])).shape == (10, 2)


def _fit(name, truth, curves, **opts):
    fit = get_model(name)(**opts).fit(curves, aif(TIMES), TIMES)
    assert fit.n_failed == 0, fit.info
    for key, values in truth.items():
        np.testing.assert_allclose(fit.params[key], values, rtol=0.01, err_msg=key)
    return fit


def test_tofts_phantom():
    ktrans = np.array([0.02, 0.1, 0.25, 0.6])          # 1/min
    ve = np.array([0.05, 0.2, 0.4, 0.8])
    curves = np.array([k / 60 * conv_exp(TIMES, k / 60 / v) for k, v in zip(ktrans, ve)])
    _fit("tofts", {"ktrans": ktrans, "ve": ve, "kep": ktrans / ve}, curves)


def test_extended_tofts_phantom():
    ktrans = np.array([0.02, 0.1, 0.25, 0.6])
    ve = np.array([0.05, 0.2, 0.4, 0.8])
    vp = np.array([0.01, 0.05, 0.02, 0.1])
    curves = np.array([p * aif(TIMES) + k / 60 * conv_exp(TIMES, k / 60 / v)
                       for k, v, p in zip(ktrans, ve, vp)])
    _fit("etofts", {"ktrans": ktrans, "ve": ve, "vp": vp}, curves)


def test_patlak_phantom():
    ktrans = np.array([0.002, 0.01, 0.05, 0.2])
    vp = np.array([0.01, 0.05, 0.1, 0.3])
    curves = np.array([p * aif(TIMES) + k / 60 * conv_exp(TIMES, 0.0)
                       for k, p in zip(ktrans, vp)])
    _fit("patlak", {"ktrans": ktrans, "vp": vp}, curves)


def test_2cxm_phantom():
    fp = np.array([10.0, 30.0, 60.0, 120.0])            # ml/100 ml/min
    ps = np.array([2.0, 5.0, 15.0, 30.0])
    vp = np.array([0.02, 0.05, 0.08, 0.1])
    ve = np.array([0.1, 0.2, 0.3, 0.4])
    curves = np.array([tcxm_curve(TIMES, f / 6000, p / 6000, v, e)
                       for f, p, v, e in zip(fp, ps, vp, ve)])
    fit = _fit("2cxm", {"fp": fp, "ps": ps, "vp": vp, "ve": ve}, curves)
    # derived Ktrans = E Fp, E = PS / (Fp + PS) (Sourbron & Buckley 2012)
    np.testing.assert_allclose(fit.params["ktrans"], fp * ps / (fp + ps) / 100, rtol=0.01)


def test_delayed_phantom_recovers_the_delay():
    ktrans, ve, vp, delay = 0.15, 0.3, 0.04, 4.3
    t = TIMES - delay
    curve = vp * aif(t) + ktrans / 60 * conv_exp(t, ktrans / 60 / ve)
    fit = _fit("etofts", {"ktrans": [ktrans], "ve": [ve], "vp": [vp]}, curve[None],
               fit_delay=True)
    # parabolic refinement between the 1-s grid delays: within a tenth of a step
    assert fit.params["delay"][0] == pytest.approx(delay, abs=0.1)


def test_plasma_like_voxel_fails_on_the_kep_bound():
    # A curve proportional to the AIF has no extravascular component: the Tofts
    # model can only follow it with an unbounded kep, which is refused (NaN, counted).
    fit = get_model("tofts")().fit(0.3 * aif(TIMES)[None], aif(TIMES), TIMES)
    assert fit.failed[0] and fit.info["failures"]["at_bound"] == 1
    assert np.isnan(fit.params["ktrans"][0])
