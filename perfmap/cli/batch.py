"""``perfmap batch``: every subject of a manifest with every method (thin wrapper)."""

from __future__ import annotations

import sys

import click

from ._common import handle_errors
from .options import (cohort_model_options, kind_option, method_params, methods_option,
                      model_options, overwrite_option,
                      param_options, scheduler_options, verbosity, verbosity_option)


class ProgressBar:
    """A tqdm bar on stderr counting finished subjects; failures are printed above it."""

    def __init__(self, quiet: bool, desc: str):
        self.quiet = quiet
        self.desc = desc
        self.bar = None

    def __call__(self, done, total, row):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="subject", desc=self.desc,
                            file=sys.stderr, disable=self.quiet, dynamic_ncols=True)
        else:
            self.bar.update(done - self.bar.n)
        if row is not None and row["status"] != "ok" and not self.quiet:
            self.bar.write(f"{row['subject']} ({row['method']}) failed: {row['error']}",
                           file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Batch folder: DIR/<subject>/<method>/, DIR/logs/, DIR/cohort.tsv.")
@kind_option
@methods_option
@param_options
@model_options
@scheduler_options
@click.option("--resume", is_flag=True,
              help="Keep subjects whose outputs are complete; run the others again.")
@overwrite_option
@verbosity_option
@handle_errors
def batch(manifest, out_dir, kind, methods, params, device, model, leakage, t10, denoise,
          jobs, scheduler, resume, overwrite):
    """Compute every subject of MANIFEST.tsv with every --method.

    MANIFEST.tsv is tab-separated with the columns subject and input and
    optionally aif, mask, tumour, ref, grade, te, tr (paths relative to the
    manifest; other columns are copied into cohort.tsv). A failing subject is
    recorded as failed in cohort.tsv and the others go on; the exit code is 1
    if any failed. Prints the path of cohort.tsv (nothing with -q but errors).
    """
    from ..pipeline.batch import run_batch

    quiet = verbosity() < 0
    mparams = method_params(methods, params, device, model, kind)
    options = cohort_model_options(kind, leakage, t10, denoise)
    bar = ProgressBar(quiet, "batch")
    try:
        result = run_batch(manifest, out_dir, methods, jobs=jobs, scheduler=scheduler,
                           resume=resume, overwrite=overwrite,
                           method_params=mparams, progress=bar, kind=kind,
                           model_options=options,
                           command=["perfmap"] + sys.argv[1:])
    finally:
        bar.close()
    n = len(result.rows)
    if not quiet:
        click.echo(f"batch: {n - result.n_failed} of {n} subject/method runs ok "
                   f"({result.n_run} run, {result.n_skipped} reused) in "
                   f"{result.wall_s:.1f} s", err=True)
    if not quiet:
        click.echo(str(result.cohort_path))
    if result.n_failed:
        click.echo(f"perfmap: error: {result.n_failed} of {n} subject/method runs failed; "
                   f"see {result.cohort_path} and the logs in "
                   f"{result.cohort_path.parent / 'logs'}", err=True)
        sys.exit(1)
