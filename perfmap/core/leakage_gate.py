"""Which voxels get the leakage correction: the K2 gates.

Correcting every voxel adds noise and the
mismatch between a voxel's transit time and the reference's (Bjornerud et al.
2011): normal white matter, whose MTT is longer than the brain-average
``ref``, reads a small negative K2. Gates (``gate=``):

``"reference"`` (default)
    A voxel is corrected when its K2 lies outside the range that normal,
    non-enhancing tissue shows: ``|K2 - median_ref| > z * sd_ref``, with the
    median and the robust (1.4826 MAD) standard deviation of K2 over the
    reference voxels (:mod:`perfmap.core.leakage_reference`; ``z`` = 2.5 by
    default). The spread of K2 in normal tissue contains the noise and the
    transit-time mismatch together, so normal tissue stays unchanged however
    "significant" its K2 is voxel by voxel. When the voxels' positions are
    known (``mask``), the test uses K2 averaged over a 3 x 3 x 3 box of
    brain voxels (:func:`smooth_rows`), for K2 and for the reference
    statistics alike: at SNR 30 the noise of one voxel's K2 (SD about
    0.003 /s) is as large as the leakage of a tumour at 30 deg (0.003-0.009
    /s), and averaging 27 neighbours divides it by about 3. The correction
    itself always uses each voxel's own K2.
``"cv"``
    The FAIR-Unipd DSC toolbox rule (``DSC_mri_cbv_lc.m``): corrected where the
    coefficient of variation of K2, ``100 * SE(K2) / |K2|`` in %, is below
    ``cv_limit``; ``SE(K2)^2 = sigma^2 [(A^T A)^-1]_22`` with ``sigma`` the
    standard deviation of the voxel's baseline frames (or of its fit
    residual when no baseline is given).
``"none"``
    Every finite voxel is corrected.

Measurement (``benchmarks/leakage_accuracy.py``): leaky phantoms
(:func:`perfmap.core.phantom.make_phantom`, HGG, ``leakage=True``: Ktrans
0.1 /min, ve 0.3, flip angle 30 deg, TE 30 ms, TR 1.5 s, 64 x 64 x 8, SNR 30,
seeds 0-4), brain rows converted by ``dsc_concentration``, reference by
``select_reference``, BSW, oSVD and ``perfusion_maps``. Change of the ROI-mean
CBV of normal tissue against the uncorrected analysis (mean over seeds, and
the largest), and error of the tumour/NAWM CBV ratio against the leak-free
truth (mean absolute; "matched": the two seeds whose tumour MTT is within 15 %
of the reference tissue's, BSW's assumption):

=========================  ============  ===========  ===========  ======  =======  =========
gate                       NAWM          GM           WM           ratio   matched  tumour
                                                                   error   ratio    voxels
                                                                           error    corrected
=========================  ============  ===========  ===========  ======  =======  =========
uncorrected                0             0            0            28.3 %  31.1 %   0
none                       4.6 (9.3) %   4.5 (6.7) %  4.6 (9.5) %  7.2 %   3.9 %    100 %
cv, 25 %                   1.0 (2.1) %   1.3 (1.9) %  1.4 (2.7) %  13.6 %  6.8 %    61 %
cv, 20 %                   0.8 (1.7) %   0.7 (0.9) %  0.7 (1.6) %  16.6 %  9.3 %    48 %
reference 2.5, voxel K2    1.1 (2.1) %   0.4 (0.5) %  0.8 (1.5) %  17.2 %  10.2 %   41 %
reference 2, 3x3x3 mean    0.4 (0.9) %   0.2 (0.4) %  0.2 (0.4) %  13.0 %  6.2 %    82 %
**reference 2.5, 3x3x3**   0.1 (0.5) %   0.1 (0.2) %  0.0 (0.1) %  14.2 %  6.4 %    72 %
reference 3, 3x3x3 mean    0.0 (0.0) %   0.0 (0.1) %  0.0 (0.1) %  15.7 %  6.4 %    60 %
=========================  ============  ===========  ===========  ======  =======  =========

The default changes normal tissue by at most 0.5 % and corrects the tumour as
well as the toolbox's 25 % CV limit, which changes white matter by up to 2.7 %;
correcting everything (``none``) reaches the smallest ratio error only because
it lowers NAWM CBV by up to 9 %, which cancels part of the tumour's error. The
ratio error left with every gate is BSW's own: where the tumour's MTT is 40-50 %
longer than the reference's (seeds 0, 1, 3), K2 partly measures that
difference (Bjornerud 2011) and corrected tumour CBV stays 13-19 % low even
noise-free.

References
----------
Boxerman JL, Schmainda KM, Weisskoff RM. AJNR 2006;27:859-867 (BSW).
Bjornerud A, Sorensen AG, Mouridsen K, Emblem KE. T1- and T2*-dominant
    extravasation correction in DSC-MRI: Part I. JCBFM 2011;31:2041-2053
    (K2 also reflects a transit-time difference to the reference).
Castellaro M et al. DSC-MRI toolbox (FAIR-Unipd), DSC_mri_cbv_lc.m,
    github.com/FAIR-Unipd/dsc-mri-toolbox (the CV gate).
Leys C et al. J Exp Soc Psychol 2013;49:764-766 (the 1.4826 MAD).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, ParameterError, ShapeError

GATES = ("reference", "cv", "none")
#: Default gate limits: ``z`` robust SDs of the reference K2; toolbox CV in %.
DEFAULT_Z = 2.5
DEFAULT_CV_LIMIT = 25.0
#: Fewest fitted reference voxels the reference gate accepts.
MIN_REFERENCE_FITS = 10


def smooth_rows(values, mask, size=(3, 3, 3)) -> np.ndarray:
    """Mean of each voxel's finite neighbours within ``mask`` (a box of ``size`` voxels).

    Parameters
    ----------
    values : array_like, shape (n,)
        One value per True voxel of ``mask``, in C order (``volume[mask]``).
    mask : array_like of bool, 3-D
    size : tuple of int
        Box size in voxels per axis.

    Returns
    -------
    ndarray, shape (n,), float64
        NaN only where no finite neighbour exists.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.ones((3, 1, 1), bool)
    >>> smooth_rows([0.0, 3.0, np.nan], m, size=(3, 1, 1)).tolist()
    [1.5, 1.5, 3.0]
    """
    from scipy import ndimage  # lazy: only the smoothed gate needs it

    mask = np.asarray(mask, dtype=bool)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (int(mask.sum()),):
        raise ShapeError(f"{v.size} values do not match the {int(mask.sum())} voxels of the mask")
    vol, weight = np.zeros(mask.shape), np.zeros(mask.shape)
    ok = np.isfinite(v)
    vol[mask] = np.where(ok, v, 0.0)
    weight[mask] = ok
    num = ndimage.uniform_filter(vol, size=size, mode="constant")[mask]
    den = ndimage.uniform_filter(weight, size=size, mode="constant")[mask]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, num / np.where(den > 1e-9, den, 1.0), np.nan)


def gate_voxels(gate: str, k2, cv, reference=None, z: float = DEFAULT_Z,
                cv_limit: float = DEFAULT_CV_LIMIT, mask=None, size=(3, 3, 3)):
    """Decide which voxels get the leakage correction (module docstring).

    Parameters
    ----------
    gate : {"reference", "cv", "none"}
    k2 : array_like, shape (n,)
        BSW K2 per voxel (1/s); NaN where not fitted.
    cv : array_like, shape (n,)
        Coefficient of variation of K2 (%), for ``gate="cv"``.
    reference : array_like of bool, shape (n,), optional
        Reference voxels, for ``gate="reference"``.
    z : float
        Robust SDs of the reference K2 beyond which a voxel is corrected.
    cv_limit : float
        Largest CV (%) of a corrected voxel.
    mask : array_like of bool, 3-D, optional
        Where the rows lie (``volume[mask]`` order): the reference gate then
        tests K2 averaged over a ``size`` box (:func:`smooth_rows`).
    size : tuple of int
        Box size (voxels).

    Returns
    -------
    corrected : ndarray of bool, shape (n,)
    info : dict
        The gate's limits and reference statistics (JSON-serialisable).

    Examples
    --------
    >>> import numpy as np
    >>> k2 = np.r_[np.linspace(-0.001, 0.001, 20), 0.01, -0.01]
    >>> ref = np.r_[np.ones(20, bool), False, False]
    >>> todo, info = gate_voxels("reference", k2, np.zeros(22), ref)
    >>> np.flatnonzero(todo).tolist()
    [20, 21]
    """
    if gate not in GATES:
        raise ParameterError(f"unknown leakage gate {gate!r}; choose one of {', '.join(GATES)}")
    k2 = np.asarray(k2, dtype=np.float64)
    fitted = np.isfinite(k2)
    if gate == "none":
        return fitted, {}
    if gate == "cv":
        return fitted & (np.asarray(cv) < cv_limit), {"cv_limit_percent": float(cv_limit)}
    if mask is not None:
        k2 = smooth_rows(k2, mask, size)
    if reference is None:
        raise ParameterError("gate 'reference' needs the reference voxels; use gate 'cv' or "
                             "'none' for curves without them")
    k2_ref = k2[np.asarray(reference, dtype=bool) & fitted]
    if k2_ref.size < MIN_REFERENCE_FITS:
        raise InputDataError(f"only {k2_ref.size} reference voxels could be fitted; the "
                             f"'reference' gate needs at least {MIN_REFERENCE_FITS}")
    med = float(np.median(k2_ref))
    sd = float(1.4826 * np.median(np.abs(k2_ref - med)))
    info = {"z": float(z), "reference_k2_median": med, "reference_k2_sd": sd,
            "k2_smoothing": None if mask is None else list(size)}
    return fitted & (np.abs(k2 - med) > z * sd), info
