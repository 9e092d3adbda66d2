"""Noise robustness study (``perfmap robustness``), after the PHAE paper's Fig. 5.

For every subject of a manifest and every SNR level, Gaussian noise is added
to the DSC series so that its baseline SNR reaches the level; the degraded
series are processed as ordinary batches (the AIF and the maps are recomputed
from the degraded data with every method), and the grading AUC is reported
against the SNR.

SNR definition (PHAE paper, section 2: "the mean of the DSC signal baseline
divided by its standard deviation"), measured inside the brain mask over the
steady pre-bolus baseline frames (:func:`perfmap.core.concentration.detect_baseline`):

- ``mean`` = mean baseline signal over the brain voxels;
- ``sd`` = noise standard deviation: the root mean square over the brain
  voxels of each voxel's temporal standard deviation over the baseline frames
  (so anatomy, i.e. signal differences between voxels, is not counted as
  noise);
- ``SNR = mean / sd``.

To reach a level ``L``, zero-mean Gaussian noise of variance
``(mean / L)**2 - sd**2`` is added to every voxel and frame (the noise already
present counts). When the series is already noisier than ``L`` nothing is
added and the record says so (``noise_note``). The noise of (subject, level)
is drawn from ``numpy.random.SeedSequence([seed, crc32(subject), level*1000])``,
so a rerun gives identical series and numbers.

Layout of ``DIR``::

    DIR/degraded/snr<L>/<subject>.nii.gz, <subject>.json, manifest.tsv
    DIR/degraded/noise.tsv        subject, level, measured SNR before/after, added SD
    DIR/snr<L>/...                an ordinary batch folder per level
    DIR/cohort.tsv                all levels, with an ``snr`` column
    DIR/robustness.html, .json    grading report with AUC vs SNR
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import OutputExistsError, ParameterError, PerfmapError
from ..io import nifti, tables
from ..io.outputs import OutputSet, check_folder, write_text_atomic
from . import batch as batch_mod
from . import executors
from .kinds import get_kind
from .noise import add_noise, baseline_region, baseline_snr, noise_seed
from .manifest import (COHORT_NAME, Manifest, ManifestEntry, base_row, failed_row,
                       format_manifest, read_manifest, write_cohort)

DEGRADED_DIR = "degraded"
NOISE_TABLE = "noise.tsv"
NOISE_COLUMNS = ("subject", "snr", "snr_input", "snr_achieved", "added_sd", "noise_note")
#: Columns added to the cohort of a robustness study.
ROBUSTNESS_COLUMNS = ("snr", "snr_input", "snr_achieved", "noise_note")

logger = logging.getLogger(__name__)


def level_name(level: float) -> str:
    """Folder name of an SNR level (``snr50``, ``snr7.5``)."""
    return f"snr{level:g}"


def _write_degraded(out: OutputSet, name: str, data: np.ndarray, volume) -> None:
    img = nifti.map_image(data, volume)
    out.write(name, lambda p: nifti.save_image(img, p))


@dataclass(frozen=True)
class DegradeTask:
    """Degrade one subject at every level (picklable plain data)."""

    entry: ManifestEntry
    levels: tuple
    seed: int
    root: str
    overwrite: bool = False
    resume: bool = False
    kind: str = "dsc"


def _record(subject, level, **values) -> dict:
    rec = {"subject": subject, "snr": float(level), "snr_input": math.nan,
           "snr_achieved": math.nan, "added_sd": math.nan, "noise_note": "", "error": "",
           "input": ""}
    rec.update(values)
    return rec


def _reuse(task: DegradeTask, level: float, path: Path, side: Path) -> Optional[dict]:
    try:
        noise = json.loads(side.read_text())["perfmapNoise"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not path.is_file() or noise.get("snr") != level or noise.get("seed") != task.seed:
        return None
    return _record(task.entry.subject, level, input=str(path),
                   **{k: noise.get(k, math.nan) for k in NOISE_COLUMNS[2:5]},
                   noise_note=noise.get("note", ""))


def degrade_subject(task: DegradeTask) -> list:
    """Write one subject's degraded series at every level; return one record per level.

    A subject that cannot be read or measured gives records with ``error`` set
    (nothing written); the study goes on with the others. Library warnings
    (nibabel, NumPy) are not printed (this may run in a worker process): they
    are returned in each record's ``warnings`` list, which
    :func:`run_robustness` logs (shown with ``-v``).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = _degrade_subject(task)
    messages = list(dict.fromkeys(f"{task.entry.subject}: {w.category.__name__}: {w.message}"
                                  for w in caught))
    for rec in records:
        rec["warnings"] = messages
    return records


