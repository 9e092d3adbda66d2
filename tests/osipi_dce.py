"""Readers of the OSIPI DCE reference tables in ``../shared/data/osipi_dce_reference_curves``.

The CSV files hold one test case per row; array fields are numbers separated by
spaces inside one CSV field (as the OSIPI code collection's ``np.fromstring``
converters read them). Column names are stripped of surrounding spaces
(``tcxm_sd_0.01.csv`` writes ``", vp"``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

ROOT = "osipi_dce_reference_curves"


def folder(shared_data: Path, *parts: str) -> Path:
    """A folder of the OSIPI DCE data; skips the test when it is absent."""
    path = shared_data.joinpath(ROOT, *parts)
    if not path.exists():
        pytest.skip(f"OSIPI DCE reference data not found at {path}")
    return path


def read_cases(path: Path) -> list[dict]:
    """Rows of an OSIPI CSV; fields with several numbers become float arrays."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip() for h in rows[0]]
    cases = []
    for row in rows[1:]:
        case = {}
        for key, value in zip(header, row):
            parts = value.split()
            try:
                numbers = np.array(parts, dtype=float)
            except ValueError:
                case[key] = value.strip()
                continue
            case[key] = numbers if numbers.size > 1 else float(numbers[0])
        cases.append(case)
    return cases


def within(measured, reference, atol, rtol) -> np.ndarray:
    """OSIPI's test: ``|measured - reference| <= atol + rtol * |reference|`` (numpy's allclose)."""
    measured, reference = np.asarray(measured, float), np.asarray(reference, float)
    return np.abs(measured - reference) <= atol + rtol * np.abs(reference)
