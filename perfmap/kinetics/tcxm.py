"""Two-compartment exchange model (2CXM).

Plasma (``vp``) and interstitium (``ve``) exchange at ``PS``; plasma flow ``Fp``
(Brix et al. 2004; Sourbron & Buckley 2012)::

    vp dc_p/dt = Fp (c_a - c_p) + PS (c_e - c_p),   ve dc_e/dt = PS (c_p - c_e)
    C = vp c_p + ve c_e

``c_a`` is the plasma AIF. The tissue impulse response is bi-exponential::

    C(t) = K+ F(t; s+) + K- F(t; s-),   F(t; s) = int_0^t c_a(tau) exp(-s (t - tau)) dtau
    S = (Fp + PS) / vp + PS / ve,   P = Fp PS / (vp ve),   D = sqrt(S^2 - 4 P)
    s+- = (S +- D) / 2,   c0 = PS (1/vp + 1/ve)
    K+ = Fp (s+ - c0) / D,   K- = Fp (c0 - s-) / D

(the partial fractions of the transfer function ``Fp (s + c0) / (s^2 + S s + P)``).
The Jacobian with respect to ``(Fp, PS, vp, ve)`` is analytic, by the chain rule
through ``S``, ``P``, ``c0`` and ``dF/ds``
(:func:`perfmap.kinetics.convolution.exp_convolution`).

Start: the linear least-squares form of Flouri, Lesnic & Sourbron (2016),
obtained by integrating the second-order equation twice::

    C = -S int C - P iint C + Fp int c_a + P (vp + ve) iint c_a

from which ``vp = Fp / (S - b4 / Fp)`` (``b4`` the last coefficient),
``ve = b4 / P - vp`` and ``PS = P vp ve / Fp``. Where that inversion is not
physical the start falls back to the extended-Tofts (Murase) estimate with
``PS = Ktrans``. Rates are in 1/s inside; ``Fp`` and ``PS`` are reported in
ml/100 ml/min (x 6000), with the derived ``Ktrans = Fp PS / (Fp + PS)`` and
``kep = Ktrans / ve`` in 1/min. A fit ending at the upper bound of Fp or PS, or
at the lower bound of Fp, fails the voxel.

References
----------
Brix G, Kiessling F, Lucht R, et al. Microcirculation and microvasculature in
    breast tumors: pharmacokinetic analysis of dynamic MR image series. Magn
    Reson Med 2004;52:420-429.
Sourbron SP, Buckley DL. Tracer kinetic modelling in MRI: estimating perfusion
    and capillary permeability. Phys Med Biol 2012;57:R1-R33.
Flouri D, Lesnic D, Sourbron SP. Fitting the two-compartment model in DCE-MRI
    by linear inversion. Magn Reson Med 2016;76:998-1006.
"""

from __future__ import annotations

import numpy as np

from .base import KineticModel
from .fitting import ArterialInput, least_squares_start, near
from .convolution import cumulative_integral, exp_convolution
from .registry import register
from .tofts import ExtendedTofts

ML100_MIN = 6000.0                    # 1/s -> ml/100 ml/min
FP_MIN, FP_MAX = 1e-5, 500.0 / ML100_MIN
PS_MAX = 500.0 / ML100_MIN
V_MIN = 1e-4


def _rates(x):
    fp, ps, vp, ve = x.T
    S = (fp + ps) / vp + ps / ve
    P = fp * ps / (vp * ve)
    D = np.sqrt(np.maximum(S * S - 4 * P, 0.0))
    D = np.maximum(D, 1e-12 * S)
    c0 = ps * (1 / vp + 1 / ve)
    sp, sm = (S + D) / 2, np.maximum((S - D) / 2, 0.0)
    return S, P, D, c0, sp, sm


