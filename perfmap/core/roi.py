"""Region-of-interest statistics and tumour-to-reference ratios.

The ratio used in glioma grading is the ROI mean over the mean in contralateral
normal-appearing white matter (Hakyemez et al. 2005, Clin Radiol 60:493).
Voxels whose maps are NaN (outside the brain mask or not fitted) are left out
of the statistics and counted. :func:`mean_curve_ratios` computes the same
ratios from the deconvolved ROI-mean curves, the estimator that is robust to
the noise level (its notes and ``benchmarks/ratio_bias.py``).
"""

from __future__ import annotations

import numpy as np

from .curves import DEFAULT_KH, DEFAULT_RHO

#: Maps whose tumour/reference ratios :func:`mean_curve_ratios` reports.
RATIO_MAPS = ("cbf", "cbv", "mtt")

def roi_statistics(maps: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    """Voxel count and mean/median of every map inside ``mask``.

    Parameters
    ----------
    maps : dict of ndarray
        3D maps (same shape as ``mask``), NaN where undefined.
    mask : ndarray of bool

    Returns
    -------
    dict
        ``voxels`` (mask size), ``MAP_valid`` (finite voxels), ``MAP_mean``,
        ``MAP_median`` (None when no finite voxel).
    """
    out: dict = {"voxels": int(np.count_nonzero(mask))}
    for name in maps:
        values = maps[name][mask]
        values = values[np.isfinite(values)].astype(np.float64)
        out[f"{name}_valid"] = int(values.size)
        out[f"{name}_mean"] = float(values.mean()) if values.size else None
        out[f"{name}_median"] = float(np.median(values)) if values.size else None
    return out


def add_ratios(stats: dict, ref_stats: dict) -> dict:
    """Add ``<map>_ratio`` (ROI mean / reference mean) for every map of both statistics."""
    names = [k[:-5] for k in stats if k.endswith("_mean") and k in ref_stats]
    for name in names:
        num, den = stats.get(f"{name}_mean"), ref_stats.get(f"{name}_mean")
        stats[f"{name}_ratio"] = (float(num / den)
                                  if num is not None and den not in (None, 0.0) else None)
    return stats


def mean_curve_ratios(conc, roi, ref, aif, dt: float, backend, kh: float = DEFAULT_KH,
                      rho: float = DEFAULT_RHO) -> dict:
    """Tumour-to-reference CBF, CBV and MTT ratios of the deconvolved ROI-mean curves.

    The grading ratio of :func:`add_ratios` averages the voxel maps of each
    ROI. Here the concentration curves of each ROI are averaged first, the two
    mean curves are deconvolved together and the ratios are those of their
    CBF, CBV and MTT. Averaging first raises the contrast-to-noise ratio of
    both curves (by the square root of the voxel count), so both are
    deconvolved nearly as noise-free curves and alike; a backend with
    ``fit_shared`` (oSVD, Tikhonov: :mod:`perfmap.deconv.shared`) also
    deconvolves both with one regularisation, the one the noisier curve
    needs. The voxel mean, by contrast, carries each region's noise-dependent
    regularisation bias: a per-voxel criterion smooths low-CNR white matter
    more than the tumour (ratio too high), one fixed regularisation lets the
    noise peaks of low-CNR voxels raise their CBF (ratio too low).

    Measured on perfmap's phantoms (``benchmarks/ratio_bias.py --part
    methods``, 24 subjects per SNR, four cohorts of residue shapes, delays and
    dispersion): with oSVD the median CBF-ratio error of this estimator moved
    by at most 5 points between SNR 50 and SNR 10 (Tikhonov: 4), the
    voxel-mean ratio by up to 14 (standard-form GCV: 21, cSVD: 30); at SNR
    50-20 the voxel-mean ratio of oSVD was 4-16 points above this one. The
    spread between subjects (interquartile range 10-35 %) is about the same
    for both estimators: it comes from the subjects' residue shapes, MTTs and
    dispersion, which neither estimator can see (the README "Grading ratios"
    section). CBV is linear in the curves, so its ratio equals the voxel-mean
    ratio over the same voxels.

    Parameters
    ----------
    conc : array_like, shape (..., T)
        Concentration curves (dR2*, 1/s), e.g. the brain curves of a
        :class:`perfmap.models.dsc.DSCFit` with the ROI masks indexed by its
        brain mask, or whole 4D volumes.
    roi, ref : array_like of bool, shape conc.shape[:-1]
        The tumour (or any) ROI and the reference (contralateral NAWM).
    aif : array_like, shape (T,)
        Arterial curve in the same units.
    dt : float
        Sampling interval (s).
    backend : perfmap.deconv.Backend
        The deconvolution backend of the maps (core does not import the
        backends: the caller builds it, e.g. ``make_backend("osvd")``).
    kh, rho : float
        As for the maps (DESIGN section 4); they cancel in the ratios.

    Returns
    -------
    dict
        ``cbf_ratio``, ``cbv_ratio``, ``mtt_ratio`` (None where undefined:
        an empty ROI, a reference value that is zero or not finite, MTT where
        a CBV or CBF is not positive); ``roi_voxels``, ``ref_voxels`` (curves
        averaged) and ``roi_excluded``, ``ref_excluded`` (curves with NaN or
        Inf, left out); ``roi`` and ``ref``: the mean curves' ``cbf``,
        ``cbv``, ``mtt`` (units of DESIGN section 4); ``shared_regularisation``
        (whether both curves were deconvolved with one regularisation).

    Examples
    --------
    >>> from perfmap.core.curves import gamma_variate, tissue_concentration
    >>> t = np.arange(60) * 1.5
    >>> aif_fn = lambda x: gamma_variate(x, t0=12.0, peak=50.0)
    >>> c = tissue_concentration(t, aif_fn, np.array([0.02, 0.01]), np.array([4.0, 4.0]))
    >>> conc = np.repeat(c, [5, 3], axis=0)             # 5 tumour, 3 reference curves
    >>> roi = np.arange(8) < 5
    >>> from perfmap.deconv import make_backend
    >>> out = mean_curve_ratios(conc, roi, ~roi, aif_fn(t), 1.5, make_backend("osvd"))
    >>> round(out["cbf_ratio"], 3), round(out["cbv_ratio"], 3), out["shared_regularisation"]
    (2.0, 2.0, True)
    """
    from .maps import perfusion_maps

    conc = np.asarray(conc)
    out: dict = {"shared_regularisation": hasattr(backend, "fit_shared")}
    means = []
    for name, mask in (("roi", roi), ("ref", ref)):
        mask = np.asarray(mask, bool)
        if mask.shape != conc.shape[:-1]:
            raise ValueError(f"the {name} mask has shape {mask.shape}, the curves "
                             f"{conc.shape[:-1]}")
        rows = conc[mask]
        finite = np.all(np.isfinite(rows), axis=1)
        out[f"{name}_voxels"] = int(np.count_nonzero(finite))
        out[f"{name}_excluded"] = int(np.count_nonzero(~finite))
        means.append(rows[finite].mean(axis=0, dtype=np.float64) if finite.any() else None)
    if any(m is None for m in means):
        out.update({f"{k}_ratio": None for k in RATIO_MAPS}, roi=None, ref=None)
        return out
    curves = np.stack(means)
    aif = np.asarray(aif, np.float64)
    fit = (backend.fit_shared if out["shared_regularisation"] else backend.fit)(curves, aif, dt)
    maps = perfusion_maps(curves, aif, dt, fit, kh=kh, rho=rho)
    for i, name in enumerate(("roi", "ref")):
        out[name] = {k: (float(maps[k][i]) if np.isfinite(maps[k][i]) else None)
                     for k in RATIO_MAPS}
    for k in RATIO_MAPS:
        num, den = out["roi"][k], out["ref"][k]
        out[f"{k}_ratio"] = float(num / den) if num is not None and den not in (None, 0.0) \
            else None
    return out
