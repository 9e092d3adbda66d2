"""Training data and loop of the learned denoisers ``dae`` and ``cae``.

Pairs of noisy and noise-free data come from perfmap's DSC phantom
(:func:`perfmap.core.phantom.make_phantom`, noise-free, with the grid,
frame count, TR, residue, tissue delay and dispersion drawn per phantom)
and, for ``dae``, as many analytic curves again: DCE-like enhancing curves
(:func:`enhancing_curves`), so the temporal model is not DSC-only, and
generic DSC-like dips (:func:`dip_curves`), so it does not learn only the
phantom's few tissue curve shapes. Noise is
drawn afresh for every batch: a baseline SNR log-uniform in ``snr_range``,
Gaussian or (for ``rician_fraction`` of the samples) Rician. Inputs are
normalised exactly as the denoisers normalise them
(:mod:`perfmap.neural.denoisers`) and the loss is the mean squared error
against the noise-free data divided by the squared relative noise level, so
every SNR counts alike. Adam with a cosine learning rate; the last epoch's
weights are kept.

Validation: held-out phantoms whose seeds differ from every training seed
(``VALIDATION_SEEDS``), denoised by the same code path as ``perfmap
denoise``; PSNR inside the brain against the noise-free phantom, data range
the range of the noise-free brain signal.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import __version__
from ..core.phantom import make_phantom
from ..errors import ParameterError
from . import denoise_nets, denoisers

#: Seeds of the held-out validation phantoms (training seeds are ``seed * 1000 + i``, i < 1000).
VALIDATION_SEEDS = (990_001, 990_002)
VALIDATION_SNRS = (10.0, 20.0, 50.0)
VALIDATION_SHAPE = (48, 48, 4)
RESIDUES = ("exponential", "lorentzian", "gamma", "linear")


@dataclass
class DenoiseTrainOptions:
    """Every denoiser training setting (recorded in the model card)."""

    arch: str = "dae"
    out: str = "models/denoise_dae.pt"
    epochs: int = 20
    steps_per_epoch: int = 100
    batch_size: Optional[int] = None
    lr: float = 2e-3
    seed: int = 0
    n_phantoms: int = 8
    snr_range: tuple = (5.0, 200.0)
    rician_fraction: float = 0.5
    curve_fraction: float = 0.5
    threads: Optional[int] = 1
    config: Optional[dict] = None

    def __post_init__(self):
        if self.arch not in denoise_nets.DEFAULTS:
            raise ParameterError(f"unknown denoiser architecture {self.arch!r}; choose one of: "
                                 f"{', '.join(denoise_nets.DEFAULTS)}")
        self.config = dict(self.config or denoise_nets.DEFAULTS[self.arch])
        if self.batch_size is None:
            self.batch_size = 256 if self.arch == "dae" else 12
        if not 0 <= self.curve_fraction < 1:
            raise ParameterError("curve_fraction must be in [0, 1)")
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 2 \
                or not self.lr > 0 or self.n_phantoms < 1:
            raise ParameterError("denoiser training needs epochs, steps per epoch and phantoms "
                                 ">= 1, a batch size >= 2 and a positive learning rate")

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["snr_range"] = [float(v) for v in d["snr_range"]]
        return d


def phantom_specs(n: int, seed: int) -> list:
    """Keyword arguments of ``n`` noise-free training phantoms (seeds ``seed * 1000 + i``).

    Examples
    --------
    >>> specs = phantom_specs(2, 0)
    >>> [s["seed"] for s in specs], specs[0]["snr"]
    ([0, 1], None)
    """
    rng = np.random.default_rng(seed + 12345)
    specs = []
    for i in range(n):
        nxy = int(rng.choice([40, 48, 56, 64]))
        tr = float(rng.choice([1.0, 1.5, 2.0]))
        frames = int(rng.choice([45, 60, 80]))
        specs.append({"shape": (nxy, int(rng.choice([40, 48, 64])), 6), "n_frames": frames,
                      "tr": tr, "snr": None, "seed": seed * 1000 + i,
                      "residue": str(rng.choice(RESIDUES)),
                      "delay": float(rng.choice([0.0, rng.uniform(0, 3)])),
                      "dispersion": float(rng.choice([0.0, rng.uniform(0.3, 2)]))})
    return specs


def enhancing_curves(n: int, frames: int, rng) -> np.ndarray:
    """``n`` noise-free DCE-like curves: ``S0 (1 + A (1 - e^{-u/a}) e^{-u/b})``, ``u = t - t0 > 0``.

    ``S0`` 200-1500, enhancement ``A`` 0.05-1.5, onset ``t0`` at 10-35 % of
    the frames, wash-in ``a`` 0.5-8 frames, wash-out ``b`` 20-2000 frames.

    Examples
    --------
    >>> c = enhancing_curves(3, 50, np.random.default_rng(0))
    >>> c.shape, bool((c > 0).all())
    ((3, 50), True)
    """
    t = np.arange(frames, dtype=np.float64)
    s0 = rng.uniform(200, 1500, (n, 1))
    amp = rng.uniform(0.05, 1.5, (n, 1))
    t0 = rng.uniform(0.10, 0.35, (n, 1)) * frames
    a, b = rng.uniform(0.5, 8, (n, 1)), np.exp(rng.uniform(np.log(20), np.log(2000), (n, 1)))
    u = np.clip(t - t0, 0, None)
    return (s0 * (1 + amp * (1 - np.exp(-u / a)) * np.exp(-u / b))).astype(np.float32)


def dip_curves(n: int, frames: int, rng) -> np.ndarray:
    """``n`` noise-free DSC-like curves: ``S0 exp(-D g(t)) (1 + L u / frames)``.

    ``g`` a gamma variate of peak 1 (shape 1.5-5, scale 0.5-4 frames) from
    ``t0`` at 10-60 % of the frames, depth ``D`` 0.02-2.5 (signal drops of 2-92
    %), a post-bolus baseline slope ``L`` of -0.2-0.2 (leakage, T1 effects).
    Generic shapes beyond the phantom's few tissue curves, so the network
    does not learn those alone.

    Examples
    --------
    >>> c = dip_curves(3, 40, np.random.default_rng(0))
    >>> c.shape, bool((c > 0).all()), bool(np.array_equal(c[:, 0], c[:, 1]))   # flat before t0
    ((3, 40), True, True)
    """
    t = np.arange(frames, dtype=np.float64)
    s0 = rng.uniform(200, 1500, (n, 1))
    t0 = rng.uniform(0.10, 0.60, (n, 1)) * frames
    alpha, beta = rng.uniform(1.5, 5, (n, 1)), rng.uniform(0.5, 4, (n, 1))
    u = np.clip(t - t0, 0, None)
    g = (u / (alpha * beta)) ** alpha * np.exp(alpha - u / beta)      # peak 1 at u = alpha beta
    depth = np.exp(rng.uniform(np.log(0.02), np.log(2.5), (n, 1)))
    slope = rng.uniform(-0.2, 0.2, (n, 1))
    return (s0 * np.exp(-depth * g) * (1 + slope * u / frames)).astype(np.float32)


def make_groups(opts: DenoiseTrainOptions, log: Callable = print) -> list:
    """Noise-free training data: one dict per phantom (``dae``: its curves; ``cae``: its
    signal and brain mask)."""
    rng = np.random.default_rng(opts.seed)
    groups = []
    for spec in phantom_specs(opts.n_phantoms, opts.seed):
        ph = make_phantom(**spec)
        brain = ph.masks["brain"]
        if opts.arch == "dae":
            rows = ph.signal[brain]
            n_extra = int(round(len(rows) * opts.curve_fraction / (1 - opts.curve_fraction)))
            rows = np.concatenate([rows, enhancing_curves(n_extra // 2, rows.shape[1], rng),
                                   dip_curves(n_extra - n_extra // 2, rows.shape[1], rng)])
            groups.append({"clean": rows})
        else:
            groups.append({"clean": np.where(brain[..., None], ph.signal, 0), "mask": brain,
                           "level": denoisers.volume_level(ph.signal, brain)})
    log(f"simulated {len(groups)} noise-free phantoms (seeds "
        f"{opts.seed * 1000}-{opts.seed * 1000 + opts.n_phantoms - 1})")
    return groups


def _noisy(clean: torch.Tensor, sigma: torch.Tensor, rician: torch.Tensor, gen) -> torch.Tensor:
    """Gaussian noise of SD ``sigma`` (broadcast), Rician magnitude where ``rician``."""
    real = clean + sigma * torch.randn(clean.shape, generator=gen)
    imag = sigma * torch.randn(clean.shape, generator=gen)
    return torch.where(rician, torch.sqrt(real * real + imag * imag), real)


def _draw_noise(n: int, opts, gen) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = (math.log(v) for v in opts.snr_range)
    snr = torch.exp(lo + (hi - lo) * torch.rand(n, generator=gen))
    rician = torch.rand(n, generator=gen) < opts.rician_fraction
    return snr, rician


def dae_batch(group: dict, opts, gen) -> tuple:
    """(input, target, weight) of one ``dae`` batch, normalised as the denoiser does."""
    rows = group["clean"]
    idx = torch.randint(0, len(rows), (opts.batch_size,), generator=gen)
    clean = torch.from_numpy(rows)[idx]
    snr, rician = _draw_noise(len(idx), opts, gen)
    ref = clean.median(dim=1).values * (0.7 + 0.6 * torch.rand(len(idx), generator=gen))
    sigma = (ref / snr)[:, None]
    noisy = _noisy(clean, sigma, rician[:, None], gen)
    level = noisy.median(dim=1).values.clamp(min=1e-3)[:, None]
    x = (noisy / level)[:, None]
    rel = sigma / level
    if opts.config["noise_channel"]:
        x = torch.cat([x, rel[:, None].expand_as(x)], dim=1)
    return x, (clean / level)[:, None], 1.0 / rel[:, None] ** 2


def cae_batch(group: dict, opts, gen) -> tuple:
    """(input, target, weight) of one ``cae`` batch (random slices and frames, flips)."""
    clean_all, mask = group["clean"], group["mask"]
    Z, T, half = clean_all.shape[2], clean_all.shape[3], opts.config["frames"] // 2
    z = torch.randint(0, Z, (opts.batch_size,), generator=gen).numpy()
    t = torch.randint(0, T, (opts.batch_size,), generator=gen).numpy()
    nb = np.clip(t[:, None] + np.arange(-half, half + 1), 0, T - 1)
    clean = torch.from_numpy(np.moveaxis(clean_all[:, :, z[:, None], nb], (0, 1), (2, 3)))
    m = torch.from_numpy(np.moveaxis(mask[:, :, z], -1, 0))[:, None]
    snr, rician = _draw_noise(len(z), opts, gen)
    level = group["level"]
    sigma = (level * (0.8 + 0.4 * torch.rand(len(z), generator=gen)) / snr)[:, None, None, None]
    noisy = torch.where(m, _noisy(clean, sigma, rician[:, None, None, None], gen), 0) / level
    rel = sigma / level
    if opts.config["noise_channel"]:
        noisy = torch.cat([noisy, rel.expand_as(noisy[:, :1])], dim=1)
    c = half
    target = clean[:, c:c + 1] / level
    flip = [d for d in (2, 3) if torch.rand(1, generator=gen).item() < 0.5]
    if flip:
        noisy, target, m = noisy.flip(flip), target.flip(flip), m.flip(flip)
    return noisy, target, m.float() / rel ** 2


def train_network(opts: DenoiseTrainOptions, groups: list, log: Callable = print):
    """Train a network on ``groups`` (:func:`make_groups`): ``(net, history)``."""
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed * 7919 + 1)
    net = denoise_nets.build(opts.config)
    optim = torch.optim.Adam(net.parameters(), lr=opts.lr)
    make = dae_batch if opts.arch == "dae" else cae_batch
    total_steps, step, history = opts.epochs * opts.steps_per_epoch, 0, []
    for epoch in range(1, opts.epochs + 1):
        t0, losses = time.perf_counter(), []
        net.train()
        for _ in range(opts.steps_per_epoch):
            lr = opts.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            for g in optim.param_groups:
                g["lr"] = lr
            group = groups[int(torch.randint(0, len(groups), (1,), generator=gen))]
            x, target, weight = make(group, opts, gen)
            loss = (((net(x) - target) ** 2) * weight).mean()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optim.step()
            losses.append(float(loss.detach()))
            step += 1
        history.append({"epoch": epoch, "lr": lr, "train_loss": float(np.mean(losses)),
                        "seconds": round(time.perf_counter() - t0, 1)})
        log(f"epoch {epoch}: loss {history[-1]['train_loss']:.4f} "
            f"({history[-1]['seconds']} s)")
    return net.eval(), history


def psnr(truth: np.ndarray, est: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) inside ``mask``, data range the range of ``truth`` there
    (:func:`skimage.metrics.peak_signal_noise_ratio`, as the benchmarks).

    Examples
    --------
    >>> t = np.zeros((2, 1, 1, 2)); t[0, 0, 0, 1] = 10; m = np.ones((2, 1, 1), bool)
    >>> round(psnr(t, t + 1, m), 1)
    20.0
    """
    from skimage.metrics import peak_signal_noise_ratio

    a, b = truth[mask].astype(np.float64), est[mask].astype(np.float64)
    return float(peak_signal_noise_ratio(a, b, data_range=float(a.max() - a.min())))


