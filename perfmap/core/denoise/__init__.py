"""Denoising of 4D series (DSC/DCE signal or concentration), chosen by name.

``gaussian``
    Spatial Gaussian smoothing of each frame inside the mask (normalised
    convolution, :mod:`~perfmap.core.denoise.gaussian`).
``mppca``
    Marchenko-Pastur PCA over overlapping local patches (Veraart et al. 2016,
    NeuroImage 142:394; :mod:`~perfmap.core.denoise.mppca`).
``dae``, ``cae``
    Learned denoisers (temporal 1D and per-slice 2D convolutional
    autoencoders) from the neural layer, registered as a plugin
    (:mod:`perfmap.neural.denoisers`); they need torch when run.

Examples
--------
>>> import numpy as np
>>> from perfmap.core.denoise import available, get_denoiser
>>> available()
['cae', 'dae', 'gaussian', 'mppca']
>>> rng = np.random.default_rng(0)
>>> x = (100 + rng.standard_normal((12, 12, 6, 20))).astype(np.float32)
>>> res = get_denoiser("mppca")(patch=5).denoise(x)
>>> res.data.shape, res.data.dtype.name, round(res.info["noise_sigma"], 1)
((12, 12, 6, 20), 'float32', 1.0)
"""

from .base import DenoiseResult, Denoiser
from .registry import available, get_denoiser, register

__all__ = ["DenoiseResult", "Denoiser", "available", "denoise", "get_denoiser", "register"]


def denoise(series, method: str = "mppca", mask=None, **params) -> DenoiseResult:
    """Denoise a 4D series with the denoiser registered as ``method``.

    Parameters
    ----------
    series : array_like, shape (X, Y, Z, T)
        Real-valued series, time last. Not modified.
    method : str
        A name from :func:`available`.
    mask : array_like of bool, shape (X, Y, Z), optional
        Voxels to denoise (default: all); the others keep their values.
    **params
        The denoiser's parameters (e.g. ``sigma`` for ``gaussian``).

    Returns
    -------
    DenoiseResult

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((8, 8, 2, 5), np.float32)
    >>> float(denoise(x, "gaussian", sigma=1.0).data.mean())
    1.0
    """
    return get_denoiser(method)(**params).denoise(series, mask)
