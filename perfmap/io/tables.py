"""Small text tables: AIF curves, TSV outputs and manifests (stdlib csv only)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, InputDataError, ShapeError

TEXT_SUFFIXES = (".txt", ".tsv", ".csv", ".dat")

#: First bytes of files that are certainly not text tables, and what they are.
_BINARY_MAGIC = ((b"\x1f\x8b", "gzip-compressed (a .nii.gz image?)"),
                 (b"PK\x03\x04", "a zip archive"),
                 (b"\x5c\x01\x00\x00", "a NIfTI-1 image"),
                 (b"\x00\x00\x01\x5c", "a NIfTI-1 image"))


def is_text_table(path) -> bool:
    """True when ``path`` names a text table (AIF curve, TSV) by its suffix.

    The decision is by name only (``.txt``, ``.tsv``, ``.csv``, ``.dat``,
    any case), so that it never depends on the file's content; a text-named
    file that holds something else is refused by :func:`read_text_file`.

    Examples
    --------
    >>> is_text_table("aif.TSV"), is_text_table("aif.nii.gz"), is_text_table(None)
    (True, False, False)
    """
    if path is None:
        return False
    return str(path).lower().endswith(TEXT_SUFFIXES)


def read_text_file(path, what: str) -> str:
    """The content of a UTF-8 text file, every failure as one :class:`ImageReadError`.

    A UTF-8 byte-order mark is dropped. ``what`` names the file's role in the
    messages (e.g. ``"AIF curve"``, ``"manifest"``).

    Raises
    ------
    ImageReadError
        Missing, a folder, unreadable, binary (NUL bytes or a known binary
        format) or not UTF-8.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.tsv"
    >>> _ = p.write_bytes(b"a\\tb\\n\\xff\\n")
    >>> read_text_file(p, "table")
    Traceback (most recent call last):
    ...
    perfmap.errors.ImageReadError: ...t.tsv: the table is not UTF-8 text (byte 0xff at offset 4)...UTF-8
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ImageReadError(f"{path}: the {what} is a folder, expected a text file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the {what} "
                             f"({exc.strerror or type(exc).__name__})") from None
    for magic, kind in _BINARY_MAGIC:
        if raw.startswith(magic):
            raise ImageReadError(f"{path}: the {what} is {kind}, not a text table")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImageReadError(f"{path}: the {what} is not UTF-8 text (byte "
                             f"0x{raw[exc.start]:02x} at offset {exc.start}); save it as "
                             "UTF-8") from None
    if "\x00" in text:
        raise ImageReadError(f"{path}: the {what} holds NUL bytes; it is a binary file, not "
                             "a text table")
    return text


def read_curve(path, n_frames: int) -> np.ndarray:
    """Read an AIF curve: one value per frame, in concentration units (dR2*, 1/s).

    Accepts one column of values, or two columns (time, value) as written by
    ``STEM_aif.tsv``; a header line with non-numeric text is skipped;
    separators may be tabs, commas or spaces.

    Raises
    ------
    ImageReadError
        Missing, binary or non-UTF-8 file, or non-numeric content.
    ShapeError
        Not exactly ``n_frames`` values.
    InputDataError
        NaN/Inf values, no positive value, or the same value in every frame.
    """
    path = Path(path)
    text = read_text_file(path, "AIF curve")
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.replace(",", " ").replace("\t", " ").split()
        if not fields or line.lstrip().startswith("#"):
            continue
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            if not rows:  # header line
                continue
            raise ImageReadError(f"{path}: line {lineno} is not numeric: {line.strip()!r}") from None
    if not rows:
        raise ImageReadError(f"{path}: the AIF curve file holds no numbers")
    widths = {len(r) for r in rows}
    if len(widths) != 1 or widths.pop() not in (1, 2):
        raise ImageReadError(f"{path}: expected one column (AIF) or two (time, AIF) on every line")
    values = np.asarray([r[-1] for r in rows], dtype=np.float64)
    if values.size != n_frames:
        raise ShapeError(f"{path}: the AIF curve has {values.size} values but the series has "
                         f"{n_frames} frames")
    if not np.all(np.isfinite(values)):
        raise InputDataError(f"{path}: the AIF curve contains NaN or Inf values")
    if not np.any(values > 0):
        raise InputDataError(f"{path}: the AIF curve has no positive value; it must hold "
                             "the arterial concentration (dR2* in 1/s for DSC, mM for DCE)")
    if np.ptp(values) == 0:
        raise InputDataError(f"{path}: the AIF curve is constant ({values[0]:g} in every "
                             "frame): it holds no bolus")
    return values


def format_tsv(header, rows) -> str:
    """Tab-separated text with a header line (floats written with full precision)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else (repr(float(v)) if isinstance(v, (float, np.floating))
                                               else v) for v in row])
    return buf.getvalue()


def read_tsv(path, required=(), what: str = "table") -> list[dict]:
    """Rows of a tab-separated UTF-8 file with a header, as dicts; checks required columns.

    A row with more fields than the header keeps the surplus under the key
    ``None`` and a row with fewer has ``None`` values (:class:`csv.DictReader`);
    callers that need whole rows check for both.

    Raises
    ------
    ImageReadError
        Missing, unreadable, binary or non-UTF-8 file, or invalid quoting.
    InputDataError
        A required column is missing.
    """
    path = Path(path)
    text = read_text_file(path, what)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
        rows = list(reader)
        fields = reader.fieldnames or []
    except csv.Error as exc:
        raise ImageReadError(f"{path}: the {what} is not a valid tab-separated table "
                             f"({exc})") from None
    missing = [c for c in required if c not in fields]
    if missing:
        raise InputDataError(f"{path}: missing column(s) {', '.join(missing)} "
                             f"(found: {', '.join(fields) or 'none'})")
    return rows