def validation_phantoms(shape=VALIDATION_SHAPE, frames: int = 60):
    """(clean, noisy-by-SNR, brain mask) of the held-out phantoms (:data:`VALIDATION_SEEDS`)."""
    out = []
    for seed in VALIDATION_SEEDS:
        clean = make_phantom(shape=shape, n_frames=frames, snr=None, seed=seed)
        noisy = {snr: make_phantom(shape=shape, n_frames=frames, snr=snr, seed=seed).signal
                 for snr in VALIDATION_SNRS}
        out.append((clean.signal, noisy, clean.masks["brain"]))
    return out


def validate(denoiser, phantoms) -> dict:
    """Mean PSNR before and after ``denoiser`` at each SNR: ``{"snr10": {...}, ...}``."""
    res = {}
    for snr in VALIDATION_SNRS:
        before, after = [], []
        for clean, noisy, brain in phantoms:
            before.append(psnr(clean, noisy[snr], brain))
            after.append(psnr(clean, denoiser.denoise(noisy[snr], brain).data, brain))
        b, a = float(np.mean(before)), float(np.mean(after))
        res[f"snr{snr:g}"] = {"noisy_db": round(b, 2), "denoised_db": round(a, 2),
                              "gain_db": round(a - b, 2)}
    return res


def wrap(net, config: dict, chunk: Optional[int] = None):
    """A registered denoiser around an in-memory network (validation and benchmarks)."""
    cls = denoisers.TemporalDAEDenoiser if config["arch"] == "dae" else \
        denoisers.SliceCAEDenoiser
    den = cls.__new__(cls)
    den.net, den.config, den.meta = net, dict(config), {}
    den.chunk, den.threads, den.device = chunk or cls.default_chunk, None, torch.device("cpu")
    den.path, den.sha256 = None, None
    return den


