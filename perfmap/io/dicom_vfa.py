"""A variable-flip-angle (VFA) T1 series stored as one DICOM series per flip angle.

Scanners and digital reference objects (the QIBA DCE DROs' ``fa3.dcm`` ...
``fa35.dcm``) often store each flip angle of a VFA acquisition as its own
single-volume series. :func:`load_vfa_dicom` gathers every single-time-point
series of a folder, checks they share one grid, and stacks them in order of
their FlipAngle (0018,1314) into one 4D volume whose "frames" are the angles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ImageReadError, ParameterError
from .dicom import find_series, load_dicom_series
from .volume import Volume4D


def load_vfa_dicom(directory) -> tuple[Volume4D, list]:
    """The VFA volumes below ``directory`` as ``(volume (X, Y, Z, K), flip angles in deg)``.

    A folder holding one series with several volumes is read as that series
    (its frames' flip angles must then be given by the caller: ``angles`` is
    empty). Otherwise every series with one time point is a flip angle.

    Raises
    ------
    ImageReadError
        No DICOM, fewer than two flip-angle volumes, volumes on different
        grids or with different TR, a missing or repeated flip angle.
    """
    directory = Path(directory)
    found = find_series(directory)
    if not found:
        raise ImageReadError(f"{directory}: no DICOM series found for the VFA T1 input")
    singles = [s for s in found if s.n_time_points == 1]
    if len(singles) < 2:
        if len(found) == 1:
            return load_dicom_series(directory, series=found[0], min_frames=2), []
        raise ImageReadError(f"{directory}: the VFA input needs one single-volume series per "
                             f"flip angle; found {len(singles)} among {len(found)} series")
    volumes = [load_dicom_series(directory, series=s, min_frames=1) for s in singles]
    angles = [v.meta.get("FlipAngle") for v in volumes]
    if any(not isinstance(a, (int, float)) for a in angles):
        raise ImageReadError(f"{directory}: a VFA series has no FlipAngle in its headers")
    if len(set(angles)) != len(angles):
        raise ImageReadError(f"{directory}: the VFA series repeat a flip angle "
                             f"({', '.join(f'{a:g}' for a in sorted(angles))} deg)")
    first = volumes[0]
    for v in volumes[1:]:
        if v.data.shape != first.data.shape or not np.allclose(v.affine, first.affine, atol=1e-3):
            raise ImageReadError(f"{directory}: the VFA series are on different grids")
        if v.tr is not None and first.tr is not None and not np.isclose(v.tr, first.tr):
            raise ParameterError(f"{directory}: the VFA series have different TRs "
                                 f"({first.tr:g} and {v.tr:g} s)")
    order = np.argsort(angles)
    data = np.concatenate([volumes[i].data for i in order], axis=3)
    meta = dict(first.meta, FlipAngle=[float(angles[i]) for i in order],
                vfa_series=[str(singles[i].uid) for i in order])
    vol = Volume4D(data=data, affine=first.affine, frame_times=np.arange(len(order), dtype=float),
                   tr=first.tr, te=first.te, source=str(directory), header=None, meta=meta)
    return vol, [float(angles[i]) for i in order]
