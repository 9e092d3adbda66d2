"""Finding DICOM series in a folder and reading the per-image attributes they are built from.

Every regular file below a folder is tried with pydicom (header only,
``force=False``): files that are not DICOM are skipped, DICOM files without an
image (DICOMDIR, reports) too. Other entries (named pipes, sockets, devices,
broken links) are skipped by their ``stat``, never opened, so no read can block;
a link to a regular file is followed. Images are grouped by Series Instance UID.
Each 2D image -- a classic single-frame MR file (PS3.3 C.7.6.2 Image Plane, C.8.3 MR Image) or one
frame of an Enhanced MR multi-frame file (PS3.3 C.8.13, per-frame and shared
functional groups) -- becomes one row of a :class:`FrameTable`.
"""

from __future__ import annotations

import datetime as _dt
import os
import stat
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from ..errors import ImageReadError

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder.

    Attributes
    ----------
    uid : str
        Series Instance UID (0020,000E).
    number : str or None
        Series Number (0020,0011) as text.
    description, protocol : str
        Series Description (0008,103E) and Protocol Name (0018,1030).
    n_files : int
        Files holding the series.
    n_images : int
        2D images (frames of multi-frame files counted one by one).
    n_slices : int
        Distinct slice positions.
    n_time_points : int or None
        ``n_images / n_slices`` when that divides evenly.
    multiframe : bool
        Enhanced (multi-frame) storage.
    files : tuple of Path
    """

    uid: str
    number: Optional[str]
    description: str
    protocol: str
    n_files: int
    n_images: int
    n_slices: int
    n_time_points: Optional[int]
    multiframe: bool
    files: tuple = field(repr=False, default=())

    def label(self) -> str:
        """One-line description used in messages."""
        shape = (f"{self.n_slices} slices x {self.n_time_points} time points"
                 if self.n_time_points else f"{self.n_images} images at {self.n_slices} positions")
        num = self.number if self.number is not None else "?"
        return f"series {num} '{self.description}' ({shape}; UID {self.uid})"


# ---------------------------------------------------------------- value parsing
def parse_tm(value) -> float:
    """DICOM TM (``HHMMSS.FFFFFF``, also ``HH:MM:SS``) to seconds after midnight; NaN if absent."""
    if value is None:
        return np.nan
    s = str(value).strip().replace(":", "")
    if not s:
        return np.nan
    try:
        hh = int(s[0:2])
        mm = int(s[2:4]) if len(s) >= 4 else 0
        ss = float(s[4:]) if len(s) > 4 else 0.0
    except ValueError:
        return np.nan
    return hh * 3600.0 + mm * 60.0 + ss


def parse_da(value) -> float:
    """DICOM DA (``YYYYMMDD``) to a day number (proleptic ordinal); NaN if absent."""
    s = str(value).strip().replace(".", "").replace("-", "") if value is not None else ""
    if len(s) < 8:
        return np.nan
    try:
        return float(_dt.date(int(s[:4]), int(s[4:6]), int(s[6:8])).toordinal())
    except ValueError:
        return np.nan


def parse_dt(value) -> tuple[float, float]:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) to (day number, seconds); NaNs if absent."""
    if value is None:
        return np.nan, np.nan
    s = str(value).strip()
    for sign in "+-":
        cut = s.find(sign, 8)
        if cut > 0:
            s = s[:cut]
    return parse_da(s[:8]), parse_tm(s[8:]) if len(s) > 8 else 0.0


def _float(value, default=np.nan) -> float:
    try:
        if value is None or value == "":
            return default
        return float(value)
    except (TypeError, ValueError):
        return default


# Tags of the attributes read for every image: text (DS, IS, DA, TM, DT), and two UL.
IPP, IOP, PIXEL_SPACING = 0x00200032, 0x00200037, 0x00280030
SLOPE, INTERCEPT = 0x00281053, 0x00281052
TEMPORAL_POSITION_ID, INSTANCE_NUMBER = 0x00200100, 0x00200013
ACQ_DATE, CONTENT_DATE, ACQ_TIME, CONTENT_TIME = 0x00080022, 0x00080023, 0x00080032, 0x00080033
ACQ_DATETIME, TRIGGER_TIME, ECHO_TIME = 0x0008002A, 0x00181060, 0x00180081
FRAME_ACQ_DATETIME, TEMPORAL_POSITION_INDEX = 0x00189074, 0x00209128
SLICE_LOCATION, IN_STACK_POSITION = 0x00201041, 0x00209057
BINARY_TAGS = frozenset((TEMPORAL_POSITION_INDEX, IN_STACK_POSITION))
SOP_CLASS, SERIES_UID, ROWS, COLUMNS = 0x00080016, 0x0020000E, 0x00280010, 0x00280011
PER_FRAME_GROUPS = 0x52009230


