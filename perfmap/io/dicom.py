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
- degenerate geometry stops the load: an orientation that is not two orthogonal
  unit vectors, a pixel or slice spacing outside 0.01-50 mm (zero, negative, NaN),
  or different slices at one position;
- Rescale Slope/Intercept are applied and the data are float32; natively stored
  pixels are read at the offset the header parse recorded, as pydicom's
  ``pixel_array`` gives them (unused high bits dropped), without a second parse;
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
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .. import __version__
from ..errors import ImageReadError, ParameterError, ShapeError
from .dicom_geometry import Layout, plan_layout, to_nifti_layout
from .dicom_series import (SeriesInfo, build_frame_table, find_series, first_item, is_multiframe,
                           open_regular, quiet_pydicom, read_headers, scan, summaries)
from .outputs import OutputSet
from .volume import Volume4D

# ---------------------------------------------------------------- series choice
def _skipped_note(skipped: dict) -> str:
    n, m, o = skipped["not_dicom"], skipped["no_image"], skipped["not_regular"]
    parts = []
    if n or m:
        parts.append(f"{n} non-DICOM file{'s' * (n != 1)} and {m} DICOM file{'s' * (m != 1)} "
                     "without an image were skipped")
    if o:
        parts.append(f"{o} entr{'ies' if o != 1 else 'y'} not a regular file (pipe, socket, "
                     "device, link to a folder or broken link) left unopened")
    return f" ({'; '.join(parts)})" if parts else ""


def _choose(series: dict, skipped: dict, directory: Path, wanted: Optional[str]):
    if not series:
        raise ImageReadError(f"{directory}: no DICOM image series found{_skipped_note(skipped)}")
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
#: Native (uncompressed) transfer syntaxes: byte order and whether the VR is implicit.
_NATIVE = {"1.2.840.10008.1.2": ("<", True), "1.2.840.10008.1.2.1": ("<", False),
           "1.2.840.10008.1.2.2": (">", False)}


def _native_format(ds, n_frames: int):
    """``(dtype, byte order, implicit VR, unused high bits)`` of pixels stored natively,
    as pydicom's ``pixel_array`` would return them; None for anything else (compressed,
    colour, 1-bit, or a frame count other than ``n_frames``), which pydicom then reads."""
    syntax = _NATIVE.get(str(ds.file_meta.get("TransferSyntaxUID", "")))
    try:
        bits, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed = int(ds.PixelRepresentation)
        samples, frames = int(ds.get("SamplesPerPixel") or 1), int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if (syntax is None or bits not in (8, 16, 32) or not 1 <= stored <= bits
            or signed not in (0, 1) or samples != 1 or frames != n_frames
            or str(ds.get("PhotometricInterpretation")) not in ("MONOCHROME1", "MONOCHROME2")
            or (bits == 8 and syntax[0] == ">")):
        return None
    dtype = np.dtype(f"{syntax[0]}{'iu'[signed == 0]}{bits // 8}")
    return dtype, syntax[0], syntax[1], bits - stored


def _pixel_element(buf: bytes, order: str, implicit: bool):
    """``(value offset, length)`` of a Pixel Data element starting ``buf``; None if not one."""
    tag = b"\xe0\x7f\x10\x00" if order == "<" else b"\x7f\xe0\x00\x10"
    if buf[:4] != tag:
        return None
    if implicit:
        start = 8
    elif buf[4:6] in (b"OB", b"OW", b"UN") and buf[6:8] == b"\x00\x00":
        start = 12
    else:
        return None
    length = int.from_bytes(buf[start - 4:start], "little" if order == "<" else "big")
    return None if length == 0xFFFFFFFF else (start, length)


def _native_pixels(member, fmt, n_values: int):
    """The stored values read at the Pixel Data element the header parse stopped at, with
    pydicom's correction of unused high bits; None when the element is not there as
    expected (pydicom then reads the file)."""
    dtype, order, implicit, unused = fmt
    nbytes = n_values * dtype.itemsize
    with open_regular(member.path) as fp:
        fp.seek(member.pixel_at)
        buf = fp.read(nbytes + 12)
    element = _pixel_element(buf, order, implicit)
    if element is None or element[1] < nbytes or len(buf) < element[0] + nbytes:
        return None
    values = np.frombuffer(buf, dtype=dtype, count=n_values, offset=element[0])
    if unused:  # as pydicom does (correct_unused_bits): drop the bits above BitsStored
        values = values.copy()
        np.left_shift(values, unused, out=values)
        np.right_shift(values, unused, out=values)
    return values


