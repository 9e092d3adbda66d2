"""The two echoes of a dual-echo DSC acquisition stored as two DICOM series in one folder."""

from __future__ import annotations

from pathlib import Path

from ..errors import ImageReadError
from .dicom import find_series, load_dicom_series
from .volume import Volume4D


def load_echo_pair(directory, min_frames: int = 10) -> tuple[Volume4D, Volume4D]:
    """``(first echo, second echo)``: the folder's two dynamic series, paired by EchoTime.

    The folder must hold exactly two series with at least ``min_frames`` time
    points; they must share the grid and frame count (checked again by the
    caller) and differ in EchoTime. The shorter TE comes first.

    Raises
    ------
    ImageReadError
        Not exactly two dynamic series, or the same EchoTime in both.
    """
    directory = Path(directory)
    dynamic = [s for s in find_series(directory)
               if (s.n_time_points or 0) >= min_frames]
    if len(dynamic) != 2:
        listing = "; ".join(s.label() for s in dynamic) or "none"
        raise ImageReadError(f"{directory}: pairing the echoes by EchoTime needs exactly two "
                             f"dynamic series, found {len(dynamic)} ({listing}); give "
                             "--series and --second-echo PATH instead")
    volumes = sorted((load_dicom_series(directory, series=s, min_frames=min_frames)
                      for s in dynamic), key=lambda v: (v.te is None, v.te or 0.0))
    first, second = volumes
    if first.te is None or second.te is None or first.te == second.te:
        raise ImageReadError(f"{directory}: the two series have the same (or no) EchoTime "
                             f"({first.te} and {second.te} s); they are not two echoes")
    return first, second
