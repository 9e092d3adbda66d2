"""Glioma-grading statistics: ROC/AUC, Mann-Whitney U, Youden cut-off, bootstrap CIs.

Everything here is NumPy/SciPy, vectorised over bootstrap replicates, and
deterministic for a given ``seed``.

Conventions
-----------
- Labels: 1 (or True) = high-grade glioma (HGG, the positive class),
  0 = low-grade (LGG). Higher scores (e.g. the tumour/NAWM CBF ratio) mean
  HGG is more likely; the rule is **predict HGG when score >= cut-off**.
- AUC is the trapezoidal area under the empirical ROC curve. Ties between an
  HGG and an LGG score count one half, so AUC equals the Mann-Whitney
  ``U / (n1 * n0)`` with ``U`` the statistic of the HGG sample
  (Hanley & McNeil 1982).
- Youden cut-off (Youden 1950; Ruopp et al. 2008): maximises
  ``J = sensitivity + specificity - 1`` over the midpoints between consecutive
  distinct observed scores, plus the smallest score (the "all HGG" rule,
  J = 0). Ties in J go to the higher accuracy, then to the lower cut-off.
- Confidence intervals: stratified percentile bootstrap (Efron & Tibshirani
  1993, ch. 13): each replicate resamples the HGG and the LGG scores with
  replacement within their class (so class sizes are fixed), recomputes the
  AUC and re-estimates the Youden cut-off, and reports the sensitivity,
  specificity and accuracy at that replicate's own cut-off. The CI is the
  ``(1 - level)/2`` and ``(1 + level)/2`` percentiles of the replicates.

References
----------
Hanley JA, McNeil BJ. The meaning and use of the area under a receiver
    operating characteristic (ROC) curve. Radiology 1982;143:29-36.
Youden WJ. Index for rating diagnostic tests. Cancer 1950;3:32-35.
Ruopp MD, Perkins NJ, Whitcomb BW, Schisterman EF. Youden index and optimal
    cut-point estimated from observations affected by a lower limit of
    detection. Biom J 2008;50:419-430.
Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall,
    1993.
Mann HB, Whitney DR. On a test of whether one of two random variables is
    stochastically larger than the other. Ann Math Stat 1947;18:50-60.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import stats as _sps

from ..errors import InputDataError

#: Default number of bootstrap replicates.
N_BOOT = 2000
_CHUNK_ELEMENTS = 2_000_000  # replicates x subjects processed at once


@dataclass(frozen=True)
class RocCurve:
    """Empirical ROC curve; point ``k`` predicts HGG when score >= ``thresholds[k]``.

    ``thresholds`` decrease from ``+inf`` (nothing predicted HGG, point (0, 0))
    to the smallest score (everything HGG, point (1, 1)).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class MannWhitney:
    """Two-sided Mann-Whitney U test; ``u`` is the statistic of the HGG sample."""

    u: float
    p: float


@dataclass(frozen=True)
class YoudenCutoff:
    """Optimal cut-off (predict HGG when score >= ``cutoff``) and its performance."""

    cutoff: float
    sensitivity: float
    specificity: float
    accuracy: float
    j: float


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap confidence intervals, each a ``(low, high)`` pair."""

    auc: tuple
    cutoff: tuple
    sensitivity: tuple
    specificity: tuple
    accuracy: tuple
    n_boot: int
    level: float
    seed: Optional[int]


def check_scores(scores, labels):
    """Validate and convert to (float64 scores, bool labels)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1 or s.shape != y.shape:
        raise InputDataError(
            f"scores and labels must be 1-D of equal length; got shapes {s.shape} and {y.shape}."
        )
    if y.dtype != bool:
        if not np.all(np.isin(y, (0, 1))):
            raise InputDataError("labels must be 0 (LGG) or 1 (HGG).")
        y = y.astype(bool)
    if not np.all(np.isfinite(s)):
        raise InputDataError("scores must be finite; drop NaN/Inf values first.")
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise InputDataError(f"needs both HGG and LGG scores; found {n1} HGG and {n0} LGG.")
    return s, y