def _degrade_subject(task: DegradeTask) -> list:
    from ..io.series import load_series

    entry = task.entry
    root = Path(task.root)
    names = {lvl: (root / level_name(lvl) / f"{entry.subject}.nii.gz",
                   root / level_name(lvl) / f"{entry.subject}.json") for lvl in task.levels}
    records = {}
    if task.resume:
        for lvl, (path, side) in names.items():
            rec = _reuse(task, lvl, path, side)
            if rec is not None:
                records[lvl] = rec
    todo = [lvl for lvl in task.levels if lvl not in records]
    if todo:
        try:
            volume = load_series(entry.input, te=entry.te, tr=entry.tr)
            mask = None if entry.mask == "auto" else \
                nifti.load_mask(entry.mask, volume, "brain mask")
            mask, window = baseline_region(volume.data, mask, task.kind)
            mean, sd, snr_in = baseline_snr(volume.data, mask, window)
            sidecar = nifti.read_sidecar(entry.input) if nifti.is_nifti(entry.input) else {}
        except (PerfmapError, MemoryError) as exc:
            message = batch_mod.one_line(exc)
            return [_record(entry.subject, lvl, error=f"cannot degrade: {message}")
                    for lvl in task.levels]
        for lvl in todo:
            path, side = names[lvl]
            rng = np.random.default_rng(noise_seed(task.seed, entry.subject, lvl))
            noisy, added = add_noise(volume.data, lvl, mean, sd, rng)
            achieved = baseline_snr(noisy, mask, window)[2]
            note = "" if added > 0 else \
                f"already noisier than SNR {lvl:g} (measured {snr_in:.4g}); no noise added"
            meta = dict(sidecar)
            if volume.te is not None:
                meta["EchoTime"] = volume.te
            if volume.tr is not None:
                meta["RepetitionTime"] = volume.tr
            if not volume.uniform:
                meta["FrameTimesStart"] = [float(t) for t in volume.frame_times]
            meta["perfmapNoise"] = {"source": entry.input, "snr": lvl, "seed": task.seed,
                                    "snr_input": snr_in, "snr_achieved": achieved,
                                    "added_sd": added, "baseline_frames":
                                    [int(window.start), int(window.stop)],
                                    "definition": "mean baseline signal / noise SD in the "
                                                  "brain mask", "note": note}
            with OutputSet(path.parent, [path.name, side.name], task.overwrite) as out:
                _write_degraded(out, path.name, noisy, volume)
                out.write_text(side.name, json.dumps(meta, indent=2) + "\n")
                out.commit()
            del noisy
            records[lvl] = _record(entry.subject, lvl, input=str(path), snr_input=snr_in,
                                   snr_achieved=achieved, added_sd=added, noise_note=note)
    return [records[lvl] for lvl in task.levels]


@dataclass
class RobustnessResult:
    """Outcome of :func:`run_robustness`.

    Attributes
    ----------
    cohort_path : Path
        ``DIR/cohort.tsv`` (all levels, ``snr`` column).
    report : dict of str to Path
        The report files (``html``, ``json``); empty when it was not written.
    report_error : str
        Why the report could not be written ("" when it was).
    noise : list of dict
        One record per subject and level (columns of :data:`NOISE_COLUMNS`).
    notes : list of str
        Messages for the user (subjects already noisier than a level, subjects
        that could not be degraded).
    n_failed : int
        Cohort rows with a status other than ok.
    batches : list of BatchResult
        One per level.
    """

    cohort_path: Path
    report: dict
    report_error: str
    noise: list
    notes: list
    n_failed: int
    batches: list = field(default_factory=list)


def _check_levels(levels: Sequence[float]) -> tuple:
    out = []
    for lvl in levels:
        lvl = float(lvl)
        if not (math.isfinite(lvl) and lvl > 0):
            raise ParameterError(f"SNR levels must be positive numbers, got {lvl:g}")
        if lvl not in out:
            out.append(lvl)
    if not out:
        raise ParameterError("no SNR level given")
    return tuple(out)


#: Cohort columns that hold text, never a grading metric.
_TEXT_COLUMNS = ("subject", "grade", "kind", "method", "status", "error", "noise_note")


