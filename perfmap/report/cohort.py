"""Read and validate a cohort table (``cohort.tsv``) for the grading report.

``perfmap batch`` writes ``DIR/cohort.tsv`` with one row per subject and
method (DESIGN section 3)::

    subject  grade  method  status  error  seconds  cbf_ratio  cbv_ratio  mtt_ratio

Extra columns are kept; a numeric ``snr`` column marks the rows of a noise
robustness study (the same subjects re-processed after adding noise, PHAE
paper Fig. 5). The reader uses only the standard :mod:`csv` module.

Conventions
-----------
- Required columns: ``subject``, ``grade``, ``method``, ``status``. The
  ``error`` and ``seconds`` columns and the ratio columns are optional; a
  metric column is required only when a report asks for it.
- ``grade`` is ``HGG``/``LGG`` (any case) or a WHO grade ``1``-``4`` /
  ``I``-``IV``: grades 1-2 are low grade (LGG), 3-4 high grade (HGG).
  Anything else, including an empty cell, is an error naming the file, the
  line and the value.
- Numeric cells (``seconds``, ``*_ratio``, ``snr`` and any extra column whose
  every non-empty cell is a number) parse as floats; empty cells and
  ``nan``/``na``/``n/a``/``none`` become NaN. A non-numeric value in a known
  numeric column is an error.
- ``status`` is compared case-insensitively; only ``ok`` rows are graded.
- A subject has one grade: conflicting grades are an error, and so is the same
  (subject, method, snr) appearing twice.
- Blank lines and lines starting with ``#`` are skipped. A UTF-8 byte-order
  mark (spreadsheet export) is accepted.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from ..errors import ImageReadError, InputDataError

#: Columns written by ``perfmap batch``, in order.
COHORT_COLUMNS = (
    "subject", "grade", "kind", "method", "status", "error", "seconds",
    "cbf_ratio", "cbv_ratio", "mtt_ratio",
)
#: Columns a cohort table must have.
REQUIRED_COLUMNS = ("subject", "grade", "method", "status")
#: Columns that always hold numbers (NaN when empty).
NUMERIC_COLUMNS = ("seconds", "cbf_ratio", "cbv_ratio", "mtt_ratio", "snr")
#: Metric columns that ``perfmap report --metric`` accepts by default.
METRICS = ("cbf_ratio", "cbv_ratio", "mtt_ratio")

_MISSING = {"", "nan", "na", "n/a", "none", "null", "-"}
_GRADES = {
    "hgg": "HGG", "lgg": "LGG",
    "1": "LGG", "2": "LGG", "3": "HGG", "4": "HGG",
    "i": "LGG", "ii": "LGG", "iii": "HGG", "iv": "HGG",
}


def normalize_grade(value: Any, *, where: str = "cohort") -> str:
    """Map a grade cell to ``"HGG"`` or ``"LGG"``.

    Parameters
    ----------
    value : str or int
        ``HGG``/``LGG`` (case-insensitive) or a WHO grade ``1``-``4`` /
        ``I``-``IV`` (WHO 2016, Louis et al. 2016): 1-2 map to LGG, 3-4 to HGG.
        A ``WHO`` or ``grade`` prefix is allowed (``"WHO IV"``, ``"grade 2"``).
    where : str
        Location used in the error message (file and line).

    Returns
    -------
    str
        ``"HGG"`` or ``"LGG"``.

    Raises
    ------
    InputDataError
        For any other value.

    Examples
    --------
    >>> normalize_grade("iv"), normalize_grade(2), normalize_grade("hgg")
    ('HGG', 'LGG', 'HGG')
    """
    text = str(value).strip().lower()
    for prefix in ("who grade", "who", "grade"):
        if text.startswith(prefix):
            text = text[len(prefix):].strip()
            break
    grade = _GRADES.get(text)
    if grade is None:
        raise InputDataError(
            f"{where}: grade {str(value)!r} is not recognised; use HGG/LGG or a WHO "
            "grade 1-4 (I-IV)."
        )
    return grade


def _parse_float(text: Any) -> Optional[float]:
    """Float value of a cell, NaN for a missing value, None if not a number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if text is None:
        return math.nan
    s = str(text).strip()
    if s.lower() in _MISSING:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return None


class Selection(NamedTuple):
    """The rows of one method at one SNR level, split for grading.

    ``scores``/``labels`` (True = HGG)/``subjects`` are the graded rows;
    ``seconds`` their finite processing times; ``excluded`` lists
    ``(subject, reason)`` for rows left out, ``n_status`` of them because the
    status is not ``ok`` and ``n_nonfinite`` because the metric is NaN/Inf.
    """

    scores: np.ndarray
    labels: np.ndarray
    subjects: tuple
    seconds: np.ndarray
    excluded: list
    n_status: int
    n_nonfinite: int


