"""Spatial Gaussian smoothing of each frame, restricted to a mask (normalised convolution).

Inside the mask each frame becomes (Knutsson & Westin 1993)::

    y = (G * (m x)) / (G * m)

with ``G`` a Gaussian kernel of standard deviation ``sigma`` voxels per axis
(no smoothing in time), ``m`` the mask and ``*`` convolution with zero
padding. Voxels outside the mask contribute nothing, so the background does
not bleed into the brain edge, and the weights of each output voxel sum to
one. For white noise of standard deviation ``s`` the smoothed noise has
standard deviation ``s * sqrt(sum_k g_k^2)`` (``g`` the normalised discrete
kernel), about ``s / (2 sqrt(pi) sigma)^(d/2)`` for ``d`` smoothed axes.
"""

from __future__ import annotations

import numpy as np

from ...errors import ParameterError
from .base import DenoiseResult, Denoiser, mad_noise_sigma
from .registry import register

#: Frames filtered per call: bounds the float32 temporaries to this many frames.
FRAMES_PER_CHUNK = 8


def _check_sigma(sigma) -> tuple[float, float, float]:
    values = (sigma,) * 3 if np.isscalar(sigma) else tuple(sigma)
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ParameterError(f"sigma must be a number or three, got {sigma!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v >= 0 for v in values):
        raise ParameterError(f"sigma must be one or three finite numbers >= 0 (voxels), "
                             f"got {sigma!r}")
    return values


def gaussian_smooth(series, mask=None, sigma=1.0, truncate: float = 4.0) -> np.ndarray:
    """Smooth every frame of a 4D series with a Gaussian kernel inside ``mask``.

    Parameters
    ----------
    series : array_like, shape (X, Y, Z, T)
        Signal, time last. Not modified.
    mask : array_like of bool, shape (X, Y, Z), optional
        Voxels to smooth and to take values from (default: all).
    sigma : float or sequence of 3 floats
        Kernel standard deviation in voxels along x, y, z (0: no smoothing
        along that axis). FWHM = 2.355 sigma.
    truncate : float
        Kernel radius in standard deviations (``scipy.ndimage`` convention).

    Returns
    -------
    ndarray, shape (X, Y, Z, T), float32
        Smoothed inside the mask; the input values outside.

    Raises
    ------
    ShapeError, InputDataError, ParameterError
        See :func:`perfmap.core.denoise.base.check_series`; a bad ``sigma``.

    Examples
    --------
    A constant brain stays constant up to its edge (no background bleeding).

    >>> x = np.zeros((9, 9, 1, 3), np.float32); m = np.zeros((9, 9, 1), bool)
    >>> m[2:7, 2:7] = True; x[m] = 100.0
    >>> y = gaussian_smooth(x, m, sigma=(1.5, 1.5, 0))
    >>> float(np.abs(y[m] - 100).max()) < 1e-4, float(y[0, 0, 0, 0])
    (True, 0.0)
    """
    return GaussianDenoiser(sigma=sigma, truncate=truncate).denoise(series, mask).data


@register("gaussian")
class GaussianDenoiser(Denoiser):
    """Per-frame spatial Gaussian smoothing inside the mask (see the module docstring).

    Parameters
    ----------
    sigma : float or sequence of 3 floats
        Kernel standard deviation in voxels per axis (default 1.0, isotropic,
        so transposed inputs give transposed results).
    truncate : float
        Kernel radius in standard deviations.

    Examples
    --------
    >>> den = GaussianDenoiser(sigma=(1.0, 1.0, 0.0))
    >>> den.params()
    {'sigma': [1.0, 1.0, 0.0]}
    """

    def __init__(self, sigma=1.0, truncate: float = 4.0):
        self.sigma = _check_sigma(sigma)
        if not (np.isfinite(truncate) and truncate > 0):
            raise ParameterError(f"truncate must be a positive number, got {truncate!r}")
        self.truncate = float(truncate)

    def params(self):
        out = {"sigma": list(self.sigma)}
        if self.truncate != 4.0:
            out["truncate"] = self.truncate
        return out

    def _denoise(self, series, mask):
        from scipy import ndimage

        T = series.shape[3]
        out = np.array(series, dtype=np.float32)          # a copy: the input is untouched
        noise = mad_noise_sigma(series, mask)
        if max(self.sigma) == 0:
            return DenoiseResult(out, {"noise_sigma": noise})
        weight = mask.astype(np.float32)
        kw = {"sigma": self.sigma, "mode": "constant", "cval": 0.0, "truncate": self.truncate}
        norm = ndimage.gaussian_filter(weight, **kw)[mask]
        for start in range(0, T, FRAMES_PER_CHUNK):
            stop = min(start + FRAMES_PER_CHUNK, T)
            block = np.where(mask[..., None], out[..., start:stop], np.float32(0))
            smooth = ndimage.gaussian_filter(block, sigma=self.sigma + (0.0,), mode="constant",
                                             cval=0.0, truncate=self.truncate)
            out[mask, start:stop] = smooth[mask] / norm[:, None]
        return DenoiseResult(out, {"noise_sigma": noise})
