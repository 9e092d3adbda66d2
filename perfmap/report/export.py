"""Write the grading report: one self-contained HTML file, plus JSON and CSV.

The HTML file embeds its figures as base64 PNG data URIs and its CSS inline;
it holds no script and no external URL, so it opens offline, can be mailed or
archived as is, and prints cleanly (``@media print`` rules). The JSON and CSV
files carry the same numbers as the table at full precision: fractions in
[0, 1] for sensitivity, specificity and accuracy (the HTML shows percent),
``null`` / an empty cell where a value is undefined.

Every file is written to a temporary name in its destination folder and moved
into place with :func:`os.replace` only after all of them rendered, so a
failure leaves no partial file. Existing files are never replaced unless
``overwrite=True``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from .. import __version__
from ..errors import OutputExistsError, ParameterError, PerfmapError
from ..io.outputs import OutputSet
from .grading import MethodResult, SnrPoint
from .stats import N_BOOT, format_p

PathLike = Union[str, os.PathLike]

_CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:right;vertical-align:top}
th{background:#f0f0f0}td.l,th.l{text-align:left}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85em;color:#444;max-width:560px}
.note{font-size:.85em;color:#444;max-width:900px}
@media print{body{margin:0;max-width:none;font-size:10pt}
section,table,figure{page-break-inside:avoid;break-inside:avoid}
h2{page-break-after:avoid;break-after:avoid}th{background:#eee!important}
figure img{border:none}}
"""


# ------------------------------------------------------------------ formatting helpers

def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _num(x: float) -> str:
    if not _finite(x):
        return "n/a"
    return f"{x:.2f}" if abs(x) >= 0.1 or x == 0 else f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}" if _finite(x) else "n/a"


def _with_ci(value: str, lo: str, hi: str) -> str:
    return f"{value} ({lo}&ndash;{hi})"


def _seconds(r: MethodResult) -> str:
    if not _finite(r.mean_seconds):
        return "n/a"
    return f"{r.mean_seconds:.1f} ({r.seconds_min:.2f}&ndash;{r.seconds_max:.2f})"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _img(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _results_list(results) -> list[MethodResult]:
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not items:
        raise ParameterError("there are no grading results to report.")
    return items


# ------------------------------------------------------------------ data exports

def report_data(results: Mapping[str, MethodResult], *,
                robustness: Optional[Sequence[SnrPoint]] = None,
                cohort: Optional[PathLike] = None, date: Optional[str] = None) -> dict:
    """The report's numbers as a JSON-ready dict (what the JSON file holds).

    Parameters
    ----------
    results : mapping of str to MethodResult
        From :func:`perfmap.report.grading.grading_table`.
    robustness : sequence of SnrPoint, optional
        From :func:`perfmap.report.grading.auc_by_snr`.
    cohort : path, optional
        The cohort table, recorded for provenance.
    date : str, optional
        Creation time (default: now, UTC, ISO 8601).

    Returns
    -------
    dict
        ``perfmap_version``, ``created``, ``metric``, ``cohort``, the
        conventions, ``methods`` (one flat dict per method, identical to the CSV
        rows), ``excluded`` and ``values`` (per method: the subjects graded)
        and ``robustness`` (a list, or ``None``).
    """
    items = _results_list(results)
    first = items[0]
    return {
        "perfmap_version": __version__,
        "created": date or _now(),
        "metric": first.metric,
        "cohort": None if cohort is None else str(cohort),
        "positive_class": "HGG",
        "decision_rule": f"HGG when {first.metric} >= cutoff",
        "cutoff_method": "Youden index, midpoints between distinct observed values",
        "confidence_intervals": {
            "method": "stratified percentile bootstrap, cut-off re-estimated per replicate",
            "level": first.level, "n_boot": first.n_boot, "seed": first.seed,
        },
        "snr": first.snr,
        "methods": [r.to_dict() for r in items],
        "excluded": {r.method: [{"subject": s, "reason": why} for s, why in r.excluded]
                     for r in items},
        "values": {r.method: [{"subject": s, "grade": "HGG" if lab else "LGG",
                               "value": float(v)}
                              for s, lab, v in zip(r.subjects, r.labels, r.scores)]
                   for r in items},
        "robustness": None if robustness is None else [p.to_dict() for p in robustness],
    }


def csv_text(results: Mapping[str, MethodResult]) -> str:
    """The table as CSV text, one row per method, same keys as the JSON ``methods``.

    Floats are written with :func:`repr` (they round-trip exactly); undefined
    values are empty cells.
    """
    rows = [r.to_dict() for r in _results_list(results)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(rows[0]))
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v
                         for v in row.values()])
    return buf.getvalue()


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# ------------------------------------------------------------------ HTML