def file_pixels(member, n_frames: int, rows: int, cols: int, formats: dict) -> np.ndarray:
    """Stored pixel values of one file as ``(n_frames, rows, cols)`` (not rescaled).

    Native monochrome data are read straight from the file at the offset the header
    parse recorded (one read, no second parse); everything else goes through pydicom.
    ``formats`` caches :func:`_native_format` by the raw pixel-module values.
    """
    ds = member.ds
    key = (str(ds.file_meta.get("TransferSyntaxUID", "")), n_frames,
           *(_raw(ds, tag) for tag in _FORMAT_TAGS))
    if key not in formats:
        formats[key] = _native_format(ds, n_frames)
    raw = None if formats[key] is None else _native_pixels(member, formats[key],
                                                           n_frames * rows * cols)
    if raw is None:
        raw = _pydicom_pixels(member.path)
    try:
        return np.asarray(raw).reshape(n_frames, rows, cols)
    except ValueError:
        raise ImageReadError(f"{member.path}: pixel data do not hold {n_frames} frames of "
                             f"{rows}x{cols}") from None


#: BitsAllocated, BitsStored, PixelRepresentation, SamplesPerPixel, NumberOfFrames,
#: PhotometricInterpretation.
_FORMAT_TAGS = (0x00280100, 0x00280101, 0x00280103, 0x00280002, 0x00280008, 0x00280004)


def _raw(ds, tag):
    elem = ds.get_item(tag)
    value = None if elem is None else elem.value
    return value if isinstance(value, (bytes, str, int, float, type(None))) else str(value)


def _pydicom_pixels(path: Path) -> np.ndarray:
    import pydicom

    try:
        with open_regular(path) as fp:
            return pydicom.dcmread(fp, force=False).pixel_array
    except ImageReadError:
        raise
    except Exception as exc:  # truncated data, unsupported compression, ...
        raise ImageReadError(f"{path}: cannot read the pixel data ({exc})") from None


def _stack(members, table, layout: Layout) -> np.ndarray:
    """``(T, Z, rows, cols)`` float32 of rescaled values, rows already flipped (dcm2niix)."""
    rows, cols = (int(v) for v in table.shape[0])
    out = np.empty((layout.n_t, layout.n_z, rows, cols), dtype=np.float32)
    order = np.lexsort((table.frame, table.file))          # by file, then frame
    bounds = np.searchsorted(table.file[order], np.arange(len(members) + 1))
    formats: dict = {}
    for f, member in enumerate(members):
        sel = order[bounds[f]:bounds[f + 1]]
        frames = file_pixels(member, len(sel), rows, cols, formats)
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
    ds = members[0].ds
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
        "multiframe": any(is_multiframe(m.ds) for m in members),
        "slice_positions_mm": [float(c) for c in layout.centres],
    }


def _thickness(ds) -> float:
    """Slice spacing for a single-slice series: SpacingBetweenSlices, else SliceThickness.

    1 mm when neither is given (as dcm2niix); when they are given but none is a positive
    number, the first of them (NaN if not a number), which the layout then refuses.
    """
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    owners = [o for o in (ds, first_item(shared, "PixelMeasuresSequence")) if o is not None]
    given = []
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        for owner in owners:
            text = owner.get(key)
            if text in (None, ""):
                continue
            try:
                value = float(text)
            except (TypeError, ValueError):
                value = float("nan")
            if value > 0:
                return value
            given.append(value)
    return given[0] if given else 1.0


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
        mixed or degenerate geometry, or slices with missing or duplicated time points.
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
    layout = plan_layout(table, directory, _thickness(members[0].ds))
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


def _check_parent(path: Path) -> None:
    """Refuse an output whose folder cannot exist because a file sits on its path."""
    for folder in path.parents:
        if folder.is_dir():
            return
        if os.path.lexists(folder):
            raise ParameterError(f"{path}: cannot write the output there: {folder} exists "
                                 "and is not a folder")


def _nifti_outputs(path, overwrite: bool):
    path = Path(path)
    _check_parent(path)
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
        ``path`` does not end with ``.nii`` or ``.nii.gz``, or a file (not a folder) sits
        on its folder's path.
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

    Raises
    ------
    ParameterError, OutputExistsError
        ``out`` cannot be written (bad suffix, a file where its folder should be) or
        exists; checked before the series is read.
    ImageReadError, ShapeError
        See :func:`load_dicom_series`.
    """
    outputs, name, json_name = _nifti_outputs(out, overwrite)
    volume = load_dicom_series(directory, series=series)
    return _write(outputs, volume, name, json_name), volume


__all__ = ["SeriesInfo", "find_series", "load_dicom_series", "write_nifti_with_sidecar",
           "sidecar", "convert_dicom"]
