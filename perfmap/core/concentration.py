"""DSC-MRI signal to concentration, with automatic baseline and bolus-arrival detection.

Conversion (DESIGN section 4; Rosen et al. 1990; Ostergaard et al. 1996)::

    dR2*(t) = -ln(S(t) / S0) / TE          [1/s, TE in s]

with ``S0`` the mean of the steady pre-bolus baseline frames of each voxel.

Baseline detection (:func:`detect_baseline`) works on the mean brain signal,
whose noise is small, in three documented steps:

1. **Bolus minimum**: the global minimum of the mean signal, ``i_min``.
2. **Non-steady-state frames** (T1 saturation not yet reached: the first frames
   are brighter). With ``ref`` and ``sd`` the median and the MAD-based standard
   deviation (1.4826 MAD) of the frames before ``i_min``, every frame among the
   first ``MAX_NONSTEADY`` (5) whose signal exceeds
   ``ref + max(4 sd, 0.02 ref)`` is non-steady, and all frames up to the last
   such one are skipped (``n_skip``).
3. **Bolus arrival**: the first frame from which the signal stays below
   ``base - max(3 sd_b, 0.1 depth)`` up to ``i_min``, where ``base`` and
   ``sd_b`` are the median and MAD-based SD of the steady frames before the
   current arrival estimate and ``depth = base - S(i_min)`` is the bolus
   signal drop. This is the common "baseline mean minus k standard
   deviations" criterion (k = 3), made robust to slow drift by also requiring
   10 % of the bolus depth; it is iterated (at most 5 times) until the arrival
   frame no longer changes.

The baseline window is ``[n_skip, arrival - BASELINE_GAP)`` with
``BASELINE_GAP = 2``: the two frames before the detected arrival are left out,
because the 10 %-of-depth threshold is typically crossed one or two frames
after the first tracer reaches the tissue, and the onset must never enter
``S0``. At least :data:`MIN_BASELINE_FRAMES` frames are required.

References
----------
Rosen BR, Belliveau JW, Vevea JM, Brady TJ. Perfusion imaging with NMR
    contrast agents. MRM 1990;14:249-265.
Ostergaard L et al. High resolution measurement of cerebral blood flow using
    intravascular tracer bolus passages. Part I. MRM 1996;36:715-725.
Leys C et al. Detecting outliers: do not use standard deviation around the
    mean, use absolute deviation around the median. J Exp Soc Psychol
    2013;49:764-766 (the 1.4826 MAD estimate of the standard deviation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InputDataError, ParameterError

#: Fewest frames a baseline may have.
MIN_BASELINE_FRAMES = 3
#: Frames left out between the end of the baseline and the detected arrival.
BASELINE_GAP = 2
#: Most leading frames that may be flagged as non-steady-state.
MAX_NONSTEADY = 5
#: Non-steady threshold: above ``ref + max(NONSTEADY_SD * sd, NONSTEADY_REL * ref)``.
NONSTEADY_SD = 4.0
NONSTEADY_REL = 0.02
#: Arrival threshold: below ``base - max(ARRIVAL_SD * sd, ARRIVAL_DEPTH * depth)``.
ARRIVAL_SD = 3.0
ARRIVAL_DEPTH = 0.10
#: A bolus must lower the mean signal by at least this fraction of the baseline.
MIN_BOLUS_DROP = 0.005
#: Samples below this fraction of S0 are raised to it before the logarithm, so
#: ``dR2*`` is capped at ``ln(1 / SIGNAL_FLOOR) / TE`` (230 1/s at TE 30 ms).
SIGNAL_FLOOR = 1e-3
#: Voxels converted per chunk (bounds float64 temporaries).
CHUNK_VOXELS = 65536


@dataclass
class BaselineWindow:
    """Pre-bolus baseline frames ``[start, stop)`` and the bolus arrival frame.

    Attributes
    ----------
    start, stop : int
        Frames ``start .. stop - 1`` are averaged into ``S0``.
    arrival : int
        Detected bolus arrival frame (for a user window, the detected one when
        detection succeeds, else ``stop``).
    method : str
        ``"auto"`` or ``"user"``.
    """

    start: int
    stop: int
    arrival: int
    method: str

    @property
    def n_frames(self) -> int:
        return self.stop - self.start

    def as_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop, "arrival": self.arrival,
                "method": self.method}


def _robust_sd(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _detect(s: np.ndarray, n_skip: Optional[int]) -> tuple[int, int]:
    """(n_skip, arrival) of the mean signal ``s``; raises InputDataError."""
    T = s.size
    i_min = int(np.argmin(s))
    pre = s[:i_min]
    if pre.size < 2:
        raise InputDataError(f"no pre-bolus baseline: the mean signal is lowest at frame {i_min} "
                             "(the bolus arrives in the first frames); give the baseline "
                             "frames explicitly")
    if n_skip is None:
        ref, sd = float(np.median(pre)), _robust_sd(pre)
        high = s[:min(MAX_NONSTEADY, i_min)] > ref + max(NONSTEADY_SD * sd,
                                                         NONSTEADY_REL * abs(ref))
        n_skip = int(np.flatnonzero(high)[-1]) + 1 if high.any() else 0
    elif not 0 <= n_skip < T:
        raise InputDataError(f"cannot skip {n_skip} frames of a {T}-frame series")
    if i_min <= n_skip + 1:
        raise InputDataError(f"no pre-bolus baseline: the bolus minimum (frame {i_min}) comes "
                             f"right after the {n_skip} skipped non-steady-state frames")
    arrival = i_min
    for _ in range(5):
        steady = s[n_skip:arrival] if arrival - n_skip >= 2 else s[n_skip:i_min]
        base, sd = float(np.median(steady)), _robust_sd(steady)
        depth = base - float(s[i_min])
        if not depth > max(MIN_BOLUS_DROP * abs(base), 3.0 * sd):
            raise InputDataError(
                f"no bolus passage detected: the mean signal drops by only {depth:.4g} "
                f"({100 * depth / abs(base) if base else 0:.2g} %) below its baseline {base:.4g}")
        thr = base - max(ARRIVAL_SD * sd, ARRIVAL_DEPTH * depth)
        above = np.flatnonzero(s[n_skip:i_min + 1] >= thr)
        new = n_skip + (int(above[-1]) + 1 if above.size else 0)
        if new == arrival:
            break
        arrival = new
    return n_skip, arrival


def detect_baseline(mean_signal, n_skip: Optional[int] = None,
                    baseline_frames: Optional[tuple[int, int]] = None) -> BaselineWindow:
    """Find the steady pre-bolus baseline and the bolus arrival in a mean DSC signal.

    Parameters
    ----------
    mean_signal : array_like, shape (T,)
        Mean signal over the brain (or any tissue ROI).
    n_skip : int, optional
        Number of leading non-steady-state frames to drop; detected when None.
    baseline_frames : (int, int), optional
        User window ``(start, stop)`` (frames ``start .. stop - 1``), the
        ``--baseline-frames`` override; detection then only supplies ``arrival``.

    Returns
    -------
    BaselineWindow

    Raises
    ------
    InputDataError
        Non-finite signal, no bolus drop, no baseline before the bolus (fewer
        than :data:`MIN_BASELINE_FRAMES` steady frames), or an override out of
        range.

    Notes
    -----
    The rules are in the module docstring: frames among the first 5 above
    ``median + max(4 SD, 2 %)`` are non-steady; arrival is the first frame
    from which the signal stays below ``baseline - max(3 SD, 10 % of the
    bolus depth)``; the baseline stops ``BASELINE_GAP`` (2) frames before
    arrival (``stop = arrival - 2``).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.r_[1500.0, 1200.0, [1000.0] * 12, 950.0, 800.0, 700.0, 800.0, [950.0] * 10]
    >>> detect_baseline(s)
    BaselineWindow(start=2, stop=12, arrival=14, method='auto')
    """
    s = np.asarray(mean_signal, dtype=np.float64)
    if s.ndim != 1:
        raise InputDataError(f"the mean signal must be 1D (T,), got shape {s.shape}")
    T = s.size
    if not np.all(np.isfinite(s)):
        raise InputDataError("the mean signal contains NaN or Inf values")
    if baseline_frames is not None:
        try:
            start, stop = (int(v) for v in baseline_frames)
        except (TypeError, ValueError):
            raise InputDataError(f"baseline frames {baseline_frames!r} must be two integers "
                                 "(start, stop)") from None
        if not (0 <= start < stop <= T):
            raise InputDataError(f"baseline frames [{start}, {stop}) are outside the series of "
                                 f"{T} frames (need 0 <= start < stop <= {T})")
        try:
            arrival = _detect(s, start)[1]
        except InputDataError:
            arrival = stop
        return BaselineWindow(start, stop, arrival, "user")
    if T < MIN_BASELINE_FRAMES + 3:
        raise InputDataError(f"only {T} frames: too few for a baseline and a bolus passage")
    n_skip, arrival = _detect(s, n_skip)
    stop = arrival - BASELINE_GAP
    if stop - n_skip < MIN_BASELINE_FRAMES:
        raise InputDataError(
            f"no usable baseline: the bolus arrives at frame {arrival}, leaving "
            f"{max(stop - n_skip, 0)} steady frames after {n_skip} non-steady-state frames "
            f"(at least {MIN_BASELINE_FRAMES} are needed); give the baseline frames explicitly")
    return BaselineWindow(n_skip, stop, arrival, "auto")


def dsc_concentration(signal, te: float, window) -> tuple[np.ndarray, np.ndarray]:
    """Convert DSC signal to ``dR2*`` concentration curves (1/s).

    Parameters
    ----------
    signal : array_like, shape (..., T)
        Signal, time last: ``(X, Y, Z, T)``, ``(n, T)`` or ``(T,)``. Not modified.
    te : float
        Echo time in seconds.
    window : BaselineWindow or (int, int)
        Baseline frames ``[start, stop)`` averaged into ``S0`` per voxel.

    Returns
    -------
    conc : ndarray, shape (..., T), float32
        ``-ln(max(S, SIGNAL_FLOOR * S0) / S0) / TE``; NaN rows where invalid.
    invalid : ndarray of bool, shape (...)
        Voxels whose ``S0`` is not positive and finite or whose curve holds
        non-finite samples.

    Notes
    -----
    Samples at or below ``SIGNAL_FLOOR * S0`` (including non-positive ones)
    are raised to that floor, which caps ``dR2*`` at ``ln(1000) / TE`` instead
    of giving Inf or NaN.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([[100.0, 100.0, 100.0 * np.exp(-0.03 * 20.0)]])
    >>> conc, bad = dsc_concentration(s, 0.03, (0, 2))
    >>> np.round(conc, 4).tolist(), bad.tolist()
    ([[0.0, 0.0, 20.0]], [False])
    """
    if not (np.isfinite(te) and te > 0):
        raise ParameterError(f"TE must be a positive number of seconds, got {te}")
    start, stop = (window.start, window.stop) if isinstance(window, BaselineWindow) \
        else (int(window[0]), int(window[1]))
    sig = np.asarray(signal)
    T = sig.shape[-1]
    if not 0 <= start < stop <= T:
        raise InputDataError(f"baseline frames [{start}, {stop}) are outside the series of "
                             f"{T} frames")
    lead = sig.shape[:-1]
    flat = sig.reshape(-1, T)
    conc = np.empty(flat.shape, dtype=np.float32)
    invalid = np.empty(flat.shape[0], dtype=bool)
    for i in range(0, flat.shape[0], CHUNK_VOXELS):
        # float32 throughout (a copy: the input is untouched); S0 is averaged in float64.
        block = flat[i:i + CHUNK_VOXELS].astype(np.float32)
        s0 = block[:, start:stop].mean(axis=1, dtype=np.float64)
        bad = ~(np.isfinite(s0) & (s0 > 0)) | ~np.all(np.isfinite(block), axis=1)
        s0 = np.where(bad, 1.0, s0).astype(np.float32)[:, None]
        block[bad] = 1.0                  # no log of 0 or Inf: these rows become NaN below
        np.maximum(block, SIGNAL_FLOOR * s0, out=block)
        with np.errstate(invalid="ignore"):
            np.divide(s0, block, out=block)
            np.log(block, out=block)
        block *= np.float32(1.0 / te)
        block[bad] = np.nan
        conc[i:i + CHUNK_VOXELS] = block
        invalid[i:i + CHUNK_VOXELS] = bad
    return conc.reshape(sig.shape), invalid.reshape(lead)
