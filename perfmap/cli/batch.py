"""``perfmap batch``: every subject of a manifest with every method (thin wrapper)."""

from __future__ import annotations

import sys

import click

from ._common import handle_errors, overwrite_option, verbosity_options


def parse_methods(ctx, param, value):
    """``osvd,tikhonov`` -> ``("osvd", "tikhonov")``, checked against the registry."""
    from ..deconv import available

    names = tuple(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))
    if not names:
        raise click.BadParameter("give at least one method", ctx=ctx, param=param)
    valid = available()
    unknown = [m for m in names if m not in valid]
    if unknown:
        raise click.BadParameter(f"unknown method(s) {', '.join(unknown)}; choose from: "
                                 f"{', '.join(valid)}", ctx=ctx, param=param)
    return names


def torch_params(methods, device) -> dict:
    """``method -> {"device": device}`` for the methods that run on torch."""
    from ..deconv import get_backend

    return {m: {"device": device} for m in methods if get_backend(m).needs_torch}


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


def scheduler_options(func):
    """``--jobs`` and ``--scheduler``, shared by batch and robustness."""
    func = click.option(
        "--scheduler", metavar="ADDRESS|local",
        help="Run on a Dask distributed cluster: a scheduler address (tcp://host:8786), or "
             "'local' for a local cluster of --jobs worker processes. Needs "
             "perfmap[distributed]; workers must see the same files.")(func)
    func = click.option("--jobs", type=click.IntRange(min=1),
                        help="Worker processes (default: all cores; 1 runs in this process).")(
        func)
    return func


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Batch folder: DIR/<subject>/<method>/, DIR/logs/, DIR/cohort.tsv.")
@click.option("--method", "methods", default="osvd", show_default=True, callback=parse_methods,
              help="Deconvolution method(s), comma-separated, e.g. osvd,tikhonov.")
@scheduler_options
@click.option("--resume", is_flag=True,
              help="Keep subjects whose outputs are complete; run the others again.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Device for the neural backend.")
@overwrite_option
@verbosity_options
@handle_errors
def batch(manifest, out_dir, methods, jobs, scheduler, resume, device, overwrite, verbose,
          quiet):
    """Compute every subject of MANIFEST.tsv with every --method.

    MANIFEST.tsv is tab-separated with the columns subject and input and
    optionally aif, mask, tumour, ref, grade, te, tr (paths relative to the
    manifest; other columns are copied into cohort.tsv). A failing subject is
    recorded as failed in cohort.tsv and the others go on; the exit code is 1
    if any failed.
    """
    from ..pipeline.batch import run_batch

    bar = ProgressBar(quiet > 0, "batch")
    try:
        result = run_batch(manifest, out_dir, methods, jobs=jobs, scheduler=scheduler,
                           resume=resume, overwrite=overwrite,
                           method_params=torch_params(methods, device), progress=bar,
                           command=["perfmap"] + sys.argv[1:])
    finally:
        bar.close()
    n = len(result.rows)
    if quiet <= 0:
        click.echo(f"batch: {n - result.n_failed} of {n} subject/method runs ok "
                   f"({result.n_run} run, {result.n_skipped} reused) in "
                   f"{result.wall_s:.1f} s", err=True)
    click.echo(str(result.cohort_path))
    if result.n_failed:
        click.echo(f"perfmap: error: {result.n_failed} of {n} subject/method runs failed; "
                   f"see {result.cohort_path} and the logs in "
                   f"{result.cohort_path.parent / 'logs'}", err=True)
        sys.exit(1)