def _main_table(items: list[MethodResult]) -> str:
    level = f"{100 * items[0].level:g} % CI"
    head = ("<tr><th class='l'>Method</th><th>HGG / LGG</th>"
            f"<th>AUC ({level})</th><th>Cut-off ({level})</th>"
            f"<th>Sensitivity % ({level})</th><th>Specificity % ({level})</th>"
            "<th>Accuracy %</th><th>MWU p</th><th>Time s, mean (range)</th></tr>")
    body = []
    for r in items:
        settings = "; ".join(f"{k} {v}" for k, v in r.settings.items())
        label = f"{_esc(r.method)}" + (f" <small>({_esc(settings)})</small>" if settings else "")
        body.append(
            "<tr>"
            f"<td class='l'>{label}</td><td>{r.n_hgg} / {r.n_lgg}</td>"
            f"<td>{_with_ci(_num(r.auc), *map(_num, r.auc_ci))}</td>"
            f"<td>{_with_ci(_num(r.cutoff), *map(_num, r.cutoff_ci))}</td>"
            f"<td>{_with_ci(_pct(r.sensitivity), *map(_pct, r.sensitivity_ci))}</td>"
            f"<td>{_with_ci(_pct(r.specificity), *map(_pct, r.specificity_ci))}</td>"
            f"<td>{_pct(r.accuracy)}</td><td>{_esc(format_p(r.mwu_p))}</td>"
            f"<td>{_seconds(r)}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _excluded_table(items: list[MethodResult]) -> str:
    rows = []
    for r in items:
        who = "; ".join(f"{_esc(s)} ({_esc(why)})" for s, why in r.excluded) or "&ndash;"
        rows.append(f"<tr><td class='l'>{_esc(r.method)}</td><td>{r.n_excluded_status}</td>"
                    f"<td>{r.n_excluded_nonfinite}</td><td class='l'>{who}</td></tr>")
    return ("<table><tr><th class='l'>Method</th><th>Status not ok</th>"
            f"<th>Non-finite {_esc(items[0].metric)}</th><th class='l'>Subjects</th></tr>"
            f"{''.join(rows)}</table>")


def _snr_table(points: Sequence[SnrPoint]) -> str:
    levels = sorted({p.snr for p in points}, reverse=True)
    methods = list(dict.fromkeys(p.method for p in points))
    lookup = {(p.method, p.snr): p for p in points}
    head = "<tr><th class='l'>Method</th>" + "".join(
        f"<th>SNR {lv:g}</th>" for lv in levels) + "</tr>"
    rows = []
    for m in methods:
        cells = []
        for lv in levels:
            p = lookup.get((m, lv))
            if p is None or not _finite(p.auc):
                cells.append("<td>n/a</td>")
                continue
            mark = "" if p.noise_added else \
                f" <b>&dagger;</b> ({p.n_no_noise} of {p.n_hgg + p.n_lgg} without added noise)"
            cells.append(f"<td>{_with_ci(_num(p.auc), *map(_num, p.auc_ci))}{mark}</td>")
        rows.append(f"<tr><td class='l'>{_esc(m)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _no_noise_note(points: Sequence[SnrPoint]) -> str:
    """A note on the levels where some subjects got no noise ("" when there are none)."""
    levels = sorted({p.snr for p in points if not p.noise_added}, reverse=True)
    if not levels:
        return ""
    return ("<p class='note'><b>&dagger;</b> No noise was added at SNR "
            f"{', '.join(f'{lv:g}' for lv in levels)} to the subjects counted: their data "
            "were already noisier than that level (measured SNR at or below it; see the "
            "snr_input and noise_note columns of the cohort table), so these AUCs are those "
            "of the subjects' own data, not of data degraded to the stated SNR. Hollow "
            "markers in the plot.</p>")


def _thumbnail_section(thumbnails, method: Optional[str]) -> str:
    """The montage of CBF slices, labelled with the method that computed them."""
    from . import plots as figures

    which = f"method {method}" if method else "method not recorded"
    return "".join([
        f"<section><h2>Maps: CBF, {_esc(which)}</h2>",
        _img(figures.thumbnail_montage(thumbnails, title=f"CBF, {which}"),
             f"CBF map thumbnails, {which}",
             f"Mid-slice CBF (ml/100 g/min) of each subject computed with "
             f"<b>{_esc(method or 'an unrecorded method')}</b>; shared colour scale."),
        "</section>"])


def render_html(results: Mapping[str, MethodResult], *,
                robustness: Optional[Sequence[SnrPoint]] = None,
                thumbnails: Optional[Sequence[tuple]] = None, title: Optional[str] = None,
                cohort: Optional[PathLike] = None, date: Optional[str] = None,
                plots: bool = True, thumbnail_method: Optional[str] = None) -> str:
    """The report as one self-contained HTML document (see :func:`write_report`)."""
    items = _results_list(results)
    first = items[0]
    metric = first.metric
    date = date or _now()
    title = title or f"Glioma grading report: {metric}"
    level = f"{100 * first.level:g} %"
    at_snr = "" if first.snr is None else f" Rows at SNR {first.snr:g}."
    kept = [r for r in items if r.n_no_noise]
    if kept:
        at_snr += (" <b>No noise was added</b> at this level to "
                   + ", ".join(f"{r.n_no_noise} of {r.n_hgg + r.n_lgg} subjects ({_esc(r.method)})"
                               for r in kept)
                   + ": their data were already noisier (see the cohort's snr_input and "
                     "noise_note columns), so their rows show their own SNR, not this one.")
    meta = (f"Metric <b>{_esc(metric)}</b> &middot; created {_esc(date)} &middot; perfmap "
            f"{_esc(__version__)}"
            + ("" if cohort is None else f" &middot; cohort {_esc(Path(cohort).name)}"))
    notes = (
        f"HGG is the positive class; a subject is called HGG when {_esc(metric)} &ge; the "
        "cut-off. AUC: trapezoidal area under the empirical ROC curve (ties count one half; "
        "equals Mann&ndash;Whitney U / (n<sub>HGG</sub> n<sub>LGG</sub>), Hanley &amp; McNeil "
        "1982). Cut-off: maximum Youden index J = sensitivity + specificity &minus; 1 (Youden "
        "1950; Ruopp et al. 2008), midway between consecutive distinct observed values. "
        f"{level} CIs: stratified percentile bootstrap, {first.n_boot} replicates, seed "
        f"{_esc(first.seed)}, the cut-off re-estimated in each replicate (Efron &amp; "
        "Tibshirani 1993). MWU p: two-sided Mann&ndash;Whitney U test. Time: processing "
        f"seconds per subject.{at_snr}"
    )
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_esc(title)}</h1><p class='meta'>{meta}</p></header>",
        "<section><h2>Grading performance</h2>", _main_table(items),
        f"<p class='note'>{notes}</p></section>",
    ]
    if plots:
        from . import plots as figures

        parts += [
            "<section><h2>Figures</h2>",
            _img(figures.roc_plot(items), "ROC curves",
                 "ROC curves of each method; dots mark the Youden cut-off."),
            _img(figures.box_plot(items), f"{metric} by grade",
                 f"{_esc(metric)} by grade; dashed line: Youden cut-off."),
            "</section>",
        ]
    parts += ["<section><h2>Excluded subjects</h2>",
              "<p class='note'>Rows whose status is not ok or whose metric is NaN/Inf are "
              "left out of the analysis.</p>", _excluded_table(items), "</section>"]
    if robustness:
        parts += ["<section><h2>Robustness to noise</h2>",
                  f"<p class='note'>AUC ({level} CI, bootstrap as above) of each method "
                  "at each SNR level; n/a where fewer than 2 HGG or 2 LGG subjects were "
                  "usable.</p>", _snr_table(robustness), _no_noise_note(robustness)]
        if plots:
            parts.append(_img(figures.auc_snr_plot(robustness), "AUC vs SNR",
                              "AUC against SNR; bands: bootstrap CI."))
        parts.append("</section>")
    if thumbnails and plots:
        parts.append(_thumbnail_section(
            thumbnails, thumbnail_method or getattr(thumbnails, "method", None)))
    parts.append(f"<footer><p class='meta'>Generated by perfmap {_esc(__version__)} on "
                 f"{_esc(date)}.</p></footer></body></html>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ writing

def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (links and ``..`` resolved)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_outputs(paths: list[Path], overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse outputs that are folders, the same file twice, an input, or exist.

    Raises
    ------
    ParameterError
        Two outputs are one file, an output is an input (``inputs``) or a
        folder, or its folder cannot be created.
    OutputExistsError
        An output exists and ``overwrite`` is false.
    """
    from ..io.outputs import check_folder

    for i, p in enumerate(paths):
        for q in paths[:i]:
            if _same_file(p, q):
                raise ParameterError(f"{p} is given as two report outputs; the HTML, JSON and "
                                     "CSV outputs must be different files.")
        for source in inputs:
            if _same_file(p, Path(source)):
                raise ParameterError(f"{p} is the input cohort table; writing the report there "
                                     "would replace it. Choose another output name.")
    for p in paths:
        if p.is_dir():
            raise ParameterError(f"{p} is a folder; give a file name for the report output.")
        check_folder(p.parent, "the report output")
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p} already exists; use overwrite to replace it.")


def _write_all(contents: dict[Path, bytes]) -> None:
    """Write every file to a temporary name, then move them all into place
    (:class:`perfmap.io.outputs.OutputSet`): a failure leaves no partial file."""
    try:
        with OutputSet.of_paths(list(contents), overwrite=True) as out:
            for path, data in contents.items():
                out.write(str(path), lambda p, data=data: p.write_bytes(data))
            out.commit()
    except OSError as exc:
        raise PerfmapError(
            f"could not write {exc.filename or 'the report'} ({exc.strerror or exc})."
        ) from None


def write_report(results: Mapping[str, MethodResult], html_path: PathLike,
                 json_path: Optional[PathLike] = None, csv_path: Optional[PathLike] = None, *,
                 robustness: Optional[Sequence[SnrPoint]] = None,
                 thumbnails: Optional[Sequence[tuple]] = None, title: Optional[str] = None,
                 cohort: Optional[PathLike] = None, date: Optional[str] = None,
                 overwrite: bool = False, plots: bool = True,
                 thumbnail_method: Optional[str] = None) -> dict[str, Path]:
    """Write the grading report as HTML, and optionally JSON and CSV.

    Parameters
    ----------
    results : mapping of str to MethodResult
        From :func:`perfmap.report.grading.grading_table`.
    html_path : path
        The self-contained HTML report: title, the paper-style table (AUC,
        cut-off, sensitivity %, specificity % with CIs, accuracy %, MWU p, mean
        seconds with range), the ROC and box plots, the excluded subjects, the
        robustness section when ``robustness`` is given, and provenance
        (perfmap version, metric, date, cohort file).
    json_path, csv_path : path, optional
        The same numbers as JSON (:func:`report_data`) and CSV (one row per
        method, :func:`csv_text`).
    robustness : sequence of SnrPoint, optional
        AUC vs SNR (:func:`perfmap.report.grading.auc_by_snr`): adds a table and
        a plot.
    thumbnails : sequence of (str, 2D ndarray), optional
        One CBF slice per subject for a montage
        (:func:`perfmap.report.plots.thumbnail_montage`), e.g. from
        :func:`perfmap.pipeline.manifest.collect_thumbnails`.
    thumbnail_method : str, optional
        The method that computed the thumbnails, named in the montage's title
        and caption (default: ``thumbnails.method`` when it has one).
    title, cohort, date : optional
        Report title, cohort file (provenance), creation time string.
    overwrite : bool
        Replace existing files. Without it an existing output raises
        :class:`~perfmap.errors.OutputExistsError` before anything is written.
    plots : bool
        Embed the figures (needs matplotlib). ``False`` writes tables only.

    Returns
    -------
    dict of str to Path
        The files written, keyed ``"html"``, ``"json"``, ``"csv"``.

    Raises
    ------
    OutputExistsError
        If an output exists and ``overwrite`` is false.
    ParameterError
        If two outputs are the same file, an output is the ``cohort`` table or
        a folder.
    PerfmapError
        If a file cannot be written; no output is left behind then.
    """
    outputs = {"html": Path(html_path)}
    if json_path is not None:
        outputs["json"] = Path(json_path)
    if csv_path is not None:
        outputs["csv"] = Path(csv_path)
    _check_outputs(list(outputs.values()), overwrite,
                   inputs=() if cohort is None else (Path(cohort),))
    date = date or _now()
    contents = {outputs["html"]: render_html(
        results, robustness=robustness, thumbnails=thumbnails, title=title, cohort=cohort,
        date=date, plots=plots, thumbnail_method=thumbnail_method).encode("utf-8")}
    if "json" in outputs:
        data = report_data(results, robustness=robustness, cohort=cohort, date=date)
        contents[outputs["json"]] = (json.dumps(data, indent=2, allow_nan=False)
                                     + "\n").encode("utf-8")
    if "csv" in outputs:
        contents[outputs["csv"]] = csv_text(results).encode("utf-8")
    _write_all(contents)
    return outputs


def report_from_cohort(cohort_path: PathLike, html_path: PathLike,
                       json_path: Optional[PathLike] = None,
                       csv_path: Optional[PathLike] = None, *, metric: str = "cbf_ratio",
                       n_boot: int = N_BOOT, seed: Optional[int] = 0, level: float = 0.95,
                       overwrite: bool = False, title: Optional[str] = None,
                       thumbnails: Optional[Sequence[tuple]] = None,
                       plots: bool = True,
                       thumbnail_method: Optional[str] = None) -> dict[str, Path]:
    """Read a cohort table, grade it and write the report (what ``perfmap report`` does).

    The robustness section is added when the table has an ``snr`` column with
    values. Outputs are checked before any computation, so an existing file,
    or an output that is the cohort table itself, fails fast. See :func:`write_report` for the outputs and errors, and
    :func:`perfmap.report.grading.grading_table` for the statistics.
    """
    from .cohort import read_cohort
    from .grading import auc_by_snr, grading_table

    _check_outputs([Path(p) for p in (html_path, json_path, csv_path) if p is not None],
                   overwrite, inputs=(Path(cohort_path),))
    cohort = read_cohort(cohort_path)
    results = grading_table(cohort, metric, n_boot=n_boot, seed=seed, level=level)
    # AUC against SNR only means something over two or more noise levels.
    robustness = (auc_by_snr(cohort, metric, n_boot=n_boot, seed=seed, level=level)
                  if cohort.has_snr and len(cohort.snr_levels) > 1 else None)
    return write_report(results, html_path, json_path, csv_path, robustness=robustness,
                        thumbnails=thumbnails, title=title, cohort=cohort_path,
                        overwrite=overwrite, plots=plots, thumbnail_method=thumbnail_method)