def roc_curve(scores, labels) -> RocCurve:
    """Empirical ROC curve of a score against HGG (1) / LGG (0) labels.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Finite scores; higher means HGG is more likely.
    labels : array_like of {0, 1} or bool, shape (n,)
        1 = HGG (positive class), 0 = LGG. Both classes must be present.

    Returns
    -------
    RocCurve
        ``fpr`` (1 - specificity) and ``tpr`` (sensitivity) at each distinct
        threshold, from (0, 0) to (1, 1). Tied scores give one point, so a tie
        between classes appears as a diagonal segment.

    Examples
    --------
    >>> r = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> r.fpr.tolist(), r.tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    s, y = check_scores(scores, labels)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # last index of each run of equal scores (descending order)
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    n1, n0 = tp[-1], fp[-1]
    return RocCurve(
        fpr=np.r_[0.0, fp / n0],
        tpr=np.r_[0.0, tp / n1],
        thresholds=np.r_[np.inf, s_sorted[last]],
    )


def auc(scores, labels) -> float:
    """Area under the empirical ROC curve (trapezoid rule, ties count one half).

    Equals ``U / (n1 * n0)`` of the Mann-Whitney test (Hanley & McNeil 1982):
    the probability that a random HGG score exceeds a random LGG score, plus
    half the probability of a tie.

    Parameters
    ----------
    scores, labels : array_like
        See :func:`roc_curve`.

    Returns
    -------
    float
        AUC in [0, 1]; 0.5 is chance, below 0.5 the score is higher in LGG.

    Examples
    --------
    >>> auc([1, 2, 3, 4], [0, 0, 1, 1]), auc([1, 2, 2, 3], [0, 1, 0, 1])
    (1.0, 0.875)
    """
    r = roc_curve(scores, labels)
    return float(np.sum(np.diff(r.fpr) * (r.tpr[1:] + r.tpr[:-1])) / 2.0)


def mann_whitney(scores, labels) -> MannWhitney:
    """Two-sided Mann-Whitney U test between the HGG and LGG scores.

    Wraps :func:`scipy.stats.mannwhitneyu` (``method="auto"``: exact without
    ties for small samples, otherwise the normal approximation with tie and
    continuity corrections). ``scores``, ``labels``: see :func:`roc_curve`.

    Returns
    -------
    MannWhitney
        ``u``: the U statistic of the HGG sample (HGG > LGG pairs plus half the
        ties, so ``u / (n1 * n0)`` is the AUC); ``p``: two-sided p-value.

    Examples
    --------
    >>> r = mann_whitney([1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 1, 1])
    >>> r.u, round(r.p, 3)
    (9.0, 0.1)
    """
    s, y = check_scores(scores, labels)
    res = _sps.mannwhitneyu(s[y], s[~y], alternative="two-sided")
    return MannWhitney(u=float(res.statistic), p=float(res.pvalue))


def _youden_rows(S: np.ndarray, n1: int):
    """Youden cut-off for each row of ``S`` whose first ``n1`` columns are HGG.

    Returns arrays (cutoff, sensitivity, specificity, accuracy, j), one value
    per row. Fully vectorised: a sort per row and cumulative counts.
    """
    B, n = S.shape
    n0 = n - n1
    order = np.argsort(S, axis=1, kind="stable")
    Ss = np.take_along_axis(S, order, axis=1)
    pos_sorted = order < n1
    # cpos[:, k] = HGG among the k smallest scores, k = 0..n-1
    cpos = np.zeros((B, n), dtype=np.int64)
    np.cumsum(pos_sorted[:, :-1], axis=1, out=cpos[:, 1:])
    k = np.arange(n)
    tp = n1 - cpos                      # HGG with score >= cut-off k
    tn = k - cpos                       # LGG below cut-off k
    # integer keys: J * n1 * n0 and the number of correct predictions
    j_int = tp * n0 + tn * n1 - n1 * n0
    key = j_int * (n + 1) + (tp + tn)
    valid = np.ones((B, n), dtype=bool)
    valid[:, 1:] = Ss[:, 1:] > Ss[:, :-1]   # a cut-off between distinct values
    key = np.where(valid, key, np.iinfo(np.int64).min)
    best = np.argmax(key, axis=1)           # first maximum: the lowest cut-off
    rows = np.arange(B)
    lower = Ss[rows, np.maximum(best - 1, 0)]
    upper = Ss[rows, best]
    cutoff = np.where(best == 0, upper, 0.5 * (lower + upper))
    tp_b, tn_b = tp[rows, best], tn[rows, best]
    sens = tp_b / n1
    spec = tn_b / n0
    return cutoff, sens, spec, (tp_b + tn_b) / n, sens + spec - 1.0


def youden_cutoff(scores, labels) -> YoudenCutoff:
    """Cut-off maximising Youden's J = sensitivity + specificity - 1.

    Parameters
    ----------
    scores, labels : array_like
        See :func:`roc_curve`.

    Returns
    -------
    YoudenCutoff
        ``cutoff`` (predict HGG when score >= cutoff): the midpoint between the
        two consecutive distinct observed scores that separate best (or the
        smallest score when no cut-off beats J = 0); ``sensitivity``,
        ``specificity``, ``accuracy`` (fractions) and ``j`` at that cut-off.
        Ties in J go to the higher accuracy, then to the lower cut-off.

    References
    ----------
    Youden WJ. Cancer 1950;3:32-35. Ruopp MD et al. Biom J 2008;50:419-430.

    Examples
    --------
    >>> r = youden_cutoff([1.0, 1.2, 1.5, 2.0, 2.4], [0, 0, 0, 1, 1])
    >>> float(r.cutoff), float(r.sensitivity), float(r.specificity), float(r.j)
    (1.75, 1.0, 1.0, 1.0)
    """
    s, y = check_scores(scores, labels)
    S = np.concatenate([s[y], s[~y]])[None, :]
    c, se, sp, acc, j = _youden_rows(S, int(y.sum()))
    return YoudenCutoff(cutoff=float(c[0]), sensitivity=float(se[0]),
                        specificity=float(sp[0]), accuracy=float(acc[0]), j=float(j[0]))


def _auc_rows(S: np.ndarray, n1: int) -> np.ndarray:
    """AUC of each row of ``S`` (first ``n1`` columns HGG) from mid-ranks."""
    n0 = S.shape[1] - n1
    ranks = _sps.rankdata(S, axis=1)
    u = ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2.0
    return u / (n1 * n0)


def bootstrap_replicates(s, y, n_boot, seed, *, youden=True):
    """Bootstrap replicates of AUC (and the Youden quantities), chunked."""
    pos, neg = s[y], s[~y]
    n1, n0 = pos.size, neg.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // (n1 + n0))
    parts = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        # one uniform row per replicate: the draws do not depend on the chunking
        u = rng.random((b, n1 + n0))
        S = np.concatenate([pos[(u[:, :n1] * n1).astype(np.intp)],
                            neg[(u[:, n1:] * n0).astype(np.intp)]], axis=1)
        a = _auc_rows(S, n1)
        parts.append((a,) + (_youden_rows(S, n1)[:4] if youden else ()))
    return [np.concatenate(col) for col in zip(*parts)]


def percentile_ci(values: np.ndarray, level: float) -> tuple:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def check_bootstrap_options(n_boot, level):
    if int(n_boot) < 1:
        raise InputDataError(f"n_boot must be a positive number of replicates; got {n_boot}.")
    if not 0.0 < float(level) < 1.0:
        raise InputDataError(f"the confidence level must lie in (0, 1); got {level}.")


def bootstrap_ci(scores, labels, *, n_boot: int = N_BOOT, seed: Optional[int] = 0,
                 level: float = 0.95) -> BootstrapCI:
    """Stratified percentile bootstrap CIs of AUC, Youden cut-off and its performance.

    Parameters
    ----------
    scores, labels : array_like
        See :func:`roc_curve`.
    n_boot : int
        Number of bootstrap replicates (default 2000).
    seed : int or None
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same
        intervals. ``None`` draws fresh entropy.
    level : float
        Confidence level (default 0.95).

    Returns
    -------
    BootstrapCI
        ``(low, high)`` for ``auc``, ``cutoff``, ``sensitivity``,
        ``specificity`` and ``accuracy``. Each replicate resamples within each
        class and re-estimates the cut-off, so the intervals include the
        uncertainty of choosing it (Efron & Tibshirani 1993, ch. 13).

    Examples
    --------
    >>> ci = bootstrap_ci([1, 2, 3, 4, 5, 6], [0, 0, 1, 0, 1, 1], n_boot=500, seed=1)
    >>> 0.0 <= ci.auc[0] <= ci.auc[1] <= 1.0
    True
    """
    s, y = check_scores(scores, labels)
    check_bootstrap_options(n_boot, level)
    a, c, se, sp, acc = bootstrap_replicates(s, y, int(n_boot), seed)
    return BootstrapCI(
        auc=percentile_ci(a, level), cutoff=percentile_ci(c, level),
        sensitivity=percentile_ci(se, level), specificity=percentile_ci(sp, level),
        accuracy=percentile_ci(acc, level), n_boot=int(n_boot), level=float(level), seed=seed,
    )


def format_p(p: float) -> str:
    """p-value with two significant digits, ``< 0.0001`` below that."""
    if not isinstance(p, (int, float)) or not math.isfinite(p):
        return "n/a"
    if p < 1e-4:
        return "< 0.0001"
    text = f"{p:.2g}"
    return f"{p:.5f}".rstrip("0") if "e" in text else text
