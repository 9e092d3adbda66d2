"""Self-supervised training of the PHAE encoder, with checkpoints and resume.

The loss is the PHAE paper's (section 2.2.3): the mean absolute error between
the input tissue curve and the physics decoder's reconstruction
(:class:`perfmap.neural.model.PHAE`; without delay, over the valid frames, in
the normalised units of :mod:`perfmap.neural.data`). No reference maps are used. Adam without weight
decay; the paper's learning rate (1e-4, constant) and batch size (1536) are
the defaults; a per-epoch cosine decay of the rate is optional.

Determinism: the network is initialised from ``seed``, the data are
regenerated from ``seed`` and the batch order of epoch ``e`` comes from
``seed`` and ``e``, so a run resumed from a checkpoint continues exactly as
the uninterrupted run would (on the same device and thread count).

After every epoch a checkpoint (model, optimiser, history, best weights; plain
tensors and primitive types only) is written atomically to
``<out>.ckpt``. At the end the weights of the epoch with the lowest
validation loss are saved to ``out`` (:func:`perfmap.neural.weights.save_weights`)
together with a JSON model card ``out`` with suffix ``.json``.

References
----------
PHAE paper (shared/seeds/002_*.txt), section 2.2.3.
Kingma DP, Ba J. Adam: a method for stochastic optimization. ICLR 2015.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import __version__
from ..errors import ModelError, ParameterError
from . import data as data_mod
from . import weights as wmod
from .config import DEFAULT_CONFIG
from .model import PHAE
from .weights import resolve_device

#: Noise-free monitoring curves (not used for training or model selection).
CLEAN_CURVES = 2000
#: Training arguments that must be equal to resume a checkpoint (they define the data).
DATA_KEYS = ("n_curves", "seed", "val_fraction", "snr_range", "mtt_range", "cbv_range",
             "manifest", "max_voxels", "batch_size", "lr", "schedule", "config")
#: Learning-rate schedules: the paper's constant rate, or a per-epoch cosine decay.
SCHEDULES = ("constant", "cosine")


def epoch_lr(opts, epoch: int) -> float:
    """Learning rate of ``epoch`` (1-based): constant, or cosine from ``lr`` towards 0."""
    if opts.schedule == "cosine":
        return opts.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / opts.epochs))
    return opts.lr


@dataclass
class TrainOptions:
    """Every training setting (recorded in checkpoints and the model card)."""

    out: str = "models/phae_dsc.pt"
    n_curves: int = 100000
    epochs: int = 65
    lr: float = 1e-4
    batch_size: int = 1536
    schedule: str = "constant"
    seed: int = 0
    val_fraction: float = 0.1
    device: str = "auto"
    snr_range: tuple = (5.0, 200.0)
    mtt_range: tuple = (1.0, 20.0)
    cbv_range: tuple = (0.5, 15.0)
    manifest: Optional[str] = None
    max_voxels: int = 20000
    init: Optional[str] = None
    checkpoint: Optional[str] = None
    threads: Optional[int] = None
    config: dict = field(default_factory=lambda: dict(DEFAULT_CONFIG))

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        for k in ("snr_range", "mtt_range", "cbv_range"):
            d[k] = [float(v) for v in d[k]]
        return d


@dataclass
class TrainResult:
    weights: Path
    card: Path
    history: list
    best_epoch: int


def build_dataset(opts: TrainOptions, log: Callable = print, extra_curves=None):
    """All curves (simulated + real exams) split into training and validation sets."""
    sets = []
    if opts.n_curves > 0:
        log(f"simulating {opts.n_curves} training curves (seed {opts.seed})")
        sets.append(data_mod.simulate_curves(opts.n_curves, opts.config, seed=opts.seed,
                                             snr_range=opts.snr_range,
                                             mtt_range=opts.mtt_range,
                                             cbv_range=opts.cbv_range))
    if extra_curves is not None:
        sets.append(extra_curves)
    full = data_mod.CurveSet.concat(sets)
    n = len(full)
    n_val = int(round(n * opts.val_fraction))
    if n - n_val < 1:
        raise ParameterError(f"{n} curves leave none for training with validation fraction "
                             f"{opts.val_fraction}")
    perm = np.random.default_rng(opts.seed + 7919).permutation(n)
    return full.subset(np.sort(perm[n_val:])), full.subset(np.sort(perm[:n_val])), full.source


def clean_set(opts: TrainOptions):
    """Noise-free simulated curves (another seed) to monitor the learned physics."""
    return data_mod.simulate_curves(CLEAN_CURVES, opts.config, seed=opts.seed + 104729,
                                    snr_range=(1e6, 1e6), mtt_range=opts.mtt_range,
                                    cbv_range=opts.cbv_range)


def _tensors(cs, device):
    return torch.from_numpy(cs.x).to(device), torch.from_numpy(cs.valid).to(device)


@torch.no_grad()
def evaluate(model: PHAE, cs, device, batch_size: int = 4096) -> dict:
    """Validation loss and MTT/delay errors against the simulation truth (where known)."""
    if len(cs) == 0:
        return {}
    model.eval()
    x, valid = _tensors(cs, device)
    losses, mtts, delays = [], [], []
    for s in range(0, len(cs), batch_size):
        sl = slice(s, s + batch_size)
        mtt, loss, delay = model(x[sl], valid[sl], with_delay=True)
        losses.append(loss.cpu())
        mtts.append(mtt.cpu())
        delays.append(delay.cpu())
    loss = torch.cat(losses).numpy()
    mtt = torch.cat(mtts).numpy()
    delay = torch.cat(delays).numpy()
    out = {"val_loss": float(loss.mean())}
    known = np.isfinite(cs.mtt)
    if known.any():
        rel = np.abs(mtt[known] / cs.mtt[known] - 1.0)
        out["val_mtt_median_rel_err"] = float(np.median(rel))
        out["val_mtt_within_25pct"] = float(np.mean(rel < 0.25))
        out["val_delay_mae_s"] = float(np.mean(np.abs(delay[known] - cs.delay[known])))
        bins = {}
        for lo, hi in ((0, 10), (10, 20), (20, 50), (50, np.inf)):
            sel = (cs.snr[known] >= lo) & (cs.snr[known] < hi)
            if sel.any():
                bins[f"snr_{lo}_{hi if np.isfinite(hi) else 'inf'}"] = \
                    float(np.median(rel[sel]))
        out["val_mtt_median_rel_err_by_snr"] = bins
    return out


def _checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def _state(model):
    return {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}


def _save_checkpoint(write, path, model, opt, opts, epoch, history, best, best_state, elapsed):
    payload = {
        "format": wmod.CHECKPOINT_FORMAT, "format_version": wmod.FORMAT_VERSION,
        "config": dict(opts.config), "model": _state(model), "optimizer": opt.state_dict(),
        "epoch": int(epoch), "history": history, "best_val_loss": float(best[0]),
        "best_epoch": int(best[1]), "best_model": best_state, "options": opts.as_dict(),
        "elapsed_s": float(elapsed)}
    write(path, lambda p: wmod.save_object(payload, p))


def _load_checkpoint(path, opts: TrainOptions) -> dict:
    ck = wmod.safe_load(path, "training checkpoint")
    if ck.get("format") != wmod.CHECKPOINT_FORMAT:
        raise ModelError(f"{path}: not a perfmap PHAE training checkpoint")
    saved = ck.get("options") or {}
    mine = opts.as_dict()
    keys = DATA_KEYS + (("epochs",) if opts.schedule == "cosine" else ())
    diff = [k for k in keys if saved.get(k) != mine.get(k)]
    if diff:
        raise ModelError(f"{path}: cannot resume: the checkpoint was made with other "
                         f"{', '.join(diff)} ({', '.join(f'{k}={saved.get(k)!r}' for k in diff)})")
    wmod.check_config(ck.get("config"), str(path))
    wmod.check_state_dict(ck.get("model"), ck["config"], str(path))
    return ck


def hardware() -> dict:
    """CPU/GPU description for the model card."""
    info = {"platform": platform.platform(), "processor": platform.processor() or None,
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    try:
        import os
        info["cpu_count"] = os.cpu_count()
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def _write_directly(path, writer) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer(Path(path))


def train(opts: TrainOptions, resume=None, command=None, progress: bool = True,
          log: Callable = print, extra_curves=None, write: Callable = _write_directly
          ) -> TrainResult:
    """Train the encoder and write the weights and model card.

    Parameters
    ----------
    opts : TrainOptions
        Data, optimisation and output settings.
    resume : path, optional
        A checkpoint written by an earlier run with the same data settings;
        training continues after its last completed epoch.
    command : list of str, optional
        The command line, recorded in the model card.
    progress : bool
        Show a tqdm progress bar per epoch.
    extra_curves : perfmap.neural.data.CurveSet, optional
        Curves of real exams added to the simulated ones
        (:func:`perfmap.pipeline.train.exam_curves` prepares them).
    write : callable
        ``write(path, writer)`` writes every file (weights, checkpoint, card);
        ``perfmap train`` passes the atomic :func:`perfmap.io.outputs.write_atomic`.

    Returns
    -------
    TrainResult
    """
    t_start = time.perf_counter()
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    for name in ("epochs", "batch_size"):
        if int(getattr(opts, name)) < 1:
            raise ParameterError(f"{name.replace('_', '-')} must be at least 1")
    if not opts.lr > 0:
        raise ParameterError("the learning rate must be positive")
    if opts.schedule not in SCHEDULES:
        raise ParameterError(f"schedule must be one of {', '.join(SCHEDULES)}")
    if not 0.0 <= opts.val_fraction < 1.0:
        raise ParameterError("the validation fraction must be in [0, 1)")
    if opts.n_curves <= 0 and extra_curves is None:
        raise ParameterError("no training data: give --n-curves > 0 and/or --manifest")
    opts.config = wmod.check_config(opts.config)
    device = resolve_device(opts.device)
    out = Path(opts.out)
    ckpt_path = Path(opts.checkpoint) if opts.checkpoint else _checkpoint_path(out)
    ck = _load_checkpoint(resume, opts) if resume else None

    torch.manual_seed(opts.seed)
    model = PHAE(opts.config).to(device)
    if opts.init and ck is None:
        state, cfg, _ = wmod.load_weights(opts.init)
        if cfg != opts.config:
            raise ModelError(f"{opts.init}: its configuration differs from the training one")
        model.encoder.load_state_dict(state)
        log(f"initialised from {opts.init}")
    opt = torch.optim.Adam(model.parameters(), lr=opts.lr, weight_decay=0.0)
    history, best, best_state, start_epoch, elapsed0 = [], (np.inf, 0), None, 0, 0.0
    if ck is not None:
        model.encoder.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history = list(ck.get("history") or [])
        start_epoch = int(ck["epoch"])
        best = (float(ck["best_val_loss"]), int(ck["best_epoch"]))
        best_state = ck.get("best_model")
        elapsed0 = float(ck.get("elapsed_s", 0.0))
        log(f"resuming {resume} after epoch {start_epoch}")

    t0 = time.perf_counter()
    train_set, val_set, sources = build_dataset(opts, log, extra_curves)
    data_s = time.perf_counter() - t0
    log(f"{len(train_set)} training and {len(val_set)} validation curves "
        f"({data_s:.1f} s to prepare); device {device}")
    clean = clean_set(opts)
    x_all, v_all = _tensors(train_set, device)
    n = len(train_set)
    from tqdm import tqdm

    for epoch in range(start_epoch + 1, opts.epochs + 1):
        te = time.perf_counter()
        model.train()
        for group in opt.param_groups:
            group["lr"] = epoch_lr(opts, epoch)
        gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen).to(device)
        total, count = 0.0, 0
        bar = tqdm(range(0, n, opts.batch_size), desc=f"epoch {epoch}/{opts.epochs}",
                   unit="batch", disable=not progress, leave=False)
        for s in bar:
            idx = perm[s:s + opts.batch_size]
            if len(idx) < 2:          # BatchNorm needs two samples
                continue
            _, loss, _ = model(x_all[idx], v_all[idx])
            loss = loss.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            bar.set_postfix(loss=f"{total / count:.5f}")
        bar.close()
        row = {"epoch": epoch, "lr": epoch_lr(opts, epoch), "train_loss": total / max(count, 1)}
        row.update(evaluate(model, val_set, device) if len(val_set) else {})
        row.update({"clean_" + k[4:]: v for k, v in evaluate(model, clean, device).items()
                    if k in ("val_mtt_median_rel_err", "val_mtt_within_25pct", "val_loss")})
        row["seconds"] = round(time.perf_counter() - te, 2)
        history.append(row)
        score = row.get("val_loss", row["train_loss"])
        if score < best[0]:
            best, best_state = (score, epoch), _state(model)
        log("epoch {epoch}: train {train_loss:.5f}".format(**row)
            + (f", val {row['val_loss']:.5f}" if "val_loss" in row else "")
            + (f", val MTT median rel. error {row['val_mtt_median_rel_err']:.3f}"
               if "val_mtt_median_rel_err" in row else "")
            + f", noise-free MTT median rel. error {row['clean_mtt_median_rel_err']:.3f}"
            + f" ({row['seconds']} s)")
        _save_checkpoint(write, ckpt_path, model, opt, opts, epoch, history, best, best_state,
                         elapsed0 + time.perf_counter() - t_start)

    if best_state is None:
        best_state = _state(model)
    wall = elapsed0 + time.perf_counter() - t_start
    final = history[-1] if history else {}
    best_row = next((r for r in history if r["epoch"] == best[1]), final)
    meta = {"perfmap_version": __version__, "trained_epochs": len(history),
            "selected_epoch": int(best[1]), "selection": "lowest validation loss",
            "best_val_loss": float(best[0]), "n_train": n, "n_val": len(val_set)}
    write(out, lambda p: wmod.save_weights(p, best_state, opts.config, meta))
    card = {
        "name": out.stem,
        "weights": out.name,
        "sha256": wmod.sha256(out),
        "size_bytes": out.stat().st_size,
        "perfmap_version": __version__,
        "command": command,
        "options": opts.as_dict(),
        "resumed_from": str(resume) if resume else None,
        "architecture": {
            "encoder": "4 x [Conv1d(k=3, s=1, p=1) + BatchNorm1d + LeakyReLU(0.02)], feature "
                       f"maps {opts.config['widths']}, global average pooling, Linear(256, 1), "
                       f"MTT = {opts.config['mtt_min']} + "
                       f"{opts.config['mtt_max'] - opts.config['mtt_min']} * sigmoid(z) s",
            "decoder": f"{opts.config['residue']} residue from MTT, CBF = CBV / MTT (CBV from "
                       "the integral ratio), exact convolution with the piecewise-linear AIF; "
                       "no delay in the loss (candidate delays are searched after encoding, "
                       "for Tmax and the val_delay metric only)",
            "parameters": int(sum(p.numel() for p in model.encoder.parameters())),
            "config": opts.config,
        },
        "training_data": {"sources": sources,
                          "simulation_ranges": data_mod.simulate_curves.__doc__
                          .split("Ranges (uniform unless \"log\"):")[1].split("Parameters")[0]
                          .strip() if opts.n_curves > 0 else None},
        "loss": "mean absolute error between the input tissue curve and its reconstruction "
                "(normalised units, valid frames, no delay), as in the paper",
        "optimizer": {"name": "Adam", "lr": opts.lr, "schedule": opts.schedule,
                      "weight_decay": 0.0, "batch_size": opts.batch_size},
        "history": history,
        "selected_epoch": int(best[1]),
        "validation": {k: v for k, v in best_row.items()
                       if k.startswith("val") or k.startswith("clean")},
        "validation_notes": "val_*: held-out curves of the training distribution (MTT errors "
                            "against the simulated residue MTT, where known); clean_*: "
                            f"{CLEAN_CURVES} noise-free simulated curves of another seed",
        "wall_time_s": round(wall, 1),
        "data_preparation_s": round(data_s, 1),
        "hardware": hardware(),
        "device": str(device),
    }
    card_path = out.with_suffix(".json")
    text = json.dumps(card, indent=2, default=_json_default) + "\n"
    write(card_path, lambda p: p.write_text(text, encoding="utf-8"))
    log(f"wrote {out} (epoch {best[1]}) and {card_path} in {wall:.0f} s")
    return TrainResult(weights=out, card=card_path, history=history, best_epoch=int(best[1]))


def _json_default(obj):
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (Path,)):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
