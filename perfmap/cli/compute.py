"""``perfmap compute``: perfusion maps for one series (thin wrapper over the pipeline)."""

from __future__ import annotations

import sys

import click

from ..core.curves import DEFAULT_KH, DEFAULT_RHO
from ._common import handle_errors
from .options import (denoise_option, kind_option, method_option, method_params,
                      overwrite_option, param_options, verbosity, verbosity_option)


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


def _parse_angles(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of degrees",
                                 ctx=ctx, param=param) from None


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
@denoise_option
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
@click.option("--second-echo", metavar="PATH|auto",
              help="DSC: the other echo of a dual-echo series (NIfTI or DICOM folder), or "
                   "'auto' to pair the two echo series of a DICOM INPUT folder by EchoTime; "
                   "dR2* then has no T1 leakage (Vonken 1999).")
@click.option("--te2", type=float, help="Echo time of --second-echo in seconds (overrides its "
              "headers).")
@click.option("--t1", type=click.Path(exists=True, dir_okay=False),
              help="DCE: pre-contrast T1 map in seconds (NIfTI on the series' grid).")
@click.option("--vfa", type=click.Path(exists=True),
              help="DCE: variable-flip-angle series (4D NIfTI or DICOM folder) to fit T10 "
                   "from; needs --vfa-angles. Writes STEM_t10.nii.gz.")
@click.option("--vfa-angles", callback=_parse_angles, metavar="DEG,DEG,...",
              help="DCE: flip angles of the --vfa volumes, in their order (degrees).")
@click.option("--t10", type=float, help="DCE: one pre-contrast T1 (s) for every voxel.")
@click.option("--flip-angle", type=float,
              help="DCE: flip angle of the dynamic series (degrees; overrides the headers).")
@click.option("--r1", type=float, show_default="4.5",
              help="DCE: contrast-agent relaxivity (/mM/s).")
@click.option("--hct", type=float, show_default="0.42",
              help="DCE: hematocrit (plasma AIF = blood AIF / (1 - Hct)).")
@click.option("--frame-interval", type=float,
              help="DCE: frame interval in seconds when neither FrameTimesStart nor the "
                   "header gives it.")
@click.option("--series", help="SeriesInstanceUID or SeriesNumber (DICOM folder with several).")
@click.option("--allow-empty", is_flag=True, help="Write the maps even when fewer than 1 % of "
              "the brain voxels could be fitted (the run fails by default).")
@overwrite_option
@verbosity_option
@handle_errors
def compute(input_path, kind, method, params, device, model, denoise, aif, mask, te, tr, rois, ref,
            out_dir, baseline_frames, n_skip, kh, rho, leakage, second_echo, te2, t1, vfa,
            vfa_angles, t10, flip_angle, r1, hct, frame_interval, series, allow_empty,
            overwrite):
    """Compute perfusion maps for one series (DSC: CBF, CBV, MTT, Tmax, TTP, K2; DCE:
    Ktrans, ve, vp, kep, or Fp, PS with 2cxm, or Fp, vd, MTT model-free).

    INPUT is a 4D NIfTI (.nii, .nii.gz) or a directory holding a DICOM series.
    Outputs go to --out-dir as STEM_cbf.nii.gz, STEM_cbv.nii.gz, STEM_mtt.nii.gz,
    STEM_tmax.nii.gz, STEM_ttp.nii.gz, with leakage correction STEM_k2.nii.gz and
    STEM_leakref.nii.gz, and STEM_aif.tsv and STEM_perfmap.json.
    """
    from ..pipeline import compute as run_compute

    mparams = method_params([method], params, device, model, kind)[method]
    result = run_compute(input_path, kind=kind, method=method, method_params=mparams, aif=aif,
                         mask=mask, te=te, tr=tr, rois=rois, ref=ref, out_dir=out_dir,
                         overwrite=overwrite, series=series, allow_empty=allow_empty,
                         command=["perfmap"] + sys.argv[1:], kh=kh, rho=rho,
                         baseline_frames=baseline_frames, n_skip=n_skip, leakage=leakage,
                         second_echo=second_echo, te2=te2, t1=t1, vfa=vfa,
                         vfa_angles=vfa_angles, t10=t10, flip_angle=flip_angle, r1=r1, hct=hct,
                         frame_interval=frame_interval,
                         denoise=None if denoise == "none" else denoise)
    level = verbosity()
    if level >= 0:
        prov = result.provenance
        click.echo(f"{method}: {prov['voxels']['brain']} brain voxels, "
                   f"{prov['voxels']['not_fitted']} not fitted, "
                   f"{prov['timings']['total_s']:.2f} s")
        for name, stats in prov["rois"].items():
            ratios = ", ".join(f"{k}={stats[k]:.3f}" for k in sorted(stats)
                               if k.endswith("_ratio") and stats[k] is not None)
            click.echo(f"ROI {name}: {stats['voxels']} voxels" + (f"; {ratios}" if ratios else ""))
    if level >= 1:
        for path in result.outputs.values():
            click.echo(str(path))
