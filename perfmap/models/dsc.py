"""DSC-MRI on arrays: ``DSCModel(...).fit(signal, mask, aif) -> DSCFit``.

The fit runs the DSC step list (DESIGN section 2)::

    grid -> brain mask -> baseline -> dR2* -> AIF -> deconvolution

and the maps (CBF, CBV, MTT, Tmax, TTP; :mod:`perfmap.core.maps`) are derived
on first access. Nothing here reads or writes files: :func:`perfmap.compute`
loads a series, calls this model and writes what it returns.

Examples
--------
>>> from perfmap.core.phantom import make_phantom
>>> ph = make_phantom(shape=(24, 24, 2), n_frames=40, snr=None, seed=0)
>>> fit = DSCModel("osvd", te=ph.te, tr=ph.tr).fit(ph.signal, mask=ph.masks["brain"],
...                                                aif=ph.masks["aif"])
>>> fit.cbf.shape, fit.cbf.dtype.name
((24, 24, 2), 'float32')
>>> bool(np.isnan(fit.cbf[~ph.masks["brain"]]).all())
True
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core import aif as aif_mod
from ..core.brainmask import auto_brain_mask
from ..core.concentration import detect_baseline, dsc_concentration
from ..core.curves import DEFAULT_KH, DEFAULT_RHO
from ..core.maps import MAP_NAMES, MAP_UNITS, perfusion_maps
from ..core.series import uniform_grid, voxel_curves
from ..deconv import make_backend
from ..errors import InputDataError, ParameterError
from .base import Fit, Step, Work, run_steps
from .inputs import check_aif, check_mask, check_signal, frame_times_for, is_auto


class DSCFit(Fit):
    """A fitted DSC model: maps on first access, the AIF and the provenance.

    Attributes
    ----------
    cbf, cbv, mtt, tmax, ttp : ndarray, shape (X, Y, Z), float32
        ml/100 g/min, ml/100 g, s, s, s (DESIGN section 4); NaN outside the
        brain mask and where a voxel could not be fitted.
    aif : ndarray, shape (T',)
        The arterial dR2* curve (1/s) on :attr:`times`.
    times : ndarray, shape (T',)
        Uniform frame times (s) from the first kept (steady-state) frame.
    brain_mask, aif_mask : ndarray of bool, shape (X, Y, Z)
        The voxels fitted, and the voxels whose mean curve is the AIF (empty
        when the AIF was given as a curve).
    deconvolution : perfmap.deconv.DeconvFit
        The backend's per-voxel result.
    provenance : dict
        Parameters, detected baseline, AIF selection, counts and timings, as
        written to the JSON file by :func:`perfmap.compute`.
    """

    map_names = MAP_NAMES
    map_units = MAP_UNITS

    def __init__(self, model: "DSCModel", work: Work):
        super().__init__(work.brain_mask)
        self._model = model
        self._conc = work.brain_conc
        self.deconvolution = work.deconv
        self.aif = work.aif.curve
        self.times = work.times
        self.dt = work.grid.dt
        self.aif_mask = np.zeros(work.brain_mask.shape, bool)
        if len(work.aif.indices):
            self.aif_mask[tuple(np.asarray(work.aif.indices).T)] = True
        self._work_info = dict(work.info, aif_selection=work.aif, invalid=work.invalid,
                               timings=work.timings)
        self._provenance = None

    cbf = property(lambda self: self.map("cbf"))
    cbv = property(lambda self: self.map("cbv"))
    mtt = property(lambda self: self.map("mtt"))
    tmax = property(lambda self: self.map("tmax"))
    ttp = property(lambda self: self.map("ttp"))

    def _voxel_maps(self) -> dict:
        m = self._model
        return perfusion_maps(self._conc, self.aif, self.dt, self.deconvolution, kh=m.kh,
                              rho=m.rho, times=self.times)

    @property
    def provenance(self) -> dict:
        if self._provenance is None:
            self._provenance = self._make_provenance()
        return self._provenance

    def _make_provenance(self) -> dict:
        m, info, fit = self._model, self._work_info, self.deconvolution
        sel = info["aif_selection"]
        cbf, mtt = self.voxel_values("cbf"), self.voxel_values("mtt")
        n_brain = int(np.count_nonzero(self.brain_mask))
        return {
            "method": m.method, "method_params": m.backend.params(),
            "kh": m.kh, "rho": m.rho, "te_s": m.te, "tr_s": info["tr_s"],
            "frames": info["frames"], "dt_s": self.dt, "timing": info["timing"],
            "baseline": info["baseline"], "mask": info["mask"],
            "aif": {"source": sel.method, "voxels": int(len(sel.indices)),
                    "indices": np.asarray(sel.indices).tolist(), "params": sel.params},
            "voxels": {"brain": n_brain,
                       "invalid_baseline": int(np.count_nonzero(info["invalid"])),
                       "not_fitted": int(np.count_nonzero(~np.isfinite(cbf))),
                       # fitted voxels whose CBV or CBF is negative (core.maps notes)
                       "mtt_undefined": int(np.count_nonzero(np.isfinite(cbf)
                                                             & ~np.isfinite(mtt))),
                       "deconvolution_failed": fit.n_failed},
            "deconvolution_info": fit.info,
            "units": dict(MAP_UNITS),
            "timings": dict(info["timings"]),
        }


# ---------------------------------------------------------------- the steps

def _grid_step(model, w: Work) -> None:
    w.grid = uniform_grid(w.frame_times, model.tr)
    w.data = w.grid.resample(w.signal) if w.grid.resampled else w.signal
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
    conc, invalid = dsc_concentration(w.curves, model.te, w.window)
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
        w.aif = aif_mod.auto_aif_from_curves(w.brain_conc, np.argwhere(w.brain_mask),
                                             w.grid.dt, **model.aif_options)
    if not np.all(np.isfinite(w.aif.curve)) or np.max(w.aif.curve) <= 0:
        raise InputDataError("the AIF has no positive concentration; check the arterial "
                             "mask or curve")
    if not np.trapezoid(w.aif.curve) > 0:
        raise InputDataError("the AIF's integral is not positive (is the baseline window "
                             "inside the bolus?); check the AIF and --baseline-frames")


def _deconvolution_step(model, w: Work) -> None:
    w.deconv = model.backend.fit(w.brain_conc, w.aif.curve, w.grid.dt)


#: The DSC step list (DESIGN section 2). Optional steps (denoising, leakage
#: correction) are entries with an ``applies`` condition.
DSC_STEPS = [
    Step("grid", _grid_step),
    Step("mask", _mask_step),
    Step("baseline", _baseline_step),
    Step("concentration", _concentration_step),
    Step("aif", _aif_step),
    Step("deconvolution", _deconvolution_step),
]


class DSCModel:
    """DSC perfusion model: deconvolution method, acquisition and conversion parameters.

    Parameters
    ----------
    method : str
        A registered deconvolution backend (:func:`perfmap.deconv.available`).
    te : float
        Echo time (s).
    tr : float, optional
        Frame interval (s); needed unless ``frame_times`` is given to :meth:`fit`.
    kh, rho : float
        Hematocrit correction and brain density (g/ml), DESIGN section 4.
    baseline_frames : (int, int), optional
        Frames ``[start, stop)`` averaged into S0, instead of the detected window.
    n_skip : int, optional
        Leading non-steady-state frames to drop, instead of the detected count.
    aif_options : dict, optional
        Options of the automatic AIF (:func:`perfmap.core.aif.auto_aif_from_curves`).
    **method_params
        Hyper-parameters of the backend (``perfmap methods`` lists them); an
        unknown key raises :class:`perfmap.errors.ParameterError`.
    """

    kind = "dsc"
    steps = DSC_STEPS

    def __init__(self, method: str = "osvd", te: Optional[float] = None,
                 tr: Optional[float] = None, kh: float = DEFAULT_KH, rho: float = DEFAULT_RHO,
                 baseline_frames=None, n_skip: Optional[int] = None,
                 aif_options: Optional[dict] = None, **method_params):
        if te is None or not (np.isfinite(te) and te > 0):
            raise ParameterError(f"the echo time TE must be a positive number of seconds, "
                                 f"got {te!r}")
        if tr is not None and not (np.isfinite(tr) and tr > 0):
            raise ParameterError(f"the repetition time TR must be a positive number of "
                                 f"seconds, got {tr!r}")
        if not (kh > 0 and rho > 0):
            raise ParameterError("kH and rho must be positive")
        self.method, self.te, self.tr = method, float(te), tr
        self.kh, self.rho = float(kh), float(rho)
        self.baseline_frames, self.n_skip = baseline_frames, n_skip
        self.aif_options = dict(aif_options or {})
        self.backend = make_backend(method, **method_params)

    def prepare(self, signal, mask="auto", aif="auto", frame_times=None,
                until: str = "aif") -> Work:
        """Run the steps up to and including ``until`` and return their work record.

        For callers that need the prepared curves rather than maps (training
        on real exams: ``work.brain_conc``, ``work.aif.curve``, ``work.grid``).
        """
        work = self._start(signal, mask, aif, frame_times)
        names = [s.name for s in self.steps]
        if until not in names:
            raise ParameterError(f"no step {until!r}; the steps are {', '.join(names)}")
        return run_steps(self, self.steps[:names.index(until) + 1], work)

    def _start(self, signal, mask, aif, frame_times) -> Work:
        signal = check_signal(signal)
        work = Work(signal=signal)
        work.frame_times = frame_times_for(signal, frame_times, self.tr)
        work.brain_mask = None if is_auto(mask) else check_mask(mask, signal, "brain mask")
        work.aif_mask, work.aif_curve = check_aif(aif, signal)
        work.info.update(tr_s=self.tr, frames=int(signal.shape[-1]))
        return work

    def fit(self, signal, mask="auto", aif="auto", frame_times=None) -> DSCFit:
        """Fit every brain voxel of a 4D DSC series.

        Parameters
        ----------
        signal : array_like, shape (X, Y, Z, T)
            Signal intensities, time last. Not modified.
        mask : "auto" or ndarray of bool, shape (X, Y, Z)
            Brain mask, or ``auto`` (Otsu threshold of the baseline image).
        aif : "auto", ndarray of bool (X, Y, Z), or ndarray (T,)
            Arterial mask (mean curve of its voxels), an AIF curve in dR2*
            (1/s) with one value per frame, or ``auto`` (Mouridsen 2006).
        frame_times : array_like, shape (T,), optional
            Acquisition time of each frame (s); default ``arange(T) * tr``.
            Unevenly spaced frames are resampled onto a uniform grid.

        Returns
        -------
        DSCFit

        Raises
        ------
        ShapeError, InputDataError, ParameterError
        """
        work = run_steps(self, self.steps, self._start(signal, mask, aif, frame_times))
        return DSCFit(self, work)

