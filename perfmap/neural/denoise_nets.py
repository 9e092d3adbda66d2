"""Networks of the learned denoisers, and their weights files.

``dae``: :class:`TemporalDAE`, a 1D fully convolutional denoising
autoencoder of voxel time curves (the FCN-DAE family of the DCE denoising
seed project ``shared/seeds/001_*.txt``, after Chiang et al. 2019 and the
denoising autoencoders of Vincent et al. 2008). ``cae``: :class:`SliceCAE`,
a 2D convolutional autoencoder of slices with max-pooling encoder,
bilinear-upsampling decoder and a skip connection from each encoder level
to the decoder level of the same size (seed project ``shared/seeds/003_*.txt``;
skip connections after Mao et al. 2016 and Ronneberger et al. 2015).

Both take the normalised signal ``x`` (about 1 at the baseline) and, when
``noise_channel`` is set, a last constant channel holding the relative noise
level ``r`` (noise SD over the normalising level), and predict the noise,
which is subtracted (residual learning): ``out = x - net(x)``. With the
noise channel the network also sees the signal in noise units,
``(x - 1) / r``, and its output is multiplied by ``r`` (:func:`_features`),
so that separating noise from signal does not need a multiplication by the
noise level, which ReLU networks represent poorly across the 40-fold range
of SNR 5-200 (without this the network barely denoised at SNR 150). Both pad
their input to a multiple of their down-sampling factor and crop back, so
any frame count (``dae``) or in-plane size (``cae``) works.

Weights files are ``torch.save`` dicts of plain data (format
``perfmap-denoise``) with SHA-256 digests of the tensors and the header
(:func:`perfmap.neural.weights.with_integrity`), read back with
``weights_only=True`` (:func:`perfmap.neural.weights.safe_load`).

References
----------
Vincent P, Larochelle H, Bengio Y, Manzagol PA. Extracting and composing
    robust features with denoising autoencoders. ICML 2008:1096-1103.
Chiang HT et al. Noise reduction in ECG signals using fully convolutional
    denoising autoencoders. IEEE Access 2019;7:60806-60813.
Mao XJ, Shen C, Yang YB. Image restoration using very deep convolutional
    encoder-decoder networks with symmetric skip connections. NeurIPS 2016.
Ronneberger O, Fischer P, Brox T. U-Net. MICCAI 2015:234-241.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from .weights import (DENOISE_FORMAT, check_tensors, default_model_path, safe_load, save_object,
                      verify_integrity)

FORMAT_VERSION = 1
#: Default configuration of each architecture (the shipped weights').
DEFAULTS = {
    "dae": {"arch": "dae", "width": 24, "depth": 3, "kernel": 5, "noise_channel": True},
    "cae": {"arch": "cae", "width": 16, "levels": 2, "frames": 5, "noise_channel": True},
}
#: Shipped weights file of each architecture.
MODEL_NAMES = {"dae": "denoise_dae.pt", "cae": "denoise_cae.pt"}
_INT_KEYS = {"dae": ("width", "depth", "kernel"), "cae": ("width", "levels", "frames")}
_LIMITS = {"width": (2, 256), "depth": (0, 8), "kernel": (3, 15), "levels": (1, 4),
           "frames": (1, 7)}


def check_config(config, source: str = "denoiser configuration") -> dict:
    """A validated copy of a denoiser network configuration.

    Raises
    ------
    ModelError
        Unknown architecture, missing, unexpected or out-of-range entries.

    Examples
    --------
    >>> check_config({"arch": "cae", "width": 8, "levels": 1, "frames": 1,
    ...               "noise_channel": False})["width"]
    8
    >>> check_config({"arch": "dae", "width": 8})
    Traceback (most recent call last):
    ...
    perfmap.errors.ModelError: denoiser configuration: the configuration lacks depth, kernel, noise_channel
    """
    if not isinstance(config, dict) or config.get("arch") not in DEFAULTS:
        arch = config.get("arch") if isinstance(config, dict) else None
        raise ModelError(f"{source}: unknown denoiser architecture {arch!r}")
    expected = set(DEFAULTS[config["arch"]])
    missing, extra = sorted(expected - set(config)), sorted(set(config) - expected)
    if missing or extra:
        what = f"lacks {', '.join(missing)}" if missing else f"has unknown {', '.join(extra)}"
        raise ModelError(f"{source}: the configuration {what}")
    cfg = dict(config)
    for key in _INT_KEYS[cfg["arch"]]:
        lo, hi = _LIMITS[key]
        if not (isinstance(cfg[key], int) and not isinstance(cfg[key], bool)
                and lo <= cfg[key] <= hi):
            raise ModelError(f"{source}: {key} must be an integer in [{lo}, {hi}], "
                             f"got {cfg[key]!r}")
    if cfg["arch"] == "dae" and cfg["kernel"] % 2 == 0:
        raise ModelError(f"{source}: kernel must be odd, got {cfg['kernel']}")
    if cfg["arch"] == "cae" and cfg["frames"] % 2 == 0:
        raise ModelError(f"{source}: frames must be odd, got {cfg['frames']}")
    if not isinstance(cfg["noise_channel"], bool):
        raise ModelError(f"{source}: noise_channel must be true or false")
    return cfg


class TemporalDAE(nn.Module):
    """1D convolutional denoising autoencoder of curves ``(N, C, T)`` -> ``(N, 1, T)``.

    Encoder: Conv1d(k) + ReLU at full rate, Conv1d(k, stride 2) + ReLU, then
    ``depth`` dilated Conv1d(k, dilation 2^i) + ReLU at half rate; decoder:
    linear up-sampling x2, concatenation with the full-rate features (skip),
    Conv1d(k) + ReLU and a 1x1 Conv1d to the noise estimate.

    Examples
    --------
    >>> net = TemporalDAE(DEFAULTS["dae"])
    >>> net(torch.ones(3, 2, 37)).shape
    torch.Size([3, 1, 37])
    """

    def __init__(self, config):
        super().__init__()
        cfg = check_config(config)
        w, k = cfg["width"], cfg["kernel"]
        self.noise_channel = cfg["noise_channel"]
        cin = 3 if cfg["noise_channel"] else 1
        self.inc = nn.Conv1d(cin, w, k, padding=k // 2)
        self.down = nn.Conv1d(w, w, k, stride=2, padding=k // 2)
        self.mid = nn.ModuleList(nn.Conv1d(w, w, k, padding=(k // 2) * 2 ** i, dilation=2 ** i)
                                 for i in range(cfg["depth"]))
        self.dec = nn.Conv1d(2 * w, w, k, padding=k // 2)
        self.out = nn.Conv1d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        if n % 2:
            x = F.pad(x, (0, 1), mode="replicate")
        inp, scale = _features(x, 1, self.noise_channel)
        e = F.relu(self.inc(inp))
        h = F.relu(self.down(e))
        for conv in self.mid:
            h = F.relu(conv(h)) + h
        u = F.interpolate(h, size=x.shape[-1], mode="linear", align_corners=False)
        noise = self.out(F.relu(self.dec(torch.cat([u, e], dim=1)))) * scale
        return (x[:, :1] - noise)[..., :n]


def _features(x: torch.Tensor, n_signal: int, noise_channel: bool):
    """Network input and noise scale: ``[x, (x - 1) / r, r]`` and ``r`` with the noise
    channel ``r`` (last), ``x`` and 1 without."""
    if not noise_channel:
        return x, 1.0
    sig, rel = x[:, :n_signal], x[:, n_signal:n_signal + 1].clamp(min=1e-4)
    return torch.cat([sig, (sig - 1.0) / rel, rel], dim=1), rel


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class SliceCAE(nn.Module):
    """2D convolutional autoencoder with skip connections: ``(N, C, X, Y)`` -> ``(N, 1, X, Y)``.

    ``levels`` x [two 3x3 Conv2d + ReLU, 2x2 max pooling] with ``width * 2^i``
    feature maps, a bottleneck block, then per level bilinear up-sampling,
    concatenation with the encoder features of that size and two 3x3 Conv2d
    + ReLU; a 1x1 Conv2d gives the noise estimate. The input is zero-padded to
    a multiple of ``2^levels`` (after :func:`_features`) and the output cropped back.

    Examples
    --------
    >>> net = SliceCAE(DEFAULTS["cae"])
    >>> net(torch.zeros(2, 6, 13, 10)).shape      # 5 frames and the noise channel
    torch.Size([2, 1, 13, 10])
    """

    def __init__(self, config):
        super().__init__()
        cfg = check_config(config)
        w, L = cfg["width"], cfg["levels"]
        self.noise_channel, self.frames = cfg["noise_channel"], cfg["frames"]
        cin = 2 * cfg["frames"] + 1 if cfg["noise_channel"] else cfg["frames"]
        self.centre = cfg["frames"] // 2
        self.levels = L
        widths = [w * 2 ** i for i in range(L + 1)]
        self.enc = nn.ModuleList(_block(cin if i == 0 else widths[i - 1], widths[i])
                                 for i in range(L))
        self.bottom = _block(widths[L - 1], widths[L])
        self.dec = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i])
                                 for i in reversed(range(L)))
        self.out = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nx, ny = x.shape[-2:]
        m = 2 ** self.levels
        h, scale = _features(x, self.frames, self.noise_channel)
        h = F.pad(h, (0, (-ny) % m, 0, (-nx) % m))
        skips = []
        for block in self.enc:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.bottom(h)
        for block, skip in zip(self.dec, reversed(skips)):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        noise = self.out(h)[..., :nx, :ny] * scale
        c = self.centre
        return x[:, c:c + 1] - noise


def build(config) -> nn.Module:
    """The network a configuration describes (untrained).

    Examples
    --------
    >>> type(build(DEFAULTS["dae"])).__name__
    'TemporalDAE'
    """
    cfg = check_config(config)
    return TemporalDAE(cfg) if cfg["arch"] == "dae" else SliceCAE(cfg)


def n_parameters(net: nn.Module) -> int:
    """Number of trainable parameters.

    Examples
    --------
    >>> n_parameters(nn.Linear(3, 2))
    8
    """
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


def save_weights(path, state_dict, config, meta=None) -> None:
    """Write a denoiser's tensors, configuration and JSON-able ``meta`` with their digests."""
    cfg = check_config(config)
    tensors = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    save_object({"format": DENOISE_FORMAT, "format_version": FORMAT_VERSION, "config": cfg,
                 "state_dict": tensors, "meta": dict(meta or {})}, path)


