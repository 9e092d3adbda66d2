"""Simulated DCE-MRI subjects with known Ktrans, ve, vp, Fp, PS and T10.

Anatomy as the DSC phantom (:func:`perfmap.core.phantom_parts.anatomy_masks`):
grey and white matter, an artery, an enhancing tumour and a mirrored reference.
Here rather than in :mod:`perfmap.core` (beside the DSC phantom) because the tissue
curves come from the kinetic models. Tissue concentration follows a kinetic model of
:mod:`perfmap.kinetics`
(extended Tofts by default, or the two-compartment exchange model; Sourbron &
Buckley 2012, Phys Med Biol 57:R1) driven by the Parker 2006 population AIF
(plasma = blood / (1 - Hct)); normal brain has an intact blood-brain barrier
(PS = 0, Ktrans = 0: blood volume only), the tumour leaks. The tissue table
gives Fp, PS, vp, ve; ``Ktrans = E Fp`` with the extraction
``E = PS / (PS + Fp)`` and ``kep = Ktrans / ve``. Signal is SPGR
(:func:`perfmap.core.spgr.spgr_signal`) with ``R1 = 1/T10 + r1 C`` and Gaussian
noise of SD ``mean baseline brain signal / snr``. A variable-flip-angle series
of the same anatomy is made too (for T10 mapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import ParameterError
from ..core.dce_aif import DEFAULT_HCT, parker_aif, plasma_from_blood
from ..core.phantom_parts import anatomy_masks, centred_affine
from ..core.spgr import DEFAULT_R1, spgr_signal
from .registry import get_model

#: Tissue parameters: Fp, PS (ml/100 ml/min), vp, ve (ml/ml), T10 (s).
TISSUES = {
    "gm": dict(fp=60.0, ps=0.0, vp=0.05, ve=0.2, t10=1.4),
    "wm": dict(fp=25.0, ps=0.0, vp=0.025, ve=0.2, t10=0.9),
    "tumour": dict(fp=50.0, ps=12.0, vp=0.08, ve=0.35, t10=1.6),
    "aif": dict(fp=0.0, ps=0.0, vp=1.0, ve=0.0, t10=1.6),      # whole blood, in the artery
}
#: VFA flip angles (degrees) of the T10 series.
VFA_ANGLES = (2.0, 5.0, 10.0, 15.0, 20.0, 30.0)


@dataclass
class DCEPhantom:
    """One simulated DCE subject (signal, VFA series, masks and the true maps)."""

    signal: np.ndarray
    vfa: np.ndarray
    vfa_angles: tuple
    masks: dict
    truth: dict
    affine: np.ndarray
    times: np.ndarray
    aif_blood: np.ndarray
    tr: float
    te: float
    flip_angle: float
    snr: Optional[float]
    params: dict = field(default_factory=dict)


#: Tumour PS (ml/100 ml/min) and vp ranges by grade (enhancing high-grade, mostly
#: non-enhancing low-grade gliomas); drawn per subject.
TUMOUR_GRADES = {"HGG": dict(ps=(8.0, 20.0), vp=(0.06, 0.10)),
                 "LGG": dict(ps=(0.5, 3.0), vp=(0.02, 0.04))}


def _maps(masks: dict, shape, tumour: dict) -> dict:
    maps = {k: np.zeros(shape, np.float64) for k in ("fp", "ps", "vp", "ve", "t10")}
    maps["t10"][:] = 1.2
    for tissue in ("wm", "gm", "tumour", "aif"):
        values = dict(TISSUES[tissue], **(tumour if tissue == "tumour" else {}))
        for key, value in values.items():
            maps[key][masks[tissue]] = value
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(maps["fp"] + maps["ps"] > 0, maps["ps"] / (maps["fp"] + maps["ps"]), 0.0)
    maps["ktrans"] = e * maps["fp"] / 100.0                    # 1/min
    maps["kep"] = np.where(maps["ve"] > 0, maps["ktrans"] / np.maximum(maps["ve"], 1e-9), 0.0)
    return maps


def _concentration(maps, brain, times, plasma, blood, model: str):
    conc = np.zeros(brain.shape + (times.size,), np.float64)
    tissue = brain & (maps["vp"] < 1.0)
    kinetic = get_model(model)()
    params = {k: maps[k][tissue] for k in ("fp", "ps", "vp", "ve", "ktrans")
              if k in kinetic.units}
    if "ve" in params:
        params["ve"] = np.maximum(params["ve"], 1e-3)
    conc[tissue] = kinetic.predict(params, plasma, times)
    conc[brain & ~tissue] = blood                              # artery: whole blood
    return conc


def make_dce_phantom(shape=(64, 64, 8), n_frames: int = 60, dt: float = 4.0,
                     tr: float = 0.005, te: float = 0.002, flip_angle: float = 20.0,
                     snr: Optional[float] = 50.0, arrival: float = 20.0,
                     hct: float = DEFAULT_HCT, r1: float = DEFAULT_R1, seed: int = 0,
                     voxel_size=(2.0, 2.0, 5.0), model: str = "etofts",
                     grade: Optional[str] = None) -> DCEPhantom:
    """Simulate one DCE subject with known kinetic parameters.

    Parameters
    ----------
    shape : tuple of int
        Grid (at least 16 x 16 in-plane).
    n_frames, dt : int, float
        Frames and frame interval (s).
    tr, te, flip_angle : float
        SPGR repetition and echo time (s) and flip angle (degrees).
    snr : float or None
        Mean baseline brain signal over the noise SD; None for no noise.
    arrival : float
        Bolus arrival (s) of the Parker AIF.
    hct, r1 : float
        Hematocrit and relaxivity (/mM/s).
    seed : int
    model : str
        Kinetic model that generates the tissue curves (``etofts`` by
        default: Ktrans, ve, vp; ``2cxm``: Fp, PS, vp, ve).
    grade : {"HGG", "LGG"}, optional
        Draw the tumour's PS and vp from :data:`TUMOUR_GRADES` (with ``seed``);
        default: the fixed values of :data:`TISSUES`.

    Returns
    -------
    DCEPhantom
        ``truth`` holds ktrans (1/min), ve, vp, kep (1/min), fp, ps
        (ml/100 ml/min) and t10 (s) maps; ``masks`` brain, aif, gm, wm,
        tumour, ref.

    Examples
    --------
    >>> ph = make_dce_phantom(shape=(24, 24, 2), snr=None)
    >>> ph.signal.shape, ph.vfa.shape[-1], round(float(ph.truth["ktrans"][ph.masks["tumour"]][0]), 4)
    ((24, 24, 2, 60), 6, 0.0968)
    """
    if n_frames < 20 or not dt > 0 or (n_frames - 1) * dt < arrival + 60:
        raise ParameterError(f"need at least 20 frames covering the bolus and 60 s after it "
                             f"(arrival {arrival:g} s), got {n_frames} frames of {dt:g} s")
    shape = tuple(int(s) for s in shape)
    masks = anatomy_masks(shape, voxel_size)
    rng = np.random.default_rng(seed)
    tumour = {}
    if grade is not None:
        if grade not in TUMOUR_GRADES:
            raise ParameterError(f"grade must be one of {', '.join(TUMOUR_GRADES)}, got {grade!r}")
        tumour = {k: float(rng.uniform(*r)) for k, r in TUMOUR_GRADES[grade].items()}
    times = np.arange(n_frames) * float(dt)
    blood = parker_aif(times, arrival)
    plasma = plasma_from_blood(blood, hct)
    maps = _maps(masks, shape, tumour)
    conc = _concentration(maps, masks["brain"], times, plasma, blood, model)
    m0 = np.where(masks["brain"], 1000.0, 0.0)[..., None]
    r1_t = 1.0 / maps["t10"][..., None] + r1 * conc
    signal = spgr_signal(m0, r1_t, tr, flip_angle)
    vfa = np.stack([spgr_signal(m0[..., 0], 1.0 / maps["t10"], tr, a) for a in VFA_ANGLES], -1)
    if snr is not None and np.isfinite(snr):
        sd = float(signal[masks["brain"], :3].mean()) / float(snr)
        signal = signal + rng.normal(0.0, sd, signal.shape)
        vfa = vfa + rng.normal(0.0, sd, vfa.shape)
    tissue = masks["brain"] & ~masks["aif"]
    truth = {k: np.where(tissue, maps[k], np.nan).astype(np.float32)
             for k in ("ktrans", "ve", "vp", "kep", "fp", "ps", "t10")}
    for k in ("ve", "kep"):                       # undefined without leakage (Ktrans = 0)
        truth[k][tissue & (maps["ktrans"] == 0)] = np.nan
    return DCEPhantom(signal=signal.astype(np.float32), vfa=vfa.astype(np.float32),
                      vfa_angles=VFA_ANGLES, masks=masks, truth=truth,
                      affine=centred_affine(shape, voxel_size), times=times, aif_blood=blood,
                      tr=float(tr), te=float(te), flip_angle=float(flip_angle), snr=snr,
                      params={"arrival_s": arrival, "hct": hct, "r1": r1, "seed": seed,
                              "model": model, "grade": grade, "tumour": tumour or None,
                              "tissues": TISSUES})
