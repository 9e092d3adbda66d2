"""Run :func:`~perfmap.pipeline.compute.compute` over a cohort (``perfmap batch``).

Layout of a batch folder ``DIR``::

    DIR/cohort.tsv                      one row per subject and method
    DIR/<subject>/<method>/STEM_*.nii.gz, STEM_aif.tsv, STEM_perfmap.json
    DIR/logs/<subject>_<method>.log     what happened to each pair

Every (subject, method) pair is one task, run by :func:`run_task`, a
top-level function so that it pickles for worker processes and Dask. Tasks
run in-process (``jobs=1``), in local worker processes
(:class:`concurrent.futures.ProcessPoolExecutor`, spawn start method) or on a
Dask distributed cluster (``scheduler``). Worker processes, local or remote,
must see the same file system as the manifest's paths (they are absolute).

Failure and restart rules:

- A failing pair is recorded in ``cohort.tsv`` with status ``failed`` and a
  one-line error; the other pairs go on.
- ``compute`` writes each pair's outputs atomically, and ``cohort.tsv`` is
  rewritten atomically (temporary file and :func:`os.replace`) after every
  finished pair, so killing a batch loses no finished pair.
- With ``resume``, a pair is complete when its ``STEM_perfmap.json`` parses
  and every output it lists exists; its numbers are read back from the JSON
  and it is not run again. Other pairs (failed, never run, interrupted) run
  again, replacing what they left.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

from .. import __version__
from ..errors import OutputExistsError, ParameterError, PerfmapError
from ..io import nifti
from ..io.outputs import check_folder
from ..report.cohort import COHORT_COLUMNS
from .executors import dask_session, default_jobs, execute
from .kinds import get_kind
from .manifest import (COHORT_NAME, TUMOUR_ROI, Manifest, base_row,
                       failed_row, pair_dir, read_manifest, row_from_provenance,
                       write_cohort)

#: Folder of the per-pair log files.
LOG_DIR = "logs"

#: ``progress(subjects_done, subjects_total, row)``; ``row`` is None for the first call.
ProgressCallback = Callable[[int, int, Optional[dict]], None]


@dataclass(frozen=True)
class Task:
    """One subject processed with one method (picklable, plain data).

    ``base_row`` holds the cohort cells known before the run (subject, grade,
    method and the manifest's extra columns).
    """

    subject: str
    method: str
    input: str
    aif: str
    mask: str
    tumour: Optional[str]
    ref: Optional[str]
    te: Optional[float]
    tr: Optional[float]
    out_dir: str
    log_path: str
    base_row: dict
    method_params: dict = field(default_factory=dict)
    overwrite: bool = False
    command: Optional[tuple] = None
    kind: str = "dsc"
    model_options: dict = field(default_factory=dict)


@dataclass
class BatchPlan:
    """The tasks of one batch folder and the rows known so far (``None``: to run)."""

    out_dir: Path
    manifest: Manifest
    methods: tuple
    tasks: list
    rows: list
    columns: list

    @property
    def cohort_path(self) -> Path:
        return self.out_dir / COHORT_NAME


@dataclass
class BatchResult:
    """Outcome of a batch.

    Attributes
    ----------
    rows : list of dict
        The cohort rows (manifest order, then method order).
    columns : list of str
        Columns of ``cohort.tsv``.
    cohort_path : Path
        The cohort table written.
    n_run, n_skipped, n_failed : int
        Pairs computed now, reused from a previous run (``resume``), and
        failed.
    wall_s : float
        Wall-clock time of the whole batch in seconds.
    compute_s : float
        Sum of the compute seconds of the pairs run now.
    """

    rows: list
    columns: list
    cohort_path: Path
    n_run: int
    n_skipped: int
    n_failed: int
    wall_s: float
    compute_s: float


# ------------------------------------------------------------------ one task

def one_line(exc: BaseException) -> str:
    """One-line message for a failed task (its cohort row and the log)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, PerfmapError):
        return text or type(exc).__name__
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"unexpected {type(exc).__name__}: {text}" if text else f"unexpected {type(exc).__name__}"


def _json_path(task: Task) -> Path:
    return Path(task.out_dir) / f"{nifti.stem_of(task.input)}_perfmap.json"


