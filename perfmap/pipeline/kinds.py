"""Acquisition kinds: how a series of each kind becomes a fitted model.

A kind (``dsc``; ``dce`` is one more entry) names its array model, its
methods and what it needs from the acquisition; its step list lives with the
model (:attr:`perfmap.models.DSCModel.steps`). :func:`perfmap.pipeline.compute`
looks the kind up here, so adding a kind is registering a :class:`Kind`, not
editing ``compute``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputDataError, ParameterError
from ..io.volume import Volume4D
from .acquisition import (DCE_FLIP, DCE_FRAME, DCE_TR, DSC_TE, DSC_TE2, DSC_TR, T10,
                          check_frame_interval,
                          check_value, check_voxel_size)

_KINDS: dict = {}


@dataclass(frozen=True)
class Kind:
    """One acquisition kind.

    Attributes
    ----------
    name : str
        ``--kind`` value.
    description : str
        One line for help texts.
    default_method : str
        ``--method`` default.
    methods : callable
        ``methods() -> list of str``, the registered method names.
    build_model : callable
        ``build_model(volume, method, method_params, **options)`` returns
        ``(model, fit_inputs)``: the array model and the extra arrays its
        ``fit`` takes (read from files named in ``options``). It checks the
        acquisition values the kind needs and raises
        :class:`perfmap.errors.ParameterError` naming the file and the option.
    map_names : tuple of str
        Maps written as ``STEM_<name>.nii.gz`` (a model may add optional ones).
    options : tuple of str
        The keyword options ``build_model`` takes (others are refused by name).
    parameters : callable
        ``parameters(method) -> {key: default}``, the ``--param`` keys a method takes.
    ratio_columns : tuple of str
        Tumour ROI numbers (ratios to the reference, or means) a cohort table of
        this kind carries; the first is the default graded metric.
    manifest_options : dict
        Manifest column -> model option (files a subject's row may name).
    setting_columns : tuple of str
        Cohort columns recording how the maps were made (from the JSON's
        ``<column>.method``), shown by the report next to each method.
    """

    name: str
    description: str
    default_method: str
    methods: Callable[[], list]
    build_model: Callable
    map_names: tuple
    options: tuple = ()
    parameters: Callable = None
    ratio_columns: tuple = ()
    manifest_options: tuple = ()
    setting_columns: tuple = ("denoise",)


def register_kind(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (a second kind of the same name is refused)."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"a kind named {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def available_kinds() -> list:
    """Names of the registered kinds, sorted."""
    return sorted(_KINDS)


def get_kind(name: str) -> Kind:
    """The kind registered as ``name``; an unknown name lists the valid ones."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ParameterError(f"unknown kind {name!r}; choose one of: "
                             f"{', '.join(available_kinds())}") from None


# ------------------------------------------------------------------ DSC

def _require(volume: Volume4D, value, name: str, option: str, key: str) -> None:
    if value is None:
        raise ParameterError(
            f"{volume.source}: the {name} is missing: give {option} in seconds or add "
            f"{key} to a JSON sidecar next to the input")


def _dsc_model(volume: Volume4D, method: str, method_params: dict, *, kh=None, rho=None,
               baseline_frames=None, n_skip=None, leakage=None, second_echo=None, te2=None,
               denoise=None, denoise_params=None):
    from ..deconv.registry import check_parameter_names
    from ..models import DSCModel

    check_parameter_names(method, method_params)
    _require(volume, volume.te, "echo time (TE)", "--te", "EchoTime")
    _require(volume, volume.tr, "repetition time (TR)", "--tr", "RepetitionTime")
    _looks_like_dce(volume)
    check_value(volume.te, DSC_TE, volume.source, volume.meta.get("te_source", "header"))
    check_value(volume.tr, DSC_TR, volume.source, volume.meta.get("tr_source", "header"))
    check_frame_interval(volume.frame_times, DSC_TR, volume.source,
                         volume.meta.get("frame_times_source", "frame times"))
    check_voxel_size(np.linalg.norm(volume.affine[:3, :3], axis=0), volume.source)
    fit_inputs = {}
    if te2 is not None:
        check_value(float(te2), DSC_TE2, volume.source, "--te2")
    if second_echo is not None:
        echo = _second_echo(volume, second_echo, te2)
        te2, fit_inputs["second_echo"] = echo.te, echo.data
    elif te2 is not None:
        raise ParameterError("--te2 is the echo time of --second-echo; give --second-echo too")
    extra = {k: v for k, v in (("kh", kh), ("rho", rho)) if v is not None}
    model = DSCModel(method, te=volume.te, tr=volume.tr, baseline_frames=baseline_frames,
                     n_skip=n_skip, leakage=leakage, te2=te2, denoise=denoise,
                     denoise_params=denoise_params, **extra, **method_params)
    return model, fit_inputs


