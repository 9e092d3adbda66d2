"""Where each DICOM image goes in the 4D grid, and the grid's dcm2niix layout and affine.

DICOM places pixel (row ``r``, column ``c``) of a slice at the patient (LPS)
position ``P + c * dc * R + r * dr * C`` where ``P`` is Image Position
(Patient), ``R`` and ``C`` the row and column direction cosines of Image
Orientation (Patient) and ``(dr, dc)`` the Pixel Spacing (DICOM PS3.3
C.7.6.2.1.1, Image Plane Module; the same attributes sit in the Plane
Position/Orientation and Pixel Measures functional groups of the Enhanced MR
IOD, C.8.13).

perfmap stores the array exactly as dcm2niix does (Li et al. 2016, J Neurosci
Methods 264:47), so a perfmap NIfTI and a dcm2niix NIfTI of the same series
compare equal voxel by voxel:

- ``i`` (first NIfTI axis) runs along the columns, i.e. along ``R``;
- ``j`` runs along the rows *flipped*: ``j = rows - 1 - r``, so the last DICOM
  row is stored first (dcm2niix's "flip Y", which makes an axial slice appear
  the usual way up in viewers that ignore the affine);
- ``k`` runs along the slice normal ``N = R x C``, slices sorted by increasing
  ``IPP . N`` whatever order they were acquired or numbered in.

The affine maps these indices to RAS+ (NIfTI) millimetres: LPS coordinates with
x and y negated.

:func:`plan_layout` assigns every image its slice (by position along ``N``) and
its time point (Temporal Position Identifier/Index, else rank within its slice by
acquisition, trigger and content time and Instance Number), and refuses series
whose slices miss or repeat a time point with a message naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ImageReadError

#: LPS (DICOM patient) to RAS (NIfTI world) as a 4x4 matrix.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Image positions within this distance (mm) along the normal are one slice.
SLICE_TOLERANCE_MM = 0.01

#: Slice steps may differ from their mean by this fraction before the stack is refused.
SPACING_TOLERANCE = 0.05

#: Voxel sizes (pixel spacing, slice spacing) accepted as plausible, mm.
VOXEL_RANGE_MM = (0.01, 50.0)

#: Row and column cosines must be unit vectors and orthogonal to this tolerance.
ORTHONORMAL_TOLERANCE = 1e-3

#: Images at one position along the normal whose Slice Location (or In-Stack Position
#: Number) differ by more than this belong to different slices with coincident positions.
SLICE_LABEL_TOLERANCE = 0.1


def slice_normal(iop) -> np.ndarray:
    """Unit normal ``R x C`` of an Image Orientation (Patient) (6 values)."""
    iop = np.asarray(iop, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError(f"degenerate ImageOrientationPatient {list(iop)}")
    return n / norm


def cluster_positions(along: np.ndarray, tol: float = SLICE_TOLERANCE_MM):
    """Group distances along the normal into slices.

    Returns
    -------
    index : ndarray of int, shape (n,)
        Slice index of each input, 0 for the smallest distance.
    centres : ndarray, shape (Z,)
        Mean distance of each slice, increasing.
    """
    along = np.asarray(along, dtype=np.float64)
    order = np.argsort(along, kind="stable")
    sorted_ = along[order]
    new = np.concatenate([[True], np.diff(sorted_) > tol])
    labels_sorted = np.cumsum(new) - 1
    index = np.empty_like(labels_sorted)
    index[order] = labels_sorted
    counts = np.bincount(labels_sorted)
    centres = np.bincount(labels_sorted, weights=sorted_) / counts
    return index, centres


def slice_step(centres: np.ndarray, fallback: float) -> tuple[float, str]:
    """Distance between adjacent slices (mm) and a problem description ('' if fine).

    A single slice uses ``fallback`` (SpacingBetweenSlices or SliceThickness).
    Uneven steps (beyond :data:`SPACING_TOLERANCE`) usually mean a slice is missing.
    """
    if len(centres) < 2:
        return float(fallback), ""
    steps = np.diff(centres)
    mean = (centres[-1] - centres[0]) / (len(centres) - 1)
    bad = np.abs(steps - mean) > SPACING_TOLERANCE * mean
    if bad.any():
        values, counts = np.unique(np.round(steps, 2), return_counts=True)
        typical = float(values[counts == counts.max()].min())
        b = int(np.argmax(np.abs(steps - typical) > SPACING_TOLERANCE * typical))
        return float(mean), (f"slice positions are unevenly spaced: {steps[b]:.3g} mm between the "
                             f"slices at {centres[b]:.1f} and {centres[b + 1]:.1f} mm where "
                             f"{typical:.3g} mm is typical (is a slice missing?)")
    return float(mean), ""


def dcm2niix_affine(iop, first_position, pixel_spacing, step: float, rows: int) -> np.ndarray:
    """RAS affine of a stack stored in dcm2niix's layout (see the module docstring).

    Parameters
    ----------
    iop : sequence of 6 float
        Image Orientation (Patient): row cosine ``R`` then column cosine ``C``.
    first_position : sequence of 3 float
        Image Position (Patient) of the slice with the smallest ``IPP . N``.
    pixel_spacing : sequence of 2 float
        Pixel Spacing: (between rows, between columns), mm.
    step : float
        Distance between slices along ``N`` (mm, positive).
    rows : int
        Number of rows (needed because the row axis is flipped).

    Returns
    -------
    ndarray, shape (4, 4)
    """
    iop = np.asarray(iop, dtype=np.float64)
    r_cos, c_cos = iop[:3], iop[3:]
    d_row, d_col = float(pixel_spacing[0]), float(pixel_spacing[1])
    lps = np.eye(4)
    lps[:3, 0] = r_cos * d_col
    lps[:3, 1] = -c_cos * d_row
    lps[:3, 2] = slice_normal(iop) * step
    lps[:3, 3] = np.asarray(first_position, dtype=np.float64) + (rows - 1) * d_row * c_cos
    return LPS_TO_RAS @ lps


def to_nifti_layout(stack: np.ndarray, flipped: bool = False) -> np.ndarray:
    """``(T, Z, rows, cols)`` DICOM-ordered pixels as ``(cols, rows, Z, T)``, rows flipped.

    With ``flipped`` the rows of ``stack`` are already in flipped order and a C-contiguous
    ``stack`` gives a Fortran-contiguous view without copying -- the memory layout of a
    NIfTI image read by nibabel (x fastest), so both readers hand the pipeline the same.
    """
    if not flipped:
        stack = stack[:, :, ::-1, :]
    return np.asfortranarray(stack.transpose(3, 2, 1, 0))


# ---------------------------------------------------------------- 4D placement
#: Orientation cosines / pixel spacings of one series may differ by this much.
ORIENTATION_TOLERANCE = 1e-4
SPACING_TOLERANCE_MM = 1e-3


@dataclass
class Layout:
    """Where every image goes: time and slice index, plus the grid."""

    t: np.ndarray
    k: np.ndarray
    n_t: int
    n_z: int
    centres: np.ndarray
    affine: np.ndarray
    frame_times: Optional[np.ndarray]   # None when the headers hold no timing
    time_source: str


def _uniform(values: np.ndarray, tol: float, what: str, source: Path) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ImageReadError(f"{source}: some images lack {what} or hold a value that is not "
                             "a finite number")
    bad = np.any(np.abs(values - values[0]) > tol, axis=1)
    if bad.any():
        raise ImageReadError(f"{source}: the series mixes images with different {what} "
                             f"({list(np.round(values[0], 4))} and "
                             f"{list(np.round(values[np.argmax(bad)], 4))})")
    return values[0]


def _acquisition_seconds(table) -> np.ndarray:
    sec = table.acq_sec.copy()
    if np.all(np.isfinite(table.acq_day)) and np.all(np.isfinite(sec)):
        sec = (table.acq_day - table.acq_day.min()) * 86400.0 + sec
    if np.all(np.isfinite(sec)) and np.ptp(sec) > 43200.0:
        # No (or stale) dates: a series spanning more than 12 h has wrapped past midnight.
        sec = np.where(sec < 0.5 * (sec.min() + sec.max()), sec + 86400.0, sec)
    return sec


def _time_columns(table) -> tuple[list, list]:
    """Ordering keys (priority order) and the timing sources ``(name, seconds)`` that vary."""
    acq = _acquisition_seconds(table)
    trig = table.trigger_ms.copy()
    if np.any(np.isfinite(trig)) and not np.all(np.isfinite(trig)):
        trig[~np.isfinite(trig)] = 0.0  # GE and the QIBA DROs omit a Trigger Time of 0 ms
    keys = [v for v in (acq, trig, table.content_sec, table.instance) if np.all(np.isfinite(v))]
    sources = [(name, v) for name, v in (("AcquisitionTime", acq), ("TriggerTime", trig / 1000.0),
                                        ("ContentTime", table.content_sec))
               if np.all(np.isfinite(v)) and np.ptp(v) > 0]
    return keys, sources


def _numbers(values) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def check_orientation(iop, source: Path) -> None:
    """Refuse an Image Orientation (Patient) that is not two orthogonal unit vectors."""
    iop = np.asarray(iop, dtype=np.float64)
    lengths = np.linalg.norm(iop[:3]), np.linalg.norm(iop[3:])
    dot = float(iop[:3] @ iop[3:])
    tol = ORTHONORMAL_TOLERANCE
    if not (abs(lengths[0] - 1) <= tol and abs(lengths[1] - 1) <= tol and abs(dot) <= tol):
        raise ImageReadError(
            f"{source}: ImageOrientationPatient {_numbers(iop)} is not two orthogonal unit "
            f"vectors (row and column cosines of length {lengths[0]:.4g} and {lengths[1]:.4g}, "
            f"dot product {dot:.4g}; tolerance {tol:g})")


def check_voxel_size(values, what: str, source: Path) -> None:
    """Refuse voxel sizes (mm) outside :data:`VOXEL_RANGE_MM` (zero, negative, NaN, absurd)."""
    lo, hi = VOXEL_RANGE_MM
    values = np.asarray(values, dtype=np.float64)
    if not np.all((values >= lo) & (values <= hi)):
        raise ImageReadError(f"{source}: {what} of {_numbers(values)} mm is not a plausible "
                             f"voxel size (accepted: {lo:g} to {hi:g} mm)")


def _check_coincident(table, k, centres, names, source: Path) -> None:
    """Refuse images labelled as different slices that share one position along the normal."""
    labels = table.slice_label
    if not np.all(np.isfinite(labels)):
        return
    low = np.full(len(centres), np.inf)
    high = np.full(len(centres), -np.inf)
    np.minimum.at(low, k, labels)
    np.maximum.at(high, k, labels)
    bad = np.flatnonzero(high - low > SLICE_LABEL_TOLERANCE)
    if bad.size:
        idx = np.flatnonzero(k == bad[0])
        a, b = idx[np.argmin(labels[idx])], idx[np.argmax(labels[idx])]
        what = "InStackPositionNumber" if len(table) > len(table.paths) else "SliceLocation"
        raise ImageReadError(
            f"{source}: {names[a]} and {names[b]} are different slices ({what} {labels[a]:g} "
            f"and {labels[b]:g}) at the same ImagePositionPatient along the slice normal "
            f"(z = {centres[bad[0]]:.1f} mm), which makes the slice spacing 0 mm")


def _image_names(table, root: Path) -> list:
    """Each image as 'file' or 'file frame N', relative to the series folder."""
    names = []
    for path in table.paths:
        try:
            names.append(str(Path(path).relative_to(root)))
        except ValueError:
            names.append(str(path))
    multi = len(table) > len(table.paths)
    return [names[f] + (f" frame {fr + 1}" if multi else "")
            for f, fr in zip(table.file, table.frame)]


def _slice_label(k: int, centres) -> str:
    return f"slice {k} (z = {centres[k]:.1f} mm)"


def _time_label(t: int, ref) -> str:
    if ref is None or not np.isfinite(ref[t]):
        return f"time point {t}"
    return f"time point {t} (t = {ref[t]:.1f} s)"


def _reference_times(values, t, k, n_t, n_z, relative=True):
    """Per time point, the earliest time of its images (relative to the first); inf if none."""
    grid = np.full((n_t, n_z), np.inf)
    grid[t, k] = values
    ref = grid.min(axis=1)
    finite = ref[np.isfinite(ref)]
    return ref - (finite[0] if finite.size and relative else 0.0)


def _by_temporal_position(tpi, source: Path):
    labels, t = np.unique(tpi, return_inverse=True)
    n_t = len(labels)
    span = int(labels[-1] - labels[0]) + 1
    if np.all(labels == np.round(labels)) and span > n_t:
        gap = sorted(set(range(int(labels[0]), int(labels[-1]) + 1)) - set(labels.astype(int)))
        raise ImageReadError(f"{source}: temporal position {gap[0]} is missing from every slice "
                             f"({n_t} of {span} time points present)")
    return t, n_t


def _by_rank(k, n_z, keys, names, centres, sources, source: Path):
    """Time index = rank of the image within its slice, ordered by ``keys``."""
    order = np.lexsort(tuple(reversed([k] + keys)))
    ks = k[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    t = np.empty(len(order), dtype=np.int64)
    t[order] = np.arange(len(order)) - np.repeat(starts, sizes)
    if keys:
        rows = np.stack([k.astype(float)] + keys, axis=1)[order]
        same = np.flatnonzero(np.all(rows[1:] == rows[:-1], axis=1))
        if same.size:
            a, b = order[same[0]], order[same[0] + 1]
            raise ImageReadError(f"{source}: {_slice_label(int(k[a]), centres)} holds the same "
                                 f"image twice (time point {int(t[a])}: {names[a]} and {names[b]})")
    counts = np.bincount(k, minlength=n_z)
    values, freq = np.unique(counts, return_counts=True)
    n_t = int(values[freq == freq.max()].max())
    if np.all(counts == n_t):
        return t, n_t
    # Name the missing or extra time point by aligning the slice's times with the time
    # grid of the complete slices.
    ref_key = sources[0][1] if sources else (keys[-1] if keys else None)
    complete = np.isin(k, np.flatnonzero(counts == n_t))
    ref = _reference_times(ref_key[complete], t[complete], k[complete], n_t, n_z, False) \
        if ref_key is not None and complete.any() else None
    shown = ref - ref[0] if sources and ref is not None else None
    problems = []
    for kk in np.flatnonzero(counts != n_t):
        idx = np.flatnonzero(k == kk)
        idx = idx[np.argsort(t[idx])]
        text = f"{_slice_label(kk, centres)} has {len(idx)} of {n_t} time points"
        drop = _odd_one_out(ref_key[idx], ref) if ref is not None else None
        if drop is not None and len(idx) < n_t:
            text += f"; {_time_label(drop, shown)} is missing"
        elif len(idx) > n_t:
            text = f"{_slice_label(kk, centres)} has {len(idx)} images for {n_t} time points"
            if drop is not None:
                # The extra image shares its time point with the closer of its neighbours.
                nbrs = [j for j in (drop - 1, drop + 1) if 0 <= j < len(idx)]
                j = min(nbrs, key=lambda j: abs(ref_key[idx[j]] - ref_key[idx[drop]]))
                tp = j if j < drop else drop
                a, b = sorted((idx[j], idx[drop]))
                text += (f"; {_time_label(int(tp), shown)} appears twice "
                         f"({names[a]} and {names[b]})")
        problems.append(text)
    raise ImageReadError(f"{source}: {problems[0]}{_more(len(problems) - 1)}")


def _more(n: int) -> str:
    return "" if n < 1 else f" (and {n} more incomplete slice{'s' if n > 1 else ''})"


def _odd_one_out(x: np.ndarray, ref: np.ndarray):
    """Index of the one extra element of ``x`` (or of ``ref`` missing from ``x``).

    ``x`` (one slice, in time order) and ``ref`` (the time grid) differ by a constant
    offset once the odd element is dropped; the drop leaving the smallest spread of
    ``x - ref`` wins. None when the lengths differ by more than one.
    """
    long, short = (ref, x) if len(ref) == len(x) + 1 else (x, ref)
    if len(long) != len(short) + 1 or len(short) == 0:
        return None
    sign = 1.0 if long is ref else -1.0
    a = sign * (short - long[:-1])          # pairs before the dropped element
    b = sign * (short - long[1:])           # pairs after it
    pre_max = np.r_[-np.inf, np.maximum.accumulate(a)]
    pre_min = np.r_[np.inf, np.minimum.accumulate(a)]
    suf_max = np.r_[np.maximum.accumulate(b[::-1])[::-1], -np.inf]
    suf_min = np.r_[np.minimum.accumulate(b[::-1])[::-1], np.inf]
    spread = np.maximum(pre_max, suf_max) - np.minimum(pre_min, suf_min)
    # Ties (evenly spaced frames: dropping the first or the last fits equally well) go to
    # the drop with the smallest offset between the slice and the grid.
    best = np.flatnonzero(spread <= spread.min() + 1e-6 * (1.0 + np.abs(spread.min())))
    offset = [np.median(np.r_[a[:d], b[d:]]) for d in best]
    return int(best[np.argmin(np.abs(offset))])


def _check_grid(t, k, n_t, n_z, names, centres, ref, source: Path) -> None:
    flat = t * n_z + k
    counts = np.bincount(flat, minlength=n_t * n_z).reshape(n_t, n_z)
    if np.any(counts > 1):
        tt, kk = (int(v[0]) for v in np.nonzero(counts > 1))
        files = [names[i] for i in np.flatnonzero(flat == tt * n_z + kk)]
        raise ImageReadError(f"{source}: {_slice_label(kk, centres)} has {_time_label(tt, ref)} "
                             f"{len(files)} times ({', '.join(files)})")
    if np.any(counts == 0):
        kk = int(np.nonzero(counts == 0)[1][0])
        missing = np.flatnonzero(counts[:, kk] == 0)
        more = _more(int(np.sum(np.any(counts == 0, axis=0))) - 1)
        raise ImageReadError(
            f"{source}: {_slice_label(kk, centres)} has {n_t - missing.size} of {n_t} time "
            f"points; " + ", ".join(_time_label(int(m), ref) for m in missing[:5])
            + (" is missing" if missing.size == 1 else " are missing") + more)


def _assign_times(table, k, n_z, centres, names, source: Path):
    """Time index of every image, the number of time points, frame times and their source."""
    keys, sources = _time_columns(table)
    # Temporal Position Identifier/Index labels the time points directly -- unless a
    # scanner writes one constant value on every image.
    if np.all(np.isfinite(table.tpi)) and (np.ptp(table.tpi) > 0 or len(table) == n_z):
        t, n_t = _by_temporal_position(table.tpi, source)
    else:
        t, n_t = _by_rank(k, n_z, keys, names, centres, sources, source)
    ref = _reference_times(sources[0][1], t, k, n_t, n_z) if sources else None
    _check_grid(t, k, n_t, n_z, names, centres, ref, source)
    return t, n_t, ref, (sources[0][0] if sources else "")


def plan_layout(table, source: Path, thickness: float) -> Layout:
    """Place every image of a :class:`~perfmap.io.dicom_series.FrameTable` in the 4D grid.

    Checks one orientation, pixel spacing, image size and echo; sorts slices along the
    normal and time points (see :mod:`perfmap.io.dicom`); computes the affine and the
    frame times. ``thickness`` is the slice spacing used for a single slice.

    Raises
    ------
    ImageReadError
        Mixed or degenerate geometry (orientation not two orthogonal unit vectors, voxel
        sizes outside :data:`VOXEL_RANGE_MM`, different slices at one position), several
        echoes, uneven slice spacing, or missing/duplicated images.
    """
    shapes = np.unique(table.shape, axis=0)
    if len(shapes) > 1:
        raise ImageReadError(f"{source}: the series mixes image sizes "
                             + ", ".join(f"{r}x{c}" for r, c in shapes))
    iop = _uniform(table.iop, ORIENTATION_TOLERANCE, "ImageOrientationPatient", source)
    spacing = _uniform(table.spacing, SPACING_TOLERANCE_MM, "PixelSpacing", source)
    echoes = np.unique(table.echo_ms[np.isfinite(table.echo_ms)])
    if echoes.size > 1:
        raise ImageReadError(f"{source}: the series holds {echoes.size} echoes (TE = "
                             + ", ".join(f"{e:g}" for e in echoes) + " ms); perfmap reads "
                             "single-echo series")
    check_orientation(iop, source)
    check_voxel_size(spacing, "PixelSpacing", source)
    normal = slice_normal(iop)
    if not np.all(np.isfinite(table.ipp)):
        raise ImageReadError(f"{source}: some images lack ImagePositionPatient or hold a value "
                             "that is not a finite number")
    k, centres = cluster_positions(table.ipp @ normal)
    n_z = len(centres)
    names = _image_names(table, source)
    _check_coincident(table, k, centres, names, source)
    t, n_t, frame_times, time_source = _assign_times(table, k, n_z, centres, names, source)
    step, problem = slice_step(centres, thickness)
    if problem:
        raise ImageReadError(f"{source}: {problem}")
    check_voxel_size([step], "the slice spacing" if n_z > 1 else
                     "the slice spacing of this single-slice series (SpacingBetweenSlices, "
                     "else SliceThickness)", source)
    first = table.ipp[np.flatnonzero(k == 0)[0]]
    affine = dcm2niix_affine(iop, first, spacing, step, int(shapes[0][0]))
    return Layout(t=t, k=k, n_t=n_t, n_z=n_z, centres=centres, affine=affine,
                   frame_times=frame_times, time_source=time_source)


__all__ = ["LPS_TO_RAS", "slice_normal", "cluster_positions", "slice_step", "dcm2niix_affine",
           "to_nifti_layout", "Layout", "plan_layout", "check_orientation", "check_voxel_size"]