def completed_row(task: Task) -> Optional[dict]:
    """The row of a pair whose outputs are complete, else None.

    Complete: ``STEM_perfmap.json`` parses, was written by the same method,
    and every file it lists under ``outputs`` exists.
    """
    path = _json_path(task)
    try:
        prov = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(prov, dict) or prov.get("method") != task.method:
        return None
    outputs = prov.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return None
    if not all((Path(task.out_dir) / name).is_file() for name in outputs):
        return None
    kind = get_kind(task.kind)
    return row_from_provenance(task.base_row, prov, kind.ratio_columns, kind.setting_columns)


def _remove_temporaries(folder: Path) -> None:
    """Delete the hidden temporaries an interrupted atomic write left."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp*"):
            try:
                tmp.unlink()
            except OSError:
                pass


def run_task(task: Task) -> dict:
    """Compute one subject with one method and return its cohort row.

    Never raises for a failure of the subject: any exception becomes a row
    with status ``failed`` and a one-line message, and the log file
    (``task.log_path``) gets the details (a traceback for unexpected errors).
    """
    from .compute import compute

    t0 = time.perf_counter()
    log_path = Path(task.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"perfmap {__version__} batch: subject {task.subject}, method {task.method}\n"
                  f"started {datetime.now(timezone.utc).isoformat(timespec='seconds')} "
                  f"on {os.uname().nodename if hasattr(os, 'uname') else 'host'} "
                  f"(pid {os.getpid()})\n"
                  f"input {task.input}\naif {task.aif}\nmask {task.mask}\n"
                  f"tumour {task.tumour}\nref {task.ref}\nout_dir {task.out_dir}\n")
        log.flush()
        try:
            if task.overwrite:
                _remove_temporaries(Path(task.out_dir))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = compute(task.input, kind=task.kind, aif=task.aif, mask=task.mask, method=task.method,
                                 method_params=dict(task.method_params), te=task.te,
                                 tr=task.tr,
                                 rois={TUMOUR_ROI: task.tumour} if task.tumour else None,
                                 ref=task.ref, out_dir=task.out_dir, overwrite=task.overwrite,
                                 **task.model_options,
                                 command=list(task.command) if task.command else None)
            for w in caught:
                log.write(f"warning: {w.category.__name__}: {w.message}\n")
            kind = get_kind(task.kind)
            ratios = kind.ratio_columns
            row = row_from_provenance(task.base_row, result.provenance, ratios,
                                      kind.setting_columns)
            prov = result.provenance
            log.write(f"brain voxels {prov['voxels']['brain']}, not fitted "
                      f"{prov['voxels']['not_fitted']}\n")
            log.write("ratios " + ", ".join(f"{k}={row[k]:.6g}" for k in ratios) + "\n")
            log.write(f"timings {json.dumps(prov.get('timings', {}))}\n")
            log.write("status ok\n")
        except Exception as exc:  # recorded, never propagated: the batch goes on
            message = one_line(exc)
            row = failed_row(task.base_row, message, round(time.perf_counter() - t0, 4),
                             get_kind(task.kind).ratio_columns)
            if not isinstance(exc, (PerfmapError, MemoryError)):
                log.write(traceback.format_exc())
            log.write(f"status failed: {message}\n")
    return row


# ------------------------------------------------------------------ planning and running

def check_methods(methods: Sequence[str], kind: str = "dsc") -> tuple:
    """Validate method names against the kind's registry; duplicates removed, order kept."""
    names = tuple(dict.fromkeys(m.strip() for m in methods if m and m.strip()))
    if not names:
        raise ParameterError("no method given")
    k = get_kind(kind)
    valid = k.methods()
    unknown = [m for m in names if m not in valid]
    if unknown:
        raise ParameterError(f"unknown {kind} method {unknown[0]!r}; choose one of: "
                             f"{', '.join(valid)}")
    return names


def cohort_columns(kind: str) -> list:
    """The cohort table's columns for ``kind``: subject, grade, kind, method, status,
    error, seconds and the kind's ratios."""
    base = [c for c in COHORT_COLUMNS if not c.endswith("_ratio")]
    k = get_kind(kind)
    return base + list(k.setting_columns) + list(k.ratio_columns)


def _subject_options(entry, kind: str, options: Optional[dict]) -> dict:
    """Model options of one subject: the batch's, plus its manifest's t1/vfa files."""
    out = {k: v for k, v in (options or {}).items() if v is not None}
    for column in get_kind(kind).manifest_options:
        value = getattr(entry, column, None)
        if value:
            out[column] = value
    return out


