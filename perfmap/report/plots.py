"""Report figures as PNG bytes: ROC curves, box plots by grade, AUC vs SNR, map thumbnails.

Matplotlib is imported lazily inside each function and only through its
object-oriented API with the Agg canvas (:class:`matplotlib.figure.Figure` +
``FigureCanvasAgg``): no pyplot global state, no GUI backend, no network, and
``import perfmap.report`` stays cheap. Every function returns the PNG file
content as ``bytes`` (ready for :func:`perfmap.report.export.write_report`,
which embeds them as data URIs).
"""

from __future__ import annotations

import io
import math
from typing import Mapping, Optional, Sequence

import numpy as np

from ..errors import InputDataError, PerfmapError, ShapeError
from .grading import MethodResult, SnrPoint
from .stats import format_p, roc_curve

_DPI = 100


def _figure(width: float, height: float):
    """A new Agg-backed figure (lazy matplotlib import)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise PerfmapError(
            "the report plots need matplotlib; install it with pip install 'perfmap[report]'."
        ) from None
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # no timestamp / software metadata, so the same data gives the same bytes
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _colors(n: int) -> list:
    base = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
            "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    return [base[i % len(base)] for i in range(n)]


def _results(results: Mapping[str, MethodResult]) -> list:
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not items:
        raise InputDataError("there are no grading results to plot.")
    return items


def roc_plot(results: Mapping[str, MethodResult], *, title: Optional[str] = None) -> bytes:
    """ROC curves of all methods on one axis, legend with each AUC and CI.

    Parameters
    ----------
    results : mapping of str to MethodResult
        From :func:`perfmap.report.grading.grading_table`.
    title : str, optional
        Axis title.

    Returns
    -------
    bytes
        PNG image. Each method's Youden operating point is marked.
    """
    items = _results(results)
    fig = _figure(5.0, 4.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1, label="chance")
    styles = ["-", "--", "-.", (0, (1, 1))]
    for i, (res, color) in enumerate(zip(items, _colors(len(items)))):
        r = roc_curve(res.scores, res.labels)
        lo, hi = res.auc_ci
        # decreasing widths and distinct dashes keep identical curves visible
        ax.plot(r.fpr, r.tpr, color=color, lw=max(1.2, 3.2 - 0.6 * i), ls=styles[i % 4],
                label=f"{res.method}: AUC {res.auc:.2f} ({lo:.2f}-{hi:.2f})")
        ax.plot([1 - res.specificity], [res.sensitivity], "o", color=color, ms=6,
                mec="black", mew=0.6)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (LGG called HGG)")
    ax.set_ylabel("sensitivity (HGG detected)")
    ax.set_title(title or f"ROC, {items[0].metric} (HGG vs LGG)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def box_plot(results: Mapping[str, MethodResult], *, metric: Optional[str] = None,
             seed: int = 0) -> bytes:
    """Box plots of the metric by grade, one panel per method, with the subjects as points.

    Parameters
    ----------
    results : mapping of str to MethodResult
        From :func:`perfmap.report.grading.grading_table`.
    metric : str, optional
        Axis label (default: the results' metric).
    seed : int
        Seed of the horizontal jitter of the points (deterministic images).

    Returns
    -------
    bytes
        PNG image; the dashed line in each panel is the method's Youden cut-off.
    """
    items = _results(results)
    metric = metric or items[0].metric
    rng = np.random.default_rng(seed)
    n = len(items)
    fig = _figure(max(3.2, 2.4 * n), 4.0)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    for ax, res in zip(axes, items):
        groups = [res.scores[~res.labels], res.scores[res.labels]]
        box = ax.boxplot(groups, positions=[1, 2], widths=0.55, showfliers=False,
                         patch_artist=True, medianprops={"color": "black"})
        for patch, color in zip(box["boxes"], ["#9ecae1", "#fc9272"]):
            patch.set_facecolor(color)
        for pos, values in zip((1, 2), groups):
            x = pos + rng.uniform(-0.12, 0.12, size=values.size)
            ax.plot(x, values, "o", color="0.2", ms=3.5, alpha=0.8)
        ax.axhline(res.cutoff, ls="--", color="0.4", lw=1)
        ax.set_xticks([1, 2], [f"LGG (n={res.n_lgg})", f"HGG (n={res.n_hgg})"])
        p_text = format_p(res.mwu_p)
        p_text = p_text if p_text.startswith("<") else f"= {p_text}"
        ax.set_title(f"{res.method}\nMWU p {p_text}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(metric)
    return _png(fig)


def auc_snr_plot(points: Sequence[SnrPoint], *, title: Optional[str] = None) -> bytes:
    """AUC against SNR for each method, with the bootstrap CI as a band.

    Parameters
    ----------
    points : sequence of SnrPoint
        From :func:`perfmap.report.grading.auc_by_snr`. Levels with a NaN AUC
        are left out of the lines.
    title : str, optional
        Axis title.

    Returns
    -------
    bytes
        PNG image; the SNR axis decreases to the right (degrading quality),
        as in the PHAE paper's Fig. 5. Levels at which some graded subjects
        got no noise (their own SNR is already lower) have hollow markers.
    """
    points = list(points)
    if not points:
        raise InputDataError("there are no AUC-vs-SNR points to plot.")
    methods = list(dict.fromkeys(p.method for p in points))
    fig = _figure(5.6, 4.0)
    ax = fig.add_subplot()
    for method, color in zip(methods, _colors(len(methods))):
        pts = sorted((p for p in points if p.method == method and math.isfinite(p.auc)),
                     key=lambda p: p.snr)
        if not pts:
            continue
        snr = np.array([p.snr for p in pts])
        a = np.array([p.auc for p in pts])
        lo = np.array([p.auc_ci[0] for p in pts])
        hi = np.array([p.auc_ci[1] for p in pts])
        ax.fill_between(snr, lo, hi, color=color, alpha=0.15, lw=0)
        ax.plot(snr, a, "o-", color=color, lw=2, label=method)
        kept = [p for p in pts if not p.noise_added]
        if kept:  # levels above some subjects' own SNR: hollow markers
            ax.plot([p.snr for p in kept], [p.auc for p in kept], "o", ms=9, mfc="white",
                    color=color, mew=2)
    if any(not p.noise_added for p in points if math.isfinite(p.auc)):
        ax.plot([], [], "o", ms=9, mfc="white", color="0.3", mew=2,
                label="no noise added to some subjects\n(their own SNR is lower)")
    ax.invert_xaxis()
    ax.set_ylim(min(0.4, ax.get_ylim()[0]), 1.02)
    ax.axhline(0.5, ls=":", color="0.6", lw=1)
    ax.set_xlabel("SNR (baseline mean / SD)")
    ax.set_ylabel("AUC (HGG vs LGG)")
    ax.set_title(title or "AUC vs SNR")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def thumbnail_montage(images: Sequence[tuple], *, ncols: Optional[int] = None,
                      cmap: str = "viridis", vmax: Optional[float] = None,
                      label: str = "CBF (ml/100 g/min)",
                      title: Optional[str] = None) -> bytes:
    """Montage of 2D maps (e.g. one CBF slice per subject) with a shared colour scale.

    Parameters
    ----------
    images : sequence of (str, ndarray)
        ``(subject, 2D array)`` pairs; arrays are indexed ``(x, y)`` as a NIfTI
        slice ``img[:, :, z]`` and drawn with x to the right and y up. NaN
        pixels (outside the mask) are drawn as background.
    ncols : int, optional
        Columns of the grid (default: about the square root of the count, at
        most 6).
    cmap : str
        Matplotlib colour map.
    vmax : float, optional
        Top of the colour scale; default the 99th percentile of all finite
        pixels, so a few outliers do not wash out the maps.
    label : str
        Colour bar label.
    title : str, optional
        Figure title, e.g. the map and the method that computed it.

    Returns
    -------
    bytes
        PNG image.

    Raises
    ------
    ShapeError
        If an image is not 2D.
    InputDataError
        If ``images`` is empty.
    """
    items = [(str(name), np.asarray(img, dtype=np.float64)) for name, img in images]
    if not items:
        raise InputDataError("there are no maps to put in the thumbnail montage.")
    for name, img in items:
        if img.ndim != 2:
            raise ShapeError(f"thumbnail of {name} must be a 2D slice; got shape {img.shape}.")
    finite = np.concatenate([img[np.isfinite(img)] for _, img in items])
    if vmax is None:
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    if not vmax > vmin:
        vmax = vmin + 1.0
    n = len(items)
    ncols = int(ncols) if ncols else min(6, max(1, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig = _figure(1.7 * ncols + 0.8, 1.8 * nrows + 0.2)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= n:
            continue
        name, img = items[i]
        im = ax.imshow(np.ma.masked_invalid(img).T, origin="lower", cmap=cmap,
                       vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)

