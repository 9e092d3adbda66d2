"""Region-of-interest statistics and tumour-to-reference ratios.

The ratio used in glioma grading is the ROI mean over the mean in contralateral
normal-appearing white matter (Hakyemez et al. 2005, Clin Radiol 60:493).
Voxels whose maps are NaN (outside the brain mask or not fitted) are left out
of the statistics and counted.
"""

from __future__ import annotations

import numpy as np


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