def _check_metric(metric: str, manifest: Manifest, kind: str = "dsc") -> None:
    """Refuse, before any work, a ``--metric`` the study's cohort table will not have."""
    extras = [c for c in manifest.extra_columns if c not in ROBUSTNESS_COLUMNS]
    text = _TEXT_COLUMNS + get_kind(kind).setting_columns
    columns = [c for c in batch_mod.cohort_columns(kind) + extras + list(ROBUSTNESS_COLUMNS)
               if c not in text]
    if metric not in columns:
        raise ParameterError(f"--metric {metric!r} is not a column of the study's cohort "
                             f"table; choose from: {', '.join(columns)}")


def _degraded_entry(entry: ManifestEntry, rec: dict, extras: Sequence[str]) -> ManifestEntry:
    extra = {c: entry.extra.get(c, "") for c in extras}
    extra.update(snr=f"{rec['snr']:g}", snr_input=f"{rec['snr_input']:.6g}",
                 snr_achieved=f"{rec['snr_achieved']:.6g}", noise_note=rec["noise_note"])
    return replace(entry, input=rec["input"], extra=extra)


def run_robustness(manifest_path, out_dir, levels: Sequence[float],
                   methods: Sequence[str] = ("osvd",), *, seed: int = 0,
                   jobs: Optional[int] = None, scheduler: Optional[str] = None,
                   resume: bool = False, overwrite: bool = False, metric: str = "cbf_ratio",
                   n_boot: Optional[int] = None, report: bool = True,
                   progress: Optional[batch_mod.ProgressCallback] = None,
                   notify: Optional[Callable[[str], None]] = None,
                   command: Optional[Sequence[str]] = None, kind: str = "dsc",
                   method_params: Optional[dict] = None,
                   model_options: Optional[dict] = None) -> RobustnessResult:
    """Degrade a cohort to several SNR levels, process it, and grade AUC vs SNR.

    Parameters
    ----------
    manifest_path : path
        Batch manifest (:mod:`perfmap.pipeline.manifest`); a ``snr`` column in
        it is replaced by the study's levels.
    out_dir : path
        Study folder (layout in the module notes).
    levels : sequence of float
        Target SNR levels (e.g. 50, 40, 30, 20, 10).
    methods : sequence of str
        Registered deconvolution methods.
    seed : int
        Seed of the noise (per subject and level) and of the report bootstrap.
    jobs, scheduler : optional
        Parallel execution, as in :func:`perfmap.pipeline.batch.run_batch`.
    resume, overwrite : bool
        Reuse complete results / recompute everything; without either, an
        existing study folder is refused before anything is written.
    metric : str
        Cohort column graded in the report.
    n_boot : int, optional
        Bootstrap replicates of the report (default: the report's default).
    report : bool
        Write ``robustness.html`` and ``robustness.json``.
    progress : callable, optional
        As in :func:`perfmap.pipeline.batch.run_plans`.
    notify : callable, optional
        Receives each user message as it arises (see ``RobustnessResult.notes``).
    command : sequence of str, optional
        Command line recorded in every JSON.
    kind : str
        Acquisition kind of the cohort.
    method_params : dict, optional
        ``method -> {parameter: value}``, as in :func:`perfmap.pipeline.batch.prepare_batch`.
    model_options : dict, optional
        Options of the kind's model (e.g. ``leakage``), as in
        :func:`perfmap.pipeline.batch.prepare_batch`.

    Returns
    -------
    RobustnessResult
    """
    from ..report.stats import N_BOOT

    levels = _check_levels(levels)
    manifest = read_manifest(manifest_path)
    methods = batch_mod.check_methods(methods, kind)
    batch_mod.check_method_params(methods, method_params, kind)
    if report:
        _check_metric(metric, manifest, kind)
    out_dir = Path(os.path.abspath(check_folder(out_dir, "--out-dir")))
    root = out_dir / DEGRADED_DIR
    cohort_path = out_dir / COHORT_NAME
    report_paths = {"html": out_dir / "robustness.html", "json": out_dir / "robustness.json"}
    if not (resume or overwrite):
        taken = [p for p in (cohort_path, root, *report_paths.values()) if p.exists()]
        if taken:
            raise OutputExistsError(f"{taken[0]} already exists; use --resume to finish the "
                                    "study or --overwrite to redo it")
    notes = []
    jobs = executors.default_jobs() if jobs is None else max(1, int(jobs))
    with executors.dask_session(scheduler, jobs) as client:
        records = _degrade_all(manifest, levels, int(seed), root, jobs, client,
                               resume=resume, overwrite=overwrite, kind=kind)
        noise = [rec for recs in records for rec in recs]
        for message in dict.fromkeys(m for rec in noise for m in rec.get("warnings", ())):
            logger.warning(message)
        for rec in noise:
            if rec["error"] or rec["noise_note"]:
                notes.append(f"{rec['subject']} at SNR {rec['snr']:g}: "
                             f"{rec['error'] or rec['noise_note']}")
                if notify:
                    notify(notes[-1])
        write_text_atomic(root / NOISE_TABLE, tables.format_tsv(
            list(NOISE_COLUMNS) + ["error"],
            [[r[c] for c in NOISE_COLUMNS] + [r["error"]] for r in noise]))
        plans, failed_rows, columns = _level_plans(manifest, methods, levels, records, out_dir,
                                                   resume=resume, overwrite=overwrite,
                                                   command=command, kind=kind,
                                                   method_params=method_params,
                                                   model_options=model_options)

        def write_combined():
            rows = [r for plan in plans for r in plan.rows if r is not None] + failed_rows
            write_cohort(cohort_path, columns, rows)

        write_combined()
        batches = batch_mod.run_plans(plans, jobs=jobs, client=client, progress=progress,
                                      after_row=write_combined) if plans else []
    n_failed = sum(b.n_failed for b in batches) + len(failed_rows)
    written, report_error = {}, ""
    if report:
        from ..report.export import report_from_cohort

        try:
            written = report_from_cohort(cohort_path, report_paths["html"],
                                         report_paths["json"], metric=metric,
                                         n_boot=N_BOOT if n_boot is None else n_boot,
                                         seed=seed, overwrite=True,
                                         title=f"Noise robustness: {metric}")
        except PerfmapError as exc:
            report_error = batch_mod.one_line(exc)
    return RobustnessResult(cohort_path=cohort_path, report=written, report_error=report_error,
                            noise=noise, notes=notes, n_failed=n_failed, batches=batches)


