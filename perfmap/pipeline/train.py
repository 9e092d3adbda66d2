"""``perfmap train``: PHAE training with real exams from a manifest, written atomically.

The training loop is :func:`perfmap.neural.train.train`; this module adds what
needs files: the exams of a manifest, prepared exactly as :func:`perfmap.compute`
prepares them (:class:`perfmap.models.DSCModel`'s steps up to the AIF), and
the atomic writer for the weights, checkpoints and model card.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..errors import InputDataError
from ..io import nifti
from ..io.outputs import write_atomic
from ..io.series import load_series
from .kinds import get_kind
from .manifest import read_manifest


def exam_curves(manifest, config: dict, max_voxels: int = 20000, seed: int = 0,
                log: Optional[Callable] = None):
    """Encoder inputs from the real exams of a manifest, for (fine-)tuning PHAE.

    Columns: ``subject``, ``input``, optional ``aif`` (3D arterial mask or
    ``auto``), ``mask`` (brain mask or ``auto``), ``te``, ``tr`` (s); read by
    :func:`perfmap.pipeline.manifest.read_manifest`. Each exam goes through the
    DSC model's own loading, baseline detection, dR2* conversion and AIF
    selection; at most ``max_voxels`` brain voxels per exam are drawn at random
    (with ``seed``).

    Returns
    -------
    perfmap.neural.data.CurveSet

    Raises
    ------
    PerfmapError
        Any exam that cannot be read or prepared (the message names it).
    """
    from ..neural.data import CurveSet, apply_plan, grid_plan

    entries = read_manifest(manifest).entries
    rng = np.random.default_rng(seed)
    sets, notes = [], []
    for entry in entries:
        volume = load_series(entry.input, te=entry.te, tr=entry.tr)
        model, _ = get_kind("dsc").build_model(volume, "csvd", {}, leakage="none")
        brain = "auto" if entry.mask == "auto" else nifti.load_mask(entry.mask, volume,
                                                                    "brain mask")
        aif = "auto" if entry.aif == "auto" else nifti.load_mask(entry.aif, volume, "AIF mask")
        try:
            work = model.prepare(volume.data, mask=brain, aif=aif,
                                 frame_times=volume.frame_times)
        except InputDataError as exc:
            raise InputDataError(f"{entry.input}: {exc}") from None
        conc = work.brain_conc
        ok = ~work.invalid & np.all(np.isfinite(conc), axis=1)
        idx = np.flatnonzero(ok)
        if len(idx) > max_voxels:
            idx = np.sort(rng.choice(idx, max_voxels, replace=False))
        plan = grid_plan(work.aif.curve, work.grid.dt, config)
        x, _, failed = apply_plan(conc[idx], plan)
        x = x[~failed]
        k = len(x)
        nan = np.full(k, np.nan, np.float32)
        sets.append(CurveSet(x, np.broadcast_to(plan.valid, (k, plan.valid.size)).copy(),
                             nan, nan.copy(), nan.copy(),
                             source=[f"exam {entry.subject}: {k} curves from {entry.input}"]))
        notes.append(f"{entry.subject}: {k} curves")
    if log is not None:     # only once every exam is read: a bad one prints nothing else
        for note in notes:
            log(note)
    return CurveSet.concat(sets)


def run_training(opts, resume=None, command=None, progress: bool = True,
                 log: Callable = print):
    """Train PHAE (:func:`perfmap.neural.train.train`) with ``opts.manifest`` exams and
    atomic writes of the weights, checkpoints and card."""
    from ..neural.train import train

    extra = None
    if opts.manifest:
        extra = exam_curves(opts.manifest, opts.config, opts.max_voxels, seed=opts.seed,
                            log=log)
        log(f"loaded real exams from {opts.manifest}")
    return train(opts, resume=resume, command=command, progress=progress, log=log,
                 extra_curves=extra, write=write_atomic)


def run_training2(opts, command=None, log: Callable = print) -> dict:
    """Train PHAE2 (:func:`perfmap.neural.phae2_train.train`) on simulated curves, writing
    the weights and the model card atomically; returns the card."""
    from ..neural.phae2_train import train

    return train(opts, log=log, write=write_atomic, command=command)


def run_denoise_training(options: dict, command=None, log: Callable = print) -> dict:
    """Train a learned denoiser (:func:`perfmap.neural.denoise_train.train`) with
    :class:`~perfmap.neural.denoise_train.DenoiseTrainOptions` from ``options``, writing the
    weights and the model card atomically; returns the card."""
    from ..neural.denoise_train import DenoiseTrainOptions, train

    return train(DenoiseTrainOptions(**options), log=log, write=write_atomic, command=command)