def _text(item, tag) -> Optional[str]:
    """Value of a text attribute without pydicom's conversion (much faster per file)."""
    if item is None:
        return None
    elem = item.get_item(tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes) and tag in BINARY_TAGS:
        value = item[tag].value  # UL: pydicom decodes it (byte order, implicit VR)
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _num(item, tag, default=np.nan) -> float:
    text = _text(item, tag)
    return _float(text.split("\\")[0] if text else None, default)


def _vector(item, tag, n) -> list:
    """``n`` floats of a multi-valued attribute; NaNs when absent or malformed."""
    text = _text(item, tag)
    values = text.split("\\") if text else []
    if len(values) != n:
        return [np.nan] * n
    return [_float(v) for v in values]


def is_multiframe(ds) -> bool:
    """Enhanced (multi-frame) storage with per-frame functional groups (PS3.3 C.7.6.16)."""
    return _text(ds, SOP_CLASS) == ENHANCED_MR or PER_FRAME_GROUPS in ds


def first_item(seq_owner, keyword):
    """First item of a functional-group sequence, or None."""
    if seq_owner is None:
        return None
    seq = seq_owner.get(keyword)
    return seq[0] if seq else None


# ---------------------------------------------------------------- frame table
FIELDS = ("ipp", "iop", "spacing", "shape", "slope", "intercept", "tpi", "acq_day",
          "acq_sec", "trigger_ms", "content_sec", "instance", "echo_ms", "slice_label")


@dataclass
class FrameTable:
    """Per-image attributes of one series as arrays (one row per 2D image).

    ``file`` indexes :attr:`paths`; ``frame`` is the frame number inside that file
    (0 for single-frame files). Absent values are NaN.
    """

    paths: list
    file: np.ndarray
    frame: np.ndarray
    ipp: np.ndarray          # (n, 3) Image Position (Patient), mm
    iop: np.ndarray          # (n, 6) Image Orientation (Patient)
    spacing: np.ndarray      # (n, 2) Pixel Spacing (row, column), mm
    shape: np.ndarray        # (n, 2) rows, columns
    slope: np.ndarray
    intercept: np.ndarray
    tpi: np.ndarray          # Temporal Position Identifier / Index
    acq_day: np.ndarray      # acquisition date (day number)
    acq_sec: np.ndarray      # acquisition time of day, s
    trigger_ms: np.ndarray   # Trigger Time, ms (enhanced: Temporal Position Time Offset)
    content_sec: np.ndarray  # Content Time, s
    instance: np.ndarray     # Instance Number
    echo_ms: np.ndarray      # Echo Time, ms
    slice_label: np.ndarray  # Slice Location, mm (enhanced: In-Stack Position Number)

    def __len__(self) -> int:
        return int(self.file.shape[0])


def _classic_row(ds):
    day = parse_da(_text(ds, ACQ_DATE) or _text(ds, CONTENT_DATE))
    sec = parse_tm(_text(ds, ACQ_TIME))
    if np.isnan(sec) and _text(ds, ACQ_DATETIME):
        day, sec = parse_dt(_text(ds, ACQ_DATETIME))
    return (
        _vector(ds, IPP, 3), _vector(ds, IOP, 6), _vector(ds, PIXEL_SPACING, 2),
        (int(ds.Rows), int(ds.Columns)),
        _num(ds, SLOPE, 1.0), _num(ds, INTERCEPT, 0.0),
        _num(ds, TEMPORAL_POSITION_ID), day, sec,
        _num(ds, TRIGGER_TIME), parse_tm(_text(ds, CONTENT_TIME)),
        _num(ds, INSTANCE_NUMBER), _num(ds, ECHO_TIME), _num(ds, SLICE_LOCATION),
    )


