"""Reference (non-enhancing brain) voxels and curve for leakage correction.

BSW leakage correction (:mod:`perfmap.core.leakage`) models every voxel by the
mean dR2* curve of brain tissue without contrast-agent extravasation.
:func:`select_reference` picks those voxels among the brain's rows in three
documented steps, each an order-independent statistic (medians, quantiles and
per-row quantities), so the selection does not depend on voxel order:

1. **No enhancement after the bolus** (after Boxerman et al. 2006, who drop
   voxels whose signal over the last 10 frames is more than one baseline SD
   above the baseline): the mean dR2* of the last ``tail_frames`` frames (10)
   must not lie below zero by more than two standard errors of that mean
   (``2 SD / sqrt(10)``, SD of the voxel's baseline frames: T1 enhancement,
   the signal above its baseline); Boxerman's one-SD rule keeps mildly
   leaky voxels at SNR 30. The tail must also lie within ``z`` robust SDs
   of the brain's median tail (the most strongly T1- or T2*-enhancing
   voxels).
2. **No vessels**: the voxels whose peak dR2* is above the ``vessel_quantile``
   (0.95) quantile of the brain are dropped; arteries and veins, whose blood
   dR2* is several times that of tissue, are among them.
3. **Curve explained by the mean curve**: each remaining curve is fitted as
   ``a * m`` (``m`` their mean curve); a voxel stays when the RMS of its
   post-baseline residual over its baseline SD lies within ``z`` robust SDs
   (1.4826 MAD) above the median of that ratio. Leaky, partial-volume vessel
   and artefact voxels, whose shapes differ, leave; the step is done twice,
   with the mean of the voxels kept by the first pass.

:func:`reference_curve` averages the chosen rows after sorting each frame's
values, so the sum, and the curve, are exactly the same for any voxel order.

References
----------
Boxerman JL, Schmainda KM, Weisskoff RM. Relative cerebral blood volume maps
    corrected for contrast agent extravasation significantly correlate with
    glioma tumor grade, whereas uncorrected maps do not. AJNR 2006;27:859-867
    (reference: brain voxels without enhancement over the last 10 frames
    greater than 1 SD above baseline).
Castellaro M et al. DSC-MRI toolbox (FAIR-Unipd), DSC_mri_cbv_lc.m.
Leys C et al. Detecting outliers: do not use standard deviation around the
    mean, use absolute deviation around the median. J Exp Soc Psychol
    2013;49:764-766 (the 1.4826 MAD).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, ShapeError
from .concentration import BaselineWindow

#: Frames at the end of the series whose mean tests for enhancement.
TAIL_FRAMES = 10
#: Quantile of the peak dR2* above which voxels count as vessels.
VESSEL_QUANTILE = 0.95
#: Robust SDs beyond which a statistic is an outlier.
OUTLIER_Z = 3.0
#: Fewest reference voxels accepted.
MIN_REFERENCE_VOXELS = 10
#: Voxels per chunk of the float64 statistics.
CHUNK_VOXELS = 16384


def _robust(x: np.ndarray) -> tuple[float, float]:
    med = float(np.median(x))
    return med, float(1.4826 * np.median(np.abs(x - med)))


def reference_curve(conc, selected) -> np.ndarray:
    """Mean curve of the selected rows, the same for any order of the rows.

    Parameters
    ----------
    conc : array_like, shape (n, T)
        dR2* curves (1/s).
    selected : array_like of bool, shape (n,)

    Returns
    -------
    ndarray, shape (T,), float64
        Each frame's values are sorted before they are summed (in float64).

    Examples
    --------
    >>> import numpy as np
    >>> c = np.array([[0.0, 1.0], [0.0, 3.0], [9.0, 9.0]], np.float32)
    >>> reference_curve(c, [True, True, False]).tolist()
    [0.0, 2.0]
    """
    conc = np.asarray(conc)
    selected = np.asarray(selected, dtype=bool)
    if conc.ndim != 2 or selected.shape != conc.shape[:1]:
        raise ShapeError(f"conc (n, T) and a selection of n rows are needed, got shapes "
                         f"{conc.shape} and {selected.shape}")
    if not selected.any():
        raise InputDataError("no reference voxel is selected")
    rows = np.sort(conc[selected], axis=0)
    return rows.sum(axis=0, dtype=np.float64) / rows.shape[0]


def _row_stats(y: np.ndarray, start: int, stop: int, tail_frames: int):
    """Per row, in float64 chunks: finite, baseline SD, tail mean, post-baseline peak."""
    n, T = y.shape
    out = np.empty((4, n))
    for s in range(0, n, CHUNK_VOXELS):
        c = np.array(y[s:s + CHUNK_VOXELS], dtype=np.float64)
        finite = np.all(np.isfinite(c), axis=1)
        c[~finite] = 0.0
        out[0, s:s + CHUNK_VOXELS] = finite
        out[1, s:s + CHUNK_VOXELS] = c[:, start:stop].std(axis=1, ddof=1)
        out[2, s:s + CHUNK_VOXELS] = c[:, T - tail_frames:].mean(axis=1)
        out[3, s:s + CHUNK_VOXELS] = c[:, stop:].max(axis=1)
    return out[0] > 0, out[1], out[2], out[3]


def _shape_outliers(y: np.ndarray, keep: np.ndarray, sd: np.ndarray, post: slice, z: float):
    """Rows of ``keep`` whose misfit to the mean curve of ``keep`` is not an outlier."""
    m = reference_curve(y, keep)[post]
    ratio = np.full(y.shape[0], np.inf)
    for s in range(0, y.shape[0], CHUNK_VOXELS):
        yp = np.array(y[s:s + CHUNK_VOXELS, post], dtype=np.float64)
        yp[~keep[s:s + CHUNK_VOXELS]] = 0.0                  # may be non-finite
        a = (yp * m).sum(axis=1) / float((m * m).sum())
        resid = yp - a[:, None] * m
        ratio[s:s + CHUNK_VOXELS] = np.sqrt((resid * resid).mean(axis=1)) / sd[s:s + CHUNK_VOXELS]
    med, rsd = _robust(ratio[keep])
    return keep & (ratio <= med + z * rsd)


def select_reference(conc, baseline, tail_frames: int = TAIL_FRAMES,
                     vessel_quantile: float = VESSEL_QUANTILE, z: float = OUTLIER_Z) -> np.ndarray:
    """Choose the non-enhancing, non-vascular brain voxels for the BSW reference curve.

    Parameters
    ----------
    conc : array_like, shape (n, T)
        dR2* curves (1/s) of the brain's voxels, time last.
    baseline : BaselineWindow or (int, int)
        Pre-bolus frames ``[start, stop)`` of ``conc`` (their SD is each
        voxel's noise).
    tail_frames : int
        Frames at the end whose mean tests for enhancement (step 1).
    vessel_quantile : float
        Peak-dR2* quantile above which voxels are vessels (step 2).
    z : float
        Robust SDs for the outlier rules (steps 1 and 3).

    Returns
    -------
    ndarray of bool, shape (n,)

    Raises
    ------
    InputDataError
        Fewer than :data:`MIN_REFERENCE_VOXELS` voxels remain.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(50.0)
    >>> bolus = np.exp(-0.5 * ((t - 20) / 3) ** 2)
    >>> conc = bolus * rng.uniform(5, 6, (200, 1)) + 0.1 * rng.standard_normal((200, 50))
    >>> conc[:5] -= 0.05 * np.cumsum(bolus)           # 5 leaky (T1-enhancing) voxels
    >>> sel = select_reference(conc, (0, 12))
    >>> bool(sel[:5].any()), int(sel.sum()) > 150
    (False, True)
    """
    y = np.asarray(conc)
    if y.ndim != 2:
        raise ShapeError(f"conc must be 2-D (voxels, time), got shape {y.shape}")
    start, stop = (baseline.start, baseline.stop) if isinstance(baseline, BaselineWindow) \
        else (int(baseline[0]), int(baseline[1]))
    T = y.shape[1]
    if not (0 <= start < stop - 1 and stop + tail_frames <= T):
        raise InputDataError(f"baseline frames [{start}, {stop}) and {tail_frames} tail frames "
                             f"do not fit in {T} frames")
    keep, sd, tail, peak = _row_stats(y, start, stop, tail_frames)
    keep = keep.astype(bool)
    if not keep.any():
        raise InputDataError("no finite curve to choose leakage reference voxels from")
    # Noise-free (simulated) curves have a zero baseline SD: a floor of 1e-6 of the
    # typical peak keeps the rules below defined without loosening them on real data.
    floor = 1e-6 * max(float(np.median(np.abs(peak[keep]))), np.finfo(np.float32).tiny)
    sd = np.where(keep, np.maximum(sd, floor), 1.0)
    med, rsd = _robust(tail[keep])
    keep &= (tail >= -2.0 * sd / np.sqrt(tail_frames)) & (np.abs(tail - med) <= z * rsd)
    if keep.any():
        keep &= peak <= np.quantile(peak[keep], vessel_quantile)
    for _ in range(2):
        if np.count_nonzero(keep) < MIN_REFERENCE_VOXELS:
            break
        keep = _shape_outliers(y, keep, sd, slice(stop, T), z)
    if np.count_nonzero(keep) < MIN_REFERENCE_VOXELS:
        raise InputDataError(f"only {np.count_nonzero(keep)} non-enhancing reference voxels "
                             f"were found; at least {MIN_REFERENCE_VOXELS} are needed")
    return keep