def _looks_like_dce(volume: Volume4D) -> None:
    """Refuse a T1-weighted (DCE) acquisition given as DSC: a short TR with a short TE."""
    if volume.tr is not None and volume.te is not None and volume.tr < 0.05 \
            and volume.te < 0.01:
        flip = volume.meta.get("FlipAngle")
        raise ParameterError(
            f"{volume.source}: TR {volume.tr * 1000:g} ms and TE {volume.te * 1000:g} ms"
            + (f" (flip angle {flip:g} deg)" if isinstance(flip, (int, float)) else "")
            + " describe a T1-weighted (DCE) acquisition, not DSC; give --kind dce")


def _second_echo(volume: Volume4D, path, te2) -> Volume4D:
    """The other echo of a dual-echo series (a path, or a loaded :class:`Volume4D`): same
    grid, frames and TR, another TE."""
    from ..io.series import load_series

    if isinstance(path, Volume4D):
        echo = path
        if te2 is not None:
            echo.te, echo.meta["te_source"] = float(te2), "command line"
    else:
        echo = load_series(path, te=te2)
    where = f"{echo.source} (second echo)"
    if echo.data.shape != volume.data.shape:
        raise ParameterError(f"{where}: shape {echo.data.shape} differs from the series' "
                             f"{volume.data.shape}; both echoes must have the same grid and "
                             "frames")
    if not np.allclose(echo.affine, volume.affine, atol=1e-3):
        raise ParameterError(f"{where}: its grid (affine) differs from the series'")
    if echo.tr is not None and volume.tr is not None and \
            not np.isclose(echo.tr, volume.tr, rtol=1e-3):
        raise ParameterError(f"{where}: TR {echo.tr:g} s differs from the series' "
                             f"{volume.tr:g} s")
    _require(echo, echo.te, "echo time (TE) of the second echo", "--te2", "EchoTime")
    check_value(echo.te, DSC_TE2, where, echo.meta.get("te_source", "header"))
    if np.isclose(echo.te, volume.te, rtol=1e-6):
        raise ParameterError(f"{where}: its echo time {echo.te:g} s equals the series' TE; "
                             "the two echoes need different TEs (give --te2)")
    return echo


def _deconv_methods() -> list:
    from ..deconv import available

    return available()


def _deconv_parameters(method: str) -> dict:
    from ..deconv import backend_parameters

    return backend_parameters(method)


def needs_torch(method: str) -> bool:
    """True for the methods that run on torch (``--device``/``--model`` apply)."""
    from ..deconv import available, get_backend

    return method in available() and get_backend(method).needs_torch


DSC = register_kind(Kind(
    name="dsc", description="DSC-MRI: dR2*, deconvolution; CBF, CBV, MTT, Tmax, TTP",
    default_method="osvd", methods=_deconv_methods, build_model=_dsc_model,
    map_names=("cbf", "cbv", "mtt", "tmax", "ttp"),
    options=("kh", "rho", "baseline_frames", "n_skip", "leakage", "second_echo", "te2",
             "denoise", "denoise_params"),
    parameters=_deconv_parameters,
    ratio_columns=("cbf_ratio", "cbv_ratio", "mtt_ratio", "cbf_ratio_curve"),
    manifest_options=(), setting_columns=("leakage", "denoise")))


