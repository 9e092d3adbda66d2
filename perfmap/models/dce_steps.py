"""The DCE step list: what :meth:`perfmap.models.DCEModel.fit` runs, in order.

``grid -> mask -> baseline -> t10 -> concentration -> aif -> fit`` (DESIGN
section 2). Each step reads and sets attributes of one
:class:`perfmap.models.base.Work` record.

- **baseline**: the bolus *raises* T1-weighted signal, so the pre-contrast
  frames are found with :func:`perfmap.core.concentration.detect_baseline` on
  the mirrored (``2 max - S``) mean signal of the arterial mask, or without
  one of the 1 % most enhancing brain voxels; no frame is dropped as non-steady unless asked (DCE series are
  saved at steady state).
- **t10**: one value, a T1 map (s), or a variable-flip-angle fit
  (:func:`perfmap.core.t1map.vfa_t1`) of the brain voxels.
- **concentration**: SPGR, closed form (:func:`perfmap.core.spgr.spgr_concentration`).
- **aif**: arterial blood concentration (mask mean, curve, automatic
  T1-weighted selection or Parker 2006 with the arrival fitted), converted to
  plasma with ``1 - Hct``.
- **fit**: a tracer-kinetic model (:mod:`perfmap.kinetics`) or a model-free
  deconvolution backend (:mod:`perfmap.deconv`) on the plasma AIF.
"""

from __future__ import annotations

import numpy as np

from ..core import dce_aif
from ..core.aif import AifSelection, aif_from_curves
from ..core.brainmask import auto_brain_mask
from ..core.concentration import detect_baseline
from ..core.series import uniform_grid, voxel_curves
from ..core.spgr import spgr_concentration
from ..core.t1map import vfa_t1
from ..errors import InputDataError
from .base import Step, Work
from .common_steps import DENOISE_STEP


def _mirrored(mean_signal: np.ndarray) -> np.ndarray:
    return 2.0 * float(np.max(mean_signal)) - mean_signal


def enhancement_baseline(probe_signal, n_skip: int = 0, baseline_frames=None):
    """Pre-contrast frames of a T1-weighted series from a probe curve whose signal the
    bolus raises (arterial mean, or :func:`enhancing_curve`): the DSC detection
    (:func:`perfmap.core.concentration.detect_baseline`) on the mirrored curve."""
    return detect_baseline(_mirrored(np.asarray(probe_signal, np.float64)), n_skip=n_skip,
                           baseline_frames=baseline_frames)


