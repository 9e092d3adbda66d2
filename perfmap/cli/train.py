"""``perfmap train``: training of the PHAE encoders and of the learned denoisers (thin wrapper)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from ._common import handle_errors
from .options import device_option, overwrite_option, seed_option, verbosity, verbosity_option


def _range(ctx, param, value):
    if value is None:
        return None
    lo, sep, hi = value.partition(":")
    try:
        lo_f, hi_f = float(lo), float(hi if sep else lo)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not LOW:HIGH", ctx=ctx, param=param) from None
    if not 0 < lo_f <= hi_f:
        raise click.BadParameter(f"{value!r} must be positive with LOW <= HIGH", ctx=ctx,
                                 param=param)
    return (lo_f, hi_f)


def _positive(ctx, param, value):
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise click.BadParameter(f"{value:g} must be a positive finite number", ctx=ctx,
                                 param=param)
    return value


#: Defaults that differ between the tasks: (phae, phae2).
TASK_DEFAULTS = {"out": ("models/phae_dsc.pt", "models/phae2_dsc.pt"), "epochs": (65, 12),
                 "lr": (1e-4, 1e-3), "batch_size": (1536, 256), "n_curves": (100000, 100000)}


@click.command()
@click.option("--task", type=click.Choice(["phae", "phae2", "denoise"]), default="phae",
              show_default=True,
              help="phae: the paper's encoder (MTT only); phae2: the encoder of amplitude, "
              "MTT, delay and residue shape (--method phae2); denoise: a learned denoiser "
              "(--arch, --denoise/--method dae|cae).")
@click.option("--arch", type=click.Choice(["dae", "cae"]),
              help="--task denoise: dae (temporal 1D autoencoder of voxel curves) or cae (2D "
              "autoencoder of slices) [default: dae].")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=100, show_default=True,
              help="--task denoise: optimiser steps per epoch (noise is drawn afresh each).")
@click.option("--phantoms", type=click.IntRange(min=1), default=8, show_default=True,
              help="--task denoise: noise-free training phantoms (seeds SEED*1000 + i).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Weights file to write (a model card .json is written next to it) "
              "[default: models/phae_dsc.pt or models/phae2_dsc.pt].")
@click.option("--epochs", type=click.IntRange(min=1),
              help="[default: 65 (phae), 12 (phae2), 30 (denoise)]")
@click.option("--lr", type=float, callback=_positive,
              help="Adam learning rate [default: 1e-4 (phae), 1e-3 (phae2)].")
@click.option("--batch-size", type=click.IntRange(min=2),
              help="[default: 1536 (phae), 256 (phae2)]")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant",
              show_default=True, help="Learning rate: constant (the paper) or cosine decay "
              "per epoch towards 0.")
@seed_option("Seed of the initialisation, the simulated data and the batch order.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1,
              show_default=True, help="Fraction of the curves held out for validation.")
@device_option
@click.option("--n-curves", type=click.IntRange(min=0),
              help="Simulated training curves (0: only the --manifest exams) [default: "
              "100000 (both tasks)].")
@click.option("--snr", "snr_range", callback=_range, default="5:200", show_default=True,
              metavar="LOW:HIGH", help="Baseline SNR range of the simulated curves.")
@click.option("--mtt", "mtt_range", callback=_range, default="1:20", show_default=True,
              metavar="LOW:HIGH", help="MTT range (s) of the simulated curves.")
@click.option("--cbv", "cbv_range", callback=_range, default="0.5:15", show_default=True,
              metavar="LOW:HIGH", help="CBV range (ml/100 g) of the simulated curves.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
              help="TSV of real exams (subject, input, aif mask, mask; optional te, tr) "
              "added to the training curves.")
@click.option("--max-voxels", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Brain voxels drawn per manifest exam.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False),
              help="Start from these weights (fine-tuning), e.g. the shipped model.")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), metavar="CHECKPOINT",
              help="Continue an interrupted run from its checkpoint.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Checkpoint written after every epoch (default: OUT.ckpt).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar.")
@overwrite_option
@verbosity_option
@handle_errors
def train(task, arch, steps_per_epoch, phantoms, out, epochs, lr, batch_size, schedule, seed,
          val_fraction, device, n_curves, snr_range, mtt_range, cbv_range, manifest, max_voxels,
          init, resume, checkpoint, threads, progress, overwrite):
    """Train the PHAE or PHAE2 encoder without reference maps (self-supervised), or a
    learned denoiser on noisy/noise-free phantom pairs (--task denoise --arch dae|cae).

    The loss is the mean absolute error between each tissue curve and its
    reconstruction by the physics decoder (Lorentzian residue from the encoded
    MTT, CBF = CBV / MTT, convolution with the AIF). Data: simulated curves
    (--n-curves, --snr, --mtt, --cbv) and/or real exams (--manifest), which is
    how to fine-tune on your scanner (with --init models/phae_dsc.pt).
    """
    from ..errors import OutputExistsError, ParameterError
    from ..io.outputs import check_folder

    if arch is not None and task != "denoise":
        raise click.UsageError("--arch applies to --task denoise only")
    if task == "denoise":
        given = {k: v for k, v in (("n_curves", n_curves), ("manifest", manifest),
                                   ("init", init), ("resume", resume),
                                   ("checkpoint", checkpoint)) if v is not None}
        if given:
            raise click.UsageError(f"--task denoise does not take "
                                   f"{', '.join('--' + k.replace('_', '-') for k in given)}")
        return _train_denoiser(arch or "dae", out, epochs, steps_per_epoch, phantoms, lr,
                               batch_size, seed, snr_range, threads, overwrite)
    i = 0 if task == "phae" else 1
    given = {"out": out, "epochs": epochs, "lr": lr, "batch_size": batch_size,
             "n_curves": n_curves}
    out, epochs, lr, batch_size, n_curves = (TASK_DEFAULTS[k][i] if v is None else v
                                             for k, v in given.items())
    out_path = Path(out)
    command = ["perfmap", "train"] + sys.argv[2:] \
        if len(sys.argv) > 1 and sys.argv[1] == "train" else None
    level = verbosity()
    log = (lambda msg: click.echo(msg, err=True)) if level >= 0 else (lambda msg: None)
    # Where the weights, card and checkpoints go must be usable before hours of training.
    check_folder(out_path.parent, "--out")
    if checkpoint is not None:
        check_folder(Path(checkpoint).parent, "--checkpoint")
    if task == "phae2":
        unsupported = [name for name, v in (("--manifest", manifest), ("--init", init),
                                            ("--resume", resume), ("--checkpoint", checkpoint))
                       if v]
        if unsupported:
            raise ParameterError(f"--task phae2 does not support {', '.join(unsupported)}")
        if n_curves < 1:
            raise ParameterError("--task phae2 needs --n-curves > 0")
        if out_path.exists() and not overwrite:
            raise OutputExistsError(f"{out_path}: exists; use --overwrite to replace it")
        from ..neural.phae2_train import TrainOptions2
        from ..pipeline.train import run_training2

        opts = TrainOptions2(out=str(out_path), n_curves=n_curves, epochs=epochs, lr=lr,
                             batch_size=batch_size, seed=seed, val_fraction=val_fraction,
                             snr_range=snr_range, threads=threads)
        card = run_training2(opts, command=command, log=log)
        if level >= 0:
            click.echo(f"{out_path} (epoch {card['selected_epoch']} of {len(card['history'])})")
            click.echo(str(out_path.with_suffix(".json")))
        return
    from ..neural.train import TrainOptions
    from ..pipeline.train import run_training as run_train

    if out_path.exists() and not overwrite and not resume:
        raise OutputExistsError(f"{out_path}: exists; use --overwrite to replace it")
    opts = TrainOptions(out=str(out_path), n_curves=n_curves, epochs=epochs, lr=lr,
                        batch_size=batch_size, schedule=schedule, seed=seed,
                        val_fraction=val_fraction, device=device, snr_range=snr_range,
                        mtt_range=mtt_range, cbv_range=cbv_range, manifest=manifest,
                        max_voxels=max_voxels, init=init, checkpoint=checkpoint, threads=threads)
    result = run_train(opts, resume=resume, command=command,
                       progress=progress and level >= 0, log=log)
    if level >= 0:
        click.echo(f"{result.weights} (epoch {result.best_epoch} of {len(result.history)})")
        click.echo(str(result.card))


def _train_denoiser(arch, out, epochs, steps_per_epoch, phantoms, lr, batch_size, seed,
                    snr_range, threads, overwrite):
    """``--task denoise``: check the output, train, print the weights and card paths."""
    from ..errors import OutputExistsError
    from ..io.outputs import check_folder
    from ..pipeline.train import run_denoise_training

    out_path = Path(out or f"models/denoise_{arch}.pt")
    check_folder(out_path.parent, "--out")
    if out_path.exists() and not overwrite:
        raise OutputExistsError(f"{out_path}: exists; use --overwrite to replace it")
    level = verbosity()
    log = (lambda msg: click.echo(msg, err=True)) if level >= 0 else (lambda msg: None)
    command = ["perfmap", "train"] + sys.argv[2:] \
        if len(sys.argv) > 1 and sys.argv[1] == "train" else None
    options = {"arch": arch, "out": str(out_path), "epochs": epochs or 30,
               "steps_per_epoch": steps_per_epoch, "n_phantoms": phantoms, "seed": seed,
               "snr_range": snr_range, "threads": threads or 1, "batch_size": batch_size}
    if lr is not None:
        options["lr"] = lr
    card = run_denoise_training(options, command=command, log=log)
    if level >= 0:
        gains = ", ".join(f"{k} {v['gain_db']:+.1f} dB" for k, v in card["validation"].items())
        click.echo(f"{out_path} (validation PSNR gain {gains})")
        click.echo(str(out_path.with_suffix(".json")))
