"""Arterial input function: from a mask, or selected automatically.

Automatic selection (:func:`auto_aif`) follows Mouridsen et al. 2006 (MRM
55:524, "Automatic selection of arterial input function using cluster
analysis"), on the concentration curves of the brain voxels:

1. **Area**: keep the voxels whose area under the curve (AUC, trapezoid rule)
   is in the top ``auc_fraction`` (10 %) of the brain, counting only curves
   with a positive area.
2. **Irregularity**: on the curves normalised to unit area, Mouridsen's
   roughness ``integral (C''(t))^2 dt`` is estimated and the
   ``roughness_fraction`` (25 %) roughest curves are discarded (noise and
   artefacts, not arteries). The integral is estimated robustly as
   ``(T - 2) dt / 6 * (1.4826 median |C''|)^2``, i.e. from the median instead
   of the mean of the squared second differences. For noise-dominated curves
   both agree (white noise of SD s gives second differences of variance
   ``6 s^2``, whose median-based estimate the factor undoes), but the few
   frames of a sharp, smooth arterial bolus no longer make the artery the
   "roughest" curve on clean, high-SNR data, where the sum of squares would
   discard exactly the arterial voxels.
3. **Clustering**: k-means (``scipy.cluster.vq.kmeans2``, k-means++ start,
   seeded) on the area-normalised curves; the cluster whose mean curve has the
   smallest first moment ``M1 = integral t C dt / integral C dt`` (the earliest,
   narrowest bolus: the arterial one) is kept, ties (within one frame interval)
   going to the highest peak. Clustering is repeated on the kept voxels while
   more than ``n_voxels`` remain (at most ``max_rounds`` rounds, Mouridsen et
   al.: two). Clusters of fewer than ``n_voxels // 2`` voxels are not eligible,
   so outlier clusters of one or two noisy curves are never chosen and the
   AIF is never the mean of a couple of noise-selected voxels; when no
   cluster is eligible the clustering stops.

The AIF is the mean concentration curve (not normalised) of the kept voxels.
A plausibility check refuses a selection whose peak is not at least
``min_peak_ratio`` (3) times the peak of the mean brain curve: an arterial
curve peaks far above tissue, whose blood volume is a few percent.

References
----------
Mouridsen K, Christensen S, Gyldensted L, Ostergaard L. Automatic selection of
    arterial input function using cluster analysis. MRM 2006;55:524-531.
Arthur D, Vassilvitskii S. k-means++: the advantages of careful seeding.
    Proc. SODA 2007:1027-1035.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError, ShapeError
from .maps import trapezoid_integral


#: Most clusters of one k-means round (see :func:`auto_aif_from_curves`).
MAX_CLUSTERS = 40


@dataclass
class AifSelection:
    """An arterial input function and where it came from.

    Attributes
    ----------
    curve : ndarray, shape (T,), float64
        Arterial concentration (same units as the tissue curves).
    indices : ndarray, shape (k, 3), int
        Voxel indices (x, y, z) whose curves were averaged.
    method : str
        ``"mask"`` or ``"auto"``.
    params : dict
        Parameters and counts of every stage (JSON-serialisable).
    """

    curve: np.ndarray
    indices: np.ndarray
    method: str
    params: dict = field(default_factory=dict)

    @property
    def n_voxels(self) -> int:
        return int(len(self.indices))


def _check_4d(conc, mask, what):
    conc = np.asarray(conc)
    mask = np.asarray(mask, dtype=bool)
    if conc.ndim != 4:
        raise ShapeError(f"concentration must be 4D (x, y, z, time), got shape {conc.shape}")
    if mask.shape != conc.shape[:3]:
        raise ShapeError(f"the {what} has shape {mask.shape} but the series has spatial shape "
                         f"{conc.shape[:3]}")
    return conc, mask


def aif_from_mask(conc, mask) -> AifSelection:
    """Mean concentration curve of the voxels of an arterial mask.

    Parameters
    ----------
    conc : ndarray, shape (X, Y, Z, T)
        Concentration curves.
    mask : ndarray of bool, shape (X, Y, Z)
        Arterial voxels; those whose curve holds NaN/Inf are left out.

    Returns
    -------
    AifSelection

    Raises
    ------
    ShapeError, InputDataError
        Mask on another grid; empty mask or no finite curve in it.

    Examples
    --------
    >>> import numpy as np
    >>> conc = np.zeros((2, 2, 1, 3)); conc[0, 0, 0] = [0, 4, 2]; conc[1, 0, 0] = [0, 2, 0]
    >>> m = np.zeros((2, 2, 1), bool); m[0, 0, 0] = m[1, 0, 0] = True
    >>> aif_from_mask(conc, m).curve.tolist()
    [0.0, 3.0, 1.0]
    """
    conc, mask = _check_4d(conc, mask, "AIF mask")
    return aif_from_curves(conc[mask], np.argwhere(mask))


def aif_from_curves(curves, indices) -> AifSelection:
    """Mean of the arterial voxels' curves: :func:`aif_from_mask` on curves already gathered.

    Parameters
    ----------
    curves : ndarray, shape (k, T)
        Concentration curves of the mask's voxels; rows holding NaN/Inf are left out.
    indices : ndarray, shape (k, 3), int
        Their voxel indices, row for row.

    Returns
    -------
    AifSelection
    """
    curves = np.asarray(curves)
    idx = np.asarray(indices)
    if len(idx) != len(curves):
        raise ValueError(f"{len(curves)} curves but {len(idx)} voxel indices")
    if idx.size == 0:
        raise InputDataError("the AIF mask is empty")
    ok = np.all(np.isfinite(curves), axis=1)
    if not ok.any():
        raise InputDataError(f"the AIF mask has no usable voxel: all {len(idx)} curves contain "
                             "NaN or Inf (zero or negative baseline signal)")
    curve = curves[ok].astype(np.float64).mean(axis=0)
    return AifSelection(curve=curve, indices=idx[ok], method="mask",
                        params={"voxels_in_mask": int(len(idx)), "voxels_used": int(ok.sum())})


def _kmeans(data, k, rng):
    """k-means++ labels; ``rng`` keyword from SciPy 1.15, ``seed`` before."""
    from scipy.cluster.vq import kmeans2    # lazy: only the automatic AIF needs it

    try:
        return kmeans2(data, k, minit="++", rng=rng)
    except TypeError:
        return kmeans2(data, k, minit="++", seed=rng)


def _first_moment(curves, t):
    area = np.trapezoid(curves, t, axis=-1)
    return np.trapezoid(curves * t, t, axis=-1) / area


def auto_aif(conc, brain_mask, dt: float, **options) -> AifSelection:
    """Automatic AIF by cluster analysis (Mouridsen et al. 2006) in a 4D volume.

    Parameters
    ----------
    conc : ndarray, shape (X, Y, Z, T)
        Concentration curves (NaN rows are ignored).
    brain_mask : ndarray of bool, shape (X, Y, Z)
        Voxels to search.
    dt : float
        Frame interval (s).
    **options
        Parameters of :func:`auto_aif_from_curves` (``n_voxels``, ``seed``, ...).

    Returns
    -------
    AifSelection

    Raises
    ------
    ShapeError, InputDataError
        Mask on another grid; no finite brain curve, too few candidates, or
        no plausible arterial curve.
    """
    conc, mask = _check_4d(conc, brain_mask, "brain mask")
    return auto_aif_from_curves(conc[mask], np.argwhere(mask), dt, **options)


def _homogeneous(norm: np.ndarray, sel: np.ndarray, z: float) -> bool:
    """True when the mean curves of ``norm[sel]`` and of the other rows differ by at
    most ``z`` standard errors of their difference (RMS over time): one group."""
    part, rest = norm[sel], norm[~sel]
    if len(part) < 2 or len(rest) < 2:
        return False
    diff = np.sqrt(np.mean((part.mean(axis=0) - rest.mean(axis=0)) ** 2))
    se = np.sqrt(np.mean(part.var(axis=0, ddof=1)) / len(part)
                 + np.mean(rest.var(axis=0, ddof=1)) / len(rest))
    return bool(diff <= z * se)


def auto_aif_from_curves(curves, indices, dt: float, n_voxels: int = 10, seed: int = 0,
                         auc_fraction: float = 0.10, roughness_fraction: float = 0.25,
                         n_clusters: int = 5, max_rounds: int = 10,
                         min_peak_ratio: float = 3.0,
                         homogeneity_z: float = 3.0) -> AifSelection:
    """Automatic AIF by cluster analysis (Mouridsen et al. 2006) of the brain's curves.

    Parameters
    ----------
    curves : ndarray, shape (n, T)
        Concentration curves of the brain voxels (float32 or float64; NaN rows
        are ignored).
    indices : ndarray, shape (n, 3), int
        Their voxel indices, row for row.
    dt : float
        Frame interval (s).
    n_voxels : int
        Stop clustering once this many voxels or fewer remain.
    seed : int
        Seed of the k-means initialisation; equal inputs give equal results.
    auc_fraction : float
        Fraction of voxels with the largest area kept in step 1.
    roughness_fraction : float
        Fraction of the roughest area-normalised curves dropped in step 2.
    n_clusters : int
        Clusters per k-means round.
    max_rounds : int
        Most clustering rounds.
    min_peak_ratio : float
        The AIF peak must exceed this multiple of the mean brain curve's peak.
    homogeneity_z : float
        Clustering stops, keeping every remaining voxel, when their mean curve
        already peaks at ``min_peak_ratio`` times the brain's and the chosen
        cluster's mean curve is within this many standard errors of the mean
        of the other remaining curves (one arterial group, not split by noise).

    Returns
    -------
    AifSelection
        ``params`` holds the parameters and the voxel counts after each stage.

    Raises
    ------
    InputDataError
        No finite brain curve, too few candidates, or no plausible arterial
        curve.
    """
    curves = np.asarray(curves)
    idx_all = np.asarray(indices)
    if curves.ndim != 2 or len(idx_all) != len(curves):
        raise ValueError(f"need (n, T) curves and n indices, got {curves.shape} and "
                         f"{len(idx_all)}")
    if not (np.isfinite(dt) and dt > 0):
        raise InputDataError(f"the frame interval must be positive, got {dt}")
    T = curves.shape[1]
    t = np.arange(T) * dt
    finite = np.all(np.isfinite(curves), axis=1)
    params = {"method": "Mouridsen 2006", "n_voxels": int(n_voxels), "seed": int(seed),
              "auc_fraction": auc_fraction, "roughness_fraction": roughness_fraction,
              "n_clusters": int(n_clusters), "max_rounds": int(max_rounds),
              "min_peak_ratio": min_peak_ratio, "homogeneity_z": homogeneity_z, "counts": {"brain": int(len(curves)),
                                                            "finite": int(finite.sum())}}
    if not finite.any():
        raise InputDataError("no automatic AIF: no brain voxel has a finite concentration curve")
    curves, idx = curves[finite], idx_all[finite]
    brain_peak = float(np.max(curves.mean(axis=0, dtype=np.float64)))

    # 1. largest areas (in the curves' precision; the few kept become float64)
    auc = trapezoid_integral(curves, dt)
    positive = auc > 0
    if positive.sum() < n_clusters:
        raise InputDataError("no automatic AIF: fewer than "
                             f"{n_clusters} brain voxels have a positive concentration area")
    cut = np.quantile(auc[positive], 1.0 - auc_fraction)
    keep = positive & (auc >= cut)
    curves, idx, auc = curves[keep].astype(np.float64), idx[keep], auc[keep]
    params["counts"]["auc"] = int(keep.sum())
    # Canonical order: by curve content, so the clustering (whose seeding and
    # sums depend on row order) gives the same voxels for any voxel order or
    # image orientation (a flipped, transposed or DICOM-ordered series).
    order = np.lexsort(curves.T[::-1])
    curves, idx, auc = curves[order], idx[order], auc[order]

    # 2. irregularity of the area-normalised curves
    norm = curves / auc[:, None]
    d2 = np.abs(np.diff(norm, n=2, axis=1)) / dt ** 2
    rough = (d2.shape[1] * dt / 6.0) * (1.4826 * np.median(d2, axis=1)) ** 2
    keep = rough <= np.quantile(rough, 1.0 - roughness_fraction)
    curves, idx, norm = curves[keep], idx[keep], norm[keep]
    params["counts"]["roughness"] = int(keep.sum())

    # 3. repeated k-means on the normalised curves
    rounds = []
    for r in range(max_rounds):
        if len(norm) <= n_voxels:
            break
        # Enough clusters that a small arterial group gets its own: on a whole
        # brain the candidates are ~10^4 tissue curves and a few dozen arterial.
        k = min(max(n_clusters, int(np.sqrt(len(norm) / 2.0))), MAX_CLUSTERS, len(norm))
        _, lab = _kmeans(norm, k, np.random.default_rng(seed + r))
        present = np.unique(lab)
        if present.size < 2:
            break
        n_found = int(present.size)
        sizes = np.array([np.count_nonzero(lab == c) for c in present])
        eligible = sizes >= max(1, n_voxels // 2)
        if not eligible.any():
            break
        present, sizes = present[eligible], sizes[eligible]
        means = np.stack([norm[lab == c].mean(axis=0) for c in present])
        m1 = _first_moment(means, t)
        peak = means.max(axis=1)
        early = np.flatnonzero(m1 <= m1.min() + dt)  # ties within one frame: highest peak
        best = early[np.argmax(peak[early])]
        sel = lab == present[best]
        if curves.mean(axis=0).max() >= min_peak_ratio * brain_peak and \
                _homogeneous(norm, sel, homogeneity_z):
            # The remaining voxels peak like arteries and the chosen cluster
            # differs from the others by no more than noise: they are one
            # arterial group, kept whole rather than split further by noise.
            rounds.append({"clusters": n_found, "eligible": int(present.size),
                           "kept": int(len(norm)), "homogeneous": True})
            break
        rounds.append({"clusters": n_found, "eligible": int(present.size),
                       "kept": int(sizes[best]), "first_moment_s": float(m1[best])})
        curves, idx, norm = curves[sel], idx[sel], norm[sel]
    params["rounds"] = rounds
    params["counts"]["selected"] = int(len(curves))

    aif = curves.mean(axis=0)
    params["peak"] = float(aif.max())
    params["brain_peak"] = brain_peak
    if not aif.max() >= min_peak_ratio * brain_peak or not brain_peak > 0:
        raise InputDataError(
            f"no plausible arterial voxel: the selected curve peaks at {aif.max():.3g}, less "
            f"than {min_peak_ratio:g} times the mean brain curve ({brain_peak:.3g}); give an "
            "AIF mask or curve explicitly")
    idx = idx[np.lexsort(idx.T[::-1])]
    return AifSelection(curve=aif, indices=idx.astype(int), method="auto", params=params)
