"""One subject: series in, perfusion maps, AIF and provenance JSON out.

Every check that can fail on user input (files, grids, timing, masks, the
AIF) runs before any output is written, and all outputs are written through
one :class:`perfmap.io.outputs.OutputSet`, so a failed run leaves nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .. import __version__
from ..core import maps as maps_mod
from ..core.curves import DEFAULT_KH, DEFAULT_RHO
from ..core.roi import add_ratios, roi_statistics
from ..deconv import get_backend
from ..errors import ParameterError
from ..io import nifti, tables
from ..io.outputs import OutputSet
from ..io.volume import Volume4D
from . import signal as signal_step

KINDS = ("dsc",)


@dataclass
class ComputeResult:
    """What :func:`compute` produced."""

    outputs: dict[str, Path]
    maps: dict[str, np.ndarray]
    aif: np.ndarray
    provenance: dict = field(default_factory=dict)


def output_names(stem: str, aif_voxels: bool = True, auto_mask: bool = False) -> list[str]:
    """File names a run writes (DESIGN section 3)."""
    names = [f"{stem}_{m}.nii.gz" for m in maps_mod.MAP_NAMES]
    names += [f"{stem}_aif.tsv", f"{stem}_perfmap.json"]
    if aif_voxels:
        names.append(f"{stem}_aifmask.nii.gz")
    if auto_mask:
        names.append(f"{stem}_brainmask.nii.gz")
    return names


def load_series(path, te=None, tr=None, series=None) -> Volume4D:
    """A 4D NIfTI file or a DICOM directory, as a :class:`Volume4D`."""
    path = Path(path)
    if path.is_dir():
        from ..io import dicom

        volume = dicom.load_dicom_series(path, series=series, min_frames=nifti.MIN_FRAMES)
        # Command-line values override the headers.
        if te is not None:
            volume.te = float(te)
            volume.meta["te_source"] = "command line"
        if tr is not None:
            volume.tr = float(tr)
            volume.meta["tr_source"] = "command line"
        return volume
    if not path.exists():
        raise ParameterError(f"{path}: input not found")
    if not nifti.is_nifti(path):
        raise ParameterError(f"{path}: input must be a .nii/.nii.gz file or a DICOM directory")
    return nifti.load_nifti_4d(path, te=te, tr=tr)


def _check_timing(volume: Volume4D) -> None:
    if volume.te is None:
        raise ParameterError(
            f"{volume.source}: the echo time (TE) is missing: give --te in seconds or add "
            "EchoTime to a JSON sidecar next to the input")
    if volume.tr is None:
        raise ParameterError(
            f"{volume.source}: the repetition time (TR) is missing: give --tr in seconds or add "
            "RepetitionTime to a JSON sidecar next to the input")


def compute(input_path, *, aif="auto", mask="auto", method: str = "osvd",
            method_params: Optional[dict] = None, kind: str = "dsc", te=None, tr=None,
            rois: Optional[dict] = None, ref=None, out_dir=None, overwrite: bool = False,
            baseline_frames=None, n_skip=None, kh: float = DEFAULT_KH, rho: float = DEFAULT_RHO,
            series=None, command: Optional[list] = None) -> ComputeResult:
    """Compute CBF, CBV, MTT, Tmax and TTP maps for one DSC series.

    Parameters
    ----------
    input_path : path
        4D NIfTI or a directory with one DICOM series.
    aif : "auto" or path
        ``auto`` (Mouridsen 2006 clustering), a 3D arterial mask, or a text
        curve with one value per frame (concentration units, dR2* in 1/s).
    mask : "auto" or path
        Brain mask, or ``auto`` from the baseline image.
    method : str
        A registered deconvolution backend (:func:`perfmap.deconv.available`).
    method_params : dict, optional
        Hyper-parameters for the backend's constructor.
    kind : {"dsc"}
        Acquisition type (DCE is not implemented yet).
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
    baseline_frames : (start, stop), optional
        Frames averaged for S0, overriding the automatic detection.
    n_skip : int, optional
        Initial non-steady-state frames to drop, overriding the detection.
    kh, rho : float
        Hematocrit correction and brain density (g/ml), DESIGN section 4.
    series : str, optional
        SeriesInstanceUID or SeriesNumber when a DICOM folder holds several.
    command : list of str, optional
        The command line, recorded in the JSON.

    Returns
    -------
    ComputeResult
    """
    t_start = time.perf_counter()
    timings = {}
    if kind not in KINDS:
        raise ParameterError(f"--kind {kind!r} is not supported yet; available: {', '.join(KINDS)}")
    if not (kh > 0 and rho > 0):
        raise ParameterError("kH and rho must be positive")
    backend = get_backend(method)(**(method_params or {}))
    input_path = Path(input_path)
    volume = load_series(input_path, te=te, tr=tr, series=series)
    _check_timing(volume)
    stem = nifti.stem_of(input_path)
    out_dir = Path(out_dir) if out_dir is not None else input_path.resolve().parent
    aif_is_curve = aif not in (None, "auto") and tables.is_text_table(aif)
    auto_mask = mask in (None, "auto")
    outputs = OutputSet(out_dir, output_names(stem, not aif_is_curve, auto_mask), overwrite)

    # All user-supplied masks are read and checked before any work is done.
    brain_mask = None if auto_mask else nifti.load_mask(mask, volume, "brain mask")
    aif_mask = None
    if aif not in (None, "auto") and not aif_is_curve:
        aif_mask = nifti.load_mask(aif, volume, "AIF mask")
    roi_masks = {name: nifti.load_mask(path, volume, f"ROI '{name}'")
                 for name, path in (rois or {}).items()}
    ref_mask = nifti.load_mask(ref, volume, "reference ROI") if ref is not None else None
    aif_curve_raw = tables.read_curve(aif, volume.n_frames) if aif_is_curve else None
    timings["load_s"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    prepared = signal_step.prepare_signal(volume, brain_mask=brain_mask, extra_mask=aif_mask,
                                          baseline_frames=baseline_frames, n_skip=n_skip)
    timings["concentration_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    selection = signal_step.select_aif(prepared, aif_mask=aif_mask, aif_curve=aif_curve_raw,
                                       aif_source=str(aif) if aif not in (None, "auto") else "auto")
    timings["aif_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    conc = prepared.brain_conc
    fit = backend.fit(conc, selection.curve, prepared.dt)
    timings["deconvolution_s"] = time.perf_counter() - t0

    voxel_maps = maps_mod.perfusion_maps(conc, selection.curve, prepared.dt, fit, kh=kh, rho=rho,
                                         times=prepared.times)
    shape = volume.spatial_shape
    maps3d = {}
    for name, values in voxel_maps.items():
        vol = np.full(shape, np.nan, np.float32)
        vol[prepared.brain_mask] = values
        maps3d[name] = vol

    roi_results = {}
    ref_stats = roi_statistics(maps3d, ref_mask) if ref_mask is not None else None
    for name, roi in roi_masks.items():
        stats = roi_statistics(maps3d, roi)
        if ref_stats is not None:
            add_ratios(stats, ref_stats)
        roi_results[name] = stats

    invalid_baseline = int(np.count_nonzero(prepared.invalid))
    unfitted = int(np.count_nonzero(~np.isfinite(voxel_maps["cbf"])))
    # Fitted voxels whose CBV or CBF is negative: MTT undefined (core.maps notes).
    mtt_undefined = int(np.count_nonzero(np.isfinite(voxel_maps["cbf"])
                                         & ~np.isfinite(voxel_maps["mtt"])))
    provenance = {
        "perfmap_version": __version__,
        "command": command,
        "input": str(input_path),
        "kind": kind,
        "method": method,
        "method_params": backend.params(),
        "kh": kh,
        "rho": rho,
        "te_s": volume.te,
        "tr_s": volume.tr,
        "te_source": volume.meta.get("te_source"),
        "tr_source": volume.meta.get("tr_source"),
        "frames": volume.n_frames,
        "dt_s": prepared.dt,
        "timing": prepared.timing_info,
        "baseline": prepared.baseline_info,
        "mask": {"source": "auto" if auto_mask else str(mask),
                 "voxels": int(np.count_nonzero(prepared.brain_mask))},
        "aif": {"source": selection.method, "voxels": int(len(selection.indices)),
                "indices": selection.indices.tolist(), "params": selection.params},
        "voxels": {"brain": int(np.count_nonzero(prepared.brain_mask)),
                   "invalid_baseline": invalid_baseline,
                   "not_fitted": unfitted,
                   "mtt_undefined": mtt_undefined,
                   "deconvolution_failed": fit.n_failed},
        "deconvolution_info": fit.info,
        "units": maps_mod.MAP_UNITS,
        "rois": roi_results,
    }
    if ref_stats is not None:
        provenance["ref"] = ref_stats
    if volume.meta:
        provenance["series"] = {k: v for k, v in volume.meta.items()
                                if isinstance(v, (str, int, float, bool)) or v is None}

    t0 = time.perf_counter()
    with outputs:
        for name in maps_mod.MAP_NAMES:
            img = nifti.map_image(maps3d[name], volume)
            outputs.write(f"{stem}_{name}.nii.gz", lambda p, img=img: nifti.save_image(img, p))
        aif_rows = zip(prepared.times, selection.curve)
        outputs.write_text(f"{stem}_aif.tsv", tables.format_tsv(["time_s", "aif"], aif_rows))
        if not aif_is_curve:
            aifvol = np.zeros(shape, np.uint8)
            if len(selection.indices):
                aifvol[tuple(selection.indices.T)] = 1
            img = nifti.map_image(aifvol, volume)
            outputs.write(f"{stem}_aifmask.nii.gz", lambda p, img=img: nifti.save_image(img, p))
        if auto_mask:
            img = nifti.map_image(prepared.brain_mask.astype(np.float32), volume)
            outputs.write(f"{stem}_brainmask.nii.gz", lambda p, img=img: nifti.save_image(img, p))
        timings["write_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        provenance["timings"] = {k: round(v, 4) for k, v in timings.items()}
        provenance["outputs"] = sorted(outputs.names)
        outputs.write_text(f"{stem}_perfmap.json", json.dumps(provenance, indent=2,
                                                              default=_json_default) + "\n")
        paths = outputs.commit()
    return ComputeResult(outputs={p.name: p for p in paths}, maps=maps3d, aif=selection.curve,
                         provenance=provenance)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
