"""Tofts and extended Tofts models.

Extended Tofts (Tofts et al. 1999; Sourbron & Buckley 2012)::

    C(t) = vp c_p(t) + Ktrans integral_0^t c_p(tau) exp(-kep (t - tau)) dtau,
    kep = Ktrans / ve

and the Tofts model is the same with ``vp = 0``. Internally the parameters are
``(kep, ve[, vp])`` with ``kep`` in 1/s: every bound is then a box
(``ve <= 1`` included) and the model is linear in ``ve`` and ``vp``. With
``G(kep) = kep F(kep)``, ``F`` the exact convolution of the piecewise-linear AIF
with ``exp(-kep t)`` (:func:`perfmap.kinetics.convolution.exp_convolution`),
``C = vp c_p + ve G(kep)`` and the Jacobian is analytic::

    dC/dkep = ve (F + kep dF/dkep),   dC/dve = G,   dC/dvp = c_p

Start: the linearised model of Murase (2004), solved by linear least squares
per voxel::

    C(t) = (Ktrans + kep vp) int_0^t c_p - kep int_0^t C + vp c_p(t)

Bounds: ``1e-5 /s <= kep <= 3 /s`` (180 /min), ``0 <= ve <= 1``,
``0 <= vp <= 1``. A fit ending with kep at its upper bound while ``ve`` still
contributes, or with ``Ktrans = kep ve`` above 5 /min, fails the voxel: the
data then cannot tell the extravascular space from the plasma. Where there is
no extravascular signal (Ktrans = 0: ``ve`` at 0 or kep at its floor) the fit
converges with Ktrans 0, which is the measurement; ``ve`` and ``kep`` are then
not identifiable and are reported as the fit left them (``ve`` about 0): read
them only where Ktrans is above its noise level.

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

from .base import KineticModel
from .fitting import ArterialInput, least_squares_start, near
from .convolution import cumulative_integral, exp_convolution
from .registry import register

PER_MIN = 60.0
KTRANS_MAX = 5.0 / PER_MIN          # 1/s
KEP_MIN, KEP_MAX = 1e-5, 3.0        # 1/s
DEFAULT_KEP, DEFAULT_VE, DEFAULT_VP = 0.5 / PER_MIN, 0.2, 0.02


class _ToftsFamily(KineticModel):
    with_vp = False

    def bounds(self):
        n = 2 + self.with_vp
        return (np.array([KEP_MIN, 0.0, 0.0][:n]), np.array([KEP_MAX, 1.0, 1.0][:n]),
                np.array([1e-2, 0.1, 0.05][:n]))

    def implausible(self, x):
        lo, hi, _ = self.bounds()
        kep_max = near(x[:, 0], hi[0], lo[0], hi[0]) & (x[:, 1] > 1e-6)
        return kep_max | (x[:, 0] * x[:, 1] > KTRANS_MAX * (1 + 1e-9))

    def start(self, y, inp: ArterialInput):
        cols = [inp.integral, -cumulative_integral(y, inp.times)]
        if self.with_vp:
            cols.append(inp.aif)
        b = least_squares_start(cols, y)
        kep = b[:, 1]
        good = np.isfinite(b).all(1) & (kep > KEP_MIN)
        kep = np.where(good, kep, DEFAULT_KEP)
        vp = np.where(good, b[:, 2], DEFAULT_VP) if self.with_vp else 0.0
        ve = np.where(good, (b[:, 0] - kep * vp) / kep, DEFAULT_VE)
        x = [kep, ve] + ([vp] if self.with_vp else [])
        lo, hi, _ = self.bounds()
        return np.clip(np.stack(x, axis=1), lo, hi)

    def curves(self, x, inp: ArterialInput, jacobian: bool):
        kep, ve = x[:, 0], x[:, 1]
        ca = inp.aif
        if jacobian:
            F, dF = exp_convolution(ca, inp.times, kep, derivative=True)
            dF *= kep
            dF += F                                       # d(kep F)/dkep
        else:
            F = exp_convolution(ca, inp.times, kep)
        F *= kep                                          # G = kep F
        model = F * ve
        if self.with_vp:
            model += (ca if ca.ndim == 2 else ca[:, None]) * x[:, 2]
        if not jacobian:
            return model, None
        dF *= ve                                          # dC/dkep
        return model, [dF, F] + ([ca] if self.with_vp else [])

    def to_maps(self, x):
        out = {"ktrans": x[:, 0] * x[:, 1] * PER_MIN, "ve": x[:, 1].copy(),
               "kep": x[:, 0] * PER_MIN}
        if self.with_vp:
            out["vp"] = x[:, 2].copy()
        return out

    def from_maps(self, maps):
        ktrans = np.asarray(maps["ktrans"], np.float64) / PER_MIN
        if "kep" in maps:
            kep = np.asarray(maps["kep"], np.float64) / PER_MIN
            ve = ktrans / kep
        else:
            ve = np.asarray(maps["ve"], np.float64)
            kep = ktrans / ve
        cols = [kep, ve] + ([maps["vp"]] if self.with_vp else [])
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

    internal = ("kep", "ve")
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

    internal = ("kep", "ve", "vp")
    units = {"ktrans": "1/min", "ve": "ml/ml", "vp": "ml/ml", "kep": "1/min"}
    with_vp = True