def check_method_params(methods: Sequence[str], method_params: Optional[dict] = None,
                        kind: str = "dsc") -> None:
    """Construct each method's backend once with its ``--param`` values (and ``--model``
    weights), so that a value it refuses stops the run before anything is written
    instead of failing every subject.

    Raises
    ------
    ParameterError, ModelError
        The message names the method and the parameters given.
    """
    from ..deconv import available as deconv_methods
    from ..deconv import make_backend
    from ..kinetics import available as kinetic_methods
    from ..kinetics import get_model

    for method in methods:
        params = dict((method_params or {}).get(method, {}))
        given = " ".join(f"--param {k}={v}" for k, v in params.items()
                         if k not in ("device", "model"))
        try:
            if kind == "dce" and method in kinetic_methods():
                try:
                    get_model(method)(**params)
                except (TypeError, ValueError) as exc:
                    if isinstance(exc, PerfmapError):
                        raise
                    raise ParameterError(f"invalid parameter for method {method}: "
                                         f"{exc}") from None
            elif method in deconv_methods():
                make_backend(method, **params)
        except ParameterError as exc:
            raise ParameterError(f"{exc}" + (f" (given: {given})" if given else "")) from None


def prepare_batch(manifest: Manifest, out_dir, methods: Sequence[str], *,
                  resume: bool = False, overwrite: bool = False,
                  method_params: Optional[dict] = None,
                  command: Optional[Sequence[str]] = None, kind: str = "dsc",
                  model_options: Optional[dict] = None) -> BatchPlan:
    """Plan a batch: one task per subject and method, complete pairs found when resuming.

    Parameters
    ----------
    manifest : Manifest
        From :func:`perfmap.pipeline.manifest.read_manifest`.
    out_dir : path
        Batch folder.
    methods : sequence of str
        Registered deconvolution methods.
    resume : bool
        Reuse complete pairs; rerun the others (replacing their leftovers).
    overwrite : bool
        Recompute every pair, replacing existing outputs.
    method_params : dict, optional
        ``method -> {parameter: value}`` for the backends' constructors.
    command : sequence of str, optional
        Command line recorded in every JSON.
    kind : str
        Acquisition kind of every subject (``perfmap.pipeline.kinds``).
    model_options : dict, optional
        Options of the kind's model for every subject (e.g. ``leakage``); the
        manifest's ``t1``/``vfa`` cells add the subject's own.

    Returns
    -------
    BatchPlan

    Raises
    ------
    ParameterError
        Unknown method, or ``out_dir`` cannot be a folder (it, or a folder
        above it, is a regular file).
    OutputExistsError
        ``out_dir`` holds batch results and neither ``resume`` nor
        ``overwrite`` is set (checked before anything is written).
    """
    methods = check_methods(methods, kind)
    out_dir = Path(os.path.abspath(check_folder(out_dir, "--out-dir")))
    tasks = []
    for entry in manifest.entries:
        for method in methods:
            folder = pair_dir(out_dir, entry.subject, method)
            tasks.append(Task(
                subject=entry.subject, method=method, input=entry.input, aif=entry.aif,
                mask=entry.mask, tumour=entry.tumour, ref=entry.ref, te=entry.te, tr=entry.tr,
                out_dir=str(folder),
                log_path=str(out_dir / LOG_DIR / f"{entry.subject}_{method}.log"),
                base_row=base_row(entry, method, kind),
                method_params=dict((method_params or {}).get(method, {})),
                overwrite=overwrite, command=tuple(command) if command else None, kind=kind,
                model_options=_subject_options(entry, kind, model_options)))
    if not (resume or overwrite):
        used = [str(out_dir / COHORT_NAME)] if (out_dir / COHORT_NAME).exists() else []
        used += [t.out_dir for t in tasks if Path(t.out_dir).is_dir()
                 and any(Path(t.out_dir).iterdir())]
        if used:
            raise OutputExistsError(
                f"{used[0]} already holds batch results; use --resume to finish the batch "
                "or --overwrite to recompute everything")
    rows: list = [None] * len(tasks)
    for i, task in enumerate(tasks):
        if resume and not overwrite:
            rows[i] = completed_row(task)
        if rows[i] is None and Path(task.out_dir).is_dir() and any(Path(task.out_dir).iterdir()):
            tasks[i] = replace(task, overwrite=True)
    columns = cohort_columns(kind) + list(manifest.extra_columns)
    return BatchPlan(out_dir=out_dir, manifest=manifest, methods=methods, tasks=tasks,
                     rows=rows, columns=columns)


