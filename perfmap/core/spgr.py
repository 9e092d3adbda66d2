"""DCE signal to concentration for a spoiled gradient echo (SPGR) acquisition.

The steady-state SPGR signal (Ernst & Anderson 1966; Haacke et al. 1999,
eq. 18.73 with ``TE << T2*``) is::

    S = M0 sin(a) (1 - E1) / (1 - cos(a) E1),    E1 = exp(-TR R1)

With ``q = S(t) / S_baseline`` and the pre-contrast rate ``R10 = 1 / T10`` the
unknown ``M0`` cancels. Writing ``E0 = exp(-TR R10)`` and::

    y = q (1 - E0) / (1 - cos(a) E0)           (= (1 - E1) / (1 - cos(a) E1))

the signal equation solves in closed form (the inversion analysed by Schabel &
Parker 2008, and used by pydcemri and DCEMRI.jl)::

    E1 = (1 - y) / (1 - y cos(a)),   R1(t) = -ln(E1) / TR

and with a linear relaxivity (fast water exchange) the concentration is
``C = (R1 - R10) / r1`` in mM (``r1`` in /mM/s; default 4.5, Gd-DTPA at 1.5 T
after Stanisz & Henkelman 2000, the value the QIBA DROs use).

Only ``0 <= y < 1`` maps back to a rate ``R1 >= 0`` (``0 < E1 <= 1``). For
``1 <= y < 1/cos(a)`` the argument of the logarithm is ``<= 0``; beyond, the
formula returns ``E1 > 1``, a negative R1: both mean the signal rose to or above
``M0 sin(a)``, the limit of an infinite R1 (noise on a heavily enhanced voxel,
or a wrong T10 or flip angle). Such frames, and negative signals, are NaN and
counted, never clipped. Rows whose baseline is not positive and finite are NaN
and counted too.

References
----------
Ernst RR, Anderson WA. Application of Fourier transform spectroscopy to
    magnetic resonance. Rev Sci Instrum 1966;37:93-102.
Schabel MC, Parker DL. Uncertainty and bias in contrast concentration
    measurements using spoiled gradient echo pulse sequences. Phys Med Biol
    2008;53:2345-2373.
Stanisz GJ, Henkelman RM. Gd-DTPA relaxivity depends on macromolecular
    content. Magn Reson Med 2000;44:665-667.
Haacke EM, Brown RW, Thompson MR, Venkatesan R. Magnetic Resonance Imaging:
    Physical Principles and Sequence Design. Wiley 1999, ch. 18.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from ..errors import ParameterError, ShapeError

#: Default longitudinal relaxivity (/mM/s).
DEFAULT_R1 = 4.5
#: float64 values per working chunk (voxels x frames): bounds the memory.
CHUNK = 1 << 21

Baseline = Union[int, tuple, slice]


@dataclass
class SpgrConversion:
    """Concentration curves converted from SPGR signal, with what could not be.

    Attributes
    ----------
    conc : ndarray, shape (n, T)
        Concentration in mM (float32 for float32 or integer input, else
        float64). NaN where undefined.
    n_undefined : int
        Frames (over all voxels) where the inversion was undefined (``y`` outside
        [0, 1): signal at or above ``M0 sin(a)``, or negative).
    n_bad_baseline : int
        Voxels whose baseline signal is not positive and finite (whole row NaN).
    """

    conc: np.ndarray
    n_undefined: int
    n_bad_baseline: int


def _check_acquisition(tr, flip_angle_deg):
    if not (np.isfinite(tr) and tr > 0):
        raise ParameterError(f"the repetition time must be positive (s), got {tr!r}")
    if not (np.isfinite(flip_angle_deg) and 0 < flip_angle_deg < 180):
        raise ParameterError(f"the flip angle must be in (0, 180) degrees, got {flip_angle_deg!r}")


def spgr_signal(m0, r1, tr: float, flip_angle_deg):
    """Steady-state SPGR signal ``M0 sin(a) (1 - E1) / (1 - cos(a) E1)``.

    Parameters
    ----------
    m0 : array_like
        Equilibrium signal (arbitrary units).
    r1 : array_like
        Longitudinal relaxation rate (1/s).
    tr : float
        Repetition time (s).
    flip_angle_deg : array_like
        Flip angle(s) in degrees; broadcast against ``m0`` and ``r1``.

    Returns
    -------
    ndarray
        Signal, same units as ``m0``.

    Examples
    --------
    QIBA DRO v6 tissue (M0 50000, T1 1 s, TR 5 ms, 30 degrees): about 901.

    >>> round(float(spgr_signal(50000.0, 1.0, 0.005, 30.0)), 1)
    901.6
    """
    _check_acquisition(tr, np.max(flip_angle_deg))
    a = np.deg2rad(np.asarray(flip_angle_deg, dtype=np.float64))
    e1 = np.exp(-tr * np.asarray(r1, dtype=np.float64))
    return np.asarray(m0) * np.sin(a) * (1.0 - e1) / (1.0 - np.cos(a) * e1)


def r1_from_ratio(ratio, r10, tr: float, flip_angle_deg: float) -> np.ndarray:
    """Closed-form ``R1`` (1/s) from the signal ratio ``S(t) / S_baseline``.

    Parameters
    ----------
    ratio : array_like
        ``S(t) / S_baseline``; any shape.
    r10 : array_like
        Pre-contrast ``R10 = 1 / T10`` (1/s), broadcast against ``ratio``.
    tr : float
        Repetition time (s).
    flip_angle_deg : float
        Flip angle (degrees).

    Returns
    -------
    ndarray, float64
        ``R1``; NaN where the inversion is undefined (``y`` outside [0, 1)).

    Examples
    --------
    >>> s0 = spgr_signal(1.0, 1.0, 0.005, 30.0); s = spgr_signal(1.0, 3.25, 0.005, 30.0)
    >>> round(float(r1_from_ratio(s / s0, 1.0, 0.005, 30.0)), 10)
    3.25
    """
    _check_acquisition(tr, flip_angle_deg)
    cos_a = np.cos(np.deg2rad(flip_angle_deg))
    e0 = np.exp(-tr * np.asarray(r10, dtype=np.float64))
    y = np.asarray(ratio, dtype=np.float64) * ((1.0 - e0) / (1.0 - cos_a * e0))
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = (1.0 - y) / (1.0 - cos_a * y)
        r1 = -np.log(np.where((y >= 0) & (y < 1), e1, np.nan)) / tr
    return r1


def _window(baseline: Baseline, T: int) -> slice:
    if isinstance(baseline, slice):
        frames = range(*baseline.indices(T))
    elif np.isscalar(baseline):
        frames = range(0, int(baseline))
    else:
        start, stop = (int(v) for v in baseline)
        frames = range(start, stop)
    if len(frames) < 1 or frames.start < 0 or max(frames) >= T:
        raise ParameterError(f"the baseline window {baseline!r} must select frames of the "
                             f"{T} acquired")
    return slice(frames.start, frames.stop, frames.step)


def spgr_concentration(signal, baseline: Optional[Baseline], t10, tr: float,
                       flip_angle_deg: float, r1: float = DEFAULT_R1,
                       s_baseline=None) -> SpgrConversion:
    """Concentration curves (mM) from SPGR signal rows and a baseline window.

    Parameters
    ----------
    signal : array_like, shape (n, T)
        Signal of ``n`` voxels (time last), e.g. ``volume.data[mask]`` of a
        4D series. Not modified.
    baseline : int, (start, stop), slice or None
        Pre-contrast frames whose mean is ``S_baseline``: an int ``k`` means
        frames ``0 .. k-1``; ``(start, stop)`` frames ``start .. stop-1``.
        None when ``s_baseline`` is given.
    t10 : float or array_like, shape (n,)
        Pre-contrast T1 (s) of each voxel, or one value for all.
    tr : float
        Repetition time (s).
    flip_angle_deg : float
        Flip angle (degrees).
    r1 : float
        Longitudinal relaxivity (/mM/s).
    s_baseline : float or array_like, shape (n,), optional
        Pre-contrast signal given instead of a baseline window, e.g.
        ``spgr_signal(m0, 1 / t10, tr, flip_angle_deg)`` from the M0 of a VFA
        fit or of a phantom's description.

    Returns
    -------
    SpgrConversion
        ``conc`` (n, T) with ``C = (R1 - R10) / r1`` and the counts of
        undefined frames and unusable baselines.

    Raises
    ------
    ShapeError
        ``signal`` not 2-D, or ``t10`` of the wrong length.
    ParameterError
        Non-positive TR, T10 or relaxivity, flip angle outside (0, 180), an
        empty baseline window, or both or neither of ``baseline`` and
        ``s_baseline``.

    Examples
    --------
    >>> import numpy as np
    >>> r1_t = 1.0 + 4.5 * np.array([0.0, 0.0, 0.5, 2.0])      # 0, 0, 0.5, 2 mM
    >>> s = spgr_signal(1000.0, r1_t, 0.005, 25.0)[None, :]
    >>> out = spgr_concentration(s, baseline=2, t10=1.0, tr=0.005, flip_angle_deg=25.0)
    >>> np.round(out.conc, 6).tolist()[0][2:], out.n_undefined
    ([0.5, 2.0], 0)
    """
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ShapeError(f"signal must be 2-D (voxels, time), got shape {signal.shape}")
    n, T = signal.shape
    if (baseline is None) == (s_baseline is None):
        raise ParameterError("give either a baseline window or s_baseline, not both or neither")
    win = None if baseline is None else _window(baseline, T)
    if s_baseline is not None:
        s_baseline = np.broadcast_to(np.asarray(s_baseline, dtype=np.float64), (n,))
    if not (np.isfinite(r1) and r1 > 0):
        raise ParameterError(f"the relaxivity r1 must be positive (/mM/s), got {r1!r}")
    t10 = np.asarray(t10, dtype=np.float64)
    if t10.ndim not in (0, 1) or (t10.ndim == 1 and t10.shape[0] != n):
        raise ShapeError(f"t10 must be one value or one per voxel ({n}), got shape {t10.shape}")
    if np.any(~np.isfinite(t10) | (t10 <= 0)):
        raise ParameterError("T10 must be positive and finite (s) in every voxel")
    _check_acquisition(tr, flip_angle_deg)
    out_dtype = np.float64 if signal.dtype == np.float64 else np.float32
    conc = np.empty((n, T), out_dtype)
    r10_all = np.broadcast_to(1.0 / t10, (n,))
    n_undefined = n_bad = 0
    step = max(1, CHUNK // T)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = np.asarray(signal[start:stop], dtype=np.float64)
        base = (block[:, win].mean(axis=1) if win is not None
                else np.array(s_baseline[start:stop]))
        bad = ~(np.isfinite(base) & (base > 0))
        base[bad] = np.nan
        r10 = r10_all[start:stop, None]
        r1_t = r1_from_ratio(block / base[:, None], r10, tr, flip_angle_deg)
        undefined = np.isnan(r1_t) & np.isfinite(block) & ~bad[:, None]
        n_undefined += int(np.count_nonzero(undefined))
        n_bad += int(np.count_nonzero(bad))
        conc[start:stop] = (r1_t - r10) / r1
    return SpgrConversion(conc=conc, n_undefined=n_undefined, n_bad_baseline=n_bad)
