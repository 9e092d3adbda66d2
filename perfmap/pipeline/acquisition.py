"""Plausibility of acquisition values, with their units, per kind.

A value outside its physical range is almost always a unit mistake (a sidecar
``"RepetitionTime": 1500`` in milliseconds where seconds are expected, or a
header whose ``xyzt_units`` say msec for a value in seconds), which would scale
every map by 1000 without a word. Each check names the value, where it came
from, the accepted range, the likely unit and the option that overrides it.

Accepted ranges (README "Accepted acquisition values"):

============  ==================  ===========================================
kind          value               range
============  ==================  ===========================================
dsc           TE                  0.001-0.2 s (1-200 ms)
dsc           TR / frame interval 0.1-10 s
dce           TR (excitation)     0.0005-0.05 s (0.5-50 ms)
dce           flip angle          1-90 deg
dce           frame interval      0.1-120 s
dce           T10 (one value)     0.05-10 s
all           voxel size          0.01-50 mm
============  ==================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ParameterError

#: Voxel edge lengths accepted in mm.
VOXEL_MM = (0.01, 50.0)


@dataclass(frozen=True)
class Range:
    """Accepted interval of one acquisition value (``unit``: the unit of lo and hi)."""

    name: str
    lo: float
    hi: float
    unit: str
    option: str


DSC_TE = Range("echo time TE", 0.001, 0.2, "s", "--te")
DSC_TR = Range("repetition time TR (the frame interval)", 0.1, 10.0, "s", "--tr")
DSC_TE2 = Range("echo time of the second echo", 0.001, 0.2, "s", "--te2")
DCE_TR = Range("repetition time TR of the excitation", 0.0005, 0.05, "s", "--tr")
DCE_FLIP = Range("flip angle", 1.0, 90.0, "deg", "--flip-angle")
DCE_FRAME = Range("frame interval", 0.1, 120.0, "s", "--frame-interval")
T10 = Range("T10", 0.05, 10.0, "s", "--t10")


def _unit_hint(value: float, rng: Range) -> str:
    """A guess at the unit mistake behind an implausible value, with the fix."""
    for factor, unit in ((1e-3, "milliseconds"), (1e-6, "microseconds"), (1e3, "kiloseconds")):
        if rng.lo <= value * factor <= rng.hi:
            if factor > 1:
                return (f"; it looks like seconds read as milliseconds: give "
                        f"{rng.option} {value * factor:g}")
            return f"; it looks like {unit}: give {rng.option} {value * factor:g}"
    return f"; give {rng.option} with the value in {rng.unit}"


def check_value(value: Optional[float], rng: Range, source: str, origin: str) -> None:
    """Raise :class:`ParameterError` unless ``value`` lies in ``rng`` (None is left alone).

    Examples
    --------
    >>> check_value(1.5, DSC_TR, "sub.nii.gz", "sidecar RepetitionTime")
    >>> check_value(1500, DSC_TR, "sub.nii.gz", "sidecar RepetitionTime")
    Traceback (most recent call last):
    ...
    perfmap.errors.ParameterError: sub.nii.gz: repetition time TR (the frame interval) 1500 s \
(from sidecar RepetitionTime) is implausible (accepted 0.1-10 s); it looks like milliseconds: \
give --tr 1.5
    """
    if value is None:
        return
    if not (np.isfinite(value) and rng.lo <= value <= rng.hi):
        raise ParameterError(
            f"{source}: {rng.name} {value:g} {rng.unit} (from {origin}) is implausible "
            f"(accepted {rng.lo:g}-{rng.hi:g} {rng.unit}){_unit_hint(float(value), rng)}")


def check_frame_interval(frame_times, rng: Range, source: str, origin: str) -> None:
    """The median step of ``frame_times`` must lie in ``rng`` (a DSC/DCE frame interval)."""
    times = np.asarray(frame_times, dtype=np.float64)
    if times.size > 1:
        check_value(float(np.median(np.diff(times))), rng, source,
                    f"{origin}, median frame step")


def check_voxel_size(zooms, source: str) -> None:
    """Voxel edges (mm) finite and within :data:`VOXEL_MM`."""
    zooms = np.asarray(zooms, dtype=np.float64)[:3]
    lo, hi = VOXEL_MM
    if not (np.all(np.isfinite(zooms)) and np.all((zooms >= lo) & (zooms <= hi))):
        raise ParameterError(
            f"{source}: voxel size {' x '.join(f'{z:g}' for z in zooms)} mm is implausible "
            f"(each edge must be {lo:g}-{hi:g} mm); check the header's pixdim or the DICOM "
            "PixelSpacing and slice positions")
