"""``perfmap convert``: one DICOM series to a 4D NIfTI with a dcm2niix-style JSON sidecar."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import handle_errors
from .options import overwrite_option, verbosity, verbosity_option


@click.command("convert")
@click.argument("dicom_dir", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--series", metavar="UID|NUMBER", default=None,
              help="SeriesInstanceUID or SeriesNumber to convert when DICOM_DIR holds several.")
@overwrite_option
@verbosity_option
@handle_errors
def convert(dicom_dir: Path, out: Path, series, overwrite: bool):
    """Convert the DICOM series in DICOM_DIR into OUT (.nii or .nii.gz) plus OUT's .json.

    The image is float32 with RescaleSlope/Intercept applied, laid out and oriented
    exactly as dcm2niix writes it; pixdim[4] is the measured frame interval (s). The
    sidecar holds EchoTime and RepetitionTime (s), FlipAngle, MagneticFieldStrength,
    the series identity and FrameTimesStart (s from the first frame).
    """
    from ..io.dicom import convert_dicom

    written, vol = convert_dicom(dicom_dir, out, series=series, overwrite=overwrite)
    level = verbosity()
    if level >= 1:
        m = vol.meta
        click.echo(f"series {m.get('SeriesNumber')} '{m.get('SeriesDescription')}': "
                   f"{'x'.join(map(str, vol.data.shape))}, frame interval "
                   f"{m.get('frame_interval')} s ({m.get('frame_times_source')}), "
                   f"TR {vol.tr} s, TE {vol.te} s")
    if level >= 0:
        for path in written:
            click.echo(str(path))
