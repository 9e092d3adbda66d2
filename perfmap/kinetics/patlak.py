"""Patlak model: a plasma compartment with unidirectional uptake.

Patlak, Blasberg & Fenstermacher (1983); Sourbron & Buckley 2012::

    C(t) = vp c_p(t) + Ktrans integral_0^t c_p(tau) dtau

The integral is exact for a piecewise-linear AIF (trapezoid rule). The model is
linear in ``(Ktrans, vp)``: the start is the unconstrained linear least-squares
solution per voxel, and the bounded Levenberg-Marquardt step (Jacobian
``[int c_p, c_p]``) only enforces ``0 <= Ktrans <= 5 /min`` and ``0 <= vp <= 1``.
A fit ending at the upper Ktrans bound fails the voxel.

References
----------
Patlak CS, Blasberg RG, Fenstermacher JD. Graphical evaluation of
    blood-to-brain transfer constants from multiple-time uptake data. J Cereb
    Blood Flow Metab 1983;3:1-7.
Sourbron SP, Buckley DL. Tracer kinetic modelling in MRI: estimating perfusion
    and capillary permeability. Phys Med Biol 2012;57:R1-R33.
"""

from __future__ import annotations

import numpy as np

from .base import KineticModel
from .fitting import ArterialInput, least_squares_start, near
from .registry import register

PER_MIN = 60.0
KTRANS_MAX = 5.0 / PER_MIN


@register("patlak")
class Patlak(KineticModel):
    """Patlak model: ``Ktrans`` (1/min) and ``vp`` (ml/ml).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0, 300.0, 2.0)
    >>> aif = 5 * (t / 20) * np.exp(1 - t / 20)
    >>> model = Patlak()
    >>> c = model.predict({"ktrans": [0.03], "vp": [0.04]}, aif, t)
    >>> fit = model.fit(c, aif, t)
    >>> round(float(fit["ktrans"][0]), 5), round(float(fit["vp"][0]), 5)
    (0.03, 0.04)
    """

    internal = ("ktrans", "vp")
    units = {"ktrans": "1/min", "vp": "ml/ml"}

    def bounds(self):
        return np.array([0.0, 0.0]), np.array([KTRANS_MAX, 1.0]), np.array([1e-3, 0.05])

    def implausible(self, x):
        return near(x[:, 0], KTRANS_MAX, 0.0, KTRANS_MAX)

    def start(self, y, inp: ArterialInput):
        b = least_squares_start([inp.integral, inp.aif], y)
        b = np.where(np.isfinite(b), b, 0.0)
        lo, hi, _ = self.bounds()
        return np.clip(b, lo, hi)

    def curves(self, x, inp: ArterialInput, jacobian: bool):
        ca, ica = inp.aif, inp.integral
        if ca.ndim == 1:
            model = np.multiply.outer(ica, x[:, 0])
            model += np.multiply.outer(ca, x[:, 1])
        else:
            model = ica * x[:, 0]
            model += ca * x[:, 1]
        return model, ([ica, ca] if jacobian else None)

    def to_maps(self, x):
        return {"ktrans": x[:, 0] * PER_MIN, "vp": x[:, 1].copy()}

    def from_maps(self, maps):
        k, vp = np.broadcast_arrays(np.asarray(maps["ktrans"], np.float64) / PER_MIN,
                                    np.asarray(maps["vp"], np.float64))
        return np.stack([k, vp], axis=1)
