"""The DSC step list: what :meth:`perfmap.models.DSCModel.fit` runs, in order.

``grid -> mask -> baseline -> concentration -> [leakage] -> aif -> deconvolution``
(DESIGN section 2). Each step reads and sets attributes of one
:class:`perfmap.models.base.Work` record; optional steps carry an ``applies``
condition on the model. Dual-echo series are converted in the concentration
step (Vonken 1999), which makes the curves free of T1 leakage.
"""

from __future__ import annotations

import numpy as np

from ..core import aif as aif_mod
from ..core.brainmask import auto_brain_mask
from ..core.concentration import detect_baseline, dsc_concentration
from ..core.dual_echo import dual_echo_concentration
from ..core.leakage import correct_leakage
from ..core.leakage_reference import reference_curve, select_reference
from ..core.series import uniform_grid, voxel_curves
from ..errors import InputDataError
from .base import Step, Work
from .common_steps import DENOISE_STEP


def _grid_step(model, w: Work) -> None:
    w.grid = uniform_grid(w.frame_times, model.tr)
    w.data = w.grid.resample(w.signal) if w.grid.resampled else w.signal
    if w.second_echo is not None:
        w.data2 = w.grid.resample(w.second_echo) if w.grid.resampled else w.second_echo
    w.info["timing"] = w.grid.info


def _mask_step(model, w: Work) -> None:
    if w.brain_mask is not None:
        w.info["mask"] = {"source": "given", "voxels": int(np.count_nonzero(w.brain_mask))}
        return
    if not np.any(w.data > 0):
        raise InputDataError("the baseline signal is zero or negative in every brain voxel")
    # A first mask from the temporal mean locates the baseline; the final
    # mask comes from the baseline image itself.
    rough = auto_brain_mask(w.data.mean(axis=-1))
    window = detect_baseline(voxel_curves(w.data, rough).mean(axis=0), n_skip=model.n_skip,
                             baseline_frames=model.baseline_frames)
    w.brain_mask = auto_brain_mask(w.data[..., window.start:window.stop].mean(axis=-1))
    w.info["mask"] = {"source": "auto", "voxels": int(np.count_nonzero(w.brain_mask))}


def _baseline_step(model, w: Work) -> None:
    extra = w.aif_mask
    w.voxels = w.brain_mask if extra is None else (w.brain_mask | extra)
    w.curves = voxel_curves(w.data, w.voxels)
    w.in_brain = w.brain_mask[w.voxels]
    if not np.any(w.curves[w.in_brain] > 0):
        raise InputDataError("the baseline signal is zero or negative in every brain voxel")
    w.window = detect_baseline(w.curves[w.in_brain].mean(axis=0), n_skip=model.n_skip,
                               baseline_frames=model.baseline_frames)
    win = w.window
    w.info["baseline"] = {"start": int(win.start), "stop": int(win.stop),
                          "arrival": int(win.arrival), "method": win.method,
                          "skipped_frames": int(win.start)}


def _concentration_step(model, w: Work) -> None:
    if w.second_echo is None:
        conc, invalid = dsc_concentration(w.curves, model.te, w.window)
    else:
        other = voxel_curves(w.data2, w.voxels)
        pair = sorted([(model.te, w.curves), (model.te2, other)], key=lambda p: p[0])
        conc, invalid = dual_echo_concentration(pair[0][1], pair[1][1], pair[0][0],
                                                pair[1][0], w.window)
        w.info["dual_echo"] = {"te1_s": pair[0][0], "te2_s": pair[1][0],
                               "formula": "ln((S1/S1_0)/(S2/S2_0)) / (TE2 - TE1)"}
    del w.curves
    if np.all(invalid[w.in_brain]):
        raise InputDataError("the baseline signal is zero or negative in every brain voxel")
    start = int(w.window.start)
    w.conc = conc[:, start:]
    w.brain_conc = w.conc[w.in_brain]
    w.invalid = invalid[w.in_brain]
    w.times = w.grid.times[start:]


def _aif_step(model, w: Work) -> None:
    if w.aif_curve is not None:
        curve = np.asarray(w.grid.resample(np.asarray(w.aif_curve, np.float64)))
        w.aif = aif_mod.AifSelection(curve=curve[int(w.window.start):].astype(np.float64),
                                     indices=np.zeros((0, 3), int), method="curve", params={})
    elif w.aif_mask is not None:
        rows = w.conc[w.aif_mask[w.voxels]]
        w.aif = aif_mod.aif_from_curves(rows, np.argwhere(w.aif_mask))
    else:
        # arteries are searched among the measured (not leakage-corrected) curves
        measured = getattr(w, "measured_conc", w.brain_conc)
        w.aif = aif_mod.auto_aif_from_curves(measured, np.argwhere(w.brain_mask),
                                             w.grid.dt, **model.aif_options)
    if not np.all(np.isfinite(w.aif.curve)) or np.max(w.aif.curve) <= 0:
        raise InputDataError("the AIF has no positive concentration; check the arterial "
                             "mask or curve")
    if not np.trapezoid(w.aif.curve) > 0:
        raise InputDataError("the AIF's integral is not positive (is the baseline window "
                             "inside the bolus?); check the AIF and --baseline-frames")


def _leakage_step(model, w: Work) -> None:
    """Boxerman-Schmainda-Weisskoff 2006 or Leu 2016 correction of the brain's curves
    (:mod:`perfmap.core.leakage`); the reference is the mean curve of the non-enhancing,
    non-vascular brain voxels (:func:`perfmap.core.leakage_reference.select_reference`)."""
    window = (0, int(w.window.stop) - int(w.window.start))     # on the kept frames
    try:
        reference = select_reference(w.brain_conc, window)
    except InputDataError as exc:
        raise InputDataError(f"leakage correction: {exc}; give --leakage none (leakage=\"none\")"
                             " to skip it") from None
    ref = reference_curve(w.brain_conc, reference)
    w.leakage = correct_leakage(w.brain_conc, ref, times=w.times, method=model.leakage,
                                reference=reference, mask=w.brain_mask, baseline=window)
    w.leakage_reference = reference
    w.measured_conc, w.brain_conc = w.brain_conc, w.leakage.corrected
    w.info["leakage"] = dict(w.leakage.info, reference="mean dR2* of the non-enhancing, "
                             "non-vascular brain voxels (STEM_leakref.nii.gz)")


def _deconvolution_step(model, w: Work) -> None:
    w.deconv = model.backend.fit(w.brain_conc, w.aif.curve, w.grid.dt)


#: The DSC step list (DESIGN section 2). Optional steps (denoising, leakage
#: correction) are entries with an ``applies`` condition.
DSC_STEPS = [
    Step("grid", _grid_step),
    Step("mask", _mask_step),
    DENOISE_STEP,
    Step("baseline", _baseline_step),
    Step("concentration", _concentration_step),
    Step("leakage", _leakage_step, applies=lambda model: model.leakage != "none"),
    Step("aif", _aif_step),
    Step("deconvolution", _deconvolution_step),
]
