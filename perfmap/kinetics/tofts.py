"""Tofts and extended Tofts models.

Extended Tofts (Tofts et al. 1999; Sourbron & Buckley 2012)::

    C(t) = vp c_p(t) + Ktrans integral_0^t c_p(tau) exp(-kep (t - tau)) dtau,
    kep = Ktrans / ve

and the Tofts model is the same with ``vp = 0``. Internally the parameters are
``(Ktrans, kep[, vp])`` with rates in 1/s, which makes the model linear in
``Ktrans`` and ``vp``; the convolution is exact for a piecewise-linear AIF
(:func:`perfmap.kinetics.convolution.exp_convolution`) and the Jacobian is
analytic::

    dC/dKtrans = F(kep),   dC/dkep = Ktrans dF/dkep,   dC/dvp = c_p

Start: the linearised model of Murase (2004), solved by linear least squares
per voxel::

    C(t) = (Ktrans + kep vp) int_0^t c_p - kep int_0^t C + vp c_p(t)

Bounds: ``0 <= Ktrans <= 5 /min``, ``1e-5 /s <= kep <= 3 /s`` (180 /min),
``0 <= vp <= 1`` and ``ve = Ktrans / kep <= 1`` (kept by raising kep). A fit
ending at the upper bound of Ktrans or kep fails the voxel: the data then
cannot tell the extravascular space from the plasma.

References
----------
Tofts PS, Brix G, Buckley DL, et al. Estimating kinetic parameters from dynamic
    contrast-enhanced T1-weighted MRI of a diffusable tracer: standardized
    quantities and symbols. J Magn Reson Imaging 1999;10:223-232.
Murase K. Efficient method for calculating kinetic parameters using
    T1-weighted dynamic contrast-enhanced magnetic resonance imaging. Magn
    Reson Med 2004;51:858-862.
Sourbron SP, Buckley DL. Tracer kinetic modelling in MRI: estimating perfusion
    and capillary permeability. Phys Med Biol 2012;57:R1-R33.
"""

from __future__ import annotations

import numpy as np

from .base import ArterialInput, KineticModel, least_squares_start
from .convolution import cumulative_integral, exp_convolution
from .registry import register

PER_MIN = 60.0
KTRANS_MAX = 5.0 / PER_MIN          # 1/s
KEP_MIN, KEP_MAX = 1e-5, 3.0        # 1/s
DEFAULT_KTRANS, DEFAULT_KEP, DEFAULT_VP = 0.1 / PER_MIN, 0.5 / PER_MIN, 0.02


class _ToftsFamily(KineticModel):
    with_vp = False

    def bounds(self):
        lo = [0.0, KEP_MIN] + [0.0] * self.with_vp
        hi = [KTRANS_MAX, KEP_MAX] + [1.0] * self.with_vp
        scale = [1e-3, 1e-2] + [0.05] * self.with_vp
        fail_hi = [True, True] + [False] * self.with_vp
        return (np.array(lo), np.array(hi), np.array(scale),
                np.zeros(len(lo), bool), np.array(fail_hi))

    def project(self, x):
        x[:, 1] = np.maximum(x[:, 1], x[:, 0])          # ve = Ktrans / kep <= 1
        return x

    def start(self, y, inp: ArterialInput):
        cols = [inp.integral, -cumulative_integral(y, inp.times)]
        if self.with_vp:
            cols.append(inp.aif)
        b = least_squares_start(cols, y)
        kep = b[:, 1]
        good = np.isfinite(b).all(1) & (kep > KEP_MIN)
        kep = np.where(good, kep, DEFAULT_KEP)
        vp = np.where(good, b[:, 2], DEFAULT_VP) if self.with_vp else 0.0
        ktrans = np.where(good, b[:, 0] - kep * vp, DEFAULT_KTRANS)
        x = [ktrans, kep] + ([vp] if self.with_vp else [])
        lo, hi = self.bounds()[:2]
        return self.project(np.clip(np.stack(x, axis=1), lo, hi))

    def curves(self, x, inp: ArterialInput, jacobian: bool):
        ktrans, kep = x[:, 0], x[:, 1]
        if jacobian:
            F, dF = exp_convolution(inp.aif, inp.times, kep, derivative=True)
        else:
            F = exp_convolution(inp.aif, inp.times, kep)
        model = F * ktrans
        ca = inp.aif
        if self.with_vp:
            model += (ca if ca.ndim == 2 else ca[:, None]) * x[:, 2]
        if not jacobian:
            return model, None
        dF *= ktrans
        cols = [F, dF] + ([ca] if self.with_vp else [])
        return model, cols

    def to_maps(self, x):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {"ktrans": x[:, 0] * PER_MIN, "ve": x[:, 0] / x[:, 1], "kep": x[:, 1] * PER_MIN}
        if self.with_vp:
            out["vp"] = x[:, 2].copy()
        return out

    def from_maps(self, maps):
        ktrans = np.asarray(maps["ktrans"], np.float64) / PER_MIN
        kep = (np.asarray(maps["kep"], np.float64) / PER_MIN if "kep" in maps
               else ktrans / np.asarray(maps["ve"], np.float64))
        cols = [ktrans, kep] + ([maps["vp"]] if self.with_vp else [])
        return np.stack(np.broadcast_arrays(*[np.asarray(c, np.float64) for c in cols]), axis=1)


@register("tofts")
class Tofts(_ToftsFamily):
    """Tofts model: ``Ktrans`` (1/min), ``ve`` (ml/ml), derived ``kep`` (1/min).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0, 300.0, 2.0)
    >>> aif = 5 * (t / 20) * np.exp(1 - t / 20)                       # mM
    >>> model = Tofts()
    >>> c = model.predict({"ktrans": [0.2], "ve": [0.3]}, aif, t)
    >>> fit = model.fit(c, aif, t)
    >>> round(float(fit["ktrans"][0]), 4), round(float(fit["ve"][0]), 4), fit.n_failed
    (0.2, 0.3, 0)
    """

    internal = ("ktrans", "kep")
    units = {"ktrans": "1/min", "ve": "ml/ml", "kep": "1/min"}
    with_vp = False


@register("etofts")
class ExtendedTofts(_ToftsFamily):
    """Extended Tofts model: ``Ktrans`` (1/min), ``ve``, ``vp`` (ml/ml), derived ``kep``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0, 300.0, 2.0)
    >>> aif = 5 * (t / 20) * np.exp(1 - t / 20)
    >>> model = ExtendedTofts()
    >>> c = model.predict({"ktrans": [0.1], "ve": [0.2], "vp": [0.05]}, aif, t)
    >>> fit = model.fit(c, aif, t)
    >>> [round(float(fit[k][0]), 4) for k in ("ktrans", "ve", "vp")]
    [0.1, 0.2, 0.05]
    """

    internal = ("ktrans", "kep", "vp")
    units = {"ktrans": "1/min", "ve": "ml/ml", "vp": "ml/ml", "kep": "1/min"}
    with_vp = True
