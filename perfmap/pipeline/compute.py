"""One subject: series in, perfusion maps, AIF and provenance JSON out.

``compute`` is load -> ``model.fit`` -> ROI statistics -> write. Every check
that can fail on user input (files, grids, timing, masks, the AIF, method
parameters) runs before any output is written, and all outputs are written
through one :class:`perfmap.io.outputs.OutputSet`, so a failed run leaves
nothing. :func:`evaluate` is the pure part (no file is written) and
:func:`write_result` the writing part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .. import __version__
from ..core.roi import add_ratios, roi_statistics
from ..errors import InputDataError, ParameterError
from ..io import nifti, tables
from ..io.outputs import OutputSet
from ..io.series import load_series
from .kinds import get_kind

logger = logging.getLogger("perfmap")

#: A run fails when fewer than this fraction of the brain voxels could be fitted.
MIN_FITTED_FRACTION = 0.01

__all__ = ["ComputeResult", "build_model", "compute", "evaluate", "load_series",
           "output_names", "write_result"]


@dataclass
class ComputeResult:
    """What :func:`compute` produced (``outputs`` is empty until written)."""

    maps: dict
    aif: np.ndarray
    provenance: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    fit: object = None


def output_names(stem: str, aif_voxels: bool = True, auto_mask: bool = False,
                 kind: str = "dsc", model=None) -> list[str]:
    """File names a run writes (DESIGN section 3); ``model`` adds its optional maps and
    masks (e.g. ``STEM_k2``, ``STEM_leakref`` with leakage correction)."""
    maps = model.map_names if model is not None else get_kind(kind).map_names
    names = [f"{stem}_{m}.nii.gz" for m in maps]
    names += [f"{stem}_{m}.nii.gz" for m in getattr(model, "mask_outputs", {})]
    names += [f"{stem}_aif.tsv", f"{stem}_perfmap.json"]
    if aif_voxels:
        names.append(f"{stem}_aifmask.nii.gz")
    if auto_mask:
        names.append(f"{stem}_brainmask.nii.gz")
    return names


@contextlib.contextmanager
def _naming(source: str):
    """Prefix data errors raised on arrays with the file they are about."""
    try:
        yield
    except InputDataError as exc:
        if source in str(exc):
            raise
        raise InputDataError(f"{source}: {exc}") from None


@dataclass
class _Inputs:
    """Everything read from disk for one run, checked before any work."""

    volume: object
    brain_mask: Optional[np.ndarray]
    aif: object
    aif_label: str
    rois: dict
    ref: Optional[np.ndarray]


def _read_inputs(volume, aif, mask, rois, ref, kind: str = "dsc") -> _Inputs:
    brain = None if mask in (None, "auto") else nifti.load_mask(mask, volume, "brain mask")
    if aif in (None, "auto"):
        aif_value, label = "auto", "auto"
    elif aif == "parker":
        if kind != "dce":
            raise ParameterError("--aif parker is the Parker 2006 population AIF of DCE "
                                 "(--kind dce); for DSC give 'auto', an arterial mask or a curve")
        aif_value, label = "parker", "parker"
    elif tables.is_text_table(aif):
        aif_value, label = tables.read_curve(aif, volume.n_frames), f"curve {aif}"
    else:
        aif_value, label = nifti.load_mask(aif, volume, "AIF mask"), f"mask {aif}"
    roi_masks = {name: nifti.load_mask(path, volume, f"ROI '{name}'")
                 for name, path in (rois or {}).items()}
    ref_mask = nifti.load_mask(ref, volume, "reference ROI") if ref is not None else None
    return _Inputs(volume, brain, aif_value, label, roi_masks, ref_mask)


def roi_results(maps: dict, rois: dict, ref: Optional[np.ndarray]) -> tuple[dict, Optional[dict]]:
    """ROI statistics of every map, with ``<map>_ratio`` against ``ref`` when given."""
    ref_stats = roi_statistics(maps, ref) if ref is not None else None
    out = {}
    for name, roi in rois.items():
        stats = roi_statistics(maps, roi)
        if ref_stats is not None:
            add_ratios(stats, ref_stats)
        out[name] = stats
    return out, ref_stats


def _check_not_empty(fit, primary: str, source: str, allow_empty: bool) -> None:
    """Refuse (or, with ``allow_empty``, log a warning about) a run whose primary map has
    fewer than :data:`MIN_FITTED_FRACTION` of the brain voxels finite."""
    values = fit.voxel_values(primary)
    fitted = float(np.count_nonzero(np.isfinite(values))) / max(1, values.size)
    if fitted >= MIN_FITTED_FRACTION:
        return
    message = (f"{source}: only {100 * fitted:.2g} % of the {values.size} brain voxels could be "
               f"fitted ({primary} is NaN elsewhere; at least "
               f"{100 * MIN_FITTED_FRACTION:g} % are expected)")
    if not allow_empty:
        raise InputDataError(message + "; check the AIF, the mask and the timing, or give "
                             "--allow-empty to write the maps anyway")
    logger.warning(message)
    fit.provenance.setdefault("warnings", []).append(message)


def build_model(volume, kind: str = "dsc", method: Optional[str] = None,
                method_params: Optional[dict] = None, **model_options):
    """The kind's array model for ``volume`` and the extra arrays its ``fit`` takes.

    Every option and extra input (e.g. a second echo) is read and checked here,
    before any work. Returns ``(model, fit_inputs)``.
    """
    k = get_kind(kind)
    unknown = [name for name, v in model_options.items() if name not in k.options
               and v is not None]
    if unknown:
        raise ParameterError(f"{unknown[0].replace('_', '-')} is not an option of --kind "
                             f"{kind} (it takes: {', '.join(k.options) or 'none'})")
    given = {name: v for name, v in model_options.items() if v is not None}
    return k.build_model(volume, method or k.default_method, dict(method_params or {}),
                         **given)


def evaluate(volume, *, kind: str = "dsc", method: Optional[str] = None,
             method_params: Optional[dict] = None, aif="auto", mask="auto", rois=None,
             ref=None, allow_empty: bool = False, model=None, fit_inputs=None,
             **model_options) -> ComputeResult:
    """Fit one loaded series and collect maps and provenance; writes nothing.

    Parameters are those of :func:`compute`, with the series already loaded
    (:func:`perfmap.io.series.load_series`); ``model`` and ``fit_inputs``, from
    :func:`build_model`, replace ``method``, ``method_params`` and ``model_options``.
    """
    t0 = time.perf_counter()
    if model is None:
        model, fit_inputs = build_model(volume, kind, method, method_params, **model_options)
    inputs = _read_inputs(volume, aif, mask, rois, ref, kind)
    load_s = time.perf_counter() - t0
    with _naming(volume.source):
        extra = {"frame_times": volume.frame_times, **(fit_inputs or {})}
        fit = model.fit(volume.data, mask="auto" if inputs.brain_mask is None
                        else inputs.brain_mask, aif=inputs.aif, **extra)
        maps = fit.maps
        prov = fit.provenance
    if inputs.aif_label not in ("auto", "parker"):
        prov["aif"]["source"] = inputs.aif_label
    if mask not in (None, "auto"):
        prov["mask"]["source"] = str(mask)
    _check_not_empty(fit, fit.map_names[0], volume.source, allow_empty)
    rois_out, ref_stats = roi_results(maps, inputs.rois, inputs.ref)
    if inputs.ref is not None and hasattr(fit, "mean_curve_ratios"):
        # second estimator of the grading ratio: the deconvolved ROI-mean curves
        for name, roi in inputs.rois.items():
            rois_out[name]["mean_curve"] = fit.mean_curve_ratios(roi, inputs.ref)
    provenance = {"perfmap_version": __version__, "input": str(volume.source), "kind": kind}
    provenance.update(prov)
    provenance.update(te_source=volume.meta.get("te_source"),
                      tr_source=volume.meta.get("tr_source"), rois=rois_out)
    provenance.update(getattr(model, "sources", {}))
    if ref_stats is not None:
        provenance["ref"] = ref_stats
    if volume.meta:
        provenance["series"] = {k_: v for k_, v in volume.meta.items()
                                if isinstance(v, (str, int, float, bool)) or v is None}
    provenance["timings"] = {"load_s": round(load_s, 4), **prov["timings"]}
    return ComputeResult(maps=maps, aif=fit.aif, provenance=provenance, fit=fit)


def write_result(result: ComputeResult, volume, outputs: OutputSet, stem: str,
                 auto_mask: bool, aif_voxels: bool, t_start: Optional[float] = None) -> dict:
    """Write maps, AIF, masks and the JSON through ``outputs``; returns ``name -> path``.

    The JSON's ``timings`` get ``write_s`` and, with ``t_start`` (a
    :func:`time.perf_counter` value), ``total_s``.
    """
    t0 = time.perf_counter()
    fit = result.fit
    with outputs:
        for name, vol in result.maps.items():
            img = nifti.map_image(vol, volume)
            outputs.write(f"{stem}_{name}.nii.gz", lambda p, img=img: nifti.save_image(img, p))
        rows = zip(fit.times, result.aif)
        outputs.write_text(f"{stem}_aif.tsv", tables.format_tsv(["time_s", "aif"], rows))
        if aif_voxels:
            img = nifti.map_image(fit.aif_mask.astype(np.uint8), volume)
            outputs.write(f"{stem}_aifmask.nii.gz", lambda p, img=img: nifti.save_image(img, p))
        if auto_mask:
            img = nifti.map_image(fit.brain_mask.astype(np.float32), volume)
            outputs.write(f"{stem}_brainmask.nii.gz",
                          lambda p, img=img: nifti.save_image(img, p))
        for name, attribute in getattr(fit, "mask_outputs", {}).items():
            img = nifti.map_image(getattr(fit, attribute).astype(np.uint8), volume)
            outputs.write(f"{stem}_{name}.nii.gz", lambda p, img=img: nifti.save_image(img, p))
        result.provenance["outputs"] = sorted(outputs.names)
        timings = result.provenance.setdefault("timings", {})
        timings["write_s"] = round(time.perf_counter() - t0, 4)
        if t_start is not None:
            timings["total_s"] = round(time.perf_counter() - t_start, 4)
        outputs.write_text(f"{stem}_perfmap.json", json.dumps(
            result.provenance, indent=2, default=_json_default) + "\n")
        paths = outputs.commit()
    result.outputs = {p.name: p for p in paths}
    return result.outputs


def compute(input_path, *, kind: str = "dsc", method: Optional[str] = None,
            method_params: Optional[dict] = None, aif="auto", mask="auto", te=None, tr=None,
            rois: Optional[dict] = None, ref=None, out_dir=None, overwrite: bool = False,
            series=None, command: Optional[list] = None, allow_empty: bool = False,
            **model_options) -> ComputeResult:
    """Compute the perfusion maps of one series and write them.

    Parameters
    ----------
    input_path : path
        4D NIfTI or a directory with one DICOM series.
    kind : str
        Acquisition kind (:func:`perfmap.pipeline.kinds.available_kinds`).
    method : str, optional
        A method of the kind (default: the kind's default, ``osvd`` for DSC).
    method_params : dict, optional
        Hyper-parameters of the method (``perfmap methods`` lists them).
    aif : "auto" or path
        ``auto``, a 3D arterial mask, or a text curve with one value per frame
        (concentration units: dR2* in 1/s for DSC).
    mask : "auto" or path
        Brain mask, or ``auto`` from the baseline image.
    te, tr : float, optional
        Echo and repetition time in seconds, overriding the headers.
    rois : dict, optional
        ``name -> mask path`` for ROI statistics.
    ref : path, optional
        Reference ROI (contralateral normal-appearing white matter) for ratios.
    out_dir : path, optional
        Output folder; default: next to the input.
    overwrite : bool
        Replace existing outputs.
    series : str, optional
        SeriesInstanceUID or SeriesNumber when a DICOM folder holds several.
    command : list of str, optional
        The command line, recorded in the JSON.
    allow_empty : bool
        Write the maps even when fewer than 1 % of the brain voxels could be
        fitted (a warning in the log and the JSON); by default such a run fails.
    **model_options
        Options of the kind's model, e.g. for DSC ``kh``, ``rho``,
        ``baseline_frames`` ((start, stop)), ``n_skip``, ``leakage``
        (``bsw``/``bidirectional``/``none``), ``second_echo`` (path of the other
        echo, or ``"auto"``: the two echo series of a DICOM folder paired by
        EchoTime) and ``te2`` (its echo time, s, overriding its sidecar).

    Returns
    -------
    ComputeResult
    """
    t_start = time.perf_counter()
    get_kind(kind)
    input_path = Path(input_path)
    if model_options.get("second_echo") == "auto":
        volume, model_options["second_echo"] = _paired_echoes(input_path, te, tr, series)
    else:
        volume = load_series(input_path, te=te, tr=tr, series=series)
    model, fit_inputs = build_model(volume, kind, method, method_params, **model_options)
    stem = nifti.stem_of(input_path)
    out_dir = Path(out_dir) if out_dir is not None else input_path.resolve().parent
    aif_voxels = not (aif == "parker" or (aif not in (None, "auto")
                                          and tables.is_text_table(aif)))
    auto_mask = mask in (None, "auto")
    outputs = OutputSet(out_dir, output_names(stem, aif_voxels, auto_mask, kind, model),
                        overwrite)
    read_s = time.perf_counter() - t_start
    result = evaluate(volume, kind=kind, aif=aif, mask=mask, rois=rois, ref=ref,
                      allow_empty=allow_empty, model=model, fit_inputs=fit_inputs)
    prov = result.provenance
    prov["command"] = command
    prov["input"] = str(input_path)
    prov["timings"]["load_s"] = round(read_s + prov["timings"]["load_s"], 4)
    write_result(result, volume, outputs, stem, auto_mask, aif_voxels, t_start=t_start)
    return result


def _paired_echoes(input_path: Path, te, tr, series):
    """``--second-echo auto``: the DICOM folder's two echo series, paired by EchoTime."""
    from ..io.dicom_echoes import load_echo_pair

    if not input_path.is_dir() or series is not None:
        raise ParameterError(f"{input_path}: --second-echo auto pairs the two echo series of "
                             "a DICOM folder (without --series); give --second-echo PATH "
                             "otherwise")
    first, second = load_echo_pair(input_path)
    for vol in (first, second):
        if tr is not None:
            vol.tr, vol.meta["tr_source"] = float(tr), "command line"
    if te is not None:
        first.te, first.meta["te_source"] = float(te), "command line"
    return first, second


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
