"""``perfmap robustness``: grading AUC against SNR after adding noise (thin wrapper)."""

from __future__ import annotations

import sys

import click

from ._common import handle_errors
from .batch import ProgressBar
from .options import (cohort_model_options, kind_option, method_params, methods_option,
                      model_options, overwrite_option,
                      param_options, scheduler_options, seed_option, verbosity,
                      verbosity_option)


def _parse_levels(ctx, param, value):
    try:
        levels = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers",
                                 ctx=ctx, param=param) from None
    if not levels or any(not (lvl > 0 and lvl != float("inf")) for lvl in levels):
        raise click.BadParameter("SNR levels must be positive numbers, e.g. 50,40,30,20,10",
                                 ctx=ctx, param=param)
    return tuple(levels)


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--snr", "levels", default="50,40,30,20,10", show_default=True,
              callback=_parse_levels, help="Target SNR levels, comma-separated.")
@kind_option
@methods_option
@param_options
@model_options
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Study folder (degraded series, one batch per level, cohort.tsv, report).")
@seed_option("Seed of the noise (per subject and level) and of the bootstrap.")
@scheduler_options
@click.option("--metric", help="Cohort column graded in the report (default: the kind's first "
              "ratio, cbf_ratio for DSC, ktrans_ratio for DCE).")
@click.option("--n-boot", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Bootstrap replicates of the report.")
@click.option("--resume", is_flag=True, help="Keep finished results; run the rest.")
@overwrite_option
@verbosity_option
@handle_errors
def robustness(manifest, levels, kind, methods, params, device, model, leakage, t10, denoise,
               out_dir, seed, jobs, scheduler, metric, n_boot, resume, overwrite):
    """Add Gaussian noise to every subject of MANIFEST.tsv down to each --snr level,
    recompute the AIF and the maps with every --method, and report AUC against SNR.

    SNR = mean baseline signal / noise SD inside the brain mask (PHAE paper);
    writes DIR/cohort.tsv (with an snr column), DIR/robustness.html and
    DIR/robustness.json.
    """
    from ..pipeline.robustness import run_robustness

    quiet = verbosity() < 0
    mparams = method_params(methods, params, device, model, kind)
    options = cohort_model_options(kind, leakage, t10, denoise)
    if metric is None:
        from ..pipeline.kinds import get_kind

        metric = get_kind(kind).ratio_columns[0]
    bar = ProgressBar(quiet, "robustness")
    note = (lambda msg: None) if quiet else \
        (lambda msg: click.echo(f"perfmap: note: {msg}", err=True))
    try:
        result = run_robustness(manifest, out_dir, levels, methods, seed=seed, jobs=jobs,
                                method_params=mparams, kind=kind, model_options=options,
                                scheduler=scheduler, resume=resume, overwrite=overwrite,
                                metric=metric, n_boot=n_boot, progress=bar, notify=note,
                                command=["perfmap"] + sys.argv[1:])
    finally:
        bar.close()
    if not quiet:
        click.echo(str(result.cohort_path))
        for path in result.report.values():
            click.echo(str(path))
    problems = []
    if result.n_failed:
        problems.append(f"{result.n_failed} subject/level/method runs failed (see "
                        f"{result.cohort_path})")
    if result.report_error:
        problems.append(f"the report was not written: {result.report_error}")
    if problems:
        click.echo("perfmap: error: " + "; ".join(problems), err=True)
        sys.exit(1)