def _degrade_all(manifest, levels, seed, root, jobs, client, *, resume, overwrite,
                 kind="dsc") -> list:
    """Degrade every subject (in parallel); one list of level records per subject."""
    tasks = [DegradeTask(entry=e, levels=levels, seed=seed, root=str(root),
                         overwrite=resume or overwrite, resume=resume and not overwrite,
                         kind=kind)
             for e in manifest.entries]
    records = [None] * len(tasks)
    for i, recs, error in executors.execute(degrade_subject, tasks, jobs=jobs, client=client):
        if error is not None:
            recs = [_record(tasks[i].entry.subject, lvl,
                            error=f"cannot degrade: {batch_mod.one_line(error)}")
                    for lvl in levels]
        records[i] = recs
    return records


def _level_plans(manifest, methods, levels, records, out_dir, *, resume, overwrite, command,
                 kind="dsc", method_params=None, model_options=None):
    """One batch plan per level (its manifest written), and the rows of failed subjects."""
    root = out_dir / DEGRADED_DIR
    extras = [c for c in manifest.extra_columns if c not in ROBUSTNESS_COLUMNS]
    plans, failed_rows = [], []
    for k, lvl in enumerate(levels):
        entries = tuple(_degraded_entry(e, recs[k], extras)
                        for e, recs in zip(manifest.entries, records) if not recs[k]["error"])
        level_dir = root / level_name(lvl)
        if entries:
            write_text_atomic(level_dir / "manifest.tsv", format_manifest(
                entries, list(extras) + list(ROBUSTNESS_COLUMNS), level_dir))
            sub = Manifest(entries=entries, extra_columns=tuple(extras) + ROBUSTNESS_COLUMNS,
                           source=str(level_dir / "manifest.tsv"))
            plans.append(batch_mod.prepare_batch(
                sub, out_dir / level_name(lvl), methods, resume=resume, overwrite=overwrite,
                command=command, kind=kind, method_params=method_params,
                model_options=model_options))
        for e, recs in zip(manifest.entries, records):
            if recs[k]["error"]:
                bad = _degraded_entry(e, recs[k], extras)
                failed_rows += [failed_row(base_row(bad, m, kind), recs[k]["error"],
                                           ratios=get_kind(kind).ratio_columns)
                                for m in methods]
    columns = batch_mod.cohort_columns(kind) + list(extras) + list(ROBUSTNESS_COLUMNS)
    return plans, failed_rows, columns
