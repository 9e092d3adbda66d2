"""Contrast-agent extravasation in the DSC signal: the physics of the leaky phantom.

Where the blood-brain barrier is disrupted (enhancing high-grade glioma) the
tracer leaks into the extravascular extracellular space (EES) during the DSC
acquisition. The EES concentration follows the Tofts model (Tofts et al.
1999; Sourbron & Buckley 2013 naming)::

    C_e(t) = Ktrans * integral_0^t C_p(tau) exp(-kep (t - tau)) dtau     [mM, per tissue volume]
    kep    = Ktrans / ve,     C_p = C_b / (1 - Hct)

and changes the gradient-echo signal in two opposite ways:

* **T1 shortening** (the signal rises): ``R1(t) = R10 + r1 * C_e(t)`` in the
  spoiled gradient-echo (SPGR) steady state (Ernst formula; Haacke et al.
  1999, ch. 18)::

      S(R1) / S(R10) = [(1 - E1) / (1 - cos(a) E1)] / [(1 - E10) / (1 - cos(a) E10)],
      E1 = exp(-TR R1)

* **extravascular T2*** (the signal falls): ``dR2*_e(t) = r2*_e * C_e(t)``
  (Quarles et al. 2009; Semmineh et al. 2015), a small term here.

The leaky signal is therefore::

    S(t) = S0 * exp(-TE * (dR2*_vasc(t) + r2*_e C_e(t))) * S_SPGR(R10 + r1 C_e(t)) / S_SPGR(R10)

The intravascular tracer is given no T1 effect: with an intact or slowly
exchanging vessel wall the intravascular T1 shortening seen by the tissue
water is small (Donahue et al. 1996) and is ignored, so non-leaky tissue keeps
the pure susceptibility signal. Blood concentration in mM comes from the
arterial dR2* through a linear blood transverse relaxivity
:data:`BLOOD_R2S_PER_MM` (a 1.5 T-like value; van Osch et al. 2003 measured
7.6 /mM/s plus a quadratic term), so an arterial peak of 40-60 1/s is
5-8 mM, the first-pass peak of a single dose.

References
----------
Tofts PS et al. Estimating kinetic parameters from dynamic contrast-enhanced
    T1-weighted MRI of a diffusable tracer: standardized quantities and
    symbols. JMRI 1999;10:223-232.
Sourbron SP, Buckley DL. Classic models for dynamic contrast-enhanced MRI.
    NMR Biomed 2013;26:1004-1027.
Haacke EM, Brown RW, Thompson MR, Venkatesan R. Magnetic Resonance Imaging:
    Physical Principles and Sequence Design. Wiley 1999 (SPGR steady state).
Quarles CC, Gochberg DF, Gore JC, Yankeelov TE. A theoretical framework to
    model DSC-MRI data acquired in the presence of contrast agent
    extravasation. Phys Med Biol 2009;54:5749-5766.
Semmineh NB et al. A population-based digital reference object (DRO) for
    optimizing dynamic susceptibility contrast (DSC)-MRI methods for clinical
    trials. Tomography 2017;3:41-49.
van Osch MJP et al. Measuring the arterial input function with gradient echo
    sequences. MRM 2003;49:1067-1076.
Boxerman JL et al. Consensus recommendations for a dynamic susceptibility
    contrast MRI protocol for use in high-grade gliomas. Neuro-Oncology
    2020;22:1262-1275 (no preload: flip angle 30 deg, TR 1-1.5 s).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ParameterError
from .curves import tissue_concentration

#: Linear dR2* of whole blood per mM of gadolinium (1/s/mM).
BLOOD_R2S_PER_MM = 7.5


@dataclass(frozen=True)
class LeakageSpec:
    """Extravasation and sequence parameters of a leaky tumour.

    Attributes
    ----------
    ktrans : float
        Volume transfer constant Ktrans (1/min).
    ve : float
        EES volume fraction (ml/ml), ``0 < ve < 1``.
    flip_angle : float
        Excitation flip angle (degrees); 30 is the 2020 consensus protocol
        without preload (Boxerman 2020), 60-90 the older single-dose protocols.
    t10 : float
        Pre-contrast T1 of the tumour (s).
    r1 : float
        Longitudinal relaxivity (1/mM/s).
    r2s_ees : float
        Transverse (T2*) relaxivity of the extravasated tracer (1/mM/s).
    hct : float
        Large-vessel hematocrit (plasma = blood / (1 - Hct)).
    """

    ktrans: float = 0.10
    ve: float = 0.30
    flip_angle: float = 30.0
    t10: float = 1.6
    r1: float = 4.5
    r2s_ees: float = 5.0
    hct: float = 0.42

    def __post_init__(self):
        checks = (("ktrans", self.ktrans > 0), ("ve", 0 < self.ve < 1),
                  ("flip_angle", 0 < self.flip_angle <= 90), ("t10", self.t10 > 0),
                  ("r1", self.r1 >= 0), ("r2s_ees", self.r2s_ees >= 0),
                  ("hct", 0 <= self.hct < 1))
        for name, ok in checks:
            if not (np.isfinite(getattr(self, name)) and ok):
                raise ParameterError(f"leakage {name} = {getattr(self, name)!r} is out of range "
                                     "(Ktrans > 0 /min, 0 < ve < 1, 0 < flip angle <= 90 deg, "
                                     "T10 > 0 s, r1, r2*_e >= 0, 0 <= Hct < 1)")

    @classmethod
    def coerce(cls, value) -> "LeakageSpec | None":
        """A spec from a LeakageSpec, a dict of its fields, True (defaults) or None/False (none).

        Examples
        --------
        >>> LeakageSpec.coerce({"flip_angle": 60}).flip_angle, LeakageSpec.coerce(False)
        (60, None)
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError as exc:
                raise ParameterError(f"unknown leakage parameter: {exc}") from None
        raise ParameterError(f"leakage must be a LeakageSpec, a dict, True or None, "
                             f"got {value!r}")

    def as_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


