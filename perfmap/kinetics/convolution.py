"""Exact convolution of a piecewise-linear AIF with exponentials, and helpers.

Tracer-kinetic models with compartments reduce to sums of terms

    F(t; k) = integral_0^t  c_a(tau) exp(-k (t - tau)) dtau

of the arterial (plasma) concentration ``c_a`` with an exponential of rate
``k`` (1/s). Between samples the AIF is taken as linear (the interpolation that
connects the measured points), and then ``F`` is exact at the sampling times
through the recursion obtained by integrating ``exp(-k (t - tau))`` times a
linear segment analytically over each interval (the compartment solutions of
Sourbron & Buckley 2012 are sums of such terms)::

    F_{i+1} = E F_i + D (w0(x) a_i + w1(x) a_{i+1}),   x = k D,  E = exp(-x)
    w0(x) = (1 - E - x E) / x^2,    w1(x) = (1 - E) / x - w0(x)

with ``D = t_{i+1} - t_i`` (any, also non-uniform, grid), ``a_i = c_a(t_i)``
and ``F_0 = 0``. As ``k -> 0`` the weights tend to 1/2 (the trapezoid rule),
evaluated there by their Taylor series. The derivative ``dF/dk`` (for analytic
Jacobians) follows by differentiating the recursion exactly::

    dF_{i+1} = E dF_i - D E F_i + D^2 (w0'(x) a_i + w1'(x) a_{i+1})
    w0'(x) = (E - 2 w0) / x,   w1'(x) = -w0 - w0'

Arrays are *time-major*: curves of ``k`` voxels are ``(T, k)``, so that each
step of the recursion (a Python loop over the ``T`` frames, never over voxels)
works on contiguous rows.

References
----------
Sourbron SP, Buckley DL. Tracer kinetic modelling in MRI: estimating perfusion
    and capillary permeability. Phys Med Biol 2012;57:R1-R33.
"""

from __future__ import annotations

import numpy as np

_SMALL = 1e-2


def _weights(x, derivative: bool):
    """w0, w1 (and their x-derivatives) of the local linear-segment integral."""
    x = np.asarray(x, dtype=np.float64)
    small = x < _SMALL
    xs = np.where(small, 1.0, x)
    e = np.exp(-x)
    one_minus_e = -np.expm1(-xs)
    u = one_minus_e / xs
    w0 = (one_minus_e - xs * np.exp(-xs)) / xs ** 2
    # Taylor series for small x (relative error below 1e-13 for x < 1e-2)
    xx = np.where(small, x, 0.0)
    u_s = 1 - xx / 2 + xx ** 2 / 6 - xx ** 3 / 24 + xx ** 4 / 120
    w0_s = 0.5 - xx / 3 + xx ** 2 / 8 - xx ** 3 / 30 + xx ** 4 / 144
    u = np.where(small, u_s, u)
    w0 = np.where(small, w0_s, w0)
    w1 = u - w0
    if not derivative:
        return e, w0, w1
    dw0 = np.where(small, -1 / 3 + xx / 4 - xx ** 2 / 10 + xx ** 3 / 36 - xx ** 4 / 168,
                   (np.exp(-xs) - 2 * w0) / xs)
    return e, w0, w1, dw0, -w0 - dw0


def _steps(times):
    t = np.asarray(times, dtype=np.float64)
    dt = np.diff(t)
    if dt.size and np.all(np.abs(dt - dt[0]) <= 1e-9 * abs(dt[0])):
        return float(dt[0])
    return dt[:, None]


def _source(c0, c1, a, out):
    """``out[1:] = c0 * a[:-1] + c1 * a[1:]`` (elementwise: no threaded BLAS call)."""
    if a.ndim == 1 and c0.ndim == 1:           # one AIF, uniform grid
        np.multiply(a[:-1, None], c0, out=out[1:])
        out[1:] += a[1:, None] * c1
        return
    a2 = a[:, None] if a.ndim == 1 else a
    tmp = np.empty(out.shape[1])
    for i in range(out.shape[0] - 1):
        np.multiply(c0 if c0.ndim == 1 else c0[i], a2[i], out=out[i + 1])
        np.multiply(c1 if c1.ndim == 1 else c1[i], a2[i + 1], out=tmp)
        out[i + 1] += tmp


