"""The learned denoisers ``dae`` and ``cae``, registered in :mod:`perfmap.core.denoise`.

``dae``
    Temporal 1D convolutional denoising autoencoder applied to every voxel
    curve inside the mask (:class:`perfmap.neural.denoise_nets.TemporalDAE`;
    seed project ``shared/seeds/001_*.txt``, Vincent et al. 2008). Each curve
    is divided by its temporal median (floored at 5 % of the volume's level)
    and the result multiplied back.
``cae``
    2D convolutional autoencoder with skip connections applied to every
    (slice, frame) image (:class:`perfmap.neural.denoise_nets.SliceCAE`;
    seed project ``shared/seeds/003_*.txt``, Mao et al. 2016, Ronneberger et
    al. 2015). The images are cropped to the mask's in-plane bounding box,
    set to 0 outside the mask and divided by the volume's level (median over
    the mask of the voxels' temporal medians).

Both estimate the noise standard deviation ``noise_sigma`` from the median
absolute deviation of second temporal differences
(:func:`perfmap.core.denoise.base.mad_noise_sigma`) and, when their network
has a noise channel, feed it relative to the normalising level. Every
normaliser is proportional to the input, so scaling the series scales the
output. torch is imported only when a denoiser is constructed; the weights
are the shipped ones (``models/denoise_dae.pt``, ``models/denoise_cae.pt``,
trained by ``perfmap train --task denoise``) unless ``model=PATH`` is given.

This module is a plugin of the core registry: ``perfmap.core.denoise.registry``
names it in its built-in modules as a string and imports it on the first
lookup, and importing it imports neither torch nor SciPy.

Examples
--------
>>> import numpy as np
>>> from perfmap.core.denoise import get_denoiser
>>> rng = np.random.default_rng(0)
>>> clean = np.full((16, 16, 2, 30), 500.0, np.float32)
>>> noisy = clean + 10.0 * rng.standard_normal(clean.shape).astype(np.float32)
>>> res = get_denoiser("dae")().denoise(noisy)
>>> res.info["method"], round(res.info["noise_sigma"])
('dae', 10)
>>> bool(np.abs(res.data - clean).std() < 0.7 * np.abs(noisy - clean).std())
True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.denoise.base import DenoiseResult, Denoiser, mad_noise_sigma, positive_int
from ..core.denoise.registry import register

#: Floor of a curve's normalising level, as a fraction of the volume's level.
LEVEL_FLOOR = 0.05
#: How noise_sigma is estimated (recorded in ``info``).
NOISE_ESTIMATOR = "MAD of second temporal differences (mad_noise_sigma)"


def volume_level(series: np.ndarray, mask: np.ndarray, max_voxels: int = 20_000) -> float:
    """Median over (an even subset of) the mask of the voxels' temporal medians of ``|x|``.

    Proportional to the series, so it is a scale-invariant normaliser; 1.0
    when it is 0 (an all-zero series).

    Examples
    --------
    >>> x = np.ones((3, 3, 1, 5)); x[0] *= 7
    >>> volume_level(x, np.ones((3, 3, 1), bool)), volume_level(0 * x, x[..., 0] > 0)
    (1.0, 1.0)
    """
    coords = np.nonzero(mask)
    if coords[0].size > max_voxels:
        keep = np.linspace(0, coords[0].size - 1, max_voxels).astype(np.int64)
        coords = tuple(c[keep] for c in coords)
    level = float(np.median(np.median(np.abs(series[coords]), axis=1)))
    return level if level > 0 and np.isfinite(level) else 1.0


def curve_levels(rows: np.ndarray, floor: float) -> np.ndarray:
    """Each curve's temporal median, at least ``floor``: the ``dae`` normaliser.

    Examples
    --------
    >>> curve_levels(np.array([[2.0, 4, 9], [0, 0, 1]]), 0.5).tolist()
    [4.0, 0.5]
    """
    return np.maximum(np.median(rows, axis=1), floor)


class _Learned(Denoiser):
    """A network from a weights file, run in chunks of ``chunk`` curves or images."""

    arch = ""
    default_chunk = 1

    def __init__(self, model=None, chunk=None, threads=None, device: str = "cpu"):
        from .denoise_nets import load_network, shipped_weights
        from .weights import resolve_device, sha256

        self.chunk = positive_int("chunk", self.default_chunk if chunk is None else chunk)
        self.threads = positive_int("threads", threads, allow_none=True)
        self.device = resolve_device(device)
        self.path = Path(model) if model not in (None, "") else shipped_weights(self.arch)
        self.net, self.config, self.meta = load_network(self.path, self.arch)
        self.net.to(self.device)
        self.sha256 = sha256(self.path)

    def params(self):
        return {"model": str(self.path), "weights_sha256": self.sha256,
                "network": dict(self.config), "chunk": self.chunk}

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.net(torch.from_numpy(x).to(self.device))
        return y[:, 0].float().cpu().numpy()

    def _denoise(self, series, mask):
        import torch

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            out = np.array(series, dtype=np.float32)
            sigma = mad_noise_sigma(series, mask)
            self._apply(series, mask, out, sigma, volume_level(series, mask))
        finally:
            torch.set_num_threads(before)
        return DenoiseResult(out, {"noise_sigma": sigma, "noise_estimator": NOISE_ESTIMATOR})


@register("dae")
class TemporalDAEDenoiser(_Learned):
    """Temporal convolutional denoising autoencoder of voxel curves (module docstring).

    Parameters
    ----------
    model : path, optional
        Weights file (default: the shipped ``denoise_dae.pt``).
    chunk : int
        Curves per network call (bounds memory: about ``chunk * T * width *
        16`` bytes; default 4096).
    threads : int, optional
        torch CPU threads during the call (default: torch's setting).
    device : {"cpu", "cuda", "auto"}
    """

    arch = "dae"
    default_chunk = 4096

    def _apply(self, series, mask, out, sigma, level):
        coords = np.nonzero(mask)
        noise = self.config["noise_channel"]
        for start in range(0, coords[0].size, self.chunk):
            idx = tuple(c[start:start + self.chunk] for c in coords)
            rows = series[idx].astype(np.float32)
            scale = curve_levels(rows, LEVEL_FLOOR * level)[:, None].astype(np.float32)
            x = (rows / scale)[:, None]
            if noise:
                rel = np.broadcast_to((sigma / scale)[:, None], x.shape)
                x = np.concatenate([x, rel.astype(np.float32)], axis=1)
            out[idx] = self._run(np.ascontiguousarray(x)) * scale


@register("cae")
class SliceCAEDenoiser(_Learned):
    """2D convolutional autoencoder of (slice, frame) images (module docstring).

    Parameters
    ----------
    model : path, optional
        Weights file (default: the shipped ``denoise_cae.pt``).
    chunk : int
        Images per network call (default 16).
    threads : int, optional
        torch CPU threads during the call (default: torch's setting).
    device : {"cpu", "cuda", "auto"}
    """

    arch = "cae"
    default_chunk = 16

    def _apply(self, series, mask, out, sigma, level):
        (x0, x1), (y0, y1) = (_span(mask.any(axis=(1, 2)), 4), _span(mask.any(axis=(0, 2)), 4))
        half = self.config["frames"] // 2
        T = series.shape[3]
        for z in np.flatnonzero(mask.any(axis=(0, 1))):
            m2 = mask[x0:x1, y0:y1, z]
            imgs = np.where(m2[..., None], series[x0:x1, y0:y1, z, :], 0).astype(np.float32)
            imgs = np.moveaxis(imgs / np.float32(level), -1, 0)          # (T, X, Y)
            for start in range(0, T, self.chunk):
                t = np.arange(start, min(start + self.chunk, T))
                nb = np.clip(t[:, None] + np.arange(-half, half + 1), 0, T - 1)
                x = imgs[nb]                                              # (n, frames, X, Y)
                if self.config["noise_channel"]:
                    rel = np.full((len(t), 1) + x.shape[2:], sigma / level, np.float32)
                    x = np.concatenate([x, rel], axis=1)
                y = self._run(np.ascontiguousarray(x)) * np.float32(level)
                block = out[x0:x1, y0:y1, z, start:start + len(t)]
                block[m2] = np.moveaxis(y, 0, -1)[m2]


def _span(any_axis: np.ndarray, margin: int) -> tuple[int, int]:
    """``[first - margin, last + 1 + margin)`` of the True entries, clipped to the axis."""
    idx = np.flatnonzero(any_axis)
    return max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, any_axis.size)