def spgr_ratio(r1, r10: float, tr: float, flip_angle_deg: float) -> np.ndarray:
    """SPGR steady-state signal at ``R1`` relative to that at ``R10`` (Ernst formula).

    Parameters
    ----------
    r1 : array_like
        Longitudinal relaxation rate (1/s).
    r10 : float
        Pre-contrast rate (1/s).
    tr : float
        Repetition time (s).
    flip_angle_deg : float
        Flip angle (degrees).

    Returns
    -------
    ndarray
        ``S(R1) / S(R10)``; 1 where ``R1 == R10``, above 1 for T1 shortening.

    Examples
    --------
    >>> round(float(spgr_ratio(1.0 / 1.6, 1.0 / 1.6, 1.5, 30.0)), 6)
    1.0
    >>> bool(spgr_ratio(2.0, 1.0 / 1.6, 1.5, 60.0) > spgr_ratio(2.0, 1.0 / 1.6, 1.5, 30.0))
    True
    """
    c = np.cos(np.deg2rad(flip_angle_deg))

    def shape(r):
        e1 = np.exp(-tr * np.asarray(r, dtype=np.float64))
        return (1.0 - e1) / (1.0 - c * e1)

    return shape(r1) / shape(r10)


def ees_concentration(times, blood_dr2s_fn, spec: LeakageSpec, delay: float = 0.0,
                      dispersion: float = 0.0) -> np.ndarray:
    """Tofts EES tracer concentration per tissue volume (mM) at ``times``.

    Parameters
    ----------
    times : array_like, shape (T,)
        Frame times (s).
    blood_dr2s_fn : callable
        Arterial whole-blood dR2* (1/s) in continuous time, as the phantom's AIF.
    spec : LeakageSpec
    delay, dispersion : float
        Arrival delay and dispersion (s) of the tissue input, as for the
        vascular curves (:func:`perfmap.core.curves.tissue_concentration`).

    Returns
    -------
    ndarray, shape (T,)
        ``Ktrans * (C_p (x) exp(-kep t))(t)`` with ``C_p`` from
        :data:`BLOOD_R2S_PER_MM` and ``Hct`` (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0.0, 60.0, 1.0)
    >>> ce = ees_concentration(t, lambda s: np.where(s >= 0, 7.5, 0.0), LeakageSpec(hct=0.0))
    >>> kep = 0.1 / 0.3 / 60.0   # 1/s; C_p = 1 mM from t = 0: C_e = ve (1 - exp(-kep t))
    >>> bool(np.allclose(ce, 0.3 * (1 - np.exp(-kep * t)), rtol=1e-3, atol=1e-6))
    True
    """
    scale = 1.0 / (BLOOD_R2S_PER_MM * (1.0 - spec.hct))

    def plasma_mm(t):
        return scale * np.asarray(blood_dr2s_fn(t), dtype=np.float64)

    flow = spec.ktrans / 60.0                # Ktrans in 1/s
    mtt = 60.0 * spec.ve / spec.ktrans       # 1 / kep in s
    return tissue_concentration(times, plasma_mm, flow, mtt, "exponential", delay=delay,
                                dispersion=dispersion)


def leakage_signal_factor(ees_mm, te: float, tr: float, spec: LeakageSpec) -> np.ndarray:
    """Multiplicative change of the DSC signal caused by extravasated tracer.

    ``exp(-TE r2*_e C_e) * S_SPGR(R10 + r1 C_e) / S_SPGR(R10)`` (module docstring).

    Parameters
    ----------
    ees_mm : array_like
        EES concentration per tissue volume (mM).
    te, tr : float
        Echo and repetition time (s).
    spec : LeakageSpec

    Returns
    -------
    ndarray, same shape as ``ees_mm`` (1 where there is no tracer).

    Examples
    --------
    >>> import numpy as np
    >>> f = leakage_signal_factor(np.array([0.0, 0.2]), 0.03, 1.5, LeakageSpec())
    >>> float(f[0]), bool(f[1] > 1.0)   # T1 shortening wins at TE 30 ms, 30 deg
    (1.0, True)
    """
    c = np.asarray(ees_mm, dtype=np.float64)
    r10 = 1.0 / spec.t10
    t1 = spgr_ratio(r10 + spec.r1 * c, r10, tr, spec.flip_angle)
    return t1 * np.exp(-te * spec.r2s_ees * c)