def exp_convolution(aif, times, rate, derivative: bool = False):
    """``F(t_i; k) = integral_0^t_i c_a(tau) exp(-k (t_i - tau)) dtau``, exact for linear segments.

    Parameters
    ----------
    aif : array_like, shape (T,) or (T, k)
        Arterial concentration at ``times``: one curve for all voxels, or one
        per voxel (time-major).
    times : array_like, shape (T,)
        Sampling times (s), strictly increasing; the integral starts at
        ``times[0]``.
    rate : array_like, shape (k,)
        Rate constant ``k`` (1/s) per voxel, ``>= 0``.
    derivative : bool
        Also return ``dF/dk``.

    Returns
    -------
    F : ndarray, shape (T, k)
        The convolution (units of ``aif`` times s).
    dF : ndarray, shape (T, k)
        ``dF/dk`` (only with ``derivative=True``).

    Examples
    --------
    A unit step AIF gives ``(1 - exp(-k t)) / k`` exactly:

    >>> import numpy as np
    >>> t = np.arange(5.0)
    >>> F = exp_convolution(np.ones(5), t, np.array([0.5]))
    >>> np.allclose(F[:, 0], (1 - np.exp(-0.5 * t)) / 0.5)
    True
    """
    rate = np.atleast_1d(np.asarray(rate, dtype=np.float64))
    a = np.asarray(aif, dtype=np.float64)
    d = _steps(times)
    T, k = a.shape[0], rate.shape[0]
    w = _weights(d * rate, derivative)
    e = w[0]
    out = np.zeros((T, k))
    _source(d * w[1], d * w[2], a, out)
    tmp = np.empty(k)
    for i in range(T - 1):
        np.multiply(out[i], e if e.ndim == 1 else e[i], out=tmp)
        out[i + 1] += tmp
    if not derivative:
        return out
    dout = np.zeros((T, k))
    _source(d * d * w[3], d * d * w[4], a, dout)
    de = -d * e
    tmp2 = np.empty(k)
    for i in range(T - 1):
        np.multiply(dout[i], e if e.ndim == 1 else e[i], out=tmp)
        np.multiply(out[i], de if de.ndim == 1 else de[i], out=tmp2)
        tmp += tmp2
        dout[i + 1] += tmp
    return out, dout


def cumulative_integral(y, times):
    """Running integral ``integral_t0^t_i y dt`` by the trapezoid rule (exact for linear segments).

    Parameters
    ----------
    y : array_like, shape (T,) or (T, k)
        Curves, time on the first axis.
    times : array_like, shape (T,)
        Sampling times (s).

    Returns
    -------
    ndarray, same shape as ``y``, float64
        Zero at ``times[0]``.

    Examples
    --------
    >>> cumulative_integral([0.0, 1.0, 2.0], [0.0, 1.0, 2.0]).tolist()
    [0.0, 0.5, 2.0]
    """
    y = np.asarray(y, dtype=np.float64)
    dt = np.diff(np.asarray(times, dtype=np.float64))
    dt = dt.reshape((-1,) + (1,) * (y.ndim - 1))
    out = np.zeros_like(y)
    np.cumsum(0.5 * dt * (y[1:] + y[:-1]), axis=0, out=out[1:])
    return out


def shift_curve(curve, times, delay):
    """The curve delayed by ``delay`` seconds, ``c(t - delay)``, by linear interpolation.

    Before its first sample the curve is held at its first value, after its
    last at its last value.

    Parameters
    ----------
    curve : array_like, shape (T,)
        Curve sampled at ``times``.
    times : array_like, shape (T,)
        Sampling times (s).
    delay : float or array_like, shape (k,)
        Delay(s) in seconds (positive: later).

    Returns
    -------
    ndarray, shape (T,) for a scalar delay, else (T, k)

    Examples
    --------
    >>> shift_curve([0.0, 0.0, 2.0, 4.0], [0.0, 1.0, 2.0, 3.0], 0.5).tolist()
    [0.0, 0.0, 1.0, 3.0]
    """
    t = np.asarray(times, dtype=np.float64)
    c = np.asarray(curve, dtype=np.float64)
    d = np.asarray(delay, dtype=np.float64)
    q = t[:, None] - np.atleast_1d(d)[None, :]
    out = np.interp(q.ravel(), t, c).reshape(q.shape)
    return out[:, 0] if d.ndim == 0 else out
