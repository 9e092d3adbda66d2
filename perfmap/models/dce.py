"""DCE-MRI on arrays: ``DCEModel(...).fit(signal, mask, aif) -> DCEFit``.

The fit runs the DCE step list (:mod:`perfmap.models.dce_steps`)::

    grid -> brain mask -> baseline -> T10 -> SPGR concentration -> AIF -> fit

with a tracer-kinetic model (``tofts``, ``etofts``, ``patlak``, ``2cxm``;
:mod:`perfmap.kinetics`) or, model-free, a deconvolution backend (``osvd``,
``tikhonov``, ...; Sourbron's plasma flow ``Fp``, distribution volume ``vd``
and ``MTT = vd / Fp``). Maps are derived on first access.

Units (DESIGN section 4): Ktrans and kep in 1/min; ve, vp, vd in ml/ml; Fp
and PS in ml/100 ml/min; MTT in s; T10 in s.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.dce_aif import DEFAULT_HCT
from ..core.maps import trapezoid_integral
from ..core.spgr import DEFAULT_R1
from ..errors import ParameterError
from .base import Fit, Work, run_steps
from .common_steps import make_denoiser
from .dce_steps import DCE_STEPS
from .inputs import check_aif, check_mask, check_signal, frame_times_for, is_auto

#: Units of the model-free DCE maps.
MODEL_FREE_UNITS = {"fp": "ml/100ml/min", "vd": "ml/ml", "mtt": "s"}


def _kinetic_registry():
    from ..kinetics import available, get_model

    return available, get_model


def kinetic_parameters(method: str) -> dict:
    """Options a kinetic model takes, ``key -> default`` (its ``__init__`` keywords)."""
    import inspect

    _, get_model = _kinetic_registry()
    sig = inspect.signature(get_model(method).__init__)
    return {p.name: (None if p.default is p.empty else p.default)
            for p in sig.parameters.values() if p.name != "self"}


def is_kinetic_method(method: str) -> bool:
    """True for a tracer-kinetic model name, False for a deconvolution backend."""
    available, _ = _kinetic_registry()
    return method in available()


class DCEFit(Fit):
    """A fitted DCE model: parameter maps on first access, the AIF and the provenance.

    Attributes
    ----------
    ktrans, ve, vp, kep, fp, ps, vd, mtt : ndarray, shape (X, Y, Z), float32
        The maps the method has (``map_names``), NaN outside the mask and where
        a voxel could not be fitted.
    t10 : ndarray, shape (X, Y, Z), float32, or None
        Pre-contrast T1 (s) of a variable-flip-angle fit.
    aif : ndarray, shape (T,)
        Plasma AIF (mM) on :attr:`times`.
    """

    def __init__(self, model: "DCEModel", work: Work):
        super().__init__(work.brain_mask)
        self._model, self._work = model, work
        self.times, self.dt = work.times, work.grid.dt
        self.aif, self.blood_aif = work.plasma_aif, work.blood_aif
        self.aif_mask = np.zeros(work.brain_mask.shape, bool)
        if len(work.aif.indices):
            self.aif_mask[tuple(np.asarray(work.aif.indices).T)] = True
        self.map_names = model.map_names
        self.map_units = model.map_units
        self.mask_outputs = {}
        self._provenance = None

    def __getattr__(self, name):
        # only reached for names that are not attributes: the maps of this fit
        if name.startswith("_") or name not in self.__dict__.get("map_names", ()):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return self.map(name)

    def _voxel_maps(self) -> dict:
        w, m = self._work, self._model
        if m.is_kinetic:
            maps = {k: np.asarray(v, np.float32) for k, v in w.kinetic.params.items()}
        else:
            maps = _model_free_maps(w)
        if "t10" in m.map_names:
            t10 = np.asarray(w.t10, np.float32)[w.in_brain]
            maps["t10"] = np.where(np.isfinite(t10), t10, np.nan).astype(np.float32)
        return {k: maps[k] for k in m.map_names}

    @property
    def provenance(self) -> dict:
        if self._provenance is None:
            self._provenance = self._make_provenance()
        return self._provenance

    def _make_provenance(self) -> dict:
        m, w = self._model, self._work
        primary = self.voxel_values(self.map_names[0])
        fit = w.kinetic if m.is_kinetic else w.deconv
        sel = w.aif
        prov = {
            "method": m.method, "method_params": m.backend.params(),
            "tr_s": m.tr, "flip_angle_deg": m.flip_angle, "r1_per_mM_s": m.r1,
            "hct": m.hct, "frames": w.info["frames"], "dt_s": self.dt,
            "timing": w.info["timing"], "baseline": w.info["baseline"],
            "mask": w.info["mask"], "t10": w.info["t10"],
            "concentration": w.info["concentration"],
            "denoise": w.info.get("denoise", {"method": "none"}),
            "aif": {"source": sel.method, "voxels": int(len(sel.indices)),
                    "indices": np.asarray(sel.indices).tolist(), "params": sel.params,
                    "units": "plasma mM (blood / (1 - Hct))"},
            "voxels": {"brain": int(np.count_nonzero(self.brain_mask)),
                       "not_fitted": int(np.count_nonzero(~np.isfinite(primary))),
                       "fit_failed": int(fit.n_failed)},
            "fit_info": fit.info,
            "units": dict(self.map_units),
            "timings": dict(w.timings),
        }
        if m.is_kinetic:
            rms = np.asarray(w.kinetic.rms, np.float64)
            prov["residual_rms_mM_median"] = float(np.nanmedian(rms)) if np.isfinite(rms).any() \
                else None
        return prov


def _model_free_maps(w: Work) -> dict:
    """Sourbron's model-free DCE: ``Fp`` = peak of the deconvolved residue (ml/100 ml/min),
    ``vd = integral C / integral Cp`` (ml/ml), ``MTT = vd / Fp`` (s)."""
    flow = np.asarray(w.deconv.flow, np.float64)                    # 1/s
    ia = trapezoid_integral(w.plasma_aif, w.grid.dt)
    vd = trapezoid_integral(w.brain_conc, w.grid.dt) / ia
    with np.errstate(divide="ignore", invalid="ignore"):
        mtt = np.where(flow > 0, vd / flow, np.nan)
    ok = ~np.asarray(w.deconv.failed) & np.isfinite(vd)
    return {"fp": np.where(ok, 6000.0 * flow, np.nan).astype(np.float32),
            "vd": np.where(ok, vd, np.nan).astype(np.float32),
            "mtt": np.where(ok & (vd > 0), mtt, np.nan).astype(np.float32)}


class DCEModel:
    """DCE perfusion model: a kinetic model (or model-free method) and the acquisition.

    Parameters
    ----------
    method : str
        ``tofts``, ``etofts`` (default), ``patlak``, ``2cxm``
        (:func:`perfmap.kinetics.available`), or a deconvolution backend for
        model-free maps (:func:`perfmap.deconv.available`).
    tr : float
        Repetition time of the SPGR excitation (s), e.g. 0.005.
    flip_angle : float
        Flip angle of the dynamic series (degrees).
    t10 : float, optional
        Pre-contrast T1 (s) of every voxel, when no T1 map or VFA series is
        given to :meth:`fit`.
    r1 : float
        Longitudinal relaxivity (/mM/s), default 4.5.
    hct : float
        Hematocrit: plasma AIF = blood AIF / (1 - Hct), default 0.42.
    baseline_frames : (int, int), optional
        Pre-contrast frames ``[start, stop)`` instead of the detected ones.
    n_skip : int, optional
        Leading frames to leave out of the baseline (default 0).
    aif_options : dict, optional
        Options of :func:`perfmap.core.dce_aif.auto_dce_aif`.
    denoise, denoise_params : str and dict, optional
        A denoiser of :mod:`perfmap.core.denoise` applied to the signal (as for
        :class:`perfmap.models.DSCModel`); ``none`` by default.
    **method_params
        Options of the kinetic model or deconvolution backend (``fit_delay``, ...).
    """

    kind = "dce"
    steps = DCE_STEPS

    def __init__(self, method: str = "etofts", tr: Optional[float] = None,
                 flip_angle: Optional[float] = None, t10: Optional[float] = None,
                 r1: float = DEFAULT_R1, hct: float = DEFAULT_HCT, baseline_frames=None,
                 n_skip: Optional[int] = None, aif_options: Optional[dict] = None,
                 denoise: Optional[str] = None, denoise_params: Optional[dict] = None,
                 **method_params):
        if tr is None or not (np.isfinite(tr) and tr > 0):
            raise ParameterError(f"the repetition time TR must be a positive number of seconds, "
                                 f"got {tr!r}")
        if flip_angle is None or not (np.isfinite(flip_angle) and 0 < flip_angle < 180):
            raise ParameterError(f"the flip angle must be in (0, 180) degrees, got {flip_angle!r}")
        if t10 is not None and not (np.isfinite(t10) and t10 > 0):
            raise ParameterError(f"T10 must be a positive number of seconds, got {t10!r}")
        if not (np.isfinite(r1) and r1 > 0):
            raise ParameterError(f"the relaxivity r1 must be positive (/mM/s), got {r1!r}")
        if not 0 <= hct < 1:
            raise ParameterError(f"the hematocrit must be in [0, 1), got {hct!r}")
        self.method, self.tr, self.flip_angle = method, float(tr), float(flip_angle)
        self.t10 = None if t10 is None else float(t10)
        self.r1, self.hct = float(r1), float(hct)
        self.baseline_frames, self.n_skip = baseline_frames, n_skip
        self.aif_options = dict(aif_options or {})
        self.denoiser = None if denoise in (None, "none") else \
            make_denoiser(denoise, dict(denoise_params or {}))
        self.is_kinetic = is_kinetic_method(method)
        self.backend = self._backend(method, method_params)
        self.with_t10_map = False

    @staticmethod
    def _backend(method, params):
        if is_kinetic_method(method):
            _, get_model = _kinetic_registry()
            valid = kinetic_parameters(method)
            unknown = [k for k in params if k not in valid]
            if unknown:
                raise ParameterError(f"unknown parameter {unknown[0]!r} for method {method}; "
                                     f"valid: {', '.join(sorted(valid))}")
            try:
                return get_model(method)(**params)
            except ParameterError:
                raise
            except (TypeError, ValueError) as exc:
                raise ParameterError(f"invalid parameter for method {method}: {exc}") from None
        from ..deconv import make_backend

        return make_backend(method, **params)

    @property
    def map_names(self) -> tuple:
        """The maps a fit of this model has."""
        names = tuple(self.backend.units) if self.is_kinetic else tuple(MODEL_FREE_UNITS)
        if self.is_kinetic and getattr(self.backend, "fit_delay", False):
            names += ("delay",)
        return names + (("t10",) if self.with_t10_map else ())

    @property
    def map_units(self) -> dict:
        units = dict(self.backend.units) if self.is_kinetic else dict(MODEL_FREE_UNITS)
        if "delay" in self.map_names:
            units["delay"] = "s"
        if self.with_t10_map:
            units["t10"] = "s"
        return units

    def fit(self, signal, mask="auto", aif="auto", frame_times=None, t10_map=None, vfa=None,
            vfa_angles=None) -> DCEFit:
        """Fit every brain voxel of a 4D T1-weighted DCE series.

        Parameters
        ----------
        signal : array_like, shape (X, Y, Z, T)
            Signal intensities, time last. Not modified.
        mask : "auto" or ndarray of bool, shape (X, Y, Z)
        aif : "auto", "parker", ndarray of bool (X, Y, Z), or ndarray (T,)
            Arterial mask, blood concentration curve (mM, one value per frame),
            automatic T1-weighted selection, or the Parker 2006 population AIF.
        frame_times : array_like, shape (T,)
            Acquisition time of each frame (s). Required: DCE frames are not
            ``tr`` apart.
        t10_map : ndarray, shape (X, Y, Z), optional
            Pre-contrast T1 (s).
        vfa, vfa_angles : ndarray (X, Y, Z, K) and sequence of K degrees, optional
            A variable-flip-angle series (same TR) to fit T10 from; T10 is then
            also a map of the fit (``t10``).

        Returns
        -------
        DCEFit
        """
        signal = check_signal(signal)
        if frame_times is None:
            raise ParameterError("DCE needs the frame times (s): give frame_times")
        work = Work(signal=signal)
        work.frame_times = frame_times_for(signal, frame_times, None)
        work.brain_mask = None if is_auto(mask) else check_mask(mask, signal, "brain mask")
        work.aif_request = aif
        work.aif_mask, work.aif_curve = (None, None) if isinstance(aif, str) and \
            aif == "parker" else check_aif(aif, signal)
        work.t10_map, work.vfa, work.vfa_angles = _t10_inputs(self, signal, t10_map, vfa,
                                                               vfa_angles)
        self.with_t10_map = work.vfa is not None
        work.info.update(frames=int(signal.shape[-1]))
        return DCEFit(self, run_steps(self, self.steps, work))


def _t10_inputs(model, signal, t10_map, vfa, vfa_angles):
    given = [x is not None for x in (t10_map, vfa, model.t10)]
    if sum(given) != 1:
        raise ParameterError("give exactly one source of T10: a T1 map, a variable-flip-angle "
                             "series with its angles, or one value (t10)")
    if t10_map is not None:
        t10_map = np.asarray(t10_map, np.float64)
        if t10_map.shape != signal.shape[:3]:
            raise ParameterError(f"the T1 map has shape {t10_map.shape} but the series has "
                                 f"spatial shape {signal.shape[:3]}")
        return t10_map, None, None
    if vfa is not None:
        vfa = np.asarray(vfa)
        angles = [float(a) for a in (vfa_angles or [])]
        if vfa.ndim != 4 or vfa.shape[:3] != signal.shape[:3]:
            raise ParameterError(f"the VFA series has shape {vfa.shape}; it needs the series' "
                                 f"grid {signal.shape[:3]} and one volume per flip angle")
        if len(angles) != vfa.shape[3]:
            raise ParameterError(f"{len(angles)} VFA flip angles given for {vfa.shape[3]} VFA "
                                 "volumes")
        return None, vfa, angles
    return None, None, None
