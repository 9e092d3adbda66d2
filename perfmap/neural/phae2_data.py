"""PHAE2 inputs: the model grid, amplitude-preserving normalisation, training curves.

NumPy only. The time grid is PHAE's (:func:`perfmap.neural.data.grid_plan`:
``n_frames`` samples ``dt`` apart, the AIF peak on ``peak_frame``, the AIF
divided by its maximum, frames after the acquisition invalid). The tissue
curve (divided by the same AIF maximum) is divided by its own scale ``s``:
the largest value of its 3-frame moving average over the valid frames. Unlike
PHAE's integral normalisation this never divides by a noisy integral close to
0 and keeps the curve's shape; the encoder returns ``v = CBV / s``, so the
amplitude is fitted to the whole curve. Curves whose scale is not positive
(no bolus at all) are reported as failed; the normalised tissue channel is
clipped to +-``TISSUE_CLIP``.

Training curves (:func:`simulate`) use perfmap's closed-form generator
(:mod:`perfmap.core.curves`) with wider priors than PHAE's: all five residue
shapes (exponential, Lorentzian, gamma with shape 1.5-6, linear, boxcar),
tissue delays up to 6 s, dispersion up to 3 s, a tissue/blood relaxivity
ratio of 1-15 (the phantoms use 8), SNR 5-200; noise is added to the signal
and converted back with the pipeline's own ``dR2* = -ln(S/S0)/TE``.
"""

from __future__ import annotations

import numpy as np

from ..core import curves
from ..core.concentration import dsc_concentration
from ..core.interpolate import interpolate_rows
from ..errors import InputDataError, ParameterError
from .data import grid_plan

TISSUE_CLIP = 4.0
SHAPES = ("exponential", "lorentzian", "gamma", "linear", "boxcar")

#: Training priors (uniform unless log); recorded in the model card.
PRIORS = {
    "tr_s": "1.5 (half of the groups) or 0.8-2.0", "te_s": [0.02, 0.045],
    "duration_s": [60.0, 120.0], "arrival_s": [8.0, 30.0],
    "aif": "gamma variate alpha 2-5, beta 0.8-2.2 s, peak 15-80 1/s; recirculation in 80 %",
    "residues": list(SHAPES), "gamma_shape": [1.5, 6.0],
    "mtt_s_log": [1.0, 20.0], "cbv_ml_100g_log": [0.5, 15.0],
    "relaxivity_ratio_log": [1.0, 15.0],
    "delay_s": "0 (40 % of groups) or 0-6", "dispersion_s": "0 (50 %) or 0.3-3",
    "snr_log": [5.0, 200.0], "aif_snr_log": [30.0, 1000.0],
}


def prepare(conc, plan):
    """Encoder inputs: ``(x (n, 2, L) float32, scale (n,), failed (n,))``.

    ``conc`` (n, T) on the acquisition grid of ``plan`` (:func:`grid_plan`).
    """
    conc = np.asarray(conc, dtype=np.float64)
    cm = interpolate_rows(conc, plan.i0, plan.w)
    cm[:, plan.before] = 0.0
    cm /= plan.aif_max
    sm = cm.copy()
    sm[:, 1:-1] = (cm[:, :-2] + cm[:, 1:-1] + cm[:, 2:]) / 3.0
    valid = plan.valid > 0
    scale = np.max(sm[:, valid], axis=1)
    failed = ~(np.isfinite(scale) & (scale > 0))
    inv = np.where(failed, 0.0, 1.0 / np.where(failed, 1.0, scale))
    x = np.empty((conc.shape[0], 2, plan.aif.shape[0]), np.float32)
    np.clip(cm * inv[:, None], -TISSUE_CLIP, TISSUE_CLIP, out=x[:, 0])
    x[:, 1] = plan.aif
    return x, scale, failed


