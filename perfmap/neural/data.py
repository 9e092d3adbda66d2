"""Model inputs for PHAE: the model time grid, training curves and real-exam curves.

NumPy only (no torch). One function, :func:`grid_plan` + :func:`apply_plan`,
turns concentration curves into encoder inputs, both for training and for
inference, so the two see exactly the same preprocessing:

1. **Time grid.** The encoder was trained on a fixed grid of ``n_frames``
   samples ``dt`` seconds apart (config; 64 x 1.5 s by default). Curves on
   any acquisition grid (frame count, TR) are linearly interpolated onto it.
   The window is placed so that the AIF peak falls on frame ``peak_frame``
   (both curves are shifted together, which leaves the convolution model
   unchanged). Model frames before the first acquired frame are 0 (no tracer
   yet); frames after the last one repeat the last value and are marked
   invalid (left out of integrals and of the training loss).
2. **Normalisation.** The AIF is divided by its maximum, as in the PHAE paper
   (section 2.1.3). The tissue curve is divided by the same maximum and by
   its integral ratio ``CBV_w = int C_t / int C_a`` over the valid window, so
   both channels have the same integral. MTT does not depend on the tissue
   amplitude, and this makes the encoder's input independent of it (the
   paper divides by the maximum only); CBV itself is computed separately from
   the data (paper Eq. 2). Curves whose tissue integral is not positive (no
   measurable bolus) cannot be normalised and are reported as failed; the
   normalised tissue channel is clipped to +-``TISSUE_CLIP`` (4), which only
   affects noise-dominated curves whose integral is close to 0.

Training data (:func:`simulate_curves`) come from perfmap's own closed-form
generator (:mod:`perfmap.core.curves`) with wide variation, and noise is added
in the signal domain and converted back with the pipeline's formula
``dR2* = -ln(S / S0) / TE`` (S0 the mean of the pre-bolus frames). Real exams
come from a manifest through the pipeline's own
signal preparation (:func:`perfmap.pipeline.train.exam_curves`), so users can
fine-tune on their scanner.

References
----------
PHAE paper (shared/seeds/002_*.txt), sections 2.1.3 and 2.2.
Ostergaard L et al. MRM 1996;36:715-725 (convolution model).
Calamante F et al. MRM 2003;50:1237-1247 (residue shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import curves
from ..core.concentration import dsc_concentration
from ..core.interpolate import interpolate_rows, linear_weights
from ..errors import InputDataError, ParameterError

#: Bound of the normalised tissue channel. Genuine curves stay below about 1.5
#: (the tissue integral equals the AIF's, whose peak is 1); only noise-dominated
#: curves with a near-zero integral reach it.
TISSUE_CLIP = 4.0
#: Residue shapes of the simulated training curves.
TRAIN_RESIDUES = ("exponential", "lorentzian", "gamma", "linear")


@dataclass
class GridPlan:
    """How one AIF's acquisition grid maps onto the model grid (see module docstring)."""

    i0: np.ndarray          # (L,) left acquisition sample of each model frame
    w: np.ndarray           # (L,) interpolation weight of the right sample
    before: np.ndarray      # (L,) bool, model frames before the first acquired frame
    valid: np.ndarray       # (L,) float32, 1 inside the acquisition
    aif: np.ndarray         # (L,) float32, normalised AIF (maximum 1)
    aif_max: float          # maximum of the AIF on the model grid (concentration units)
    aif_integral: float     # trapezoid sum of the normalised AIF over valid frames (dx = 1)
    info: dict = field(default_factory=dict)


def grid_plan(aif, dt: float, config: dict) -> GridPlan:
    """Model-grid placement and normalisation derived from the AIF.

    Parameters
    ----------
    aif : array_like, shape (T,)
        Arterial concentration on the acquisition grid.
    dt : float
        Acquisition frame interval (s).
    config : dict
        Model configuration (``dt``, ``n_frames``, ``peak_frame``).

    Raises
    ------
    InputDataError
        The AIF has no positive value inside the model window.
    """
    aif = np.asarray(aif, dtype=np.float64)
    n_acq = aif.shape[-1]
    if n_acq < 2:
        raise InputDataError("PHAE needs at least 2 frames")
    dtm, L, pk = float(config["dt"]), int(config["n_frames"]), int(config["peak_frame"])
    t_end = (n_acq - 1) * dt
    t_peak = float(np.argmax(aif)) * dt
    t = np.arange(L) * dtm - pk * dtm + t_peak          # acquisition time of each model frame
    before = t < -1e-9
    valid = ~before & (t <= t_end + 1e-9)
    i0, w = linear_weights(t, np.arange(n_acq) * dt)
    am = _interp(aif[None, :], i0, w, before)[0]
    amax = float(np.max(am[valid])) if valid.any() else 0.0
    if not amax > 0:
        raise InputDataError("the AIF has no positive value inside the PHAE time window")
    aif_n = am / amax
    vf = valid.astype(np.float64)
    integral = float(np.trapezoid(aif_n * vf))
    exact = abs(dt - dtm) < 1e-6 * dtm and abs(t_peak / dt - round(t_peak / dt)) < 1e-9
    info = {"model_dt_s": dtm, "model_frames": L, "acquisition_dt_s": float(dt),
            "acquisition_frames": int(n_acq), "resampled": not exact,
            "aif_peak_s": t_peak, "window_start_s": float(t[0]),
            "window_end_s": float(t[-1]), "valid_frames": int(valid.sum())}
    return GridPlan(i0=i0, w=w, before=before, valid=vf.astype(np.float32),
                    aif=aif_n.astype(np.float32), aif_max=amax, aif_integral=integral,
                    info=info)


