"""Common types of the deconvolution backends.

A backend is constructed with its hyper-parameters and called on dense arrays::

    backend = get_backend("osvd")(oi_limit=0.095)
    fit = backend.fit(conc, aif, dt)        # conc (n, T), aif (T,), dt in s

and returns a :class:`DeconvFit` holding dense per-voxel arrays, never
per-voxel Python objects. Backends process the voxels in chunks of
``chunk_size`` so that memory stays bounded whatever ``n`` is.

The deconvolution model is the indicator-dilution convolution
(Ostergaard et al. 1996, MRM 36:715)::

    C_t(t) = integral_0^t C_a(tau) k(t - tau) dtau,   k(t) = F * R(t)

where ``R`` is the residue function (R(0) = 1) and ``F`` the flow. With
concentrations in the same (arbitrary) units for tissue and AIF and time in
seconds, ``k`` has units of 1/s; :mod:`perfmap.core.maps` applies
``kH / rho``, 100 and 60 to report CBF in ml/100 g/min.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import numpy as np

from ..errors import InputDataError, ParameterError, ShapeError


@dataclass
class DeconvFit:
    """Result of deconvolving ``n`` tissue curves with one AIF.

    Attributes
    ----------
    flow : ndarray, shape (n,), float32
        Peak of the flow-scaled residue ``max_t k(t)`` in 1/s (``F`` when
        ``R(0) = 1``). NaN where the voxel could not be fitted.
    tmax : ndarray, shape (n,), float32
        Time of the peak of ``k`` in seconds. NaN where not fitted.
    failed : ndarray, shape (n,), bool
        True where the voxel could not be fitted (its maps become NaN).
    mtt : ndarray, shape (n,), float32, optional
        Mean transit time in seconds for backends that estimate it directly
        (PHAE). ``None`` means MTT follows from the central volume theorem
        ``MTT = CBV / CBF``.
    volume : ndarray, shape (n,), float32, optional
        The integral of the fitted flow-scaled residue, ``integral k dt =
        F * MTT`` (dimensionless: the ratio ``integral C_t / integral C_a`` of
        the noise-free model curve integrated over all time), for backends that fit the tissue
        amplitude to the whole curve (PHAE2). When given,
        :func:`perfmap.core.maps.perfusion_maps` takes CBV from it
        (``(kH/rho) 100 volume``) instead of the integral ratio of the measured
        curves, so the MTT map equals the backend's MTT. ``None`` (every other
        backend): CBV from the integral ratio.
    residue : ndarray, shape (n, T), float32, optional
        The flow-scaled residue ``k(t)`` in 1/s, kept only when requested
        (``keep_residue=True``) since it costs ``n * T`` floats.
    info : dict
        Backend-specific summaries for the provenance JSON (e.g. the
        distribution of per-voxel thresholds). Must be JSON-serialisable.
    """

    flow: np.ndarray
    tmax: np.ndarray
    failed: np.ndarray
    mtt: Optional[np.ndarray] = None
    residue: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)
    volume: Optional[np.ndarray] = None

    @property
    def n_failed(self) -> int:
        """Number of voxels that could not be fitted."""
        return int(np.count_nonzero(self.failed))


class Backend(ABC):
    """Base class of the deconvolution backends.

    Subclasses set ``name`` (via :func:`perfmap.deconv.registry.register`),
    take their hyper-parameters as keyword arguments in ``__init__`` and
    implement :meth:`_fit_chunk`. :meth:`fit` validates the inputs, runs
    :meth:`prepare` once per AIF and then :meth:`_fit_chunk` over chunks.
    """

    name: ClassVar[str] = ""
    #: Whether the backend needs torch (only PHAE); used to keep imports lazy.
    needs_torch: ClassVar[bool] = False

    def __init__(self, chunk_size: int = 16384, keep_residue: bool = False):
        if int(chunk_size) < 1:
            raise ValueError("chunk_size must be a positive integer")
        self.chunk_size = int(chunk_size)
        self.keep_residue = bool(keep_residue)

    # -- public -----------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Hyper-parameters for the provenance JSON (JSON-serialisable)."""
        return {}

    def fit(self, conc: np.ndarray, aif: np.ndarray, dt: float) -> DeconvFit:
        """Deconvolve every row of ``conc`` with ``aif``.

        Parameters
        ----------
        conc : array_like, shape (n, T)
            Tissue concentration curves (time last). Not modified.
        aif : array_like, shape (T,)
            Arterial input function in the same units as ``conc``.
        dt : float
            Sampling interval in seconds (uniform grid).

        Returns
        -------
        DeconvFit
        """
        conc = np.asarray(conc)
        aif = np.asarray(aif, dtype=np.float64)
        if conc.ndim != 2:
            raise ShapeError(f"conc must be 2-D (voxels, time), got shape {conc.shape}")
        if aif.ndim != 1 or aif.shape[0] != conc.shape[1]:
            raise ShapeError(
                f"aif must be 1-D with {conc.shape[1]} frames, got shape {aif.shape}"
            )
        if not np.all(np.isfinite(aif)):
            raise InputDataError("the AIF contains NaN or Inf values")
        if not (np.isfinite(dt) and dt > 0):
            raise InputDataError(f"the sampling interval must be positive, got {dt!r}")
        if np.max(aif) <= 0:
            raise InputDataError("the AIF has no positive values: no bolus to deconvolve")
        n, T = conc.shape
        state = self.prepare(aif, float(dt), T)
        flow = np.full(n, np.nan, np.float32)
        tmax = np.full(n, np.nan, np.float32)
        failed = np.zeros(n, bool)
        mtt = volume = None
        residue = np.full((n, T), np.nan, np.float32) if self.keep_residue else None
        infos = []
        for start in range(0, n, self.chunk_size):
            stop = min(start + self.chunk_size, n)
            # np.array copies, so a backend may work in place without touching the input
            block = np.array(conc[start:stop], dtype=np.float64)
            bad = ~np.all(np.isfinite(block), axis=1)
            if bad.any():  # zero only the bad rows: a full np.where cost ~40 % of a fit
                block[bad] = 0.0
            part = self._fit_chunk(block, state)
            part.failed |= bad
            f = np.asarray(part.flow, np.float32)
            t = np.asarray(part.tmax, np.float32)
            ok = ~part.failed & np.isfinite(f) & np.isfinite(t)
            flow[start:stop] = np.where(ok, f, np.nan)
            tmax[start:stop] = np.where(ok, t, np.nan)
            failed[start:stop] = ~ok
            if part.mtt is not None:
                if mtt is None:
                    mtt = np.full(n, np.nan, np.float32)
                mtt[start:stop] = np.where(ok, part.mtt, np.nan)
            if part.volume is not None:
                if volume is None:
                    volume = np.full(n, np.nan, np.float32)
                volume[start:stop] = np.where(ok, part.volume, np.nan)
            if residue is not None and part.residue is not None:
                residue[start:stop] = np.where(ok[:, None], part.residue, np.nan)
            infos.append((stop - start, part.info))
        return DeconvFit(flow=flow, tmax=tmax, failed=failed, mtt=mtt,
                         residue=residue, info=self.merge_info(infos), volume=volume)

    # -- for subclasses ---------------------------------------------------
    def prepare(self, aif: np.ndarray, dt: float, n_frames: int) -> Any:
        """Precompute what depends only on the AIF (e.g. its SVD). Called once per fit."""
        return None

    @abstractmethod
    def _fit_chunk(self, conc: np.ndarray, state: Any) -> DeconvFit:
        """Deconvolve one finite float64 chunk ``(m, T)``; returns a DeconvFit of length m."""

    def merge_info(self, infos: list[tuple[int, dict]]) -> dict:
        """Combine the per-chunk ``info`` dicts (default: keep the first non-empty)."""
        for _, info in infos:
            if info:
                return info
        return {}


def positive_int(name: str, value) -> int:
    """``value`` as an int >= 1, else :class:`ParameterError` naming ``name``.

    >>> positive_int("batch_size", "64")
    64
    """
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an integer, got {value!r}") from None
    if number < 1:
        raise ParameterError(f"{name} must be a positive integer")
    return number


def merge_choice_counts(infos, key: str, grid) -> tuple[list, Optional[float]]:
    """Sum the per-chunk counts ``info[key]`` of a per-voxel choice over ``grid``.

    Used by the backends that pick one value per voxel from a fixed grid
    (oSVD thresholds, Tikhonov weights). Returns the summed counts and the
    median chosen grid value (None when no voxel was fitted).
    """
    grid = np.asarray(grid)
    counts = np.zeros(grid.size, np.int64)
    for _, info in infos:
        counts += np.asarray(info.get(key, 0), np.int64)
    total = int(counts.sum())
    median = None
    if total:
        median = float(grid[np.searchsorted(np.cumsum(counts), (total + 1) / 2)])
    return counts.tolist(), median
