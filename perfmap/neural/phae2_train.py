"""Self-supervised training of the PHAE2 encoder (:mod:`perfmap.neural.phae2`).

The loss is only the mean absolute error between each normalised tissue
curve and the physics decoder's reconstruction from the encoded amplitude,
MTT, delay and residue shape (valid frames); no reference map enters it. The
simulation truth is used for monitoring only (validation metrics in the
history and the model card). Adam, per-epoch cosine learning rate; the
weights of the epoch with the lowest validation loss are kept.

Deterministic for a given seed, device and thread count: the data, the
initialisation and the batch order all come from ``seed``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..errors import ParameterError
from . import phae2, phae2_data


#: Noise-free monitoring curves (not used for training or model selection).
CLEAN_CURVES = 2000
#: Optimiser steps of the linear learning-rate warm-up.
WARMUP_STEPS = 500


@dataclass
class TrainOptions2:
    """Every PHAE2 training setting (recorded in the model card)."""

    out: str = "models/phae2_dsc.pt"
    n_curves: int = 100000
    epochs: int = 12
    lr: float = 1e-3
    batch_size: int = 256
    seed: int = 0
    val_fraction: float = 0.1
    snr_range: tuple = (5.0, 200.0)
    threads: int | None = None
    config: dict = field(default_factory=lambda: dict(phae2.DEFAULT_CONFIG))

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["snr_range"] = [float(v) for v in d["snr_range"]]
        return d


def _rel(est, true):
    return np.abs(est / true - 1.0)


@torch.no_grad()
def evaluate(model, data: dict, batch: int = 4096) -> dict:
    """Validation loss and errors against the simulation truth (monitoring only)."""
    model.eval()
    x, v = torch.from_numpy(data["x"]), torch.from_numpy(data["valid"])
    out = {"loss": [], "flow_rel": [], "mtt": [], "delay": []}
    for s in range(0, len(x), batch):
        par, _, loss = model(x[s:s + batch], v[s:s + batch])
        out["loss"].append(loss)
        for k in ("flow_rel", "mtt", "delay"):
            out[k].append(par[k])
    o = {k: torch.cat(val).double().numpy() for k, val in out.items()}
    fe, me = _rel(o["flow_rel"], data["flow_rel"]), _rel(o["mtt"], data["mtt"])
    res = {"val_loss": float(o["loss"].mean()), "flow_err": float(np.median(fe)),
           "mtt_err": float(np.median(me)),
           "delay_mae_s": float(np.mean(np.abs(o["delay"] - data["delay"])))}
    for lo, hi in ((5, 10), (10, 20), (20, 50), (50, 201)):
        sel = (data["snr"] >= lo) & (data["snr"] < hi)
        if sel.any():
            res[f"flow_err_snr{lo}_{hi}"] = float(np.median(fe[sel]))
            res[f"mtt_err_snr{lo}_{hi}"] = float(np.median(me[sel]))
    return res


def train(opts: TrainOptions2, log: Callable = print, write=None, command=None,
          data=None) -> dict:
    """Train, write ``opts.out`` (weights) and ``opts.out`` with ``.json`` (model card).

    ``write(path, writer)`` writes each file (``perfmap train`` passes the
    atomic writer); ``data`` = (train, val, clean) dicts skips the simulation
    (benchmarks reuse one data set for several architectures). Returns the
    model card as a dict.
    """
    t_start = time.perf_counter()
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    if not 0.0 < opts.val_fraction < 1.0:
        raise ParameterError("PHAE2 training needs a validation fraction in (0, 1)")
    if opts.epochs < 1 or opts.batch_size < 2 or not opts.lr > 0:
        raise ParameterError("epochs >= 1, batch size >= 2 and a positive rate are needed")
    cfg = phae2.check_config(opts.config)
    if data is None:
        data = make_data(opts, log)
    tr, val, clean = data
    data_s = time.perf_counter() - t_start
    torch.manual_seed(opts.seed)
    model = phae2.PHAE2(cfg)
    optim = torch.optim.Adam(model.parameters(), lr=opts.lr)
    x, v = torch.from_numpy(tr["x"]), torch.from_numpy(tr["valid"])
    n = len(x)
    history, best, best_state, step = [], (np.inf, 0), None, 0
    for epoch in range(1, opts.epochs + 1):
        te = time.perf_counter()
        lr = opts.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / opts.epochs))
        for g in optim.param_groups:
            g["lr"] = lr
        model.train()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(
            opts.seed * 1_000_003 + epoch))
        total = 0.0
        for s in range(0, n - 1, opts.batch_size):
            step += 1
            if step <= WARMUP_STEPS:      # linear warm-up: avoids saturating the outputs
                for g in optim.param_groups:
                    g["lr"] = lr * step / WARMUP_STEPS
            idx = perm[s:s + opts.batch_size]
            _, _, loss = model(x[idx], v[idx])
            loss = loss.mean()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            total += float(loss.detach()) * len(idx)
        row = {"epoch": epoch, "lr": lr, "train_loss": total / n}
        row.update(evaluate(model, val))
        row.update({"clean_" + k: val_ for k, val_ in evaluate(model, clean).items()
                    if k in ("flow_err", "mtt_err", "delay_mae_s")})
        row["seconds"] = round(time.perf_counter() - te, 1)
        history.append(row)
        if row["val_loss"] < best[0]:
            best = (row["val_loss"], epoch)
            best_state = {k: t.detach().clone() for k, t in model.encoder.state_dict().items()}
        log(f"epoch {epoch}: train {row['train_loss']:.5f} val {row['val_loss']:.5f} "
            f"flow err {row['flow_err']:.3f} MTT err {row['mtt_err']:.3f} "
            f"delay MAE {row['delay_mae_s']:.2f} s; noise-free flow {row['clean_flow_err']:.3f}"
            f" MTT {row['clean_mtt_err']:.3f} ({row['seconds']} s)")
    wall = time.perf_counter() - t_start
    out = Path(opts.out)
    write = write or _write_directly
    meta = {"perfmap_version": __version__, "selected_epoch": best[1],
            "best_val_loss": float(best[0]), "seed": opts.seed}
    write(out, lambda p: phae2.save_weights(p, best_state, cfg, meta))
    from .weights import sha256
    from .train import hardware

    sel = next(r for r in history if r["epoch"] == best[1])
    card = {
        "name": out.stem, "weights": out.name, "sha256": sha256(out),
        "size_bytes": out.stat().st_size, "perfmap_version": __version__,
        "command": command, "options": opts.as_dict(),
        "architecture": {
            "encoder": f"{len(cfg['widths'])} x [Conv1d(k={cfg['kernel_size']}, stride 2) + "
                       f"LeakyReLU({cfg['negative_slope']})] with {cfg['widths']} feature maps, "
                       f"flatten, fully connected {cfg['hidden']} + LeakyReLU, Linear(., 4): "
                       "log-amplitude, MTT, delay, residue shape",
            "decoder": f"{cfg['residue']} residue R(t - delay) scaled by F = CBV / MTT, exact "
                       "convolution with the piecewise-linear AIF (K2 on a fine grid)",
            "parameters": int(sum(p.numel() for p in model.encoder.parameters())),
            "macs_per_curve": phae2.flops_per_curve(cfg), "config": cfg},
        "training_data": {"simulated_curves": opts.n_curves, "seed": opts.seed,
                          "priors": phae2_data.PRIORS},
        "loss": "mean absolute error between the normalised tissue curve and its "
                "reconstruction (valid frames); no reference maps",
        "optimizer": {"name": "Adam", "lr": opts.lr, "schedule": "cosine per epoch",
                      "batch_size": opts.batch_size, "grad_clip_norm": 1.0,
                      "warmup_steps": WARMUP_STEPS},
        "history": history, "selected_epoch": best[1],
        "validation": {k: v for k, v in sel.items() if k not in ("epoch", "lr", "seconds")},
        "validation_notes": "val: held-out simulated curves (SNR 5-200, all residues); "
                            "clean: noise-free tissue curves of another seed; errors are "
                            "median relative errors of the flow F and MTT against the "
                            "simulation truth (monitoring only, not in the loss)",
        "wall_time_s": round(wall, 1), "data_preparation_s": round(data_s, 1),
        "hardware": hardware(), "device": "cpu",
    }
    text = json.dumps(card, indent=2, default=str) + "\n"
    write(out.with_suffix(".json"), lambda p: p.write_text(text, encoding="utf-8"))
    log(f"wrote {out} (epoch {best[1]}) in {wall:.0f} s")
    return card


def make_data(opts: TrainOptions2, log: Callable = print):
    """(train, validation, noise-free monitor) curve sets from ``opts``."""
    cfg = phae2.check_config(opts.config)
    log(f"simulating {opts.n_curves} curves (seed {opts.seed})")
    full = phae2_data.simulate(opts.n_curves, cfg, seed=opts.seed, snr_range=opts.snr_range)
    n_val = int(round(opts.n_curves * opts.val_fraction))
    perm = np.random.default_rng(opts.seed + 7919).permutation(len(full["x"]))
    tr = {k: a[np.sort(perm[n_val:])] for k, a in full.items()}
    val = {k: a[np.sort(perm[:n_val])] for k, a in full.items()}
    clean = phae2_data.simulate(CLEAN_CURVES, cfg, seed=opts.seed + 104729, snr_range=(1e6, 1e6))
    return tr, val, clean


def _write_directly(path, writer):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer(Path(path))
