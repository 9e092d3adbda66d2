"""Cohort-level grading tables: the PHAE paper's Table 1 per method, and AUC against SNR.

Builds on the statistics of :mod:`perfmap.report.stats` (conventions and
references there): per method, the HGG-versus-LGG split of one cohort column
(default ``cbf_ratio``) gives AUC, Youden cut-off, sensitivity, specificity
and accuracy with stratified-bootstrap CIs, the Mann-Whitney U test and the
mean computation time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Union

import numpy as np

from ..errors import InputDataError
from .cohort import Cohort, cohort_from_rows
from .stats import (N_BOOT, auc, bootstrap_ci, bootstrap_replicates, check_bootstrap_options,
                    check_scores, mann_whitney, percentile_ci, youden_cutoff)

CohortLike = Union[Cohort, Iterable[Mapping[str, Any]]]


@dataclass
class MethodResult:
    """Grading performance of one method (one row of the paper's Table 1).

    Fractions (sensitivity, specificity, accuracy) are in [0, 1]; ``*_ci``
    are ``(low, high)`` percentile bootstrap intervals. ``scores``, ``labels``
    and ``subjects`` are the graded values (for plots) and are not exported.
    ``n_no_noise`` counts, for rows of a robustness study (``snr`` set), the
    graded subjects whose data got no noise at that level (:func:`not_degraded`).
    """

    method: str
    metric: str
    n_hgg: int
    n_lgg: int
    n_excluded_status: int
    n_excluded_nonfinite: int
    auc: float
    auc_ci: tuple
    cutoff: float
    cutoff_ci: tuple
    sensitivity: float
    sensitivity_ci: tuple
    specificity: float
    specificity_ci: tuple
    accuracy: float
    accuracy_ci: tuple
    youden_j: float
    mwu_u: float
    mwu_p: float
    mean_seconds: float
    seconds_min: float
    seconds_max: float
    n_boot: int
    level: float
    seed: Optional[int]
    snr: Optional[float] = None
    excluded: list = field(default_factory=list)
    scores: np.ndarray = field(default=None, repr=False)
    labels: np.ndarray = field(default=None, repr=False)
    subjects: tuple = field(default=(), repr=False)
    n_no_noise: int = 0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Flat JSON/CSV-ready dict (the CSV columns, in order); NaN becomes ``None``."""
        out = {k: getattr(self, k) for k in ("method", "metric", "snr", "n_hgg", "n_lgg",
                                              "n_excluded_status", "n_excluded_nonfinite")}
        if self.snr is not None:
            out["n_no_noise_added"] = self.n_no_noise
        for name in ("auc", "cutoff", "sensitivity", "specificity", "accuracy"):
            out[name] = getattr(self, name)
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = getattr(self, f"{name}_ci")
        out.update({k: getattr(self, k) for k in ("youden_j", "mwu_u", "mwu_p", "mean_seconds",
                                                   "seconds_min", "seconds_max", "n_boot",
                                                   "level", "seed")})
        out.update(self.settings)
        return _nan_to_none(out)


@dataclass(frozen=True)
class SnrPoint:
    """AUC of one method at one SNR level (robustness study, PHAE paper Fig. 5).

    ``n_no_noise`` counts the graded subjects whose data were already noisier
    than the level, so that no noise was added to them (see
    :func:`not_degraded`): at that level their AUC is that of their own data.
    """

    method: str
    snr: float
    n_hgg: int
    n_lgg: int
    auc: float
    auc_ci: tuple
    n_no_noise: int = 0

    @property
    def noise_added(self) -> bool:
        """False when at least one graded subject got no noise at this level."""
        return self.n_no_noise == 0

    def to_dict(self) -> dict:
        """Flat JSON-ready dict; NaN becomes ``None``."""
        return _nan_to_none({"method": self.method, "snr": self.snr, "n_hgg": self.n_hgg,
                             "n_lgg": self.n_lgg, "auc": self.auc,
                             "auc_ci_low": self.auc_ci[0], "auc_ci_high": self.auc_ci[1],
                             "n_no_noise_added": self.n_no_noise})


def not_degraded(row: Mapping[str, Any], level: float) -> bool:
    """True when a robustness row's data got no noise at ``level``.

    That is the case when the series was already noisier than the level: its
    measured input SNR (``snr_input``) is at or below ``level``, or its
    ``noise_note`` says so (``perfmap robustness`` writes both).

    Examples
    --------
    >>> not_degraded({"snr_input": 31.0, "noise_note": ""}, 50.0)
    True
    >>> not_degraded({"snr_input": 80.0, "noise_note": ""}, 50.0)
    False
    """
    measured = row.get("snr_input", math.nan)
    try:
        measured = float(measured)
    except (TypeError, ValueError):
        measured = math.nan
    note = str(row.get("noise_note") or "")
    return (math.isfinite(measured) and measured <= level) or "no noise added" in note


def _nan_to_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in d.items()}