# ------------------------------------------------------------------ DCE

def _dce_timing(volume: Volume4D, frame_interval):
    """``(excitation TR, frame times, sources)`` of a DCE series.

    TR: ``--tr`` (already applied to ``volume.tr`` by the loader), else the
    sidecar's ``RepetitionTimeExcitation``, else ``RepetitionTime`` (NIfTI
    sidecar or DICOM). Frame times: the sidecar's
    ``FrameTimesStart`` or the DICOM times, else ``--frame-interval``, else the
    NIfTI header's pixdim[4].
    """
    meta = volume.meta
    if meta.get("tr_source") == "command line":
        tr_s, tr_src = volume.tr, "command line"
    elif meta.get("RepetitionTimeExcitation") is not None:
        tr_s, tr_src = float(meta["RepetitionTimeExcitation"]), "sidecar RepetitionTimeExcitation"
    else:
        tr_s, tr_src = volume.tr, meta.get("tr_source", "header")
    _require(volume, tr_s, "repetition time (TR) of the excitation", "--tr",
             "RepetitionTimeExcitation")
    check_value(tr_s, DCE_TR, volume.source, tr_src)
    src = meta.get("frame_times_source", "")
    if frame_interval is not None:
        times = np.arange(volume.n_frames) * float(frame_interval)
        src = "--frame-interval"
    elif "FrameTimesStart" in src or volume.header is None:     # sidecar or DICOM times
        times = np.asarray(volume.frame_times, np.float64)
    elif meta.get("header_frame_interval_s"):
        times = np.arange(volume.n_frames) * float(meta["header_frame_interval_s"])
        src = meta.get("header_frame_interval_source", "header pixdim[4]")
    else:
        raise ParameterError(f"{volume.source}: the frame times are missing: add "
                             "FrameTimesStart to the JSON sidecar or give --frame-interval (s)")
    check_frame_interval(times, DCE_FRAME, volume.source, src)
    return tr_s, times, {"tr_source": tr_src, "frame_times_source": src}


def _dce_model(volume: Volume4D, method: str, method_params: dict, *, frame_interval=None, flip_angle=None, t1=None, vfa=None, vfa_angles=None,
               t10=None, r1=None, hct=None, baseline_frames=None, denoise=None,
               denoise_params=None):
    from ..models import DCEModel

    _looks_like_dsc(volume)
    tr_s, times, sources = _dce_timing(volume, frame_interval)
    flip = flip_angle if flip_angle is not None else _one_flip_angle(volume)
    _require_value(volume, flip, "flip angle", "--flip-angle", "FlipAngle (degrees)")
    check_value(float(flip), DCE_FLIP, volume.source,
                "command line" if flip_angle is not None else "header")
    check_voxel_size(np.linalg.norm(volume.affine[:3, :3], axis=0), volume.source)
    if t10 is not None:
        check_value(float(t10), T10, volume.source, "command line")
    fit_inputs = {"frame_times": times, **_t10_inputs(volume, t1, vfa, vfa_angles, tr_s)}
    extra = {k: v for k, v in (("r1", r1), ("hct", hct)) if v is not None}
    model = DCEModel(method, tr=tr_s, flip_angle=float(flip), t10=t10,
                     baseline_frames=baseline_frames, denoise=denoise,
                     denoise_params=denoise_params, **extra, **method_params)
    model.sources = sources
    model.with_t10_map = "vfa" in fit_inputs          # STEM_t10.nii.gz is written
    return model, fit_inputs


def _one_flip_angle(volume: Volume4D):
    """The dynamic series' flip angle: its ``FlipAngle``, or the one angle a per-volume
    list repeats (a list of different angles is a VFA series, not a dynamic one)."""
    value = volume.meta.get("FlipAngle")
    if isinstance(value, list):
        if value and all(v == value[0] for v in value):
            return value[0]
        raise ParameterError(f"{volume.source}: FlipAngle lists different angles per volume "
                             "(a variable-flip-angle series?); the dynamic series needs one "
                             "angle: give --flip-angle")
    return value


