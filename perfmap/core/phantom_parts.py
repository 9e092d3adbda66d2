"""Parts of the DSC phantom: the :class:`Phantom` record, its tissue masks and affine.

Geometry, in fractions of the grid so any matrix size works (voxel indices):

* brain: ellipsoid, semi-axes 0.40 X, 0.46 Y, 0.55 Z around the grid centre;
  ``r`` its normalised radius; white matter ``r <= 0.78``, grey matter the rim;
* artery: a square tube of ``max(1, round(X / 32))`` voxels a side along z, on
  the midline, ``0.55`` of the brain's y semi-axis anterior of the centre;
* tumour: a sphere of radius ``0.11 X`` voxels in-plane (the same radius in mm
  along z), centred ``0.45`` of the x semi-axis from the midline towards low x
  and ``0.1`` of the y semi-axis posterior;
* ``ref``: a sphere of 0.6 of the tumour radius mirrored across the midline,
  intersected with white matter.

Used by :func:`perfmap.core.phantom.make_phantom` (which re-exports :class:`Phantom`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import ParameterError


@dataclass
class Phantom:
    """One simulated DSC subject.

    Attributes
    ----------
    signal : ndarray, shape (X, Y, Z, T), float32
        Magnitude signal including the non-steady-state frames and noise.
    affine : ndarray, shape (4, 4)
        Voxel-to-world transform (RAS+, mm), centred on the grid.
    masks : dict of str -> ndarray of bool, shape (X, Y, Z)
        ``brain``, ``aif`` (artery), ``tumour``, ``ref`` (contralateral NAWM),
        ``gm``, ``wm`` (without tumour and artery).
    truth : dict of str -> ndarray of float32, shape (X, Y, Z)
        ``cbf`` (ml/100 g/min), ``cbv`` (ml/100 g), ``mtt`` (s); NaN outside
        tissue (background and artery). With leakage also ``ktrans`` (1/min)
        and ``ve`` (0 outside the tumour); CBV and CBF are the leak-free truth.
    aif : ndarray, shape (T,), float64
        True arterial concentration (dR2*, 1/s) at the frame times.
    times : ndarray, shape (T,)
        Frame times in seconds from the first frame.
    tr, te : float
        Frame interval and echo time (s).
    grade : str
        ``"HGG"`` or ``"LGG"``.
    snr : float or None
        Requested SNR (None: noise-free).
    s0 : ndarray, shape (X, Y, Z), float32
        Steady-state baseline signal without noise.
    params : dict
        Every generation parameter and subject-level value (JSON-serialisable).
    concentration : ndarray (X, Y, Z, T) float32 or None
        Noise-free dR2* curves (0 outside tissue and artery) when requested;
        the vascular curves only (no leakage term).
    second_echo : ndarray (X, Y, Z, T) float32 or None
        The series at ``second_te`` (s) when requested.
    """

    signal: np.ndarray
    affine: np.ndarray
    masks: dict
    truth: dict
    aif: np.ndarray
    times: np.ndarray
    tr: float
    te: float
    grade: str
    snr: Optional[float]
    s0: np.ndarray
    params: dict = field(default_factory=dict)
    concentration: Optional[np.ndarray] = None
    second_echo: Optional[np.ndarray] = None
    second_te: Optional[float] = None

    @property
    def baseline_frames(self) -> tuple[int, int]:
        """True steady pre-bolus frames ``[start, stop)`` (no tracer yet)."""
        return int(self.params["n_nonsteady"]), int(self.params["arrival_frame"])


def anatomy_masks(shape, voxel_size) -> dict:
    """Boolean masks of the phantom anatomy (geometry in the module docstring).

    Parameters
    ----------
    shape : tuple of 3 int
        Grid (X, Y, Z).
    voxel_size : tuple of 3 float
        Voxel size (mm); the tumour and reference spheres are round in mm.

    Returns
    -------
    dict of str -> ndarray of bool, shape ``shape``
        ``brain``, ``aif``, ``tumour``, ``ref``, ``gm``, ``wm``.

    Raises
    ------
    ParameterError
        If the grid is too small for one of the regions.

    Examples
    --------
    >>> m = anatomy_masks((32, 32, 4), (2.0, 2.0, 5.0))
    >>> sorted(m), bool((m["tumour"] & m["wm"]).any())
    (['aif', 'brain', 'gm', 'ref', 'tumour', 'wm'], False)
    """
    X, Y, Z = shape
    c = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    ax, ay, az = 0.40 * X, 0.46 * Y, max(0.55 * Z, 0.6)
    x, y, z = np.ogrid[:X, :Y, :Z]
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    r = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2 + (dz / az) ** 2)
    brain = r <= 1.0
    # Artery: a w x w tube along z on the midline, anterior.
    w = max(1, int(round(X / 32)))
    x0 = int(np.floor(c[0])) - (w - 1) // 2
    y0 = int(round(c[1] + 0.55 * ay))
    artery = np.zeros(shape, dtype=bool)
    artery[x0:x0 + w, y0:y0 + w, :] = True
    artery &= brain
    # Tumour and the mirrored reference sphere (radius in mm equal along all axes).
    rad = 0.11 * X
    vs = np.asarray(voxel_size, dtype=np.float64)
    rz = rad * vs[0] / vs[2]

    def sphere(cx, radius, radius_z):
        return ((dx - cx) / radius) ** 2 + ((dy + 0.1 * ay) / radius) ** 2 \
            + (dz / max(radius_z, 0.5)) ** 2 <= 1.0

    tumour = sphere(-0.45 * ax, rad, rz) & brain & ~artery
    wm = (r <= 0.78) & ~artery & ~tumour
    gm = brain & ~wm & ~artery & ~tumour
    ref = sphere(0.45 * ax, 0.6 * rad, 0.6 * rz) & wm
    masks = {"brain": brain, "aif": artery, "tumour": tumour, "ref": ref, "gm": gm, "wm": wm}
    empty = [k for k, v in masks.items() if not v.any()]
    if empty:
        raise ParameterError(f"phantom shape {tuple(shape)} is too small: no voxel in "
                             f"{', '.join(empty)}")
    return masks


def centred_affine(shape, voxel_size) -> np.ndarray:
    """Voxel-to-world matrix (RAS+, mm) with the grid centre at the origin.

    Examples
    --------
    >>> centred_affine((3, 3, 1), (2.0, 2.0, 5.0))[:3, 3].tolist()
    [-2.0, -2.0, 0.0]
    """
    aff = np.diag([float(v) for v in voxel_size] + [1.0])
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape, dtype=np.float64) - 1.0) / 2.0)
    return aff
