"""``perfmap denoise``: denoise a 4D series into a new NIfTI (thin wrapper)."""

from __future__ import annotations

import click

from ._common import handle_errors
from .options import (denoise_method_option, overwrite_option, parse_key_values, verbosity,
                      verbosity_option)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@denoise_method_option
@click.option("--param", "params", multiple=True, callback=parse_key_values,
              metavar="KEY=VALUE",
              help="Denoiser parameter (repeatable), e.g. --param patch=5 (mppca), "
                   "--param sigma=1.0 (gaussian) or --param model=PATH (dae, cae: other "
                   "weights).")
@click.option("--mask", default="auto", show_default=True,
              help="'auto' (Otsu threshold of the mean image) or a 3D mask: the voxels denoised.")
@click.option("--series", help="SeriesInstanceUID or SeriesNumber (DICOM folder with several).")
@overwrite_option
@verbosity_option
@handle_errors
def denoise(input_path, out, method, params, mask, series, overwrite):
    """Denoise INPUT (4D NIfTI or DICOM folder) into OUT (.nii/.nii.gz) and its sidecar.

    The sidecar copies the input's and records the method, its parameters and
    the estimated noise level (perfmapDenoise).
    """
    from ..pipeline.denoise import denoise_file

    run = denoise_file(input_path, out, method=method, params=params, mask=mask,
                       series=series, overwrite=overwrite)
    if verbosity() >= 0:
        sigma = run.info.get("noise_sigma")
        click.echo(f"{run.info['method']}: noise SD {sigma:.4g}" if sigma is not None
                   else run.info["method"], err=True)
        for path in run.outputs:
            click.echo(str(path))
