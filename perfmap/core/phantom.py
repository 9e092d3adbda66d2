"""A DSC-MRI digital phantom with ground truth (NumPy only).

:func:`make_phantom` builds one subject: an ellipsoidal brain with a grey-matter
rim and a white-matter core, a small artery running along z, a spherical tumour
at low x (the subject's left with the RAS+ affine used here) and a
reference ROI of normal-appearing white matter mirrored in the other
hemisphere. Every tissue voxel gets a CBF and an MTT; its concentration curve
is the indicator-dilution convolution of the arterial curve with the chosen
residue function (:func:`perfmap.core.curves.tissue_concentration`), and its
signal follows DESIGN section 4::

    C_t(t) = F * (C_a (x) R_MTT)(t - delay)          F = CBF * rho / (kH * 6000)
    S(t)   = S0 * exp(-TE * C_t(t)) + noise           CBV = CBF * MTT / 60

Ground truth therefore satisfies the central volume theorem ``MTT = 60 CBV/CBF``
exactly, and the maps that :mod:`perfmap.core.maps` computes from exact curves
reproduce it (apart from truncation of the curves at the end of the series).

Geometry (:mod:`perfmap.core.phantom_parts`): brain ellipsoid, white-matter
core and grey-matter rim, a midline artery tube along z (pure blood: its
concentration is the AIF), a spherical tumour at low x and a mirrored
normal-appearing white-matter reference sphere ``ref``.

Values (drawn once per subject from uniform ranges with the seed): GM CBF
50-70 ml/100 g/min and CBV 3.5-4.5 ml/100 g; WM CBF 20-26 and CBV 1.8-2.4;
tumour CBF and CBV as ratios to WM of 2-4 (HGG) or 0.8-1.5 (LGG). Voxels vary
around their tissue's values by a log-normal factor of ``heterogeneity``
(default 5 %) on CBF and on MTT; the MTT factor is quantised to 9 levels so
curves are computed once per level, not per voxel. Baseline signal S0: GM 850,
WM 720, tumour 900, blood 750, times a subject factor 0.85-1.15 and a fixed
2 % voxel texture; background 0.

AIF: a gamma variate (Thompson 1964) arriving after ``n_nonsteady + 10..13``
frames, shape 2.5-3.5, scale 1.2-1.8 s, peak dR2* 40-60 1/s (the arterial
signal keeps 16-30 % of S0 at TE 30 ms), plus a recirculation gamma variate 10 s
later (peak 10-15 % of the first pass, scale 2.5 s).

Relaxivity: tissue dR2* is ``relaxivity_ratio`` (default 8) times the
single-relaxivity value, as the susceptibility effect per unit concentration is
larger in tissue than in bulk blood (Kiselev 2001, MRM 46:1113; the Bezier DSC
DRO uses a ratio of about 15). With a ratio of 1, physiological CBV and an
arterial peak of 40-60 1/s give white-matter signal drops of about 3 %, far
below the 10-20 % real scans show. Consequence: a single-relaxivity analysis
(DESIGN section 4) returns CBV and CBF scaled by ``relaxivity_ratio``; ratios
between regions and MTT are unaffected. The truth maps hold the physiological
values; divide measured CBF/CBV by ``params["relaxivity_ratio"]`` to compare.

Leakage (``leakage=``, :mod:`perfmap.core.extravasation`): the tumour's
vascular curves are unchanged (the truth maps stay the leak-free CBV and CBF),
and its signal is multiplied by the extravasation factor of the Tofts EES
concentration: T1 shortening in the SPGR steady state (flip angle and
``tr``; default 30 deg, the 2020 consensus without preload) and a small
extravascular T2* term. Ktrans and ve vary per voxel by the same log-normal
``heterogeneity`` factor (kep fixed); truth ``ktrans`` (1/min) and ``ve``
maps are added. Second echo (``second_te=``): the same magnetisation read at
another TE, baseline ``S0 exp(-(TE2 - TE) R2*_0)`` with
:data:`BASELINE_R2S` = 20 1/s, with its own noise of the same SD. Leakage
factors and second-echo noise come from a separate random stream, so a
phantom with leakage has the same tissue values and noise as without, and
without these options the phantom is unchanged.

Noise: Gaussian with standard deviation ``mean(S0 over the brain) / snr``, the
SNR definition of the PHAE paper (mean baseline signal over its standard
deviation); ``rician=True`` takes the magnitude of complex Gaussian noise
instead. Non-steady state: the first ``n_nonsteady`` frames are brighter by the
factors ``1 + 0.8 * 0.5**k`` (k = 0, 1, ...: 1.8, 1.4, 1.2, ...), an
approach-to-steady-state of longitudinal magnetisation as real scanners show
before the dummy scans are over; frames from ``n_nonsteady`` on are at steady
state.

References
----------
Ostergaard L et al. High resolution measurement of cerebral blood flow using
    intravascular tracer bolus passages. Part I. MRM 1996;36:715-725.
Thompson HK et al. Indicator transit time considered as a gamma variate.
    Circ Res 1964;14:502-515.
Law M et al. Glioma grading: sensitivity, specificity, and predictive values of
    perfusion MR imaging and proton MR spectroscopic imaging compared with
    conventional MR imaging. AJNR 2003;24:1989-1998 (rCBV of low- and
    high-grade gliomas).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import ParameterError
from .curves import (DEFAULT_KH, DEFAULT_RHO, RESIDUE_SHAPES, flow_per_second, gamma_variate,
                     tissue_concentration)
from .extravasation import LeakageSpec, ees_concentration, leakage_signal_factor
from .phantom_parts import Phantom, anatomy_masks, centred_affine

GRADES = ("HGG", "LGG")

#: Subject-level value ranges (uniform draws): CBF ml/100 g/min, CBV ml/100 g.
TISSUE_RANGES = {
    "gm": {"cbf": (50.0, 70.0), "cbv": (3.5, 4.5)},
    "wm": {"cbf": (20.0, 26.0), "cbv": (1.8, 2.4)},
}
#: Tumour-to-white-matter ratios of CBF and CBV by grade.
TUMOUR_RATIOS = {"HGG": (2.0, 4.0), "LGG": (0.8, 1.5)}
#: Baseline signal per tissue (arbitrary units).
S0_VALUES = {"gm": 850.0, "wm": 720.0, "tumour": 900.0, "artery": 750.0}
#: Number of quantised MTT levels per tissue.
MTT_LEVELS = 9
#: Pre-contrast R2* of every tissue (1/s), for the baseline of a second echo.
BASELINE_R2S = 20.0


def _check(shape, n_frames, tr, te, snr, grade, residue, delay, dispersion, n_nonsteady):
    if len(shape) != 3 or min(shape[:2]) < 16 or shape[2] < 1:
        raise ParameterError(f"phantom shape {tuple(shape)} must be 3D with at least 16x16 "
                             "voxels in-plane")
    if grade not in GRADES:
        raise ParameterError(f"grade {grade!r} must be one of {', '.join(GRADES)}")
    if residue not in RESIDUE_SHAPES:
        raise ParameterError(f"residue {residue!r} must be one of {', '.join(RESIDUE_SHAPES)}")
    for name, value in (("TR", tr), ("TE", te)):
        if not (np.isfinite(value) and value > 0):
            raise ParameterError(f"{name} must be a positive number of seconds, got {value}")
    if snr is not None and not snr > 0:
        raise ParameterError(f"SNR must be positive (or inf for no noise), got {snr}")
    if delay < 0 or dispersion < 0:
        raise ParameterError("delay and dispersion must be >= 0 s")
    if not 0 <= n_nonsteady <= 10:
        raise ParameterError(f"n_nonsteady must be between 0 and 10, got {n_nonsteady}")
    if n_frames < n_nonsteady + 30:
        raise ParameterError(f"{n_frames} frames are too few for a phantom: at least "
                             f"{n_nonsteady + 30} are needed (baseline, bolus and recirculation)")


#: Tissue-to-blood ratio of dR2* per unit concentration (see the module docstring).
DEFAULT_RELAXIVITY_RATIO = 8.0


def make_phantom(shape=(64, 64, 12), n_frames: int = 60, tr: float = 1.5, te: float = 0.03,
                 snr: Optional[float] = 50.0, grade: str = "HGG", residue: str = "exponential",
                 delay: float = 0.0, dispersion: float = 0.0, seed: int = 0,
                 kh: float = DEFAULT_KH, rho: float = DEFAULT_RHO, n_nonsteady: int = 2,
                 voxel_size=(2.0, 2.0, 5.0), heterogeneity: float = 0.05, lam: float = 2.0,
                 rician: bool = False, keep_concentration: bool = False,
                 relaxivity_ratio: float = DEFAULT_RELAXIVITY_RATIO,
                 leakage=None, second_te: Optional[float] = None) -> Phantom:
    """Simulate one DSC-MRI subject with known CBF, CBV and MTT.

    Parameters
    ----------
    shape : tuple of int
        Grid size (X, Y, Z); at least 16 x 16 in-plane.
    n_frames : int
        Number of dynamic frames (at least ``n_nonsteady + 30``).
    tr, te : float
        Frame interval and echo time in seconds.
    snr : float or None
        Mean baseline brain signal over the noise standard deviation; None or
        inf for a noise-free series.
    grade : {"HGG", "LGG"}
        Tumour grade: sets the tumour-to-WM CBF and CBV ratios.
    residue : {"exponential", "lorentzian", "gamma", "linear", "boxcar"}
        Residue function shape (:func:`perfmap.core.curves.residue_function`).
    delay, dispersion : float
        Tissue bolus delay (s) and exponential dispersion time constant (s)
        relative to the arterial curve, for every tissue voxel.
    seed : int
        Seed of every random draw; equal arguments give identical phantoms.
    kh, rho : float
        Hematocrit correction and brain density (g/ml) linking CBF to ``F``.
    n_nonsteady : int
        Leading frames before steady state (brighter, see the module docstring).
    voxel_size : tuple of float
        Voxel size in mm for the affine.
    heterogeneity : float
        Standard deviation of the voxel-level log-normal CBF and MTT factors.
    lam : float
        Shape of the ``gamma`` residue.
    rician : bool
        Magnitude of complex Gaussian noise instead of real Gaussian noise.
    keep_concentration : bool
        Also return the noise-free dR2* curves (memory: one more 4D array).
    relaxivity_ratio : float
        dR2* per unit tracer concentration in tissue over that in whole blood
        (see the module docstring); 1 gives the single-relaxivity model, in
        which tissue signal drops are unrealistically small.
    leakage : LeakageSpec, dict, bool or None
        Contrast-agent extravasation in the tumour (module docstring):
        a :class:`perfmap.core.extravasation.LeakageSpec`, its fields as a
        dict, or True for the defaults (Ktrans 0.1 /min, ve 0.3, flip angle
        30 deg, T10 1.6 s); None or False for none.
    second_te : float, optional
        Echo time (s) of a second series of the same acquisition
        (``Phantom.second_echo``), e.g. a short first echo for the dual-echo
        conversion (Vonken 1999).

    Returns
    -------
    Phantom

    Examples
    --------
    >>> ph = make_phantom(shape=(32, 32, 4), snr=None, seed=1)
    >>> ph.signal.shape, ph.signal.dtype.name
    ((32, 32, 4, 60), 'float32')
    >>> bool(ph.masks["tumour"].any() and ph.masks["ref"].any())
    True
    >>> leaky = make_phantom(shape=(32, 32, 4), snr=None, seed=1, leakage=True, second_te=0.01)
    >>> bool(np.array_equal(leaky.signal[~leaky.masks["tumour"]], ph.signal[~ph.masks["tumour"]]))
    True
    """
    shape = tuple(int(s) for s in shape)
    if snr is not None and np.isinf(snr):
        snr = None
    _check(shape, n_frames, tr, te, snr, grade, residue, delay, dispersion, n_nonsteady)
    leakage = LeakageSpec.coerce(leakage)
    if second_te is not None and not (np.isfinite(second_te) and second_te > 0
                                      and second_te != te):
        raise ParameterError(f"the second echo time must be a positive number of seconds "
                             f"other than TE {te}, got {second_te}")
    rng = np.random.default_rng(seed)
    times = np.arange(n_frames, dtype=np.float64) * tr

    # Subject-level draws (fixed order: keep it so seeds stay reproducible).
    values = {k: {p: float(rng.uniform(*rg)) for p, rg in v.items()}
              for k, v in TISSUE_RANGES.items()}
    cbf_ratio = float(rng.uniform(*TUMOUR_RATIOS[grade]))
    cbv_ratio = float(rng.uniform(*TUMOUR_RATIOS[grade]))
    values["tumour"] = {"cbf": cbf_ratio * values["wm"]["cbf"],
                        "cbv": cbv_ratio * values["wm"]["cbv"]}
    for v in values.values():
        v["mtt"] = 60.0 * v["cbv"] / v["cbf"]
    aif_p = {
        "t0": float(tr * (n_nonsteady + 10 + rng.uniform(0.0, 3.0))),
        "alpha": float(rng.uniform(2.5, 3.5)),
        "beta": float(rng.uniform(1.2, 1.8)),
        "peak": float(rng.uniform(40.0, 60.0)),
        "recirculation_delay": 10.0,
        "recirculation_fraction": float(rng.uniform(0.10, 0.15)),
        "recirculation_beta": 2.5,
    }
    s0_scale = float(rng.uniform(0.85, 1.15))
    if times[-1] < aif_p["t0"] + 15.0:
        raise ParameterError(f"{n_frames} frames of {tr} s end before the bolus has passed "
                             f"(arrival at {aif_p['t0']:.1f} s); use more frames")

    def aif_fn(t):
        p = aif_p
        first = gamma_variate(t, p["t0"], p["alpha"], p["beta"], p["peak"])
        second = gamma_variate(t, p["t0"] + p["recirculation_delay"], 3.0,
                               p["recirculation_beta"], p["peak"] * p["recirculation_fraction"])
        return first + second

    masks = anatomy_masks(shape, voxel_size)
    tissues = ("gm", "wm", "tumour")
    h = float(heterogeneity)
    step = 4.0 * h / (MTT_LEVELS - 1) if h > 0 else 1.0
    levels = np.exp((np.arange(MTT_LEVELS) - (MTT_LEVELS - 1) / 2) * step) if h > 0 \
        else np.ones(MTT_LEVELS)

    # One base curve (F = 1) per tissue and MTT level: 3 * 9 convolutions in all.
    mtt_table = np.array([values[k]["mtt"] * levels for k in tissues])  # (3, L)
    base = tissue_concentration(times, aif_fn, 1.0, mtt_table.ravel(), residue, lam,
                                delay, dispersion).reshape(len(tissues), MTT_LEVELS, n_frames)

    label = np.full(shape, -1, dtype=np.int8)
    for i, k in enumerate(tissues):
        label[masks[k]] = i
    tissue_idx = np.flatnonzero(label >= 0)
    lab = label.ravel()[tissue_idx].astype(np.intp)
    n = tissue_idx.size
    z_cbf = rng.standard_normal(n)
    z_mtt = rng.standard_normal(n)
    lvl = np.clip(np.rint(h * z_mtt / step) + (MTT_LEVELS - 1) // 2, 0, MTT_LEVELS - 1) \
        .astype(np.intp) if h > 0 else np.full(n, (MTT_LEVELS - 1) // 2, np.intp)
    cbf_t = np.array([values[k]["cbf"] for k in tissues])[lab]
    cbf_v = cbf_t * np.exp(h * z_cbf - 0.5 * h * h)
    mtt_v = mtt_table[lab, lvl]
    cbv_v = cbf_v * mtt_v / 60.0

    truth = {}
    for name, vals in (("cbf", cbf_v), ("cbv", cbv_v), ("mtt", mtt_v)):
        m = np.full(int(np.prod(shape)), np.nan, dtype=np.float32)
        m[tissue_idx] = vals
        truth[name] = m.reshape(shape)

    aif = aif_fn(times)
    art_idx = np.flatnonzero(masks["aif"])
    conc = np.zeros((int(np.prod(shape)), n_frames), dtype=np.float32)
    conc[tissue_idx] = (relaxivity_ratio * flow_per_second(cbf_v, kh, rho)[:, None]
                        * base[lab, lvl]).astype(np.float32)
    conc[art_idx] = aif.astype(np.float32)

    s0 = np.zeros(int(np.prod(shape)), dtype=np.float32)
    for k, key in (("gm", "gm"), ("wm", "wm"), ("tumour", "tumour"), ("aif", "artery")):
        s0[masks[k].ravel()] = S0_VALUES[key] * s0_scale
    s0 *= (1.0 + 0.02 * rng.standard_normal(s0.size)).astype(np.float32)
    s0 = s0.reshape(shape)

    nz = np.flatnonzero(s0.ravel() > 0)
    extra = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1,)))
    leak = None
    if leakage is not None:  # (rows, Ktrans factor per row) of the tumour
        rows = np.flatnonzero(masks["tumour"].ravel())
        leak = (rows, np.exp(h * extra.standard_normal(rows.size) - 0.5 * h * h))
        ees = ees_concentration(times, aif_fn, leakage, delay, dispersion)
        for name, value in (("ktrans", leakage.ktrans), ("ve", leakage.ve)):
            m = np.where(np.isnan(truth["cbf"]), np.nan, 0.0).astype(np.float32).ravel()
            m[rows] = value * leak[1]
            truth[name] = m.reshape(shape)
    nonsteady = [1.0 + 0.8 * 0.5 ** k for k in range(n_nonsteady)]

    def series(te_k, s0_k, rng_k):
        """Signal at echo time te_k: tissue, leakage, non-steady frames, noise."""
        sig = np.zeros((int(np.prod(shape)), n_frames), dtype=np.float32)
        sig[nz] = s0_k.ravel()[nz, None] * np.exp(-np.float32(te_k) * conc[nz])
        if leak is not None:
            sig[leak[0]] *= leakage_signal_factor(leak[1][:, None] * ees, te_k, tr,
                                                  leakage).astype(np.float32)
        sig = sig.reshape(shape + (n_frames,))
        for k, f in enumerate(nonsteady):
            sig[..., k] *= np.float32(f)
        if snr is not None:
            sig += sd * rng_k.standard_normal(sig.shape, dtype=np.float32)
            if rician:
                imag = sd * rng_k.standard_normal(sig.shape, dtype=np.float32)
                sig = np.sqrt(sig * sig + imag * imag)
        return sig

    noise_sd = 0.0 if snr is None else float(np.mean(s0[masks["brain"]], dtype=np.float64) / snr)
    sd = np.float32(noise_sd)
    signal = series(te, s0, rng)
    second = None if second_te is None else series(
        second_te, (s0 * np.exp(-(second_te - te) * BASELINE_R2S)).astype(np.float32), extra)

    arrival_frame = int(np.searchsorted(times, aif_p["t0"], side="right"))
    in_t, in_r = masks["tumour"], masks["ref"]
    params = {
        "shape": list(shape), "n_frames": int(n_frames), "tr": float(tr), "te": float(te),
        "snr": None if snr is None else float(snr), "noise_sd": noise_sd,
        "noise": "rician" if rician else "gaussian", "grade": grade, "residue": residue,
        "lam": float(lam), "delay": float(delay), "dispersion": float(dispersion),
        "seed": int(seed), "kh": float(kh), "rho": float(rho),
        "relaxivity_ratio": float(relaxivity_ratio),
        "n_nonsteady": int(n_nonsteady), "nonsteady_factors": nonsteady,
        "arrival_frame": arrival_frame, "voxel_size": [float(v) for v in voxel_size],
        "heterogeneity": h, "s0_scale": s0_scale, "aif": aif_p,
        "tissues": {k: {p: float(v) for p, v in values[k].items()} for k in tissues},
        "cbf_ratio": float(np.mean(truth["cbf"][in_t]) / np.mean(truth["cbf"][in_r])),
        "cbv_ratio": float(np.mean(truth["cbv"][in_t]) / np.mean(truth["cbv"][in_r])),
        "mtt_ratio": float(np.mean(truth["mtt"][in_t]) / np.mean(truth["mtt"][in_r])),
        "voxels": {k: int(v.sum()) for k, v in masks.items()},
    }
    if leakage is not None:
        params["leakage"] = {**leakage.as_dict(), "kep": leakage.ktrans / leakage.ve,
                             "ees_peak_mm": float(ees.max()), "ees_last_mm": float(ees[-1])}
    if second_te is not None:
        params.update(second_te=float(second_te), baseline_r2s=BASELINE_R2S)
    return Phantom(signal=signal, affine=centred_affine(shape, voxel_size), masks=masks,
                   truth=truth, aif=aif, times=times, tr=float(tr), te=float(te), grade=grade,
                   snr=snr, s0=s0, params=params,
                   concentration=conc.reshape(shape + (n_frames,)) if keep_concentration
                   else None, second_echo=second,
                   second_te=None if second_te is None else float(second_te))
