"""Small text tables: AIF curves, TSV outputs and manifests (stdlib csv only)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, InputDataError, ShapeError

TEXT_SUFFIXES = (".txt", ".tsv", ".csv", ".dat")


def is_text_table(path) -> bool:
    return str(path).lower().endswith(TEXT_SUFFIXES)


def read_curve(path, n_frames: int) -> np.ndarray:
    """Read an AIF curve: one value per frame, in concentration units (dR2*, 1/s).

    Accepts one column of values, or two columns (time, value) as written by
    ``STEM_aif.tsv``; a header line with non-numeric text is skipped;
    separators may be tabs, commas or spaces.

    Raises
    ------
    ImageReadError
        Missing file or non-numeric content.
    ShapeError
        Not exactly ``n_frames`` values.
    InputDataError
        NaN/Inf values.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the AIF curve ({exc.strerror})") from None
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


def read_tsv(path, required=()) -> list[dict]:
    """Rows of a tab-separated file with a header, as dicts; checks required columns."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            rows = list(reader)
            fields = reader.fieldnames or []
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the table ({exc.strerror})") from None
    except csv.Error as exc:
        raise ImageReadError(f"{path}: not a valid tab-separated table ({exc})") from None
    missing = [c for c in required if c not in fields]
    if missing:
        raise InputDataError(f"{path}: missing column(s) {', '.join(missing)} "
                             f"(found: {', '.join(fields) or 'none'})")
    return rows
