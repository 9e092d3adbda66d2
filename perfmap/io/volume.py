"""In-memory 4D acquisition shared by the NIfTI and DICOM readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class Volume4D:
    """A dynamic series on a voxel grid, time on the last axis.

    Attributes
    ----------
    data : ndarray, shape (X, Y, Z, T)
        Scaled signal values (float32 unless the file held float64).
    affine : ndarray, shape (4, 4)
        Voxel-to-world (RAS+, mm) transform, as NIfTI stores it.
    frame_times : ndarray, shape (T,)
        Acquisition time of each frame in seconds, from the first frame.
    tr : float or None
        Repetition time in seconds (for DSC: the frame interval).
    te : float or None
        Echo time in seconds.
    source : str
        The file or directory it was read from (for messages).
    header : object or None
        The NIfTI header to copy geometry from when writing maps; None for DICOM
        (an equivalent header is built from ``affine``).
    meta : dict
        Other acquisition metadata (flip angle, field strength, series identity, ...).
    """

    data: np.ndarray
    affine: np.ndarray
    frame_times: np.ndarray
    tr: Optional[float]
    te: Optional[float]
    source: str
    header: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[:3])

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[3])

    @property
    def uniform(self) -> bool:
        """True when the frames are evenly spaced (within 1 % of the median step)."""
        if self.n_frames < 3:
            return True
        steps = np.diff(self.frame_times)
        med = float(np.median(steps))
        return bool(med > 0 and np.all(np.abs(steps - med) <= 0.01 * med))
