"""Glioma-grading report: statistics, plots and HTML/JSON/CSV export.

Typical use (what ``perfmap report COHORT.tsv`` does)::

    from perfmap.report import read_cohort, grading_table, auc_by_snr, write_report

    cohort = read_cohort("out/cohort.tsv")
    results = grading_table(cohort, "cbf_ratio", n_boot=2000, seed=0)
    robustness = auc_by_snr(cohort, "cbf_ratio") if len(cohort.snr_levels) > 1 else None
    write_report(results, "report.html", "report.json", "report.csv",
                 robustness=robustness, cohort="out/cohort.tsv")

or in one call, :func:`report_from_cohort`. Modules: :mod:`.cohort` (read and
validate the table), :mod:`.stats` (ROC/AUC, Mann-Whitney U, Youden cut-off,
stratified bootstrap CIs), :mod:`.grading` (the per-method table, AUC vs SNR), :mod:`.plots` (PNG figures; matplotlib imported
lazily) and :mod:`.export` (the files). Importing this package does not import
matplotlib.
"""

from .cohort import Cohort, cohort_from_rows, normalize_grade, read_cohort
from .export import csv_text, render_html, report_data, report_from_cohort, write_report
from .grading import MethodResult, SnrPoint, auc_by_snr, grading_table
from .stats import (
    BootstrapCI,
    MannWhitney,
    RocCurve,
    YoudenCutoff,
    auc,
    bootstrap_ci,
    mann_whitney,
    roc_curve,
    youden_cutoff,
)

__all__ = [
    "Cohort", "cohort_from_rows", "normalize_grade", "read_cohort",
    "csv_text", "render_html", "report_data", "report_from_cohort", "write_report",
    "BootstrapCI", "MannWhitney", "MethodResult", "RocCurve", "SnrPoint", "YoudenCutoff",
    "auc", "auc_by_snr", "bootstrap_ci", "grading_table", "mann_whitney", "roc_curve",
    "youden_cutoff",
]