def train(opts: DenoiseTrainOptions, log: Callable = print, write=None, command=None,
          validation=None) -> dict:
    """Train, validate, write ``opts.out`` and its model card ``.json``; return the card.

    ``write(path, writer)`` writes each file (``perfmap train`` passes the
    atomic writer); ``validation`` reuses :func:`validation_phantoms`.
    """
    t_start = time.perf_counter()
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    groups = make_groups(opts, log)
    net, history = train_network(opts, groups, log)
    train_s = time.perf_counter() - t_start
    val = validate(wrap(net, opts.config), validation or validation_phantoms())
    log("validation PSNR gain: " + ", ".join(f"{k} {v['gain_db']:+.1f} dB"
                                                for k, v in val.items()))
    out = Path(opts.out)
    meta = {"perfmap_version": __version__, "seed": opts.seed, "validation": val}
    (write or _write_directly)(out, lambda p: denoise_nets.save_weights(
        p, net.state_dict(), opts.config, meta))
    card = _card(opts, net, history, val, out, command, train_s,
                 time.perf_counter() - t_start)
    text = json.dumps(card, indent=2, default=str) + "\n"
    (write or _write_directly)(out.with_suffix(".json"),
                               lambda p: p.write_text(text, encoding="utf-8"))
    log(f"wrote {out} in {card['wall_time_s']:.0f} s")
    return card