def _interp(rows, i0, w, before):
    out = interpolate_rows(rows, i0, w)
    out[:, before] = 0.0
    return out


def apply_plan(conc, plan: GridPlan):
    """Encoder inputs for tissue curves: ``(x (n, 2, L) float32, cbv_w (n,), failed (n,))``.

    ``cbv_w`` is the integral ratio over the model window (tissue / AIF, no
    kH/rho); ``failed`` marks curves with a non-positive or non-finite ratio,
    whose tissue channel is set to 0.
    """
    conc = np.asarray(conc, dtype=np.float64)
    cm = _interp(conc, plan.i0, plan.w, plan.before) / plan.aif_max
    ratio = np.trapezoid(cm * plan.valid, axis=-1) / plan.aif_integral
    failed = ~(np.isfinite(ratio) & (ratio > 0))
    scale = np.where(failed, 0.0, 1.0 / np.where(failed, 1.0, ratio))
    x = np.empty((conc.shape[0], 2, plan.aif.shape[0]), np.float32)
    np.clip(cm * scale[:, None], -TISSUE_CLIP, TISSUE_CLIP, out=x[:, 0])
    x[:, 1] = plan.aif
    return x, ratio, failed


@dataclass
class CurveSet:
    """Encoder inputs with what is known about them.

    ``mtt``/``delay`` hold the simulation truth (NaN for real exams);
    ``snr`` the simulated baseline SNR (NaN for real exams).
    """

    x: np.ndarray           # (n, 2, L) float32
    valid: np.ndarray       # (n, L) float32
    mtt: np.ndarray         # (n,) float32
    delay: np.ndarray       # (n,) float32
    snr: np.ndarray         # (n,) float32
    source: list = field(default_factory=list)

    _FIELDS = ("x", "valid", "mtt", "delay", "snr")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx) -> "CurveSet":
        return CurveSet(*(getattr(self, k)[idx] for k in self._FIELDS), source=self.source)

    @staticmethod
    def concat(sets) -> "CurveSet":
        sets = [s for s in sets if len(s)]
        if not sets:
            raise InputDataError("no training curves")
        return CurveSet(*(np.concatenate([getattr(s, k) for s in sets])
                          for k in CurveSet._FIELDS),
                        source=[src for s in sets for src in s.source])


