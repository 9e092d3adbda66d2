"""``perfmap compute``: perfusion maps for one series (thin wrapper over the pipeline)."""

from __future__ import annotations

import sys

import click

from ..core.curves import DEFAULT_KH, DEFAULT_RHO
from ._common import handle_errors
from .options import (kind_option, method_option, method_params, overwrite_option,
                      param_options, verbosity, verbosity_option)


def _parse_roi(ctx, param, values):
    rois = {}
    for item in values:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{item!r} is not NAME=PATH", ctx=ctx, param=param)
        if name in rois:
            raise click.BadParameter(f"ROI name {name!r} given twice", ctx=ctx, param=param)
        rois[name] = path
    return rois


def _parse_frames(ctx, param, value):
    if value is None:
        return None
    start, sep, stop = value.partition(":")
    try:
        return (int(start), int(stop)) if sep else (0, int(start))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not N or START:STOP", ctx=ctx,
                                 param=param) from None


@click.command(epilog="'perfmap methods' lists every method with its parameters and defaults.")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@kind_option
@method_option
@param_options
@click.option("--aif", default="auto", show_default=True,
              help="'auto', a 3D arterial mask (NIfTI), or a text curve (one value per frame).")
@click.option("--mask", default="auto", show_default=True,
              help="'auto' (from the baseline image) or a 3D brain mask.")
@click.option("--te", type=float, help="Echo time in seconds (overrides the headers).")
@click.option("--tr", type=float, help="Repetition time in seconds (overrides the headers).")
@click.option("--roi", "rois", multiple=True, callback=_parse_roi, metavar="NAME=PATH",
              help="ROI mask for statistics (repeatable).")
@click.option("--ref", type=click.Path(), help="Reference ROI (normal white matter) for ratios.")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Output folder (default: next to the input).")
@click.option("--baseline-frames", callback=_parse_frames, metavar="N|START:STOP",
              help="Frames averaged for S0 (default: detected).")
@click.option("--skip-frames", "n_skip", type=click.IntRange(min=0),
              help="Initial non-steady-state frames to drop (default: detected).")
@click.option("--kh", type=float, show_default=f"{DEFAULT_KH}",
              help="DSC: hematocrit correction factor.")
@click.option("--rho", type=float, show_default=f"{DEFAULT_RHO}",
              help="DSC: brain tissue density (g/ml).")
@click.option("--leakage", type=click.Choice(["bsw", "bidirectional", "none"]),
              help="DSC leakage correction: bsw (Boxerman 2006; default for one echo), "
                   "bidirectional (Leu 2016) or none (default with --second-echo).")
@click.option("--second-echo", type=click.Path(exists=True),
              help="DSC: the other echo of a dual-echo series (NIfTI or DICOM folder); dR2* "
                   "then has no T1 leakage (Vonken 1999).")
@click.option("--te2", type=float, help="Echo time of --second-echo in seconds (overrides its "
              "headers).")
@click.option("--series", help="SeriesInstanceUID or SeriesNumber (DICOM folder with several).")
@click.option("--allow-empty", is_flag=True, help="Write the maps even when fewer than 1 % of "
              "the brain voxels could be fitted (the run fails by default).")
@overwrite_option
@verbosity_option
@handle_errors
def compute(input_path, kind, method, params, device, model, aif, mask, te, tr, rois, ref,
            out_dir, baseline_frames, n_skip, kh, rho, leakage, second_echo, te2, series,
            allow_empty, overwrite):
    """Compute perfusion maps for one series (DSC: CBF, CBV, MTT, Tmax, TTP, K2).

    INPUT is a 4D NIfTI (.nii, .nii.gz) or a directory holding a DICOM series.
    Outputs go to --out-dir as STEM_cbf.nii.gz, STEM_cbv.nii.gz, STEM_mtt.nii.gz,
    STEM_tmax.nii.gz, STEM_ttp.nii.gz, with leakage correction STEM_k2.nii.gz and
    STEM_leakref.nii.gz, and STEM_aif.tsv and STEM_perfmap.json.
    """
    from ..pipeline import compute as run_compute

    mparams = method_params([method], params, device, model)[method]
    result = run_compute(input_path, kind=kind, method=method, method_params=mparams, aif=aif,
                         mask=mask, te=te, tr=tr, rois=rois, ref=ref, out_dir=out_dir,
                         overwrite=overwrite, series=series, allow_empty=allow_empty,
                         command=["perfmap"] + sys.argv[1:], kh=kh, rho=rho,
                         baseline_frames=baseline_frames, n_skip=n_skip, leakage=leakage,
                         second_echo=second_echo, te2=te2)
    level = verbosity()
    if level >= 0:
        prov = result.provenance
        click.echo(f"{method}: {prov['voxels']['brain']} brain voxels, "
                   f"{prov['voxels']['not_fitted']} not fitted, "
                   f"{prov['timings']['total_s']:.2f} s")
        for name, stats in prov["rois"].items():
            ratios = ", ".join(f"{k}={stats[k]:.3f}" for k in ("cbf_ratio", "cbv_ratio", "mtt_ratio")
                               if stats.get(k) is not None)
            click.echo(f"ROI {name}: {stats['voxels']} voxels" + (f"; {ratios}" if ratios else ""))
    if level >= 1:
        for path in result.outputs.values():
            click.echo(str(path))
