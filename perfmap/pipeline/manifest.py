"""The tables of ``perfmap batch``: the manifest in, the cohort table out.

A manifest is a tab-separated table with a header (DESIGN section 3)::

    subject  input  [aif]  [mask]  [tumour]  [ref]  [grade]  [te]  [tr]  [extra ...]

- ``subject`` names the subject; it becomes a folder name, so it may not be
  empty, start with a dot or hold a path separator. Subjects are unique.
- ``input`` is a 4D NIfTI or a DICOM folder. ``aif`` and ``mask`` are a path
  or ``auto`` (also when empty); ``tumour`` and ``ref`` are optional masks.
  Relative paths are relative to the folder of the manifest.
- ``grade`` (optional) is HGG/LGG or a WHO grade 1-4 / I-IV
  (:func:`perfmap.report.cohort.normalize_grade`); the original text is kept.
- ``te`` and ``tr`` (optional) are seconds and override the headers.
- Any other column (e.g. ``snr`` from ``perfmap simulate``) is carried into
  ``cohort.tsv`` unchanged; it may not reuse a cohort column name.

Everything is checked before a batch starts: :func:`read_manifest` raises one
:class:`~perfmap.errors.PerfmapError` whose message names the manifest, the
row and the problem, so a bad manifest stops the batch with nothing written.
Files are checked for existence and readability only; a corrupt image is
found when its subject runs and is recorded as a failed subject.

The batch writes ``DIR/cohort.tsv`` (:func:`write_cohort`, atomically) with
the columns of :data:`perfmap.report.cohort.COHORT_COLUMNS` followed by the
manifest's extra columns, one row per subject and method; the maps of a pair
are in ``DIR/<subject>/<method>/`` (:func:`pair_dir`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..errors import ImageReadError, InputDataError, PerfmapError
from ..io import nifti, tables
from ..io.outputs import write_text_atomic
from ..report.cohort import COHORT_COLUMNS, normalize_grade

#: Columns every manifest must have.
REQUIRED_COLUMNS = ("subject", "input")
#: Optional columns with a meaning for the batch.
OPTIONAL_COLUMNS = ("aif", "mask", "tumour", "ref", "grade", "te", "tr", "t1", "vfa")
#: Known columns, in the order :func:`write_manifest` writes them.
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


@dataclass(frozen=True)
class ManifestEntry:
    """One subject of a manifest, paths resolved to absolute strings.

    Attributes
    ----------
    subject : str
        Subject identifier (also the name of its output folder).
    input : str
        The 4D series (NIfTI file or DICOM folder).
    aif, mask : str
        ``"auto"`` or a path.
    tumour, ref : str or None
        Tumour ROI and reference (NAWM) ROI masks.
    t1, vfa : str or None
        DCE: a T1 map (s), or a variable-flip-angle series (NIfTI with a
        ``FlipAngle`` list in its sidecar, or a DICOM folder).
    grade : str
        The grade as written in the manifest (``""`` when absent).
    te, tr : float or None
        Echo and repetition time in seconds (``None``: from the headers).
    extra : dict of str to str
        The other columns, carried into ``cohort.tsv``.
    row : int
        Data row number in the manifest (1 = first row after the header).
    """

    subject: str
    input: str
    aif: str = "auto"
    mask: str = "auto"
    tumour: Optional[str] = None
    ref: Optional[str] = None
    grade: str = ""
    te: Optional[float] = None
    tr: Optional[float] = None
    t1: Optional[str] = None
    vfa: Optional[str] = None
    extra: dict = field(default_factory=dict)
    row: int = 0


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: its entries, extra column names and source file."""

    entries: tuple
    extra_columns: tuple
    source: str

    @property
    def subjects(self) -> list[str]:
        """Subject identifiers in manifest order."""
        return [e.subject for e in self.entries]


def _check_subject(name: str, where: str) -> None:
    if not name:
        raise InputDataError(f"{where}: the subject cell is empty")
    if name.startswith(".") or any(c in name for c in "/\\") or \
            any(ord(c) < 32 for c in name):
        raise InputDataError(f"{where}: subject {name!r} cannot be used as a folder name "
                             "(no path separators, control characters or leading dot)")