def _log_uniform(rng, lo, hi, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def simulate_curves(n_curves: int, config: dict, seed: int = 0, snr_range=(5.0, 200.0),
                    mtt_range=(1.0, 20.0), cbv_range=(0.5, 15.0), group: int = 64,
                    fine_dt: float = 0.05) -> CurveSet:
    """Simulated training curves with wide physiological and acquisition variation.

    Curves come in groups of ``group`` that share an acquisition (TR, TE,
    duration), an AIF, a residue shape, a delay and a dispersion; within a
    group MTT, CBV and SNR vary per curve. Ranges (uniform unless "log"):

    * TR 1.5 s (half of the groups) or 0.8-2.0 s; TE 20-45 ms; 60-120 s long;
      bolus arrival 8-30 s after the first (baseline) frame;
    * AIF: gamma variate (Thompson 1964), alpha 2-5, beta 0.8-2.2 s, peak
      dR2* 15-80 1/s (at most 2.5/TE), plus in 80 % of groups a recirculation
      gamma variate 7-14 s later of 5-20 % of the peak (beta 1.5-3.5 s);
    * residue: exponential, Lorentzian, gamma (shape 1.5-6) or linear
      (Calamante 2003; Mouridsen 2006), MTT 1-20 s (log), CBV 0.5-15 ml/100 g
      (log; kH 0.73, rho 1.04);
    * tissue delay 0 (60 % of groups) or 0-3 s; dispersion 0 (60 %) or an
      exponential kernel of 0.3-2 s (Calamante 2000);
    * baseline SNR per curve log-uniform in ``snr_range`` (S0 / noise SD,
      Gaussian noise on the signal), AIF SNR log-uniform 30-1000 (a mean of
      several arterial voxels); both converted back to dR2* with S0 from the
      frames before the arrival minus two, as the pipeline does.

    Parameters
    ----------
    n_curves : int
        Number of curves to return (curves that cannot be normalised are
        replaced, so exactly ``n_curves`` come back).
    config : dict
        Model configuration (time grid).
    seed : int
        Seed; equal arguments give identical curves.
    snr_range, mtt_range, cbv_range : (float, float)
        Ranges of SNR, MTT (s) and CBV (ml/100 g).

    Returns
    -------
    CurveSet
    """
    lo, hi = (float(v) for v in snr_range)
    if not 0 < lo <= hi:
        raise ParameterError(f"SNR range must be positive and increasing, got {snr_range}")
    if n_curves < 1:
        raise ParameterError(f"the number of curves must be at least 1, got {n_curves}")
    rng = np.random.default_rng(seed)
    L = int(config["n_frames"])
    parts, total = [], 0
    while total < n_curves:
        part = _simulate_group(rng, group, config, (lo, hi), mtt_range, cbv_range, fine_dt)
        if part is None:
            continue
        parts.append(part)
        total += len(part[0])
    arrays = [np.concatenate([p[i] for p in parts])[:n_curves] for i in range(5)]
    assert arrays[0].shape[1:] == (2, L)
    return CurveSet(*arrays, source=[f"simulated: {n_curves} curves, seed {seed}, SNR "
                                     f"{lo:g}-{hi:g}"])


def _simulate_group(rng, n, config, snr_range, mtt_range, cbv_range, fine_dt):
    tr = 1.5 if rng.random() < 0.5 else float(rng.uniform(0.8, 2.0))
    te = float(rng.uniform(0.020, 0.045))
    duration = float(rng.uniform(60.0, 120.0))
    n_frames = int(duration / tr) + 1
    t = np.arange(n_frames) * tr
    t0 = float(rng.uniform(8.0, min(30.0, duration - 40.0)))
    a = {"alpha": rng.uniform(2.0, 5.0), "beta": rng.uniform(0.8, 2.2),
         "peak": rng.uniform(15.0, min(80.0, 2.5 / te))}
    recirc = rng.random() < 0.8
    r = {"delay": rng.uniform(7.0, 14.0), "frac": rng.uniform(0.05, 0.2),
         "beta": rng.uniform(1.5, 3.5)}

    def aif_fn(tt):
        c = curves.gamma_variate(tt, t0, a["alpha"], a["beta"], a["peak"])
        if recirc:
            c = c + curves.gamma_variate(tt, t0 + r["delay"], 3.0, r["beta"],
                                         a["peak"] * r["frac"])
        return c

    shape = TRAIN_RESIDUES[rng.integers(len(TRAIN_RESIDUES))]
    lam = float(rng.uniform(1.5, 6.0))
    delay = 0.0 if rng.random() < 0.6 else float(rng.uniform(0.0, 3.0))
    dispersion = 0.0 if rng.random() < 0.6 else float(rng.uniform(0.3, 2.0))
    mtt = _log_uniform(rng, *mtt_range, n)
    cbv = _log_uniform(rng, *cbv_range, n)
    flow = cbv * curves.DEFAULT_RHO / (curves.DEFAULT_KH * 100.0) / mtt
    snr = _log_uniform(rng, *snr_range, n)
    snr_aif = float(_log_uniform(rng, 30.0, 1000.0))
    ct = curves.tissue_concentration(t, aif_fn, flow, mtt, shape, lam, delay, dispersion,
                                     fine_dt=fine_dt)
    ca = aif_fn(t)
    s0_frames = max(3, int(np.searchsorted(t, t0, side="right")) - 2)
    sig = np.exp(-te * ct) + rng.standard_normal(ct.shape) / snr[:, None]
    sig_a = np.exp(-te * ca)[None, :] + rng.standard_normal((1, n_frames)) / snr_aif
    # The pipeline's own conversion (S0 = mean of the first s0_frames frames).
    conc = dsc_concentration(sig, te, (0, s0_frames))[0].astype(np.float64)
    aif = dsc_concentration(sig_a, te, (0, s0_frames))[0][0].astype(np.float64)
    try:
        plan = grid_plan(aif, tr, config)
    except InputDataError:
        return None
    x, _, failed = apply_plan(conc, plan)
    keep = ~failed
    k = int(keep.sum())
    return (x[keep], np.broadcast_to(plan.valid, (k, plan.valid.size)).copy(),
            mtt[keep].astype(np.float32), np.full(k, delay, np.float32),
            snr[keep].astype(np.float32))
