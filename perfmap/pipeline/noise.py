"""Noise for the robustness study: the baseline region, its SNR, and seeded noise.

SNR follows the PHAE paper: the mean baseline signal over the noise standard
deviation inside the brain mask (the temporal SD of the baseline frames);
Gaussian noise is added so that the noise already in the data and the added
noise together reach the target level.
"""

from __future__ import annotations

import math
import zlib
from typing import Optional

import numpy as np

from ..core.brainmask import auto_brain_mask
from ..core.concentration import detect_baseline
from ..errors import InputDataError


def noise_seed(seed: int, subject: str, level: float) -> np.random.SeedSequence:
    """Seed of the noise added to ``subject`` at ``level`` (stable across processes)."""
    return np.random.SeedSequence([int(seed), zlib.crc32(subject.encode("utf-8")),
                                   int(round(level * 1000))])


def baseline_region(data: np.ndarray, mask: Optional[np.ndarray] = None, kind: str = "dsc"):
    """Brain mask and baseline window of a 4D signal, as the pipeline finds them.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z, T)
        DSC or DCE signal.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Brain mask; by default the automatic one
        (:func:`perfmap.core.brainmask.auto_brain_mask` of the baseline image).
    kind : {"dsc", "dce"}
        DSC: the bolus lowers the mean brain signal; DCE: it raises the signal of
        the most enhancing voxels (:func:`perfmap.models.dce_steps.enhancement_baseline`).

    Returns
    -------
    mask : ndarray of bool
    window : BaselineWindow
        Steady pre-bolus frames ``[start, stop)``.
    """
    def detect(region):
        if kind == "dce":
            from ..models.dce_steps import enhancement_baseline, enhancing_curve

            return enhancement_baseline(enhancing_curve(data[region]))
        return detect_baseline(data[region].mean(axis=0))

    if mask is None:
        rough = auto_brain_mask(data.mean(axis=-1))
        window = detect(rough)
        mask = auto_brain_mask(data[..., window.start:window.stop].mean(axis=-1))
    return mask, detect(mask)


def baseline_snr(data: np.ndarray, mask: np.ndarray, window) -> tuple:
    """Mean baseline signal and noise SD inside ``mask`` (see the module notes).

    Returns
    -------
    (float, float, float)
        ``mean``, ``sd`` and ``snr = mean / sd`` (inf when ``sd`` is 0).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> rng = np.random.default_rng(0)
    >>> data = 100.0 + 2.0 * rng.standard_normal((8, 8, 2, 20))
    >>> m, sd, snr = baseline_snr(data, np.ones((8, 8, 2), bool),
    ...                           SimpleNamespace(start=0, stop=20))
    >>> round(snr)
    50
    """
    base = np.asarray(data[mask][:, window.start:window.stop], dtype=np.float64)
    if base.shape[1] < 2:
        raise InputDataError("the baseline has fewer than 2 frames; its SNR cannot be measured")
    mean = float(base.mean())
    sd = float(np.sqrt(base.var(axis=1, ddof=1).mean()))
    return mean, sd, (mean / sd if sd > 0 else math.inf)


def add_noise(data: np.ndarray, snr: float, mean: float, sd: float,
              rng: np.random.Generator) -> tuple:
    """Add Gaussian noise so that ``mean / noise SD`` becomes ``snr``.

    Parameters
    ----------
    data : ndarray
        Signal (not modified).
    snr : float
        Target SNR.
    mean, sd : float
        Current mean baseline signal and noise SD (:func:`baseline_snr`).
    rng : numpy.random.Generator
        Noise source.

    Returns
    -------
    noisy : ndarray, float32
        ``data`` plus the noise (a copy of ``data`` when none is added).
    added_sd : float
        Standard deviation of the added noise (0 when the data are already
        noisier than ``snr``).
    """
    added_var = (mean / snr) ** 2 - sd ** 2
    noisy = np.array(data, dtype=np.float32, copy=True)
    if added_var <= 0:
        return noisy, 0.0
    added_sd = math.sqrt(added_var)
    noisy += np.float32(added_sd) * rng.standard_normal(noisy.shape, dtype=np.float32)
    return noisy, added_sd