def _as_cohort(cohort: CohortLike) -> Cohort:
    return cohort if isinstance(cohort, Cohort) else cohort_from_rows(cohort)


#: Cohort columns that record how the maps were made (shown with every method's result).
SETTING_COLUMNS = ("leakage", "denoise")


def processing_settings(cohort, method: str) -> dict:
    """``column -> value(s)`` of the :data:`SETTING_COLUMNS` the cohort has, for the rows
    of ``method`` (distinct values joined by ``/``), e.g. ``{"leakage": "bsw"}``."""
    out = {}
    for column in SETTING_COLUMNS:
        if column in getattr(cohort, "columns", ()):
            values = sorted({str(r.get(column, "")) for r in cohort.rows
                             if r.get("method") == method and r.get(column) not in (None, "")})
            if values:
                out[column] = "/".join(values)
    return out


def grading_table(cohort: CohortLike, metric: str = "cbf_ratio", *, n_boot: int = N_BOOT,
                  seed: Optional[int] = 0, level: float = 0.95,
                  snr: Optional[float] = None) -> dict[str, MethodResult]:
    """Per-method grading performance of a cohort (the PHAE paper's Table 1).

    Parameters
    ----------
    cohort : Cohort or iterable of mapping
        From :func:`perfmap.report.cohort.read_cohort`, or rows with
        ``subject``, ``grade``, ``method``, ``status`` and ``metric``.
    metric : str
        Column graded (default ``cbf_ratio``); higher means HGG.
    n_boot, seed, level
        Bootstrap settings (:func:`bootstrap_ci`), the same seed for every
        method, so a method's CIs do not depend on the other methods.
    snr : float, optional
        Use the rows at this SNR level; by default :meth:`Cohort.default_snr`.

    Returns
    -------
    dict of str to MethodResult
        By first appearance of the method. Rows whose status is not ``ok`` or
        whose metric is NaN/Inf are excluded and counted. The seconds summarise
        the graded rows (NaN when absent).

    Raises
    ------
    InputDataError
        If the metric column is missing, or a method has only one class or
        fewer than 2 HGG and 2 LGG subjects with a finite metric.
    """
    cohort = _as_cohort(cohort)
    cohort.require_metric(metric)
    check_bootstrap_options(n_boot, level)
    if snr is None:
        snr = cohort.default_snr()
    results: dict[str, MethodResult] = {}
    for method in cohort.methods:
        s, y, subj, secs, excluded, n_status, n_nonfinite = cohort.select(method, metric, snr)
        if s.size == 0 and not excluded:
            continue  # method absent at this SNR level
        n1, n0 = int(y.sum()), int((~y).sum())
        found = (f"found {n1} HGG and {n0} LGG ({n_status} excluded for status, "
                 f"{n_nonfinite} for a non-finite {metric})")
        at = "" if snr is None else f" at SNR {snr:g}"
        if n1 == 0 or n0 == 0:
            only = "only HGG" if n1 else "only LGG" if n0 else "no"
            raise InputDataError(
                f"{cohort.name} has {only} graded subjects for method {method}{at}; ROC "
                f"analysis needs both HGG and LGG subjects with a finite {metric}; {found}."
            )
        if n1 < 2 or n0 < 2:
            raise InputDataError(
                f"{cohort.name}: grading needs at least 2 HGG and 2 LGG subjects with a "
                f"finite {metric} for method {method}{at}; {found}."
            )
        yc = youden_cutoff(s, y)
        mw = mann_whitney(s, y)
        ci = bootstrap_ci(s, y, n_boot=n_boot, seed=seed, level=level)
        have_secs = secs.size > 0
        results[method] = MethodResult(
            method=method, metric=metric, n_hgg=n1, n_lgg=n0,
            n_excluded_status=n_status, n_excluded_nonfinite=n_nonfinite,
            auc=mw.u / (n1 * n0), auc_ci=ci.auc,
            cutoff=yc.cutoff, cutoff_ci=ci.cutoff,
            sensitivity=yc.sensitivity, sensitivity_ci=ci.sensitivity,
            specificity=yc.specificity, specificity_ci=ci.specificity,
            accuracy=yc.accuracy, accuracy_ci=ci.accuracy, youden_j=yc.j,
            mwu_u=mw.u, mwu_p=mw.p,
            mean_seconds=float(secs.mean()) if have_secs else math.nan,
            seconds_min=float(secs.min()) if have_secs else math.nan,
            seconds_max=float(secs.max()) if have_secs else math.nan,
            n_boot=int(n_boot), level=float(level), seed=seed, snr=snr,
            settings=processing_settings(cohort, method),
            excluded=excluded, scores=s, labels=y, subjects=subj,
            n_no_noise=0 if snr is None else _no_noise_count(cohort, method, snr, subj),
        )
    if not results:
        raise InputDataError(f"{cohort.name} has no rows to grade.")
    return results