def _enhanced_rows(ds, path):
    n = int(ds.get("NumberOfFrames") or 1)
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per) != n:
        raise ImageReadError(f"{path}: enhanced DICOM with {n} frames but {len(per)} "
                             "per-frame functional group items")

    def group(item, keyword):
        # A functional group may sit in the per-frame item or in the shared one.
        return first_item(item, keyword) or first_item(shared, keyword)

    shape = (int(ds.Rows), int(ds.Columns))
    content, instance = parse_tm(_text(ds, CONTENT_TIME)), _num(ds, INSTANCE_NUMBER)
    rows = []
    for item in per:
        pos = group(item, "PlanePositionSequence")
        ori = group(item, "PlaneOrientationSequence")
        pm = group(item, "PixelMeasuresSequence")
        pvt = group(item, "PixelValueTransformationSequence")
        fc = first_item(item, "FrameContentSequence")
        tp = group(item, "TemporalPositionSequence")
        echo = group(item, "MREchoSequence")
        day, sec = parse_dt(_text(fc, FRAME_ACQ_DATETIME))
        offset = tp.get("TemporalPositionTimeOffset") if tp is not None else None
        echo_time = echo.get("EffectiveEchoTime") if echo is not None else None
        rows.append((
            _vector(pos, IPP, 3), _vector(ori, IOP, 6), _vector(pm, PIXEL_SPACING, 2),
            shape,
            _num(pvt, SLOPE, 1.0) if pvt is not None else _num(ds, SLOPE, 1.0),
            _num(pvt, INTERCEPT, 0.0) if pvt is not None else _num(ds, INTERCEPT, 0.0),
            _num(fc, TEMPORAL_POSITION_INDEX), day, sec,
            _float(offset) * 1000.0, content, instance, _float(echo_time),
            _num(fc, IN_STACK_POSITION),
        ))
    return rows


def build_frame_table(members) -> FrameTable:
    """Rows for every image of ``members`` (list of :class:`Member`)."""
    paths, file_idx, frame_idx, rows = [], [], [], []
    for f, (path, ds, _) in enumerate(members):
        paths.append(path)
        try:
            new = _enhanced_rows(ds, path) if is_multiframe(ds) else [_classic_row(ds)]
        except ImageReadError:
            raise
        except Exception as exc:  # malformed values
            raise ImageReadError(f"{path}: cannot read the image geometry/timing ({exc})") \
                from None
        rows.extend(new)
        file_idx.extend([f] * len(new))
        frame_idx.extend(range(len(new)))
    cols = list(zip(*rows))
    arrays = {name: np.asarray(col, dtype=np.float64) for name, col in zip(FIELDS, cols)}
    arrays["shape"] = arrays["shape"].astype(np.int64)
    return FrameTable(paths=paths, file=np.asarray(file_idx, dtype=np.int64),
                      frame=np.asarray(frame_idx, dtype=np.int64), **arrays)


