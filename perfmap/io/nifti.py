"""NIfTI input and output (the only module besides :mod:`perfmap.io.dicom` that imports nibabel).

Reading checks everything a user can get wrong and says so in one sentence
naming the file: missing, corrupt or truncated files, wrong dimensionality, too
few frames, NaN/Inf values, masks on another grid. Writing keeps the input's
affine and header geometry and stores float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import (ImageReadError, InputDataError, ParameterError, PerfmapError,
                      ShapeError)
from .volume import Volume4D

#: Fewest frames a dynamic series may have: a baseline and a bolus passage.
MIN_FRAMES = 10

NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: Affines of a mask and the series may differ by at most this much (mm).
AFFINE_TOLERANCE_MM = 1e-3


#: DICOM folder names that say nothing about the exam: the parent folder's name goes first.
GENERIC_DICOM_NAMES = ("dicom", "dcm", "dicomdir", "images", "image", "data", "series")


def stem_of(path) -> str:
    """File name without ``.nii``/``.nii.gz``; for a directory its name, preceded by its
    parent's when the name is generic (``sub01/DICOM`` -> ``sub01_DICOM``), so that two
    exams' ``DICOM`` folders do not write the same output names.

    Examples
    --------
    >>> stem_of("maps/sub01.nii.gz")
    'sub01'
    """
    p = Path(path)
    name = p.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    if not p.is_dir():
        return p.stem
    if name.lower() in GENERIC_DICOM_NAMES and p.resolve().parent.name:
        return f"{p.resolve().parent.name}_{name}"
    return name


def is_nifti(path) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


def _load_image(path: Path, what: str):
    """Read a NIfTI image and its (scaled) data; every failure is one ImageReadError.

    nibabel's header messages are not printed: they are re-issued as Python
    warnings naming the file, which the command line logs (shown with ``-v``)
    and batch workers write to the subject's log. The data must be real
    numbers of a plausible size for the file.
    """
    import logging
    import warnings

    if not path.exists():
        raise ImageReadError(f"{path}: {what} file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: {what} is a directory, expected a NIfTI file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: {what} file is empty (0 bytes)")
    nib_logger = logging.getLogger("nibabel.global")
    saved = nib_logger.handlers[:], nib_logger.propagate, nib_logger.level
    records: list = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = records.append
    nib_logger.handlers[:] = [collector]
    nib_logger.propagate = False
    nib_logger.setLevel(logging.WARNING)
    try:
        img, head = _open(path)
        dtype = img.get_data_dtype()
        if dtype.fields is not None or dtype.kind not in "biuf":
            raise ImageReadError(f"{path}: {what} has data type {dtype}, not real numbers "
                                 "(complex and RGB images are not supported)")
        shape = tuple(int(n) for n in img.shape)
        n_bytes = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        # A deflate stream expands at most ~1032 times: more data than that is a lie.
        room = path.stat().st_size * (1100 if str(path).endswith(".gz") else 1)
        if any(n < 1 for n in shape) or (is_nifti(path) and n_bytes > room):
            raise ImageReadError(f"{path}: {what} is corrupt or truncated: its header "
                                 f"describes {'x'.join(map(str, shape)) or 'no'} voxels of "
                                 f"{dtype}, which the file cannot hold")
        _check_pixdim(img, head, path, what)
        data = _scaled_float32(img.dataobj)
    except PerfmapError:
        raise
    except MemoryError:
        raise ImageReadError(f"{path}: {what} is too large to load (shape "
                             f"{tuple(img.shape)})") from None
    except Exception as exc:  # nibabel raises many types for damaged files
        message = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ImageReadError(
            f"{path}: cannot read {what} as NIfTI (corrupt or truncated file: {message})"
        ) from None
    finally:
        nib_logger.handlers[:], nib_logger.propagate = saved[0], saved[1]
        nib_logger.setLevel(saved[2])
    for record in records:
        warnings.warn(f"{path}: {record.getMessage()}", UserWarning, stacklevel=2)
    return img, data


def _open(path: Path):
    """``(image, header bytes as stored)`` of ``path``; a ``.gz`` file is decompressed
    whole first.

    nibabel reads a compressed image only up to the end of its data, so it never
    reaches the gzip trailer: a file whose last bytes are missing, or whose data
    no longer match the trailer's CRC-32 (damaged in transfer or storage), loads
    without a word. :func:`gzip.decompress` checks the trailer of every member,
    at the cost of holding the decompressed bytes once (the same single pass).
    """
    import gzip

    import nibabel as nib

    if not str(path).endswith(".gz"):
        with open(path, "rb") as fh:
            head = fh.read(540)
        return nib.load(str(path)), head
    raw = gzip.decompress(path.read_bytes())
    size = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
    size_be = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else 0
    for n, klass in ((540, nib.Nifti2Image), (348, nib.Nifti1Image)):
        if n in (size, size_be):
            return klass.from_bytes(raw), raw[:540]
    raise ValueError("the decompressed file does not start with a NIfTI header")


def _check_pixdim(img, head: bytes, path: Path, what: str) -> None:
    """Refuse voxel sizes (pixdim[1..3] of the spatial axes present) that are not positive.

    NIfTI-1 requires them positive; a zero, negative or NaN value means a damaged or
    hand-edited header whose qform (built from pixdim) is degenerate. nibabel replaces
    zero and negative values while reading (with a log message), so the header is read
    again here from ``head``, the header bytes as stored.
    """
    import io

    import nibabel as nib

    if not isinstance(img.header, nib.Nifti1Header):      # NIfTI-1 and NIfTI-2 only
        return
    header = type(img.header).from_fileobj(io.BytesIO(head), check=False)
    pixdim = np.asarray(header["pixdim"], dtype=np.float64)
    n_spatial = min(3, len(img.shape))
    for i in range(1, n_spatial + 1):
        if not (np.isfinite(pixdim[i]) and pixdim[i] > 0):
            raise ImageReadError(f"{path}: {what} header has voxel size pixdim[{i}] = "
                                 f"{pixdim[i]:g}; voxel sizes must be positive (corrupt or "
                                 "hand-edited header)")


def _scaled_float32(proxy) -> np.ndarray:
    """The image data with ``scl_slope``/``scl_inter`` applied, in float32.

    nibabel scales integer data (int16 with a slope, as scanners and dcm2niix
    write it) to float64; scaling in float32 halves the memory and the time
    (a 128x128x20x60 series: 0.3 s instead of 0.8 s). float64 files stay
    float64; unscaled integer data (masks) are returned as stored.
    """
    if not hasattr(proxy, "get_unscaled"):
        return np.asanyarray(proxy)
    raw = np.asanyarray(proxy.get_unscaled())
    slope, inter = proxy.slope, proxy.inter
    if raw.dtype == np.float64 or (slope == 1.0 and inter == 0.0):
        return raw
    data = raw.astype(np.float32)
    if slope != 1.0:
        data *= np.float32(slope)
    if inter != 0.0:
        data += np.float32(inter)
    return data


def read_sidecar(path) -> dict:
    """The dcm2niix-style JSON sidecar next to a NIfTI file ({} when absent).

    Raises
    ------
    ImageReadError
        The sidecar exists but is a folder, unreadable, not UTF-8, not JSON
        (or nested too deeply to parse), or not a JSON object.
    """
    p = Path(path)
    side = p.with_name(stem_of(p) + ".json")
    if side.is_dir():
        raise ImageReadError(f"{side}: the JSON sidecar is a folder, expected a file")
    if not side.exists():
        return {}
    try:
        meta = json.loads(side.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ImageReadError(f"{side}: the JSON sidecar is not UTF-8 text (byte at offset "
                             f"{exc.start})") from None
    except OSError as exc:
        raise ImageReadError(f"{side}: cannot read the JSON sidecar "
                             f"({exc.strerror or type(exc).__name__})") from None
    except RecursionError:
        raise ImageReadError(f"{side}: the JSON sidecar is nested too deeply to parse") from None
    except ValueError as exc:
        raise ImageReadError(f"{side}: cannot parse the JSON sidecar ({exc})") from None
    if not isinstance(meta, dict):
        raise ImageReadError(f"{side}: the JSON sidecar is not an object")
    return meta


def _tr_from_header(header) -> tuple[Optional[float], str]:
    """Frame interval from pixdim[4], honouring ``xyzt_units`` (NIfTI-1 standard)."""
    try:
        value = float(header["pixdim"][4])
    except (KeyError, IndexError, TypeError):
        return None, "absent"
    if not np.isfinite(value) or value <= 0:
        return None, "absent"
    _, t_unit = header.get_xyzt_units()
    scale = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(t_unit)
    if scale is not None:
        return value * scale, f"header pixdim[4] ({t_unit})"
    # Unknown units: a DSC frame interval is 0.3-5 s, so values above 20 are milliseconds.
    if value > 20:
        return value * 1e-3, "header pixdim[4] (units unknown, assumed ms)"
    return value, "header pixdim[4] (units unknown, assumed s)"


def sidecar_frame_times(value, n_frames: int, path) -> np.ndarray:
    """A sidecar's ``FrameTimesStart`` (s), checked: one finite number per frame, increasing.

    Returns the times from the first frame. Raises :class:`InputDataError`
    naming the sidecar and the problem otherwise.

    Examples
    --------
    >>> sidecar_frame_times([10.0, 11.5, 13.0], 3, "s.nii.gz").tolist()
    [0.0, 1.5, 3.0]
    """
    where = f"{Path(path).with_name(stem_of(path) + '.json')}: FrameTimesStart"
    if not isinstance(value, list):
        raise InputDataError(f"{where} must be a list of numbers (seconds), got "
                             f"{type(value).__name__}")
    if len(value) != n_frames:
        raise InputDataError(f"{where} has {len(value)} values but the series has "
                             f"{n_frames} frames")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        bad = next(v for v in value if not isinstance(v, (int, float)) or isinstance(v, bool))
        raise InputDataError(f"{where} must hold only numbers (seconds); found {bad!r}")
    times = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(times)):
        raise InputDataError(f"{where} contains NaN or infinite values")
    if np.any(np.diff(times) <= 0):
        raise InputDataError(f"{where} must increase strictly from frame to frame")
    return times - times[0]


def _positive_seconds(value, name: str, source: str) -> float:
    if isinstance(value, (bool, str)):
        # JSON strings ("0.03") and booleans are not numbers, whatever they spell
        raise ParameterError(f"{source}: {name} {value!r} is not a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{source}: {name} {value!r} is not a number") from None
    if not np.isfinite(v) or v <= 0:
        raise ParameterError(f"{source}: {name} must be positive, got {v}")
    return v


def _check_flip_angle(value, n_frames: int, path: Path) -> None:
    """A sidecar's ``FlipAngle``: a finite number of degrees, or one per volume (a list, as
    a variable-flip-angle series has). Raises :class:`ParameterError` naming the sidecar."""
    where = f"{Path(path).with_name(stem_of(path) + '.json')}: FlipAngle"

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))

    if isinstance(value, list):
        if len(value) != n_frames:
            raise ParameterError(f"{where} lists {len(value)} angles but the series has "
                                 f"{n_frames} volumes (give one number, or one per volume)")
        bad = [v for v in value if not number(v)]
        if bad:
            raise ParameterError(f"{where} must hold only numbers of degrees; found {bad[0]!r}")
    elif not number(value):
        raise ParameterError(f"{where} {value!r} is not a number of degrees")


def _timing(override, name: str, sidecar: dict, key: str, path: Path):
    """``(seconds, source)`` from the command line, else the sidecar; ``(None, "absent")``."""
    if override is not None:
        return _positive_seconds(override, name, f"--{name.lower()}"), "command line"
    if key in sidecar:
        return _positive_seconds(sidecar[key], key, f"{path} sidecar"), f"sidecar {key}"
    return None, "absent"


def load_nifti_4d(path, te: Optional[float] = None, tr: Optional[float] = None,
                  min_frames: int = MIN_FRAMES) -> Volume4D:
    """Read a 4D DSC series with its timing.

    TR comes from ``tr`` if given, else the sidecar's ``RepetitionTime`` (s),
    else the header's pixdim[4] with its ``xyzt_units``. TE comes from ``te``
    or the sidecar's ``EchoTime`` (s). A missing value is left ``None`` here;
    the pipeline stops with a message naming it.

    Raises
    ------
    ImageReadError, ShapeError, InputDataError, ParameterError
    """
    path = Path(path)
    img, raw = _load_image(path, "input")
    if raw.ndim != 4:
        raise ShapeError(f"{path}: expected a 4D series (x, y, z, time), got {raw.ndim}D "
                         f"with shape {raw.shape}")
    if raw.shape[3] < min_frames:
        raise ShapeError(f"{path}: only {raw.shape[3]} frames; at least {min_frames} are needed"
                         + (" for a baseline and a bolus passage" if min_frames >= MIN_FRAMES
                            else ""))
    data = np.asarray(raw, dtype=np.float64 if raw.dtype == np.float64 else np.float32)
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InputDataError(f"{path}: the series contains {bad} NaN or Inf values")
    sidecar = read_sidecar(path)
    meta = {"sidecar": bool(sidecar)}
    tr_s, tr_source = _timing(tr, "TR", sidecar, "RepetitionTime", path)
    if tr_s is None:
        tr_s, tr_source = _tr_from_header(img.header)
    te_s, te_source = _timing(te, "TE", sidecar, "EchoTime", path)
    meta.update(tr_source=tr_source, te_source=te_source)
    for key in ("FlipAngle", "MagneticFieldStrength", "SeriesDescription", "ProtocolName"):
        if key in sidecar:
            meta[key] = sidecar[key]
    if "FlipAngle" in sidecar:
        _check_flip_angle(sidecar["FlipAngle"], raw.shape[3], path)
    if "RepetitionTimeExcitation" in sidecar:
        meta["RepetitionTimeExcitation"] = _positive_seconds(
            sidecar["RepetitionTimeExcitation"], "RepetitionTimeExcitation", f"{path} sidecar")
    # pixdim[4] kept apart: for DCE it is the frame interval while TR is the excitation's
    header_dt, header_source = _tr_from_header(img.header)
    meta.update(header_frame_interval_s=header_dt, header_frame_interval_source=header_source)
    frame_times = np.arange(raw.shape[3]) * (tr_s if tr_s else 1.0)
    if "FrameTimesStart" in sidecar:
        frame_times = sidecar_frame_times(sidecar["FrameTimesStart"], raw.shape[3], path)
        meta["frame_times_source"] = "sidecar FrameTimesStart"
    return Volume4D(data=data, affine=np.asarray(img.affine, dtype=np.float64),
                    frame_times=frame_times, tr=tr_s, te=te_s, source=str(path),
                    header=img.header, meta=meta)


def load_map(path, ref: Volume4D, what: str = "map") -> np.ndarray:
    """Read a 3D float map (e.g. T1 in s) and check it lies on ``ref``'s grid.

    Returns float64; NaN/Inf are kept (voxels without a value), but a map with
    no finite value at all is refused.

    Raises
    ------
    ImageReadError, ShapeError, InputDataError
    """
    path = Path(path)
    img, data = _load_image(path, what)
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.shape != ref.spatial_shape:
        raise ShapeError(f"{path}: the {what} has shape {data.shape} but the series has "
                         f"{ref.spatial_shape}")
    if not np.allclose(img.affine, ref.affine, atol=AFFINE_TOLERANCE_MM):
        raise ShapeError(f"{path}: the {what} is on another grid than the series (affines "
                         "differ); resample it onto the series first")
    if not np.isfinite(data).any():
        raise InputDataError(f"{path}: the {what} has no finite value (all NaN or Inf)")
    return data


def load_mask(path, ref: Volume4D, what: str = "mask") -> np.ndarray:
    """Read a 3D binary mask (0 outside, one positive value inside) on ``ref``'s grid.

    Raises
    ------
    ImageReadError, ShapeError, InputDataError
        Unreadable file, other shape or affine than the series, NaN/Inf
        values, more than one non-zero value or a negative one (a label or
        probability map), or empty mask.
    """
    path = Path(path)
    img, raw = _load_image(path, what)
    data = np.asarray(raw)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ShapeError(f"{path}: {what} must be 3D, got shape {data.shape}")
    if data.shape != ref.spatial_shape:
        raise ShapeError(f"{path}: {what} has shape {data.shape} but the series {ref.source} "
                         f"has spatial shape {ref.spatial_shape}")
    if not np.allclose(img.affine, ref.affine, atol=AFFINE_TOLERANCE_MM):
        raise ShapeError(f"{path}: {what} is on another grid than {ref.source} "
                         "(affines differ); resample it onto the series first")
    finite = np.isfinite(data)
    if not finite.all():
        raise InputDataError(f"{path}: {what} contains {int(np.count_nonzero(~finite))} NaN or "
                             "Inf values; a mask holds 0 outside and non-zero inside")
    values = np.unique(data[data != 0])
    if values.size > 1 or (values.size == 1 and values[0] < 0):
        shown = ", ".join(f"{v:g}" for v in values[:4]) + (", ..." if values.size > 4 else "")
        raise InputDataError(f"{path}: {what} is not binary: its non-zero values are "
                             f"{shown} (a label or probability map?); give a mask with 0 "
                             "outside and one positive value inside")
    mask = np.asarray(data) > 0
    if not mask.any():
        raise InputDataError(f"{path}: {what} is empty (no non-zero voxel)")
    return mask


def load_3d(path, what: str = "image"):
    """Read a 3D image: ``(data float32, affine)`` (used for phantom truth maps and tests)."""
    path = Path(path)
    img, raw = _load_image(path, what)
    return np.asarray(raw, dtype=np.float32), np.asarray(img.affine, dtype=np.float64)


def map_image(data: np.ndarray, ref: Volume4D):
    """A float32 NIfTI image of ``data`` on ``ref``'s grid (affine and geometry kept).

    ``data`` is a 3D map of ``ref``'s spatial shape or a 4D series of its full
    shape (e.g. a noise-degraded copy); a NIfTI ``ref`` lends its header
    (qform/sform codes, units, TR), a DICOM one its affine.
    """
    import nibabel as nib

    data = np.asarray(data, dtype=np.float32)
    if data.shape not in (ref.spatial_shape, tuple(ref.data.shape)):
        raise ShapeError(f"array shape {data.shape} differs from the series {ref.data.shape}")
    nifti_ref = ref.header is not None and isinstance(ref.header, nib.Nifti1Header)
    header = ref.header.copy() if nifti_ref else nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(np.float32)
    img = nib.Nifti1Image(data, ref.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0)
    if nifti_ref:
        img.set_qform(ref.header.get_qform(), code=int(ref.header["qform_code"]))
        img.set_sform(ref.header.get_sform(), code=int(ref.header["sform_code"]))
    else:
        img.set_qform(ref.affine, code=1)
        img.set_sform(ref.affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        if data.ndim == 4 and ref.tr:
            img.header.set_zooms(tuple(img.header.get_zooms()[:3]) + (float(ref.tr),))
    return img


def save_image(img, path) -> None:
    """Write a nibabel image to ``path`` (the suffix chooses .nii or .nii.gz)."""
    import nibabel as nib

    nib.save(img, str(path))


def save_volume(data: np.ndarray, affine: np.ndarray, path, tr: Optional[float] = None,
                dtype=np.float32, stored_dtype=None) -> None:
    """Write an array with ``affine`` (3D masks/maps or 4D series; TR in s for 4D).

    ``stored_dtype`` (e.g. ``np.int16``) stores the values as that integer type
    with the scale slope and intercept nibabel computes, as scanner series are.
    """
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), np.asarray(affine, dtype=np.float64))
    if stored_dtype is not None:
        img.set_data_dtype(stored_dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None and np.ndim(data) == 4:
        zooms = list(img.header.get_zooms()[:3]) + [float(tr)]
        img.header.set_zooms(zooms)
    nib.save(img, str(path))