@dataclass
class Cohort:
    """A validated cohort table.

    Attributes
    ----------
    rows : list of dict
        One dict per row with ``subject``, ``grade`` (``"HGG"``/``"LGG"``),
        ``method``, ``status`` (lower case), ``error`` (str), ``seconds``
        (float, NaN if absent) and every other column; numeric columns hold
        floats (NaN for missing cells), the rest strings.
    columns : tuple of str
        Column names in file order (plus ``error``/``seconds`` if they were
        absent and got filled in).
    source : str
        The file the table came from (``"<memory>"`` for in-memory rows); used
        in error messages.
    """

    rows: list
    columns: tuple
    source: str = "<memory>"
    numeric_columns: tuple = field(default=())

    @property
    def name(self) -> str:
        """Short name of the source for messages (the file name)."""
        return Path(self.source).name if self.source != "<memory>" else self.source

    @property
    def methods(self) -> list[str]:
        """Method names in order of first appearance."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.setdefault(row["method"], None)
        return list(seen)

    @property
    def has_snr(self) -> bool:
        """True when at least one row carries a finite ``snr`` value."""
        return "snr" in self.columns and any(
            math.isfinite(row.get("snr", math.nan)) for row in self.rows
        )

    @property
    def snr_levels(self) -> list[float]:
        """Distinct finite SNR values, ascending."""
        if "snr" not in self.columns:
            return []
        return sorted({row["snr"] for row in self.rows if math.isfinite(row["snr"])})

    def metrics(self) -> list[str]:
        """Numeric columns usable as a grading metric (``*_ratio`` and extras)."""
        skip = {"seconds", "snr"}
        return [c for c in self.numeric_columns if c not in skip]

    def default_snr(self) -> Optional[float]:
        """SNR level of the main analysis.

        ``None`` (the rows without an SNR) unless every row has one (a pure
        robustness cohort); then the highest level.
        """
        if not self.has_snr or any(math.isnan(r.get("snr", math.nan)) for r in self.rows):
            return None
        return self.snr_levels[-1]

    def select(self, method: str, metric: str, snr: Optional[float] = None) -> Selection:
        """Rows of ``method`` at SNR level ``snr`` (``None``: rows without an SNR).

        Rows whose status is not ``ok`` or whose ``metric`` is not finite are
        excluded and counted (see :class:`Selection`).
        """
        self.require_metric(metric)
        scores, labels, subjects, seconds, excluded = [], [], [], [], []
        n_status = n_nonfinite = 0
        for row in self.rows:
            row_snr = row.get("snr", math.nan)
            if row["method"] != method or (
                    not math.isnan(row_snr) if snr is None else row_snr != snr):
                continue
            if row["status"] != "ok":
                n_status += 1
                excluded.append((row["subject"], f"status {row['status'] or 'empty'}"
                                 + (f": {row['error']}" if row.get("error") else "")))
            elif not math.isfinite(row[metric]):
                n_nonfinite += 1
                excluded.append((row["subject"], f"non-finite {metric}"))
            else:
                scores.append(row[metric])
                labels.append(row["grade"] == "HGG")
                subjects.append(row["subject"])
                if math.isfinite(row.get("seconds", math.nan)):
                    seconds.append(row["seconds"])
        return Selection(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool),
                         tuple(subjects), np.asarray(seconds, dtype=np.float64), excluded,
                         n_status, n_nonfinite)

    def require_metric(self, metric: str) -> None:
        """Raise :class:`InputDataError` unless ``metric`` is a numeric column."""
        if metric not in self.columns:
            raise InputDataError(
                f"{self.name} has no column {metric!r}; available metrics: "
                f"{', '.join(self.metrics()) or 'none'}."
            )
        if metric not in self.numeric_columns:
            raise InputDataError(f"{self.name}: column {metric!r} does not hold numbers.")


def cohort_from_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    source: str = "<memory>",
    columns: Optional[Sequence[str]] = None,
    line_numbers: Optional[Sequence[int]] = None,
) -> Cohort:
    """Validate rows given as mappings (e.g. from ``perfmap batch``).

    Parameters
    ----------
    rows : iterable of mapping
        Each with at least ``subject``, ``grade``, ``method`` and ``status``.
    source : str
        Name used in error messages.
    columns : sequence of str, optional
        Column order; by default the keys of the first row.
    line_numbers : sequence of int, optional
        File line of each row, for messages (default: the row's position + 1).

    Returns
    -------
    Cohort

    Raises
    ------
    InputDataError
        On a missing column, an unknown grade, a non-numeric value in a numeric
        column, an empty subject or method, conflicting grades for a subject,
        or a duplicated (subject, method, snr) row.
    """
    rows = [dict(r) for r in rows]
    name = Path(source).name if source != "<memory>" else source
    if columns is None:
        columns = list(rows[0]) if rows else list(REQUIRED_COLUMNS)
    columns = [str(c) for c in columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputDataError(
            f"{name} lacks the column(s) {', '.join(missing)}; a cohort table is "
            f"tab-separated with a header {', '.join(COHORT_COLUMNS)}."
        )
    if not rows:
        raise InputDataError(f"{name} has a header but no data rows.")
    if line_numbers is None:
        line_numbers = [i + 2 for i in range(len(rows))]
    for extra in ("error", "seconds"):
        if extra not in columns:
            columns.append(extra)

    # Extra columns are numeric when every non-missing cell is a number.
    known = set(REQUIRED_COLUMNS) | {"error"}
    numeric = [c for c in columns if c in NUMERIC_COLUMNS
               or c.endswith(("_ratio", "_mean", "_ratio_curve"))]
    for col in columns:
        if col in known or col in numeric:
            continue
        cells = [r.get(col) for r in rows]
        parsed = [_parse_float(v) for v in cells]
        if all(p is not None for p in parsed) and any(
            not math.isnan(p) for p in parsed
        ):
            numeric.append(col)

    out = []
    grade_of: dict[str, tuple[str, int]] = {}
    seen: dict[tuple, int] = {}
    for row, line in zip(rows, line_numbers):
        where = f"{name} line {line}"
        clean: dict[str, Any] = {}
        for col in columns:
            value = row.get(col, "")
            if col in numeric:
                number = _parse_float(value)
                if number is None:
                    raise InputDataError(
                        f"{where}: column {col!r} holds {str(value)!r}, which is not a number."
                    )
                clean[col] = number
            else:
                clean[col] = "" if value is None else str(value).strip()
        for col in ("subject", "method"):
            if not clean[col]:
                raise InputDataError(f"{where}: the {col} cell is empty.")
        clean["grade"] = normalize_grade(clean["grade"], where=where)
        clean["status"] = clean["status"].lower()
        subject = clean["subject"]
        if subject in grade_of and grade_of[subject][0] != clean["grade"]:
            first_grade, first_line = grade_of[subject]
            raise InputDataError(
                f"{where}: subject {subject!r} is {clean['grade']} here but "
                f"{first_grade} on line {first_line}."
            )
        grade_of.setdefault(subject, (clean["grade"], line))
        snr = clean.get("snr", math.nan)
        key = (subject, clean["method"], None if math.isnan(snr) else snr)
        if key in seen:
            level = "" if key[2] is None else f" at SNR {snr:g}"
            raise InputDataError(
                f"{where}: subject {subject!r} with method {clean['method']!r}{level} "
                f"already appears on line {seen[key]}."
            )
        seen[key] = line
        out.append(clean)
    return Cohort(rows=out, columns=tuple(columns), source=str(source),
                  numeric_columns=tuple(numeric))


def read_cohort(path) -> Cohort:
    """Read and validate a tab-separated cohort table.

    Parameters
    ----------
    path : str or path-like
        ``cohort.tsv`` as written by ``perfmap batch`` (see the module notes).

    Returns
    -------
    Cohort

    Raises
    ------
    ImageReadError
        If the file is missing, is a folder, or is not UTF-8 text.
    InputDataError
        If the header or a row is invalid (see :func:`cohort_from_rows`).

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "cohort.tsv")
    >>> with open(p, "w") as f:
    ...     _ = f.write("subject\\tgrade\\tmethod\\tstatus\\tcbf_ratio\\n"
    ...                 "s1\\tIV\\tosvd\\tok\\t2.1\\n")
    >>> c = read_cohort(p)
    >>> c.rows[0]["grade"], c.rows[0]["cbf_ratio"]
    ('HGG', 2.1)
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"cohort table {path} does not exist.")
    if path.is_dir():
        raise ImageReadError(f"cohort table {path} is a folder, not a file.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            lines = [(n, line) for n, line in enumerate(fh, start=1)]
    except UnicodeDecodeError as exc:
        raise ImageReadError(f"cohort table {path} is not UTF-8 text ({exc.reason}).") from None
    except OSError as exc:
        raise ImageReadError(f"cohort table {path} could not be read ({exc.strerror}).") from None

    content = [(n, line) for n, line in lines
               if line.strip() and not line.lstrip().startswith("#")]
    if not content:
        raise InputDataError(f"{path.name} is empty; expected a tab-separated header line.")
    reader = csv.reader((line for _, line in content), delimiter="\t")
    parsed = list(reader)
    header = [h.strip() for h in parsed[0]]
    if len(header) == 1 and "," in header[0]:
        raise InputDataError(
            f"{path.name} looks comma-separated; a cohort table must be tab-separated."
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputDataError(f"{path.name}: the header repeats column(s) {', '.join(dupes)}.")
    if "" in header:
        raise InputDataError(f"{path.name}: the header has an empty column name.")
    rows, numbers = [], []
    for (line, _), cells in zip(content[1:], parsed[1:]):
        if len(cells) != len(header):
            raise InputDataError(
                f"{path.name} line {line}: {len(cells)} fields, but the header has "
                f"{len(header)}."
            )
        rows.append(dict(zip(header, cells)))
        numbers.append(line)
    return cohort_from_rows(rows, source=str(path), columns=header, line_numbers=numbers)