@register("2cxm")
class TwoCompartmentExchange(KineticModel):
    """2CXM: ``Fp``, ``PS`` (ml/100 ml/min), ``vp``, ``ve`` (ml/ml); derived ``ktrans``, ``kep``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0, 300.0, 1.0)
    >>> aif = 5 * (t / 15) * np.exp(1 - t / 15)
    >>> model = TwoCompartmentExchange()
    >>> truth = {"fp": [40.0], "ps": [10.0], "vp": [0.05], "ve": [0.2]}
    >>> fit = model.fit(model.predict(truth, aif, t), aif, t)
    >>> [round(float(fit[k][0]), 3) for k in ("fp", "ps", "vp", "ve")]
    [40.0, 10.0, 0.05, 0.2]
    """

    internal = ("fp", "ps", "vp", "ve")
    units = {"fp": "ml/100ml/min", "ps": "ml/100ml/min", "vp": "ml/ml", "ve": "ml/ml",
             "ktrans": "1/min", "kep": "1/min"}

    def bounds(self):
        return (np.array([FP_MIN, 0.0, V_MIN, V_MIN]), np.array([FP_MAX, PS_MAX, 1.0, 1.0]),
                np.array([5e-3, 1e-3, 0.05, 0.2]))

    def implausible(self, x):
        lo, hi, _ = self.bounds()
        return (near(x[:, 0], lo[0], lo[0], hi[0]) | near(x[:, 0], hi[0], lo[0], hi[0])
                | near(x[:, 1], hi[1], lo[1], hi[1]))

    def start(self, y, inp: ArterialInput):
        iy = cumulative_integral(y, inp.times)
        ica = inp.integral
        b = least_squares_start([-iy, -cumulative_integral(iy, inp.times), ica,
                                 cumulative_integral(ica, inp.times)], y)
        S, P, fp, b4 = b.T
        with np.errstate(all="ignore"):
            vp = fp / (S - b4 / fp)
            ve = b4 / P - vp
            ps = P * vp * ve / fp
        x = np.stack([fp, ps, vp, ve], axis=1)
        lo, hi, _ = self.bounds()
        good = np.all(np.isfinite(x) & (x > lo) & (x < hi), axis=1)
        if not good.all():                                   # fall back to extended Tofts
            et = ExtendedTofts().start(y[:, ~good], inp.select(np.flatnonzero(~good)))
            kep, ve_, v = et.T
            kt = kep * ve_
            fb = np.stack([np.maximum(10 * kt, 20 / ML100_MIN), kt, np.maximum(v, 0.01),
                           np.clip(ve_, 0.05, 0.9)], axis=1)
            x[~good] = fb
        return np.clip(x, lo, hi)

    def curves(self, x, inp: ArterialInput, jacobian: bool):
        S, P, D, c0, sp, sm = _rates(x)
        fp = x[:, 0]
        kp, km = fp * (sp - c0) / D, fp * (c0 - sm) / D
        if not jacobian:
            Fp_ = exp_convolution(inp.aif, inp.times, sp)
            Fm_ = exp_convolution(inp.aif, inp.times, sm)
            return Fp_ * kp + Fm_ * km, None
        Fp_, dFp = exp_convolution(inp.aif, inp.times, sp, derivative=True)
        Fm_, dFm = exp_convolution(inp.aif, inp.times, sm, derivative=True)
        model = Fp_ * kp + Fm_ * km
        fp, ps, vp, ve = x.T
        dS = [1 / vp, 1 / vp + 1 / ve, -(fp + ps) / vp ** 2, -ps / ve ** 2]
        dP = [ps / (vp * ve), fp / (vp * ve), -P / vp, -P / ve]
        dc = [0.0, 1 / vp + 1 / ve, -ps / vp ** 2, -ps / ve ** 2]
        cols = []
        for p in range(4):
            dD = (S * dS[p] - 2 * dP[p]) / D
            dsp, dsm = (dS[p] + dD) / 2, (dS[p] - dD) / 2
            dfp = 1.0 if p == 0 else 0.0
            dkp = (dfp * (sp - c0) + fp * (dsp - dc[p]) - kp * dD) / D
            dkm = (dfp * (c0 - sm) + fp * (dc[p] - dsm) - km * dD) / D
            col = Fp_ * dkp
            col += dFp * (kp * dsp)
            col += Fm_ * dkm
            col += dFm * (km * dsm)
            cols.append(col)
        return model, cols

    def to_maps(self, x):
        fp, ps, vp, ve = x.T
        with np.errstate(divide="ignore", invalid="ignore"):
            kt = fp * ps / (fp + ps)
            return {"fp": fp * ML100_MIN, "ps": ps * ML100_MIN, "vp": vp.copy(), "ve": ve.copy(),
                    "ktrans": kt * 60.0, "kep": kt / ve * 60.0}

    def from_maps(self, maps):
        cols = [np.asarray(maps["fp"], np.float64) / ML100_MIN,
                np.asarray(maps["ps"], np.float64) / ML100_MIN,
                np.asarray(maps["vp"], np.float64), np.asarray(maps["ve"], np.float64)]
        return np.stack(np.broadcast_arrays(*cols), axis=1)