def _require_value(volume, value, name, option, key):
    if value is None:
        raise ParameterError(f"{volume.source}: the {name} is missing: give {option} or add "
                             f"{key} to a JSON sidecar next to the input")


def _t10_inputs(volume: Volume4D, t1, vfa, vfa_angles, tr_s) -> dict:
    """The T1 map (s) or the VFA series named on the command line, read and checked."""
    from ..io import nifti
    from ..io.series import load_series

    if t1 is not None:
        t1_map = nifti.load_map(t1, volume, "T1 map")
        inside = np.isfinite(t1_map)
        if np.any(t1_map[inside] <= 0):
            raise InputDataError(f"{t1}: the T1 map has non-positive values (T1 in seconds "
                                 "must be > 0)")
        if inside.any() and np.nanmedian(t1_map) > 100:
            raise InputDataError(f"{t1}: the T1 map's median is {np.nanmedian(t1_map):g}; T1 "
                                 "must be in seconds (it looks like milliseconds)")
        return {"t10_map": t1_map}
    if vfa is not None:
        if Path(vfa).is_dir():
            from ..io.dicom_vfa import load_vfa_dicom

            series, _ = load_vfa_dicom(vfa)
        else:
            series = load_series(vfa, min_frames=2)
        if series.data.shape[:3] != volume.data.shape[:3] or \
                not np.allclose(series.affine, volume.affine, atol=1e-3):
            raise ParameterError(f"{vfa}: the VFA series is on another grid than the dynamic "
                                 "series")
        angles = vfa_angles
        if angles is None and isinstance(series.meta.get("FlipAngle"), list):
            angles = series.meta["FlipAngle"]                    # the VFA sidecar's list
        if angles is None:
            raise ParameterError(f"{vfa}: give the flip angles of the VFA series with "
                                 "--vfa-angles DEG,DEG,... (or a FlipAngle list in its "
                                 "sidecar)")
        if len(angles) != series.n_frames:
            raise ParameterError(f"{vfa}: {len(angles)} flip angles given (--vfa-angles) for "
                                 f"{series.n_frames} VFA volumes")
        for a in angles:
            check_value(float(a), DCE_FLIP, str(vfa), "--vfa-angles")
        return {"vfa": series.data, "vfa_angles": [float(a) for a in angles]}
    if vfa_angles is not None:
        raise ParameterError("--vfa-angles belongs to --vfa; give the VFA series too")
    return {}


def _looks_like_dsc(volume: Volume4D) -> None:
    """Refuse a T2*-weighted (DSC) acquisition given as DCE: TE of tens of ms, TR ~ 1 s."""
    if volume.te is not None and volume.te >= 0.015 and volume.tr is not None \
            and volume.tr >= 0.3:
        raise ParameterError(f"{volume.source}: TE {volume.te * 1000:g} ms and TR "
                             f"{volume.tr:g} s describe a T2*-weighted (DSC) acquisition, not "
                             "DCE; give --kind dsc")


def _dce_parameters(method: str) -> dict:
    from ..kinetics import available
    from ..models.dce import kinetic_parameters

    return kinetic_parameters(method) if method in available() else _deconv_parameters(method)


def _dce_methods() -> list:
    from ..deconv import available as deconv_available
    from ..kinetics import available as kinetic_available

    return kinetic_available() + deconv_available()


DCE = register_kind(Kind(
    name="dce", description="DCE-MRI: SPGR concentration, kinetic models; Ktrans, ve, vp, kep",
    default_method="etofts", methods=_dce_methods, build_model=_dce_model,
    map_names=("ktrans", "ve", "vp", "kep"),
    options=("frame_interval", "flip_angle", "t1", "vfa", "vfa_angles", "t10",
             "r1", "hct", "baseline_frames", "denoise", "denoise_params"),
    parameters=_dce_parameters,
    # NAWM Ktrans is about 0 (intact barrier), so the tumour mean grades, not its ratio
    ratio_columns=("ktrans_mean", "ktrans_ratio", "ve_ratio", "vp_ratio", "kep_ratio"),
    manifest_options=("t1", "vfa")))
