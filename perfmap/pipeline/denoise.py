"""``perfmap denoise``: a 4D series in, the same series denoised out (NIfTI + sidecar).

The output lies on the input's grid (its header for a NIfTI input, its affine
for DICOM), float32 like every series perfmap writes (the degraded series of
``perfmap robustness`` too), with the input's sidecar (or the DICOM timing)
copied and a ``perfmapDenoise`` entry recording the method, its parameters and
the noise level it estimated. Output and sidecar are written together or not at
all, never over existing files without ``overwrite``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .. import __version__
from ..core.brainmask import auto_brain_mask
from ..errors import ParameterError
from ..io import nifti
from ..io.outputs import OutputSet
from ..io.series import load_series
from ..models.common_steps import make_denoiser


@dataclass
class DenoiseRun:
    """What :func:`denoise_file` wrote and measured."""

    outputs: list
    info: dict


def _sidecar_name(out: Path) -> str:
    return nifti.stem_of(out) + ".json"


def denoise_file(input_path, out_path, *, method: str = "mppca", params: Optional[dict] = None,
                 mask="auto", series=None, overwrite: bool = False) -> DenoiseRun:
    """Denoise a 4D NIfTI file or DICOM series into ``out_path`` (``.nii``/``.nii.gz``).

    Parameters
    ----------
    input_path : path
        4D NIfTI or a DICOM folder.
    out_path : path
        Output NIfTI; its JSON sidecar is written next to it.
    method : str
        A denoiser of :mod:`perfmap.core.denoise`.
    params : dict, optional
        Its parameters.
    mask : "auto" or path
        Voxels to denoise: a 3D mask, or ``auto`` (Otsu threshold of the
        temporal mean image, as perfmap's brain masks).
    series : str, optional
        SeriesInstanceUID or SeriesNumber in a DICOM folder with several.
    overwrite : bool

    Raises
    ------
    PerfmapError
        Unreadable input, bad parameters, existing outputs (before any work).
    """
    out_path = Path(out_path)
    if not nifti.is_nifti(out_path):
        raise ParameterError(f"{out_path}: the output must be a .nii or .nii.gz file")
    denoiser = make_denoiser(method, dict(params or {}))
    volume = load_series(input_path, series=series, min_frames=2)
    outputs = OutputSet(out_path.parent, [out_path.name, _sidecar_name(out_path)], overwrite)
    region = auto_brain_mask(volume.data.mean(axis=-1)) if mask in (None, "auto") else \
        nifti.load_mask(mask, volume, "mask")
    result = denoiser.denoise(volume.data, region)
    info = dict(result.info, source=str(input_path), mask="auto" if mask in (None, "auto")
                else str(mask), mask_voxels=int(np.count_nonzero(region)),
                perfmap_version=__version__)
    side = nifti.read_sidecar(input_path) if nifti.is_nifti(input_path) else _dicom_sidecar(volume)
    side["perfmapDenoise"] = info
    img = nifti.map_image(result.data, volume)
    with outputs:
        outputs.write(out_path.name, lambda p: nifti.save_image(img, p))
        outputs.write_text(_sidecar_name(out_path), json.dumps(side, indent=2, default=float)
                           + "\n")
        paths = outputs.commit()
    return DenoiseRun(outputs=paths, info=info)


def _dicom_sidecar(volume) -> dict:
    """The timing a DICOM series' converted sidecar would hold (s)."""
    side = {k: volume.meta[k] for k in ("FlipAngle", "MagneticFieldStrength",
                                        "SeriesDescription", "ProtocolName")
            if isinstance(volume.meta.get(k), (int, float, str))}
    if volume.te is not None:
        side["EchoTime"] = volume.te
    if volume.tr is not None:
        side["RepetitionTime"] = volume.tr
    side["FrameTimesStart"] = [float(t) for t in volume.frame_times]
    return side