def _card(opts, net, history, val, out: Path, command, train_s, wall) -> dict:
    from .train import hardware
    from .weights import sha256

    return {
        "name": out.stem, "weights": out.name, "sha256": sha256(out),
        "size_bytes": out.stat().st_size, "perfmap_version": __version__,
        "command": command, "options": opts.as_dict(),
        "architecture": {"network": type(net).__name__, "config": opts.config,
                         "parameters": denoise_nets.n_parameters(net),
                         "description": (net.__doc__ or "").strip().splitlines()[0]},
        "training_data": {
            "phantoms": [dict(s, shape=list(s["shape"])) for s in
                         phantom_specs(opts.n_phantoms, opts.seed)],
            "analytic_curves": (f"{opts.curve_fraction:.0%} of the dae training curves: half "
                                "DCE-like enhancement (enhancing_curves), half DSC-like "
                                "gamma-variate dips (dip_curves)") if opts.arch == "dae"
            else "none",
            "noise": f"SNR log-uniform {opts.snr_range[0]:g}-{opts.snr_range[1]:g}, Rician for "
                     f"{opts.rician_fraction:.0%} of the samples, Gaussian otherwise; drawn "
                     "afresh for every batch"},
        "validation_seeds": list(VALIDATION_SEEDS),
        "validation": val,
        "validation_notes": f"held-out DSC phantoms {VALIDATION_SHAPE} x 60 frames, Gaussian "
                            "noise; PSNR inside the brain against the noise-free phantom",
        "loss": "MSE against the noise-free data / (relative noise SD)^2",
        "optimizer": {"name": "Adam", "lr": opts.lr, "schedule": "cosine per step",
                      "batch_size": opts.batch_size, "grad_clip_norm": 1.0},
        "history": history, "training_s": round(train_s, 1), "wall_time_s": round(wall, 1),
        "hardware": hardware(), "device": "cpu",
    }


def _write_directly(path, writer):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer(Path(path))