def _log_u(rng, lo, hi, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def simulate(n_curves: int, config: dict, seed: int = 0, snr_range=(5.0, 200.0),
             group: int = 64, fine_dt: float = 0.05, fixed=None) -> dict:
    """Simulated curves with the truth, as arrays.

    Returns a dict: ``x`` (n, 2, L) float32, ``valid`` (n, L), ``flow_rel``
    (true ``F / s`` in the decoder's units), ``mtt``, ``delay``, ``snr``,
    ``shape`` (index into :data:`SHAPES`).

    ``fixed`` (dict, optional) pins group parameters (``shape``, ``lam``,
    ``delay``, ``dispersion``, ``tr``) and per-curve ranges (``mtt_range``,
    ``cbv_range``, ``relax_range``) for evaluation grids.
    """
    if n_curves < 1:
        raise ParameterError("the number of curves must be at least 1")
    lo, hi = (float(v) for v in snr_range)
    if not 0 < lo <= hi:
        raise ParameterError(f"invalid SNR range {snr_range}")
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < n_curves:
        part = _group(rng, group, config, (lo, hi), fine_dt, fixed or {})
        if part is not None:
            parts.append(part)
            total += len(part["x"])
    return {k: np.concatenate([p[k] for p in parts])[:n_curves] for k in parts[0]}


def _group(rng, n, config, snr_range, fine_dt, fixed):
    tr = fixed.get("tr", 1.5 if rng.random() < 0.5 else float(rng.uniform(0.8, 2.0)))
    te = float(rng.uniform(0.020, 0.045))
    duration = float(rng.uniform(60.0, 120.0))
    n_frames = int(duration / tr) + 1
    t = np.arange(n_frames) * tr
    t0 = float(rng.uniform(8.0, min(30.0, duration - 40.0)))
    a = (rng.uniform(2.0, 5.0), rng.uniform(0.8, 2.2), rng.uniform(15.0, min(80.0, 2.5 / te)))
    recirc = rng.random() < 0.8
    r = (rng.uniform(7.0, 14.0), rng.uniform(0.05, 0.2), rng.uniform(1.5, 3.5))

    def aif_fn(tt):
        c = curves.gamma_variate(tt, t0, a[0], a[1], a[2])
        if recirc:
            c = c + curves.gamma_variate(tt, t0 + r[0], 3.0, r[2], a[2] * r[1])
        return c

    shape_i = fixed.get("shape", int(rng.integers(len(SHAPES))))
    lam = fixed.get("lam", float(rng.uniform(1.5, 6.0)))
    delay = fixed.get("delay", 0.0 if rng.random() < 0.4 else float(rng.uniform(0.0, 6.0)))
    disp = fixed.get("dispersion", 0.0 if rng.random() < 0.5 else float(rng.uniform(0.3, 3.0)))
    mtt = _log_u(rng, *fixed.get("mtt_range", (1.0, 20.0)), n)
    cbv = _log_u(rng, *fixed.get("cbv_range", (0.5, 15.0)), n)
    relax = _log_u(rng, *fixed.get("relax_range", (1.0, 15.0)), n)
    flow = relax * cbv * curves.DEFAULT_RHO / (curves.DEFAULT_KH * 100.0) / mtt
    snr = _log_u(rng, *snr_range, n)
    ct = curves.tissue_concentration(t, aif_fn, flow, mtt, SHAPES[shape_i], lam, delay, disp,
                                     fine_dt=fine_dt)
    ca = aif_fn(t)
    s0_frames = max(3, int(np.searchsorted(t, t0, side="right")) - 2)
    sig = np.exp(-te * ct) + rng.standard_normal(ct.shape) / snr[:, None]
    sig_a = np.exp(-te * ca)[None, :] + rng.standard_normal((1, n_frames)) \
        / float(_log_u(rng, 30.0, 1000.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        conc = dsc_concentration(sig, te, (0, s0_frames))[0].astype(np.float64)
        aif = dsc_concentration(sig_a, te, (0, s0_frames))[0][0].astype(np.float64)
    conc = np.nan_to_num(conc, nan=0.0, posinf=0.0, neginf=0.0)
    try:
        plan = grid_plan(aif, tr, config)
    except InputDataError:
        return None
    x, scale, failed = prepare(conc, plan)
    k = ~failed
    m = int(k.sum())
    return {"x": x[k], "valid": np.broadcast_to(plan.valid, (m, plan.valid.size)).copy(),
            "flow_rel": (flow[k] / scale[k]).astype(np.float32),
            "mtt": mtt[k].astype(np.float32), "delay": np.full(m, delay, np.float32),
            "snr": snr[k].astype(np.float32), "shape": np.full(m, shape_i, np.int8)}