def run_plans(plans: Sequence[BatchPlan], *, jobs: Optional[int] = None,
              scheduler: Optional[str] = None, progress: Optional[ProgressCallback] = None,
              after_row: Optional[Callable[[], None]] = None, client=None) -> list:
    """Run the pending tasks of several plans in one pool; write each ``cohort.tsv``.

    Parameters
    ----------
    plans : sequence of BatchPlan
        From :func:`prepare_batch`.
    jobs : int, optional
        Local worker processes (default: all cores); 1 runs in this process.
    scheduler : str, optional
        Dask scheduler address or ``"local"`` (see :func:`execute`).
    progress : callable, optional
        ``progress(subjects_done, subjects_total, row)``: called once before
        the first task (``row=None``) and after every finished pair.
    after_row : callable, optional
        Called after each finished pair, once the cohort tables are written.
    client : distributed.Client, optional
        A connected client used instead of ``scheduler``.

    Returns
    -------
    list of BatchResult
        One per plan.
    """
    t_start = time.perf_counter()
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    pending, remaining = [], {}
    for p_idx, plan in enumerate(plans):
        for i, task in enumerate(plan.tasks):
            key = (p_idx, task.subject)
            remaining.setdefault(key, 0)
            if plan.rows[i] is None:
                pending.append((p_idx, i))
                remaining[key] += 1
    total = len(remaining)
    done = sum(1 for n in remaining.values() if n == 0)
    stats = [{"run": 0, "seconds": 0.0} for _ in plans]
    items = [plans[p].tasks[i] for p, i in pending]
    with dask_session(scheduler if (items and client is None) else None, jobs) as session:
        for plan in plans:
            plan.out_dir.mkdir(parents=True, exist_ok=True)
            write_cohort(plan.cohort_path, plan.columns, plan.rows)
        if progress:
            progress(done, total, None)
        for k, row, error in execute(run_task, items, jobs=jobs, client=client or session):
            p_idx, i = pending[k]
            plan, task = plans[p_idx], plans[p_idx].tasks[i]
            if error is not None:
                row = failed_row(task.base_row, f"worker error: {one_line(error)}")
            plan.rows[i] = row
            stats[p_idx]["run"] += 1
            if row["status"] == "ok" and math.isfinite(row["seconds"]):
                stats[p_idx]["seconds"] += row["seconds"]
            write_cohort(plan.cohort_path, plan.columns, plan.rows)
            if after_row:
                after_row()
            key = (p_idx, task.subject)
            remaining[key] -= 1
            if remaining[key] == 0:
                done += 1
            if progress:
                progress(done, total, row)
    wall = time.perf_counter() - t_start
    results = []
    for plan, st in zip(plans, stats):
        rows = [r for r in plan.rows if r is not None]
        results.append(BatchResult(
            rows=rows, columns=plan.columns, cohort_path=plan.cohort_path, n_run=st["run"],
            n_skipped=len(rows) - st["run"],
            n_failed=sum(1 for r in rows if r["status"] != "ok"),
            wall_s=wall, compute_s=st["seconds"]))
    return results


def run_batch(manifest_path, out_dir, methods: Sequence[str] = ("osvd",), *,
              jobs: Optional[int] = None, scheduler: Optional[str] = None,
              resume: bool = False, overwrite: bool = False,
              method_params: Optional[dict] = None, progress: Optional[ProgressCallback] = None,
              command: Optional[Sequence[str]] = None, kind: str = "dsc",
              model_options: Optional[dict] = None) -> BatchResult:
    """Compute every subject of a manifest with every method (``perfmap batch``).

    Parameters
    ----------
    manifest_path : path
        Tab-separated manifest (:mod:`perfmap.pipeline.manifest`).
    out_dir : path
        Batch folder (layout in the module notes).
    methods : sequence of str
        Registered deconvolution methods, each run for every subject.
    jobs, scheduler, progress
        Where and how the tasks run (:func:`run_plans`).
    resume, overwrite, method_params, command, kind, model_options
        As in :func:`prepare_batch`.

    Returns
    -------
    BatchResult

    Raises
    ------
    PerfmapError
        Bad manifest, unknown method, existing results without resume or
        overwrite, no Dask or an unreachable scheduler: all before any output.
        A failing subject does not raise; it becomes a ``failed`` row.
    """
    manifest = read_manifest(manifest_path)
    check_method_params(check_methods(methods, kind), method_params, kind)
    plan = prepare_batch(manifest, out_dir, methods, resume=resume, overwrite=overwrite,
                         method_params=method_params, command=command, kind=kind,
                         model_options=model_options)
    return run_plans([plan], jobs=jobs, scheduler=scheduler, progress=progress)[0]