def load_network(path, arch: str):
    """Read, check and build the ``arch`` network of a weights file: ``(net, config, meta)``.

    The file is read without executing pickled code, its integrity digests
    (and its model card's SHA-256, when present) are checked, then its
    architecture, configuration and every tensor name and shape.

    Raises
    ------
    ModelError
        A missing, corrupt, edited or foreign file, or weights of another
        architecture; one line naming the file.
    """
    obj = safe_load(path, "denoiser weights")
    src = str(path)
    if obj.get("format") != DENOISE_FORMAT:
        raise ModelError(f"{src}: not a perfmap denoiser weights file (format "
                         f"{obj.get('format')!r})")
    verify_integrity(obj, path, "denoiser weights")
    if obj.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{src}: denoiser weights format version "
                         f"{obj.get('format_version')!r} is not supported")
    cfg = check_config(obj.get("config"), src)
    if cfg["arch"] != arch:
        raise ModelError(f"{src}: these are weights of the {cfg['arch']!r} denoiser, not "
                         f"{arch!r}")
    net = build(cfg)
    check_tensors(obj.get("state_dict"), net, src, net.__class__.__name__)
    net.load_state_dict(obj["state_dict"], strict=True)
    meta = obj.get("meta")
    return net.eval(), cfg, meta if isinstance(meta, dict) else {}


def shipped_weights(arch: str):
    """Path of the shipped weights of ``arch`` (see
    :func:`perfmap.neural.weights.default_model_path` for where they are looked up).

    Examples
    --------
    >>> shipped_weights("dae").name
    'denoise_dae.pt'
    """
    return default_model_path(MODEL_NAMES[arch])
