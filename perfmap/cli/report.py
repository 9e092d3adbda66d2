"""``perfmap report``: the glioma-grading report of a cohort table (thin wrapper)."""

from __future__ import annotations

import click

from ._common import handle_errors
from .options import overwrite_option, seed_option, verbosity, verbosity_option


@click.command()
@click.argument("cohort", type=click.Path(dir_okay=False))
@click.option("--out", "html", required=True, type=click.Path(dir_okay=False),
              help="The self-contained HTML report.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the numbers as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Also write one CSV row per method.")
@click.option("--metric", default="cbf_ratio", show_default=True,
              help="Cohort column graded (higher means HGG).")
@click.option("--n-boot", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap replicates for the confidence intervals.")
@seed_option("Bootstrap seed.")
@click.option("--level", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              default=0.95, show_default=True, help="Confidence level.")
@click.option("--title", help="Report title.")
@click.option("--thumbnails/--no-thumbnails", default=True, show_default=True,
              help="Add a montage of mid-slice CBF maps when the cohort's folder holds them.")
@overwrite_option
@verbosity_option
@handle_errors
def report(cohort, html, json_path, csv_path, metric, n_boot, seed, level, title, thumbnails,
           overwrite):
    """Write the grading report (ROC/AUC, Youden cut-off, Mann-Whitney U) of COHORT.tsv.

    COHORT.tsv is the cohort table of perfmap batch (or perfmap robustness,
    which adds AUC against SNR). The HTML file has no external resources; its
    CBF montage (maps inside the cohort's folder only) names the method shown.
    No output may be COHORT.tsv itself or another output.
    """
    from ..pipeline.manifest import collect_thumbnails
    from ..report.export import report_from_cohort

    images = collect_thumbnails(cohort) if thumbnails else []
    written = report_from_cohort(cohort, html, json_path, csv_path, metric=metric,
                                 n_boot=n_boot, seed=seed, level=level, overwrite=overwrite,
                                 title=title, thumbnails=images or None,
                                 thumbnail_method=getattr(images, "method", None))
    if verbosity() >= 0:
        for path in written.values():
            click.echo(str(path))
