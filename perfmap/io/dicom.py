"""DICOM MR series input: discovery, 4D assembly, timing, and conversion to NIfTI.

A DSC (or DCE) series arrives as classic single-frame MR images, one file per
slice per time point, or as Enhanced MR multi-frame files (DICOM PS3.3 C.8.13).
:func:`load_dicom_series` builds a :class:`~perfmap.io.volume.Volume4D` from
either:

- slices are ordered by their position along the slice normal
  (``ImagePositionPatient . (R x C)``, PS3.3 C.7.6.2.1.1);
- time points by Temporal Position Identifier (Index), else Acquisition Time,
  Trigger Time, Content Time and finally Instance Number;
- a slice with a missing or duplicated time point stops the load with a message
  naming the slice, its position and the time point (slices and time points are
  counted from 0, as NIfTI volume indices are);
- Rescale Slope/Intercept are applied and the data are float32;
- the voxel layout and affine are dcm2niix's (Li et al. 2016, J Neurosci Methods
  264:47; see :mod:`perfmap.io.dicom_geometry`), so a perfmap conversion and a
  dcm2niix conversion of the same series agree voxel for voxel.

Timing: ``tr`` is the Repetition Time (s) and ``te`` the Echo Time (s);
``frame_times`` are the measured acquisition times (per time point the earliest
of its slices, from Acquisition (Date)Time, else Trigger Time, else Content
Time; a wrap past midnight is undone) and ``meta["frame_interval"]`` their
median step. For a 2D multi-slice DSC EPI series the frame interval equals TR.

:func:`write_nifti_with_sidecar` writes the 4D NIfTI (float32, the frame interval
in pixdim[4], seconds) and a dcm2niix-style JSON sidecar atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .. import __version__
from ..errors import ImageReadError, ParameterError, ShapeError
from .dicom_geometry import Layout, plan_layout, to_nifti_layout
from .dicom_series import (SeriesInfo, build_frame_table, file_pixels, find_series, first_item,
                           is_multiframe, quiet_pydicom, read_headers, scan, summaries)
from .outputs import OutputSet
from .volume import Volume4D

# ---------------------------------------------------------------- series choice
def _choose(series: dict, skipped: dict, directory: Path, wanted: Optional[str]):
    if not series:
        extra = ""
        if skipped["not_dicom"] or skipped["no_image"]:
            n, m = skipped["not_dicom"], skipped["no_image"]
            extra = (f" ({n} non-DICOM file{'s' * (n != 1)} and {m} DICOM "
                     f"file{'s' * (m != 1)} without an image were skipped)")
        raise ImageReadError(f"{directory}: no DICOM image series found{extra}")
    if wanted is None and len(series) == 1:
        return next(iter(series.items()))
    infos = summaries(series)
    listing = "; ".join(i.label() for i in infos)
    if wanted is None:
        raise ImageReadError(f"{directory}: {len(infos)} DICOM series found, choose one with "
                             f"--series (SeriesInstanceUID or SeriesNumber): {listing}")
    wanted = str(wanted).strip()
    if wanted in series:
        return wanted, series[wanted]
    by_number = [i for i in infos if i.number is not None and i.number == wanted]
    if len(by_number) == 1:
        return by_number[0].uid, series[by_number[0].uid]
    if len(by_number) > 1:
        raise ImageReadError(
            f"{directory}: series number {wanted} is shared by {len(by_number)} series; choose "
            "one by SeriesInstanceUID: " + "; ".join(i.label() for i in by_number))
    raise ImageReadError(f"{directory}: no series matches {wanted!r}; found: {listing}")


# ---------------------------------------------------------------- pixels
def _stack(members, table, layout: Layout) -> np.ndarray:
    """``(T, Z, rows, cols)`` float32 of rescaled values, rows already flipped (dcm2niix)."""
    rows, cols = (int(v) for v in table.shape[0])
    out = np.empty((layout.n_t, layout.n_z, rows, cols), dtype=np.float32)
    for f, (path, ds) in enumerate(members):
        sel = np.flatnonzero(table.file == f)
        sel = sel[np.argsort(table.frame[sel])]
        frames = file_pixels(Path(path), ds, len(sel), rows, cols)
        slope, inter = table.slope[sel], table.intercept[sel]
        if np.all(slope == 1.0) and np.all(inter == 0.0):
            out[layout.t[sel], layout.k[sel]] = frames[:, ::-1]
        else:
            out[layout.t[sel], layout.k[sel]] = (frames[:, ::-1] * slope[:, None, None]
                                                 + inter[:, None, None])
    return out


# ---------------------------------------------------------------- metadata
def _mr_parameters(ds) -> dict:
    """TE, TR (ms) and flip angle from a classic header or Enhanced MR functional groups."""
    def number(v):
        try:
            return None if v in (None, "") else float(v)
        except (TypeError, ValueError):
            return None

    te, tr, flip = (number(ds.get(k)) for k in ("EchoTime", "RepetitionTime", "FlipAngle"))
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence")
    for owner in (shared, per[0] if per else None):
        timing = first_item(owner, "MRTimingAndRelatedParametersSequence")
        echo = first_item(owner, "MREchoSequence")
        if timing is not None:
            tr = tr if tr is not None else number(timing.get("RepetitionTime"))
            flip = flip if flip is not None else number(timing.get("FlipAngle"))
        if echo is not None and te is None:
            te = number(echo.get("EffectiveEchoTime"))
    return {"te_ms": te, "tr_ms": tr, "flip": flip}


def _meta(members, table, layout: Layout, uid: str) -> dict:
    ds = members[0][1]
    p = _mr_parameters(ds)
    field = ds.get("MagneticFieldStrength")
    number = ds.get("SeriesNumber")
    first = int(np.argmin(table.acq_sec)) if np.all(np.isfinite(table.acq_sec)) else None
    acq = None
    if first is not None:
        s = table.acq_sec[first]
        acq = f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:09.6f}"
    interval = None
    if layout.frame_times is not None and layout.n_t > 1:
        interval = float(np.median(np.diff(layout.frame_times)))
    return {
        "SeriesInstanceUID": uid,
        "SeriesNumber": int(number) if str(number or "").strip().lstrip("-").isdigit() else None,
        "SeriesDescription": str(ds.get("SeriesDescription") or ""),
        "ProtocolName": str(ds.get("ProtocolName") or ""),
        "Modality": str(ds.get("Modality") or ""),
        "Manufacturer": str(ds.get("Manufacturer") or ""),
        "MagneticFieldStrength": float(field) if field not in (None, "") else None,
        "FlipAngle": p["flip"],
        "EchoTime": round(p["te_ms"] / 1000.0, 9) if p["te_ms"] is not None else None,
        "RepetitionTime": round(p["tr_ms"] / 1000.0, 9) if p["tr_ms"] is not None else None,
        "AcquisitionTime": acq,
        "ImageOrientationPatientDICOM": [float(v) for v in table.iop[0]],
        "frame_interval": interval,
        "frame_times_source": layout.time_source or "none (no timing in the headers)",
        "te_source": "DICOM EchoTime" if p["te_ms"] is not None else "absent",
        "tr_source": "DICOM RepetitionTime" if p["tr_ms"] is not None else "absent",
        "n_files": len(members),
        "multiframe": any(is_multiframe(ds) for _, ds in members),
        "slice_positions_mm": [float(c) for c in layout.centres],
    }


def _thickness(ds) -> float:
    """Slice spacing for a single-slice series: SpacingBetweenSlices, else SliceThickness."""
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    owners = [ds, first_item(shared, "PixelMeasuresSequence")]
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        for owner in owners:
            try:
                value = float(owner.get(key)) if owner is not None else 0.0
            except (TypeError, ValueError):
                continue
            if value > 0:
                return value
    return 1.0


# ---------------------------------------------------------------- public API
def load_dicom_series(directory, series: Optional[Union[str, SeriesInfo]] = None,
                      min_frames: int = 1) -> Volume4D:
    """Read one DICOM MR series below ``directory`` as a 4D volume.

    Parameters
    ----------
    directory : path
        Folder searched recursively; any file names, any order, non-DICOM files ignored.
    series : str or SeriesInfo, optional
        SeriesInstanceUID or SeriesNumber of the series to read; required when the
        folder holds several series. A :class:`SeriesInfo` from :func:`find_series`
        reads its files without searching the folder again.
    min_frames : int
        Fewest time points accepted (the DSC pipeline asks for a baseline and a bolus).

    Returns
    -------
    Volume4D
        ``data`` float32 ``(X, Y, Z, T)`` in dcm2niix's layout, ``affine`` RAS,
        ``frame_times`` (s, from the first frame), ``tr``/``te`` in s, ``header``
        None, and ``meta`` with the series identity, FlipAngle, MagneticFieldStrength,
        ``frame_interval`` (median frame step, s) and where each value came from.

    Raises
    ------
    ImageReadError
        No DICOM series, several series and no (or an ambiguous) choice, corrupt files,
        mixed geometry, or slices with missing or duplicated time points.
    ShapeError
        Fewer than ``min_frames`` time points.

    Examples
    --------
    >>> vol = load_dicom_series("exam/perfusion", series="5")   # doctest: +SKIP
    >>> vol.data.shape, vol.tr, vol.meta["frame_interval"]      # doctest: +SKIP
    ((128, 128, 20, 60), 1.5, 1.5)
    """
    directory = Path(directory)
    with quiet_pydicom():
        if isinstance(series, SeriesInfo):
            uid, members = series.uid, read_headers(series.files)
        else:
            found, skipped = scan(directory)
            uid, members = _choose(found, skipped, directory, series)
        return _load(directory, uid, members, min_frames)


def _load(directory: Path, uid: str, members, min_frames: int) -> Volume4D:
    table = build_frame_table(members)
    layout = plan_layout(table, directory, _thickness(members[0][1]))
    if layout.n_t < min_frames:
        raise ShapeError(f"{directory}: the series has {layout.n_t} time points; at least "
                         f"{min_frames} are needed")
    data = to_nifti_layout(_stack(members, table, layout), flipped=True)
    meta = _meta(members, table, layout, uid)
    frame_times = layout.frame_times
    if layout.n_t == 1:
        frame_times, meta["frame_times_source"] = np.zeros(1), "single time point"
    elif frame_times is None:
        # No timing in the headers: assume one frame per TR (2D multi-slice EPI), else 1 s.
        step = meta["RepetitionTime"] or 1.0
        frame_times = np.arange(layout.n_t) * step
        meta["frame_times_source"] = ("RepetitionTime (no timing in the headers)"
                                      if meta["RepetitionTime"] else "frame index (no timing)")
        meta["frame_interval"] = meta["RepetitionTime"]
    return Volume4D(data=data, affine=layout.affine, frame_times=np.asarray(frame_times, float),
                    tr=meta["RepetitionTime"], te=meta["EchoTime"], source=str(directory),
                    header=None, meta=meta)


SIDECAR_KEYS = ("Modality", "Manufacturer", "MagneticFieldStrength", "SeriesDescription",
                "ProtocolName", "SeriesNumber", "SeriesInstanceUID", "AcquisitionTime",
                "EchoTime", "RepetitionTime", "FlipAngle", "ImageOrientationPatientDICOM")


def sidecar(volume: Volume4D) -> dict:
    """dcm2niix-style (BIDS) JSON sidecar of a volume read from DICOM; times in seconds."""
    out = {key: volume.meta[key] for key in SIDECAR_KEYS if volume.meta.get(key) not in (None, "")}
    out["FrameTimesStart"] = [round(float(t), 6) for t in volume.frame_times]
    if volume.meta.get("frame_interval"):
        out["FrameInterval"] = volume.meta["frame_interval"]
    out["ConversionSoftware"] = "perfmap"
    out["ConversionSoftwareVersion"] = __version__
    return out


def _nifti_outputs(path, overwrite: bool):
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix) and len(name) > len(suffix):
            json_name = name[: -len(suffix)] + ".json"
            return OutputSet(path.parent, [name, json_name], overwrite=overwrite), name, json_name
    raise ParameterError(f"{path}: the output name must end with .nii or .nii.gz")


def _write(outputs, volume: Volume4D, name: str, json_name: str) -> list:
    from .nifti import save_volume

    interval = volume.meta.get("frame_interval") or volume.tr
    with outputs:
        outputs.write(name, lambda p: save_volume(volume.data, volume.affine, p, tr=interval))
        outputs.write_text(json_name, json.dumps(sidecar(volume), indent=2) + "\n")
        return outputs.commit()


def write_nifti_with_sidecar(volume: Volume4D, path, overwrite: bool = False) -> list:
    """Write ``volume`` as a 4D NIfTI plus a JSON sidecar of the same stem, atomically.

    The image is float32 (rescaled values, so no scl_slope is needed), qform and
    sform code 1 (scanner) with ``volume.affine``, units mm and s, and pixdim[4]
    the measured frame interval (``meta["frame_interval"]``, else TR). The sidecar
    holds EchoTime, RepetitionTime (s), FlipAngle, MagneticFieldStrength,
    SeriesDescription, ProtocolName, SeriesInstanceUID, SeriesNumber and
    FrameTimesStart (s from the first frame), as dcm2niix names them.

    Returns
    -------
    list of Path
        The NIfTI and the JSON paths.

    Raises
    ------
    OutputExistsError
        A target exists and ``overwrite`` is False (nothing is written).
    ParameterError
        ``path`` does not end with ``.nii`` or ``.nii.gz``.
    """
    outputs, name, json_name = _nifti_outputs(path, overwrite)
    return _write(outputs, volume, name, json_name)


def convert_dicom(directory, out, series: Optional[str] = None,
                  overwrite: bool = False) -> tuple[list, Volume4D]:
    """Convert one DICOM series to a 4D NIfTI plus JSON sidecar (``perfmap convert``).

    Parameters
    ----------
    directory : path
        Folder holding the series (see :func:`load_dicom_series`).
    out : path
        ``.nii`` or ``.nii.gz`` file; the sidecar is written next to it, same stem.
    series : str, optional
        SeriesInstanceUID or SeriesNumber when the folder holds several series.
    overwrite : bool
        Replace existing outputs; otherwise they are refused before the series is read.

    Returns
    -------
    paths : list of Path
        The NIfTI and JSON files written (see :func:`write_nifti_with_sidecar`).
    volume : Volume4D
        The series as read.
    """
    outputs, name, json_name = _nifti_outputs(out, overwrite)
    volume = load_dicom_series(directory, series=series)
    return _write(outputs, volume, name, json_name), volume


__all__ = ["SeriesInfo", "find_series", "load_dicom_series", "write_nifti_with_sidecar",
           "sidecar", "convert_dicom"]