def _resolve(base: Path, value: str, column: str, where: str, *, allow_dir: bool = False) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    path = Path(os.path.abspath(path))
    if not path.exists():
        raise ImageReadError(f"{where}: the {column} file {path} does not exist")
    if path.is_dir() and not allow_dir:
        raise ImageReadError(f"{where}: the {column} path {path} is a folder, expected a file")
    if not os.access(path, os.R_OK):
        raise ImageReadError(f"{where}: the {column} file {path} is not readable")
    return str(path)


def _seconds(value: str, column: str, where: str) -> Optional[float]:
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise InputDataError(f"{where}: {column} {value!r} is not a number of seconds") from None
    if not (math.isfinite(number) and number > 0):
        raise InputDataError(f"{where}: {column} must be a positive number of seconds, "
                             f"got {value!r}")
    return number


def read_manifest(path) -> Manifest:
    """Read and validate a batch manifest.

    Parameters
    ----------
    path : str or path-like
        Tab-separated manifest (see the module notes).

    Returns
    -------
    Manifest

    Raises
    ------
    ImageReadError
        The manifest or a file it names is missing or unreadable.
    InputDataError
        A missing or clashing column, a malformed or duplicated row, an empty
        or unusable subject name, an unknown grade, or a bad TE/TR.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, "s1.nii.gz"), "wb").close()
    >>> with open(os.path.join(d, "manifest.tsv"), "w") as f:
    ...     _ = f.write("subject\\tinput\\tgrade\\tsite\\ns1\\ts1.nii.gz\\tIV\\tA\\n")
    >>> m = read_manifest(os.path.join(d, "manifest.tsv"))
    >>> m.subjects, m.entries[0].aif, m.extra_columns
    (['s1'], 'auto', ('site',))
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"manifest {path} does not exist"
                             if not path.exists() else f"manifest {path} is not a file")
    rows = tables.read_tsv(path, what="manifest")
    if rows and any(k and k.startswith("\ufeff") for k in rows[0]):
        rows = [{(k.lstrip("\ufeff") if k else k): v for k, v in r.items()} for r in rows]
    columns = [k for k in (rows[0] if rows else _header(path)) if k is not None]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputDataError(f"manifest {path} lacks the column(s) {', '.join(missing)} "
                             f"(found: {', '.join(columns) or 'none'}); it needs a tab-separated "
                             "header with at least subject and input")
    clash = [c for c in columns if c in COHORT_COLUMNS and c not in KNOWN_COLUMNS]
    if clash:
        raise InputDataError(f"manifest {path}: column(s) {', '.join(clash)} would clash with "
                             "the cohort.tsv columns of the same name; rename them")
    if not rows:
        raise InputDataError(f"manifest {path} has a header but no subjects")
    extras = tuple(c for c in columns if c not in KNOWN_COLUMNS)
    base = path.resolve().parent
    entries, seen = [], {}
    for number, raw in enumerate(rows, start=1):
        where = f"manifest {path} row {number}"
        if None in raw:
            raise InputDataError(f"{where}: more fields than the header has")
        if any(v is None for v in raw.values()):
            raise InputDataError(f"{where}: fewer fields than the header has")
        row = {k: v.strip() for k, v in raw.items()}
        subject = row["subject"]
        _check_subject(subject, where)
        where = f"{where} (subject {subject})"
        if subject in seen:
            raise InputDataError(f"{where}: subject {subject!r} already appears on row "
                                 f"{seen[subject]}; subjects must be unique")
        seen[subject] = number
        if not row["input"]:
            raise InputDataError(f"{where}: the input cell is empty")
        grade = row.get("grade", "")
        if grade:
            normalize_grade(grade, where=where)
        fields = {"subject": subject, "row": number, "grade": grade,
                  "input": _resolve(base, row["input"], "input", where, allow_dir=True),
                  "te": _seconds(row.get("te", ""), "te", where),
                  "tr": _seconds(row.get("tr", ""), "tr", where),
                  "extra": {c: row[c] for c in extras}}
        for column in ("aif", "mask"):
            value = row.get(column, "")
            fields[column] = "auto" if value.lower() in ("", "auto") else \
                _resolve(base, value, column, where)
        for column in ("tumour", "ref", "t1"):
            value = row.get(column, "")
            fields[column] = _resolve(base, value, column, where) if value else None
        value = row.get("vfa", "")
        fields["vfa"] = _resolve(base, value, "vfa", where, allow_dir=True) if value else None
        entries.append(ManifestEntry(**fields))
    return Manifest(entries=tuple(entries), extra_columns=extras, source=str(path))


def _header(path: Path) -> list[str]:
    """Column names of a table with no data rows."""
    try:
        first = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageReadError(f"manifest {path} cannot be read ({exc})") from None
    return [c.strip() for c in first[0].split("\t")] if first else []


def _relative(value: Optional[str], base: Path) -> str:
    if value is None:
        return ""
    if value == "auto":
        return "auto"
    try:
        return os.path.relpath(value, base)
    except ValueError:  # another drive (Windows)
        return str(value)


def format_manifest(entries: Sequence[ManifestEntry], extra_columns: Sequence[str],
                    folder) -> str:
    """Manifest text for ``entries``, paths relative to ``folder``.

    Parameters
    ----------
    entries : sequence of ManifestEntry
        The subjects.
    extra_columns : sequence of str
        Names of the extra columns written after the known ones (values from
        each entry's ``extra``; missing ones are empty).
    folder : path
        Folder the manifest will be written to.

    Returns
    -------
    str
        Tab-separated text that :func:`read_manifest` reads back.
    """
    base = Path(os.path.abspath(folder))
    header = list(KNOWN_COLUMNS) + list(extra_columns)
    rows = []
    for e in entries:
        rows.append([e.subject, _relative(e.input, base), _relative(e.aif, base),
                     _relative(e.mask, base), _relative(e.tumour, base),
                     _relative(e.ref, base), e.grade,
                     "" if e.te is None else repr(float(e.te)),
                     "" if e.tr is None else repr(float(e.tr))]
                    + [e.extra.get(c, "") for c in extra_columns])
    return tables.format_tsv(header, rows)


# ------------------------------------------------------------------ batch folder and cohort table

#: Cohort table written into a batch folder.
COHORT_NAME = "cohort.tsv"
#: ROI name of the manifest's ``tumour`` column in the compute JSON.
TUMOUR_ROI = "tumour"
#: Ratio columns of the cohort table, read from the tumour ROI of the JSON.
RATIO_COLUMNS = ("cbf_ratio", "cbv_ratio", "mtt_ratio")


def pair_dir(out_dir, subject: str, method: str) -> Path:
    """Output folder of one subject and method."""
    return Path(out_dir) / subject / method


def _float(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def row_from_provenance(known: dict, provenance: dict, ratios=RATIO_COLUMNS,
                        settings=()) -> dict:
    """A cohort row (status ok): the ``known`` cells plus the ``ratios`` of a compute JSON
    and its ``settings`` (``provenance[name]["method"]``, e.g. the leakage correction)."""
    row = dict(known)
    for name in settings:
        entry = provenance.get(name)
        row[name] = entry.get("method", "") if isinstance(entry, dict) else ""
    stats = (provenance.get("rois") or {}).get(TUMOUR_ROI) or {}
    row.update(status="ok", error="",
               seconds=_float((provenance.get("timings") or {}).get("total_s")))
    for key in ratios:
        if key.endswith("_curve"):           # the deconvolved ROI-mean-curve estimator
            row[key] = _float((stats.get("mean_curve") or {}).get(key[:-len("_curve")]))
        else:
            row[key] = _float(stats.get(key))
    return row


def failed_row(known: dict, message: str, seconds: float = math.nan,
               ratios=RATIO_COLUMNS) -> dict:
    """A cohort row: the ``known`` cells, status ``failed`` and a one-line error message."""
    row = dict(known)
    row.update(status="failed", error=" ".join(str(message).split()), seconds=seconds)
    for key in ratios:
        row[key] = math.nan
    return row


def write_cohort(path, columns: Sequence[str], rows: Iterable[Optional[dict]]) -> Path:
    """Write ``cohort.tsv`` atomically; ``None`` rows (not finished) are left out."""
    path = Path(path)
    body = [[row.get(c, "") for c in columns] for row in rows if row is not None]
    write_text_atomic(path, tables.format_tsv(list(columns), body))
    return path


def base_row(entry: ManifestEntry, method: str, kind: str = "dsc") -> dict:
    """The cohort cells of a subject and method known before the run."""
    row = {c: "" for c in COHORT_COLUMNS}
    row.update(subject=entry.subject, grade=entry.grade, kind=kind, method=method,
               seconds=math.nan)
    row.update(entry.extra)
    return row


class Thumbnails(list):
    """``(subject, 2D slice)`` pairs of one method's CBF maps, with the method's name.

    A list, so code that takes the pairs keeps working; ``method`` is ``None``
    when there are no maps.
    """

    def __init__(self, items=(), method: Optional[str] = None):
        super().__init__(items)
        self.method = method


def _inside(folder: Path, path: Path) -> bool:
    """True when ``path`` resolves (links followed) to a place inside ``folder``."""
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _ok_pairs(rows: list) -> list:
    """``(subject, method)`` of the complete rows whose status is ok (ragged rows skipped)."""
    pairs = []
    for row in rows:
        cells = [row.get("subject"), row.get("method"), row.get("status")]
        if None in row or not all(isinstance(c, str) and c.strip() for c in cells):
            continue
        if cells[2].strip().lower() == "ok":
            pairs.append((cells[0].strip(), cells[1].strip()))
    return pairs


def _cbf_slice(base: Path, subject: str, method: str):
    """The mid-slice of the pair's CBF map if it lies inside ``base``, else None."""
    folder = pair_dir(base, subject, method)
    if not _inside(base, folder) or not folder.is_dir():
        return None
    found = sorted(p for p in folder.glob("*_cbf.nii.gz") if _inside(base, p))
    if not found:
        return None
    try:
        data, _ = nifti.load_3d(found[0], "CBF map")
    except PerfmapError:
        return None
    return data[:, :, data.shape[2] // 2] if data.ndim == 3 else None


def collect_thumbnails(cohort_path, method: Optional[str] = None,
                       max_subjects: int = 48) -> Thumbnails:
    """Mid-slice CBF maps of a batch folder's subjects, for the report montage.

    Only maps whose resolved path lies inside the cohort table's folder are
    read: a subject cell such as ``../other`` or a link out of the folder is
    skipped, so a report never embeds an image from elsewhere. Rows that are
    ragged or not ok are skipped too; a table that cannot be read gives no
    thumbnails (the report itself then says what is wrong with it).

    Parameters
    ----------
    cohort_path : path
        ``DIR/cohort.tsv``; maps are looked up in ``DIR/<subject>/<method>/``.
    method : str, optional
        Method whose maps are shown (default: the first method with maps).
    max_subjects : int
        At most this many subjects (table order).

    Returns
    -------
    Thumbnails
        ``(subject, 2D slice)`` pairs and the ``method`` they show; empty
        when the folder holds no maps.
    """
    cohort_path = Path(cohort_path)
    try:
        rows = tables.read_tsv(cohort_path, required=("subject", "method", "status"),
                               what="cohort table")
    except PerfmapError:
        return Thumbnails()
    base = cohort_path.parent
    pairs = _ok_pairs(rows)
    methods = list(dict.fromkeys(m for _, m in pairs))
    if method is not None:
        methods = [m for m in methods if m == method]
    for name in methods:
        images = []
        for subject in dict.fromkeys(s for s, m in pairs if m == name):
            image = _cbf_slice(base, subject, name)
            if image is not None:
                images.append((subject, image))
            if len(images) >= max_subjects:
                break
        if images:
            return Thumbnails(images, name)
    return Thumbnails()