def enhancing_curve(curves: np.ndarray) -> np.ndarray:
    """Mean signal of the most enhancing voxels (vessels, enhancing tissue): the largest
    ``max - first frame`` rise, top 1 % and at least 10 voxels. Normal brain barely
    enhances in DCE, so the whole brain's mean would hide the bolus."""
    curves = np.asarray(curves, np.float64)
    rise = curves.max(axis=1) - curves[:, 0]
    k = min(len(rise), max(10, len(rise) // 100))
    top = np.argpartition(-rise, k - 1)[:k]
    return curves[np.sort(top)].mean(axis=0)


def _grid_step(model, w: Work) -> None:
    w.grid = uniform_grid(w.frame_times)
    w.data = w.grid.resample(w.signal) if w.grid.resampled else w.signal
    w.info["timing"] = w.grid.info


def _mask_step(model, w: Work) -> None:
    if w.brain_mask is None:
        if not np.any(w.data > 0):
            raise InputDataError("the signal is zero or negative everywhere")
        rough = auto_brain_mask(w.data.mean(axis=-1))
        window = enhancement_baseline(enhancing_curve(voxel_curves(w.data, rough)),
                                      model.n_skip or 0, model.baseline_frames)
        w.brain_mask = auto_brain_mask(w.data[..., window.start:window.stop].mean(axis=-1))
        w.info["mask"] = {"source": "auto"}
    else:
        w.info["mask"] = {"source": "given"}
    w.info["mask"]["voxels"] = int(np.count_nonzero(w.brain_mask))


def _baseline_step(model, w: Work) -> None:
    w.voxels = w.brain_mask if w.aif_mask is None else (w.brain_mask | w.aif_mask)
    w.curves = voxel_curves(w.data, w.voxels)
    w.in_brain = w.brain_mask[w.voxels]
    # The bolus arrives first, and most clearly, in the arteries: their mean curve
    # when an arterial mask is given, else the brain's most enhancing voxels.
    probe = w.curves[w.aif_mask[w.voxels]].mean(axis=0, dtype=np.float64) \
        if w.aif_mask is not None else enhancing_curve(w.curves[w.in_brain])
    w.window = enhancement_baseline(probe, model.n_skip or 0, model.baseline_frames)
    win = w.window
    w.info["baseline"] = {"start": int(win.start), "stop": int(win.stop),
                          "arrival": int(win.arrival), "method": win.method}


def _t10_step(model, w: Work) -> None:
    n = int(np.count_nonzero(w.voxels))
    if w.t10_map is not None:
        w.t10 = w.t10_map[w.voxels].astype(np.float64)
        w.info["t10"] = {"source": "map"}
    elif w.vfa is not None:
        fit = vfa_t1(voxel_curves(w.vfa, w.voxels), w.vfa_angles, model.tr)
        w.t10, w.vfa_fit = fit.t1.astype(np.float64), fit
        w.info["t10"] = {"source": "variable flip angle", "angles_deg": list(w.vfa_angles),
                         **fit.info}
    else:
        w.t10 = np.full(n, model.t10, np.float64)
        w.info["t10"] = {"source": "one value", "t10_s": model.t10}


def _concentration_step(model, w: Work) -> None:
    conv = spgr_concentration(w.curves, (int(w.window.start), int(w.window.stop)),
                              np.where(np.isfinite(w.t10), w.t10, 1.0), model.tr,
                              model.flip_angle, r1=model.r1)
    conc = conv.conc
    conc[~np.isfinite(w.t10)] = np.nan                  # no T10, no concentration
    del w.curves
    w.conc = conc
    w.brain_conc = conc[w.in_brain]
    w.times = w.grid.times
    w.info["concentration"] = {"undefined_frames": conv.n_undefined,
                               "bad_baseline_voxels": conv.n_bad_baseline,
                               "no_t10_voxels": int(np.count_nonzero(~np.isfinite(w.t10)))}


def _aif_step(model, w: Work) -> None:
    if isinstance(w.aif_request, str) and w.aif_request == "parker":
        w.aif = _parker(model, w)
    elif w.aif_curve is not None:
        curve = np.asarray(w.grid.resample(np.asarray(w.aif_curve, np.float64)))
        w.aif = AifSelection(curve=curve, indices=np.zeros((0, 3), int), method="curve",
                             params={})
    elif w.aif_mask is not None:
        w.aif = aif_from_curves(w.conc[w.aif_mask[w.voxels]], np.argwhere(w.aif_mask))
    else:
        w.aif = dce_aif.auto_dce_aif(w.brain_conc, np.argwhere(w.brain_mask), w.times,
                                     **model.aif_options)
    if not np.all(np.isfinite(w.aif.curve)) or np.max(w.aif.curve) <= 0:
        raise InputDataError("the AIF has no positive concentration; check the arterial "
                             "mask or curve")
    w.blood_aif = np.asarray(w.aif.curve, np.float64)
    w.plasma_aif = dce_aif.plasma_from_blood(w.blood_aif, model.hct)


def _parker(model, w: Work) -> AifSelection:
    """Parker 2006 with its arrival fitted to the mean curve of the brain's 1 % earliest-
    peaking, highest voxels (vessels), so the population AIF meets this exam's bolus."""
    finite = np.all(np.isfinite(w.brain_conc), axis=1)
    rows = w.brain_conc[finite]
    if len(rows) == 0:
        raise InputDataError("no finite concentration curve to place the Parker AIF")
    peak = rows.max(axis=1)
    top = rows[peak >= np.quantile(peak, 0.99)]
    delay, scale = dce_aif.fit_parker_delay(top.mean(axis=0), w.times)
    curve = dce_aif.parker_aif(w.times, delay)
    return AifSelection(curve=curve, indices=np.zeros((0, 3), int), method="parker",
                        params={"reference": "Parker et al. 2006, MRM 56:993",
                                "arrival_s": float(delay),
                                "fitted_to": "mean of the 1 % highest-peaking brain voxels"})


def _fit_step(model, w: Work) -> None:
    if model.is_kinetic:
        w.kinetic = model.backend.fit(w.brain_conc, w.plasma_aif, w.times)
    else:
        w.deconv = model.backend.fit(w.brain_conc, w.plasma_aif, w.grid.dt)


#: The DCE step list (DESIGN section 2).
DCE_STEPS = [
    Step("grid", _grid_step),
    Step("mask", _mask_step),
    DENOISE_STEP,
    Step("baseline", _baseline_step),
    Step("t10", _t10_step),
    Step("concentration", _concentration_step),
    Step("aif", _aif_step),
    Step("fit", _fit_step),
]