def auc_by_snr(cohort: CohortLike, metric: str = "cbf_ratio", *, n_boot: int = N_BOOT,
               seed: Optional[int] = 0, level: float = 0.95) -> list[SnrPoint]:
    """AUC (with bootstrap CI) of each method at each SNR level (PHAE paper Fig. 5).

    Parameters
    ----------
    cohort : Cohort or iterable of mapping
        Rows carrying a numeric ``snr`` column; rows without an SNR are ignored.
        ``metric``, ``n_boot``, ``seed``, ``level``: as in :func:`grading_table`.

    Returns
    -------
    list of SnrPoint
        Sorted by method (first appearance) then ascending SNR. A level with
        fewer than 2 HGG or 2 LGG usable subjects gets ``auc = nan`` (and a NaN
        interval) instead of failing the whole study.

    Raises
    ------
    InputDataError
        If the metric column is missing or no row has an SNR value.
    """
    cohort = _as_cohort(cohort)
    cohort.require_metric(metric)
    check_bootstrap_options(n_boot, level)
    if not cohort.has_snr:
        raise InputDataError(f"{cohort.name} has no 'snr' column with values; "
                             "AUC vs SNR needs one.")
    points = []
    for method in cohort.methods:
        for level_snr in cohort.snr_levels:
            sel = cohort.select(method, metric, level_snr)
            s, y = sel.scores, sel.labels
            if s.size == 0 and not sel.excluded:
                continue
            n1, n0 = int(y.sum()), int((~y).sum())
            kept = _no_noise_count(cohort, method, level_snr, sel.subjects)
            if n1 < 2 or n0 < 2:
                points.append(SnrPoint(method, level_snr, n1, n0, math.nan,
                                       (math.nan, math.nan), kept))
                continue
            s_, y_ = check_scores(s, y)
            (a,) = bootstrap_replicates(s_, y_, int(n_boot), seed, youden=False)  # AUC only
            points.append(SnrPoint(method, level_snr, n1, n0, auc(s, y),
                                   percentile_ci(a, level), kept))
    return points


def _no_noise_count(cohort: Cohort, method: str, level: float, subjects) -> int:
    """How many of the graded ``subjects`` got no noise at ``level`` (:func:`not_degraded`)."""
    graded = set(subjects)
    return sum(1 for row in cohort.rows
               if row["method"] == method and row.get("snr") == level
               and row["subject"] in graded and not_degraded(row, level))
