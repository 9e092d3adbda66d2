"""Open a dynamic series, whatever its format: a 4D NIfTI file or a DICOM folder."""

from __future__ import annotations

from pathlib import Path

from ..errors import ParameterError
from . import nifti
from .volume import Volume4D


def load_series(path, te=None, tr=None, series=None, min_frames: int = nifti.MIN_FRAMES
                ) -> Volume4D:
    """A 4D NIfTI file or a DICOM directory, as a :class:`Volume4D`.

    Parameters
    ----------
    path : path
        ``.nii``/``.nii.gz`` file or a folder holding a DICOM series.
    te, tr : float, optional
        Echo and repetition time (s) overriding the headers and sidecar.
    series : str, optional
        SeriesInstanceUID or SeriesNumber when a DICOM folder holds several.
    min_frames : int
        Fewest volumes accepted (a variable-flip-angle series has a few).

    Raises
    ------
    ParameterError, ImageReadError, ShapeError, InputDataError
        Missing or unreadable input (the message names the file).
    """
    path = Path(path)
    if path.is_dir():
        from . import dicom

        volume = dicom.load_dicom_series(path, series=series, min_frames=min_frames)
        # Command-line values override the headers.
        if te is not None:
            volume.te = float(te)
            volume.meta["te_source"] = "command line"
        if tr is not None:
            volume.tr = float(tr)
            volume.meta["tr_source"] = "command line"
        return volume
    if not path.exists():
        raise ParameterError(f"{path}: input not found")
    if series is not None:
        raise ParameterError(f"{path}: --series picks a series in a DICOM folder; this input "
                             "is a NIfTI file")
    if not nifti.is_nifti(path):
        raise ParameterError(f"{path}: input must be a .nii/.nii.gz file or a DICOM directory")
    return nifti.load_nifti_4d(path, te=te, tr=tr, min_frames=min_frames)
