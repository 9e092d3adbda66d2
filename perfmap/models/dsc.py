"""DSC-MRI on arrays: ``DSCModel(...).fit(signal, mask, aif) -> DSCFit``.

The fit runs the DSC step list (DESIGN section 2; :mod:`perfmap.models.dsc_steps`)::

    grid -> brain mask -> baseline -> dR2* (single or dual echo) -> [leakage] -> AIF
    -> deconvolution

and the maps (CBF, CBV, MTT, Tmax, TTP; :mod:`perfmap.core.maps`; with leakage
correction also K2) are derived on first access. Nothing here reads or writes files: :func:`perfmap.compute`
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

from ..core.curves import DEFAULT_KH, DEFAULT_RHO
from ..core.leakage import METHODS as LEAKAGE_METHODS
from ..core.maps import MAP_NAMES, MAP_UNITS, perfusion_maps, volume_source
from ..core.roi import mean_curve_ratios
from ..deconv import make_backend
from ..errors import ParameterError, ShapeError
from .base import Fit, Work, run_steps
from .common_steps import make_denoiser
from .dsc_steps import DSC_STEPS
from .inputs import check_aif, check_mask, check_signal, frame_times_for, is_auto

#: ``leakage=`` values: a correction method, or none.
LEAKAGE_CHOICES = (*LEAKAGE_METHODS, "none")


class DSCFit(Fit):
    """A fitted DSC model: maps on first access, the AIF and the provenance.

    Attributes
    ----------
    cbf, cbv, mtt, tmax, ttp : ndarray, shape (X, Y, Z), float32
        ml/100 g/min, ml/100 g, s, s, s (DESIGN section 4); NaN outside the
        brain mask and where a voxel could not be fitted.
    k2 : ndarray, shape (X, Y, Z), float32
        Leakage rate K2 (1/s) of every brain voxel (> 0: T1-dominant leakage),
        when leakage correction ran (``map_names`` then includes ``k2``).
    leakage_reference : ndarray of bool, shape (X, Y, Z), or None
        The non-enhancing voxels whose mean curve was the leakage reference.
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

    def __init__(self, model: "DSCModel", work: Work):
        super().__init__(work.brain_mask)
        self.leakage = getattr(work, "leakage", None)
        self.map_names = MAP_NAMES + (("k2",) if self.leakage is not None else ())
        self.map_units = dict(MAP_UNITS, **({"k2": "1/s"} if self.leakage is not None else {}))
        self.leakage_reference = None
        self.mask_outputs = model.mask_outputs
        if self.leakage is not None:
            self.leakage_reference = np.zeros(work.brain_mask.shape, bool)
            self.leakage_reference[work.brain_mask] = work.leakage_reference
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
    k2 = property(lambda self: self.map("k2"))

    def mean_curve_ratios(self, roi, ref) -> dict:
        """Tumour-to-reference ratios of the deconvolved ROI-mean curves
        (:func:`perfmap.core.roi.mean_curve_ratios`; the curves deconvolved are
        this fit's, leakage-corrected when the correction ran).

        Parameters
        ----------
        roi, ref : ndarray of bool, shape (X, Y, Z)
            The ROI (tumour) and the reference (contralateral NAWM); only their
            brain voxels count.
        """
        m = self._model
        return mean_curve_ratios(self._conc, np.asarray(roi, bool)[self.brain_mask],
                                 np.asarray(ref, bool)[self.brain_mask], self.aif, self.dt,
                                 m.backend, kh=m.kh, rho=m.rho)

    def _voxel_maps(self) -> dict:
        m = self._model
        maps = perfusion_maps(self._conc, self.aif, self.dt, self.deconvolution, kh=m.kh,
                              rho=m.rho, times=self.times)
        if self.leakage is not None:
            maps["k2"] = self.leakage.k2
        return maps

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
            # CBV from the backend's fitted volume or the integral ratio (core.maps notes)
            "cbv_source": volume_source(fit),
            "leakage": info.get("leakage", {"method": "none"}),
            "denoise": info.get("denoise", {"method": "none"}),
            **({"dual_echo": info["dual_echo"]} if "dual_echo" in info else {}),
            "units": dict(self.map_units),
            "timings": dict(info["timings"]),
        }


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
    leakage : {"bsw", "bidirectional", "none"}, optional
        Leakage correction (Boxerman 2006, the default for single-echo data;
        Leu 2016; none). Default: ``bsw``, or ``none`` with a second echo (its
        dR2* is free of T1 effects).
    te2 : float, optional
        Echo time (s) of the second echo given to :meth:`fit` (dual echo).
    denoise : str, optional
        A denoiser of :mod:`perfmap.core.denoise` (``mppca``, ``gaussian``)
        applied to the brain's signal before conversion; ``none`` by default.
    denoise_params : dict, optional
        Its parameters (e.g. ``{"patch": 5}``).
    **method_params
        Hyper-parameters of the backend (``perfmap methods`` lists them); an
        unknown key raises :class:`perfmap.errors.ParameterError`.
    """

    kind = "dsc"
    steps = DSC_STEPS

    def __init__(self, method: str = "osvd", te: Optional[float] = None,
                 tr: Optional[float] = None, kh: float = DEFAULT_KH, rho: float = DEFAULT_RHO,
                 baseline_frames=None, n_skip: Optional[int] = None,
                 aif_options: Optional[dict] = None, leakage: Optional[str] = None,
                 te2: Optional[float] = None, denoise: Optional[str] = None,
                 denoise_params: Optional[dict] = None, **method_params):
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
        if te2 is not None and not (np.isfinite(te2) and te2 > 0 and te2 != te):
            raise ParameterError(f"the second echo time must be a positive number of seconds "
                                 f"other than TE ({te} s), got {te2!r}")
        self.te2 = None if te2 is None else float(te2)
        if leakage is None:
            leakage = "none" if te2 is not None else "bsw"
        if leakage not in LEAKAGE_CHOICES:
            raise ParameterError(f"leakage must be one of {', '.join(LEAKAGE_CHOICES)}, got "
                                 f"{leakage!r}")
        self.leakage = leakage
        self.denoiser = None if denoise in (None, "none") else \
            make_denoiser(denoise, dict(denoise_params or {}))
        self.backend = make_backend(method, **method_params)

    @property
    def map_names(self) -> tuple:
        """The maps a fit of this model has (``k2`` with leakage correction)."""
        return MAP_NAMES + (("k2",) if self.leakage != "none" else ())

    @property
    def mask_outputs(self) -> dict:
        """Masks a fit of this model has, ``file suffix -> DSCFit attribute``."""
        return {"leakref": "leakage_reference"} if self.leakage != "none" else {}

    def prepare(self, signal, mask="auto", aif="auto", frame_times=None,
                until: str = "aif", second_echo=None) -> Work:
        """Run the steps up to and including ``until`` and return their work record.

        For callers that need the prepared curves rather than maps (training
        on real exams: ``work.brain_conc``, ``work.aif.curve``, ``work.grid``).
        """
        work = self._start(signal, mask, aif, frame_times, second_echo)
        names = [s.name for s in self.steps]
        if until not in names:
            raise ParameterError(f"no step {until!r}; the steps are {', '.join(names)}")
        return run_steps(self, self.steps[:names.index(until) + 1], work)

    def _start(self, signal, mask, aif, frame_times, second_echo) -> Work:
        signal = check_signal(signal)
        work = Work(signal=signal)
        work.second_echo = None
        if second_echo is not None:
            if self.te2 is None:
                raise ParameterError("a second echo needs its echo time: give te2 (s)")
            work.second_echo = check_signal(second_echo)
            if work.second_echo.shape != signal.shape:
                raise ShapeError(f"the second echo has shape {work.second_echo.shape} but the "
                                 f"series has shape {signal.shape}")
        work.frame_times = frame_times_for(signal, frame_times, self.tr)
        work.brain_mask = None if is_auto(mask) else check_mask(mask, signal, "brain mask")
        work.aif_mask, work.aif_curve = check_aif(aif, signal)
        work.info.update(tr_s=self.tr, frames=int(signal.shape[-1]))
        return work

    def fit(self, signal, mask="auto", aif="auto", frame_times=None,
            second_echo=None) -> DSCFit:
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
        second_echo : array_like, shape (X, Y, Z, T), optional
            The other echo of a dual-echo series (echo time ``te2``): dR2* is
            then ``ln((S1/S1_0)/(S2/S2_0)) / (TE2 - TE1)`` (Vonken 1999).

        Returns
        -------
        DSCFit

        Raises
        ------
        ShapeError, InputDataError, ParameterError
        """
        work = run_steps(self, self.steps,
                         self._start(signal, mask, aif, frame_times, second_echo))
        return DSCFit(self, work)