# ---------------------------------------------------------------- discovery
@contextmanager
def quiet_pydicom():
    """Silence pydicom's value-validation warnings (over-long UIDs and the like are
    common in scanner exports and harmless here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
        yield


class Member(NamedTuple):
    """One DICOM file: its path, its header, and ``pixel_at``, the byte offset where the
    header parse stopped (the Pixel Data element), so the pixels need no second parse."""

    path: Path
    ds: Any
    pixel_at: int


def _nonblocking(path, flags):
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def open_regular(path):
    """``path`` opened for binary reading; :class:`ImageReadError` unless it is a regular
    file. The open never blocks (``O_NONBLOCK``): a named pipe that took the place of a
    file after discovery is refused instead of waiting for a writer."""
    try:
        fp = open(path, "rb", opener=_nonblocking)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot open the file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fp.fileno()).st_mode):
        fp.close()
        raise ImageReadError(f"{path}: not a regular file")
    return fp


def read_header(path) -> Member:
    """Header of one file (pydicom, up to the pixel data, ``force=False``).

    Raises pydicom's ``InvalidDicomError`` for a file that is not DICOM, and
    :class:`ImageReadError` for one that cannot be opened or is not a regular file.
    """
    import pydicom

    with open_regular(path) as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=False)
        return Member(Path(path), ds, fp.tell())


def read_headers(paths) -> list:
    """A :class:`Member` (header only) for each of the given files."""
    members = []
    for path in paths:
        try:
            members.append(read_header(path))
        except ImageReadError:
            raise
        except Exception as exc:
            raise ImageReadError(f"{path}: cannot read the DICOM file ({exc})") from None
    return members


def _is_regular(entry: os.DirEntry) -> bool:
    try:
        return stat.S_ISREG(entry.stat(follow_symlinks=True).st_mode)
    except OSError:  # broken symbolic link, or the entry vanished
        return False


def _walk(directory: Path, skipped: dict):
    """Regular files below ``directory``, in ``os.walk`` order (sorted, a folder's files
    before its sub-folders). Other entries, and symbolic links to folders, are counted
    in ``skipped["not_regular"]`` from their ``stat`` alone, never opened."""
    pending = [directory]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ImageReadError(f"{folder}: cannot list the folder "
                                 f"({exc.strerror or exc})") from None
        subfolders = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(Path(entry.path))
            elif _is_regular(entry):
                yield Path(entry.path)
            else:
                skipped["not_regular"] += 1
        pending.extend(reversed(subfolders))


def scan(directory) -> tuple[dict, dict]:
    """Read every DICOM header below ``directory``.

    Returns
    -------
    series : dict
        Series Instance UID -> list of :class:`Member` (header only).
    skipped : dict
        Counts of skipped entries: ``not_dicom``, ``no_image``, ``not_regular``
        (named pipes, sockets, devices, broken links: never opened).

    Raises
    ------
    ImageReadError
        The folder does not exist or cannot be listed, or a file that is DICOM
        cannot be parsed.
    """
    from pydicom.errors import InvalidDicomError

    directory = Path(directory)
    if not directory.exists():
        raise ImageReadError(f"{directory}: DICOM folder not found")
    if not directory.is_dir():
        raise ImageReadError(f"{directory}: expected a folder holding a DICOM series")
    series: dict = {}
    skipped = {"not_dicom": 0, "no_image": 0, "not_regular": 0}
    for path in _walk(directory, skipped):
        try:
            member = read_header(path)
        except InvalidDicomError:
            skipped["not_dicom"] += 1
            continue
        except ImageReadError:
            raise
        except Exception as exc:  # pydicom raises many types for damaged files
            raise ImageReadError(f"{path}: DICOM file is corrupt or truncated ({exc})") from None
        ds = member.ds
        uid = _text(ds, SERIES_UID)
        if ROWS not in ds or COLUMNS not in ds or not uid:
            skipped["no_image"] += 1
            continue
        series.setdefault(uid, []).append(member)
    return series, skipped


def summarise(uid: str, members) -> SeriesInfo:
    """A :class:`SeriesInfo` from the headers of one series."""
    ds0 = members[0].ds
    multiframe = any(is_multiframe(m.ds) for m in members)
    try:
        table = build_frame_table(members)
        normal = np.cross(table.iop[0, :3], table.iop[0, 3:])
        along = np.round(table.ipp @ normal, 2)
        n_slices = int(np.unique(along[np.isfinite(along)]).size) or 1
        n_images = len(table)
    except ImageReadError:
        n_images = sum(int(m.ds.get("NumberOfFrames") or 1) for m in members)
        n_slices = 1
    number = ds0.get("SeriesNumber")
    return SeriesInfo(
        uid=uid, number=None if number in (None, "") else str(number),
        description=str(ds0.get("SeriesDescription") or ""),
        protocol=str(ds0.get("ProtocolName") or ""), n_files=len(members),
        n_images=n_images, n_slices=n_slices,
        n_time_points=n_images // n_slices if n_images % n_slices == 0 else None,
        multiframe=multiframe, files=tuple(m.path for m in members))


def _sort_key(info: SeriesInfo):
    try:
        num = int(info.number) if info.number is not None else 10**9
    except ValueError:
        num = 10**9
    return num, info.uid


def find_series(directory) -> list[SeriesInfo]:
    """All DICOM image series below ``directory`` (searched recursively).

    Files may have any names and sit in any sub-folder; files that are not DICOM
    are ignored.

    Parameters
    ----------
    directory : path

    Returns
    -------
    list of SeriesInfo
        Sorted by Series Number, then UID; empty when no DICOM image was found.

    Examples
    --------
    >>> for info in find_series("exam/"):        # doctest: +SKIP
    ...     print(info.label())
    series 5 'ep2d_perf' (20 slices x 60 time points; UID 1.2.826...)
    """
    with quiet_pydicom():
        series, _ = scan(directory)
        return summaries(series)


def summaries(series: dict) -> list[SeriesInfo]:
    """:class:`SeriesInfo` of every series of a :func:`scan`, by Series Number then UID."""
    return sorted((summarise(uid, m) for uid, m in series.items()), key=_sort_key)


__all__ = ["SeriesInfo", "FrameTable", "find_series", "scan", "summarise", "summaries",
           "build_frame_table", "Member", "open_regular", "read_header", "read_headers",
           "quiet_pydicom", "is_multiframe", "first_item", "parse_tm", "parse_da", "parse_dt"]
