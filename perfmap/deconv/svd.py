"""Truncated-SVD deconvolution: sSVD, cSVD and oSVD.

All three solve ``c = A k`` for the flow-scaled residue ``k = F R`` (1/s) with
a truncated pseudo-inverse of the convolution matrix ``A`` built by
:mod:`perfmap.deconv.convmatrix`: singular values below ``threshold * s_max``
are discarded (Ostergaard et al. 1996, MRM 36:715)::

    k = V diag(1/s_i if s_i >= threshold * s_max else 0) U^T c

``ssvd``
    Lower-triangular (causal) matrix, one threshold for the image (20 % by
    default, Ostergaard 1996). Sensitive to tracer arrival delay.
``csvd``
    Block-circulant matrix on the zero-padded ``L >= 2N`` grid (Wu et al. 2003,
    MRM 50:164), one threshold for the image. Delay-insensitive.
``osvd``
    The cSVD matrix with a per-voxel threshold: the smallest candidate whose
    oscillation index (Wu 2003) falls below ``oi_limit``.

The circulant matrix is diagonalised by the DFT, so its singular values are
``|FFT(b)|`` of its first column ``b`` and truncating them is a per-frequency
mask (see :mod:`~perfmap.deconv.convmatrix`). sSVD and cSVD apply their
fixed pseudo-inverse (``N x N``, resp. the ``2N x N`` columns of the circulant
one that meet the unpadded samples) as matrix products; oSVD works on the
real FFT of the zero-padded curves, where a voxel's threshold is a mask over
the ``N + 1`` frequency bins. ``OSVD.fit_shared`` deconvolves a few curves
(two ROI means) with one threshold, the largest any of them chooses
(:mod:`perfmap.deconv.shared`).

References
----------
Ostergaard L, Weisskoff RM, Chesler DA, Gyldensted C, Rosen BR. High
    resolution measurement of cerebral blood flow using intravascular tracer
    bolus passages. Part I: Mathematical approach and statistical analysis.
    MRM 1996;36:715-725.
Wu O, Ostergaard L, Weisskoff RM, Benner T, Rosen BR, Sorensen AG. Tracer
    arrival timing-insensitive technique for estimating flow in MR
    perfusion-weighted imaging using singular value decomposition with a
    block-circulant deconvolution matrix. MRM 2003;50:164-174.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError, ParameterError
from . import convmatrix as cm
from .base import Backend, DeconvFit, merge_choice_counts
from .registry import register
from .shared import SharedChoice, shared_index

#: Default candidate thresholds of oSVD (fractions of the largest singular value).
OSVD_THRESHOLDS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.065,
                   0.08, 0.10, 0.13, 0.16, 0.20, 0.30, 0.50, 0.95)


def _fraction(name: str, value) -> float:
    """Validate a threshold given as a fraction of the largest singular value."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise ParameterError(f"{name} must be a fraction in (0, 1), got {v}")
    return v


def _flush_tiny(matrix: np.ndarray) -> np.ndarray:
    """float32 copy with entries below 1e-30 of the largest set to 0.

    Such entries change no result but are float32 subnormals, which make
    matrix products several times slower on x86.
    """
    out = np.ascontiguousarray(matrix, np.float32)
    out[np.abs(out) < 1e-30 * np.abs(out).max()] = 0.0
    return out


@dataclass
class _Fixed:
    """AIF-dependent state of the single-threshold backends."""

    pinv_t: np.ndarray      # (N, N) or (N, 2N) float32: k = c @ pinv_t
    dt: float
    n_frames: int
    kept: int               # number of singular values kept


class _FixedThreshold(Backend):
    """Shared code of sSVD and cSVD: one pseudo-inverse for the whole image."""

    default_threshold: float = 0.2

    def __init__(self, threshold: float | None = None,
                 discretisation: str = cm.DEFAULT_DISCRETISATION,
                 chunk_size: int = 16384, keep_residue: bool = False):
        super().__init__(chunk_size=chunk_size, keep_residue=keep_residue)
        self.threshold = _fraction(
            "threshold", self.default_threshold if threshold is None else threshold)
        self.discretisation = cm.check_discretisation(discretisation)

    def params(self) -> dict:
        return {"threshold": self.threshold, "discretisation": self.discretisation}

    def _solve(self, conc: np.ndarray, state: _Fixed):
        k = cm.blocked_matmul(np.asarray(conc, dtype=np.float32), state.pinv_t)
        flow, tmax = cm.peak_of_residue(k, state.dt, state.n_frames, circular=False)
        return flow, tmax, (k if self.keep_residue else None)

    def _fit_chunk(self, conc: np.ndarray, state) -> DeconvFit:
        parts = [self._solve(conc[sl], state) for sl in cm.row_blocks(len(conc))]
        flow, tmax = (np.concatenate([p[i] for p in parts]) for i in range(2))
        residue = np.concatenate([p[2] for p in parts]) if self.keep_residue else None
        return DeconvFit(flow=flow, tmax=tmax, failed=np.zeros(len(conc), bool),
                         residue=residue, info={"singular_values_kept": state.kept})


@register("ssvd")
class SSVD(_FixedThreshold):
    """Standard truncated SVD with the lower-triangular matrix (Ostergaard 1996).

    Parameters
    ----------
    threshold : float, default 0.2
        Singular values below ``threshold * s_max`` are discarded (Ostergaard
        1996 used 20 %).
    discretisation : {"linear", "rectangle"}, default "linear"
        Quadrature of the convolution integral, see
        :mod:`perfmap.deconv.convmatrix`.
    chunk_size, keep_residue
        See :class:`perfmap.deconv.Backend`.

    Notes
    -----
    The causal matrix cannot represent a tissue bolus that arrives before the
    AIF and its truncation depends on the delay (Wu 2003); prefer ``osvd``.

    Examples
    --------
    >>> import numpy as np
    >>> from perfmap.core.curves import gamma_variate
    >>> t = np.arange(60) * 1.5
    >>> aif = gamma_variate(t, t0=10)
    >>> fit = SSVD().fit(np.zeros((2, 60)), aif, 1.5)
    >>> fit.flow.tolist(), fit.failed.tolist()
    ([0.0, 0.0], [False, False])
    """

    default_threshold = 0.2

    def prepare(self, aif, dt, n_frames):
        a = cm.causal_matrix(aif, dt, self.discretisation)
        # gesvd, not the default divide-and-conquer gesdd: on the shared 2-core machine
        # gesdd's threaded BLAS calls stalled for ~0.1 s per call; gesvd takes 0.5 ms
        import scipy.linalg    # lazy: only sSVD needs it

        u, s, vt = scipy.linalg.svd(a, lapack_driver="gesvd")
        if not s[0] > 0:
            raise InputDataError(
                f"the convolution matrix of the AIF is zero ({n_frames} frames, "
                f"{self.discretisation} discretisation): nothing to deconvolve")
        keep = s >= self.threshold * s[0]
        inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
        pinv = (vt.T * inv) @ u.T                       # k = pinv @ c
        return _Fixed(_flush_tiny(pinv.T), dt, n_frames, int(keep.sum()))


@register("csvd")
class CSVD(_FixedThreshold):
    """Block-circulant SVD with one fixed threshold (cSVD, Wu et al. 2003).

    Parameters
    ----------
    threshold : float, default 0.1
        Singular values ``|FFT(b)|`` below ``threshold * s_max`` are
        discarded. 10 % was chosen on noisy closed-form phantoms (exponential,
        gamma and Lorentzian residues, MTT 2-12 s, sub-frame arrival times,
        dt 1 and 1.5 s): its mean |CBF bias| was 26-27 % from CNR 200 down to
        CNR 10 (RMSE <= 34 %), whereas 5 % gave 21 % at CNR >= 30 but 38-39 %
        (RMSE 47-49 %) at CNR 10, and 20 % gave 33-36 % everywhere. A single
        threshold must survive the noisiest voxels of an image; use oSVD for a
        per-voxel choice.
    discretisation : {"linear", "rectangle"}, default "linear"
    chunk_size, keep_residue
        See :class:`perfmap.deconv.Backend`.

    Notes
    -----
    Tmax is read on the circular grid: a peak in the second half of the
    ``2N`` grid is a negative lag (tissue bolus before the AIF), see
    :func:`perfmap.deconv.convmatrix.peak_of_residue`. ``residue`` (when
    kept) holds lags ``0 .. (N-1) dt``.
    """

    default_threshold = 0.1

    def prepare(self, aif, dt, n_frames):
        b = cm.circulant_kernel(aif, dt, self.discretisation)
        eig = np.fft.fft(b)
        s = np.abs(eig)
        keep = s >= self.threshold * s.max()
        filt = np.where(keep, 1.0 / np.where(keep, eig, 1.0), 0.0)
        g = np.real(np.fft.ifft(filt))        # first column of the circulant pseudo-inverse
        lag = (np.arange(b.size)[:, None] - np.arange(n_frames)[None, :]) % b.size
        pinv = g[lag]                         # (L, N): the padded half of c is zero
        return _Fixed(_flush_tiny(pinv.T), dt, n_frames, int(keep.sum()))

    def _solve(self, conc: np.ndarray, state: _Fixed):
        k = cm.blocked_matmul(np.asarray(conc, dtype=np.float32), state.pinv_t)
        flow, tmax = cm.peak_of_residue(k, state.dt, state.n_frames, circular=True)
        return flow, tmax, (k[:, :state.n_frames] if self.keep_residue else None)


def default_threads() -> int:
    """Threads used by oSVD by default: the CPUs this process may use, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


@dataclass
class _OSVDState:
    inv_eig: np.ndarray      # (L//2 + 1,) complex64: 1 / FFT(b), 0 where that would overflow
    last_kept: np.ndarray    # (L//2 + 1,) int16: largest candidate index that keeps the bin
    dft: np.ndarray          # (N, L + 2) float32: the real DFT as a matrix (cm.real_dft_matrix)
    length: int
    dt: float
    n_frames: int


@register("osvd")
class OSVD(SharedChoice, Backend):
    """Oscillation-index SVD (oSVD, Wu et al. 2003): block-circulant, per-voxel threshold.

    For each voxel the threshold is the smallest candidate for which
    the oscillation index of the deconvolved residue (Wu 2003)::

        OI = (1/L) (1/max_t |k|) sum_(j=2)^(L-1) |k_j - 2 k_(j-1) + k_(j-2)|

    is below ``oi_limit`` (``L >= 2N`` points of the padded grid,
    :func:`perfmap.deconv.convmatrix.pad_length`). By default
    the candidates are searched by bisection, vectorised over the chunk (four
    OI evaluations for 16 candidates instead of up to 16). Bisection assumes
    the OI falls as the threshold rises; it often does not strictly, yet on
    noisy closed-form phantoms (CNR 10-200) it chose the same threshold as
    the exhaustive scan (``search="scan"``) for 98.6-100 % of voxels.

    Parameters
    ----------
    oi_limit : float, default 0.095
        Oscillation-index limit (Wu 2003).
    thresholds : sequence of float, optional
        Candidate thresholds, fractions of the largest singular value, in
        increasing order. Default :data:`OSVD_THRESHOLDS`: 16 values (four
        bisection steps) from 0.5 % to 95 %, dense below 20 % where the
        choice matters for CBF. The largest candidate is used when none
        meets the limit.
    search : {"bisect", "scan"}, default "bisect"
        ``"scan"`` tries the candidates in increasing order, the definition
        applied literally: exact, but up to four times slower.
    discretisation : {"linear", "rectangle"}, default "linear"
    threads : int, optional
        Threads that share the blocks of each chunk (NumPy and the FFT
        release the GIL). Default :func:`default_threads`. Results do not
        depend on it.
    chunk_size, keep_residue
        See :class:`perfmap.deconv.Backend`.

    Notes
    -----
    Being circulant, the result does not depend on the tracer arrival
    delay. A tissue bolus arriving before the AIF wraps to the end of the
    ``2N`` grid; the peak is searched over the whole grid and a peak in its
    second half is reported as a negative Tmax
    (:func:`perfmap.deconv.convmatrix.peak_of_residue`). ``residue`` (when
    kept) holds lags ``0 .. (N-1) dt``. ``info`` holds the candidates, how
    many voxels chose each, and the median threshold.
    """

    def __init__(self, oi_limit: float = 0.095, thresholds=None,
                 search: str = "bisect", discretisation: str = cm.DEFAULT_DISCRETISATION,
                 threads: int | None = None, chunk_size: int = 16384,
                 keep_residue: bool = False):
        super().__init__(chunk_size=chunk_size, keep_residue=keep_residue)
        if search not in ("bisect", "scan"):
            raise ParameterError(f"search must be 'bisect' or 'scan', got {search!r}")
        self.search = search
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ParameterError(f"threads must be a positive integer, got {threads!r}")
        limit = float(oi_limit)
        if not (np.isfinite(limit) and limit > 0):
            raise ParameterError(f"oi_limit must be a positive number, got {oi_limit!r}")
        self.oi_limit = limit
        cand = np.asarray(OSVD_THRESHOLDS if thresholds is None else thresholds, np.float64)
        if cand.ndim != 1 or cand.size == 0 or cand.size > 255:
            raise ParameterError("thresholds must be a non-empty sequence of at most 255 values")
        for v in cand:
            _fraction("thresholds", v)
        if np.any(np.diff(cand) <= 0):
            raise ParameterError("thresholds must be strictly increasing")
        self.thresholds = cand
        self.discretisation = cm.check_discretisation(discretisation)

    def params(self) -> dict:
        return {"oi_limit": self.oi_limit, "thresholds": self.thresholds.tolist(),
                "search": self.search, "discretisation": self.discretisation}

    def prepare(self, aif, dt, n_frames):
        b = cm.circulant_kernel(aif, dt, self.discretisation)
        eig = np.fft.rfft(b)
        s = np.abs(eig)
        usable = s > 1e-12 * s.max()                 # 1/eig must stay finite in complex64
        inv = np.where(usable, 1.0 / np.where(usable, eig, 1.0), 0.0)
        # bin f survives candidate p iff s_f >= thresholds[p] * s_max
        last = np.searchsorted(self.thresholds * s.max(), s, side="right") - 1
        return _OSVDState(inv.astype(np.complex64), last.astype(np.int16),
                          cm.real_dft_matrix(n_frames, b.size), b.size, dt, n_frames)

    def _residues(self, spec_t: np.ndarray, choice: np.ndarray, st: _OSVDState) -> np.ndarray:
        """Residues ``(L, m)`` float32 (time first) for each voxel's candidate index."""
        keep = st.last_kept[:, None] >= choice[None, :].astype(np.int16)
        return np.fft.irfft(spec_t * keep, n=st.length, axis=0)

    def _meets_limit(self, k_t: np.ndarray) -> np.ndarray:
        """``OI < oi_limit`` for each column of ``k_t`` ``(L, m)`` (Wu 2003).

        Time runs down the first axis so that the second differences and the
        reductions are long vectorised row operations rather than many short
        ones (three times faster than the row-per-voxel layout).
        """
        d = k_t[2:] + k_t[:-2]
        d -= k_t[1:-1]
        d -= k_t[1:-1]
        np.abs(d, out=d)
        rough = d.sum(axis=0)
        peak = np.maximum(k_t.max(axis=0), -k_t.min(axis=0))
        return (rough < self.oi_limit * k_t.shape[0] * peak) | (peak == 0)

    def _search(self, spec_t: np.ndarray, st: _OSVDState) -> np.ndarray:
        """Candidate index per voxel by bisection: ``ceil(log2(P))`` OI evaluations."""
        m = spec_t.shape[1]
        lo = np.zeros(m, np.int64)
        hi = np.full(m, self.thresholds.size - 1, np.int64)
        for _ in range(math.ceil(math.log2(self.thresholds.size))):
            mid = (lo + hi) // 2
            ok = self._meets_limit(self._residues(spec_t, mid, st))
            hi = np.where(ok, mid, hi)
            lo = np.where(ok, lo, mid + 1)
        return lo

    def _scan(self, spec_t: np.ndarray, st: _OSVDState) -> np.ndarray:
        """Candidate index per voxel by trying them in increasing order (Wu 2003)."""
        choice = np.full(spec_t.shape[1], self.thresholds.size - 1, np.int64)
        todo = np.arange(spec_t.shape[1])
        for p in range(self.thresholds.size - 1):
            if todo.size == 0:
                break
            sub = spec_t[:, todo]
            ok = self._meets_limit(self._residues(sub, np.full(todo.size, p), st))
            choice[todo[ok]] = p
            todo = todo[~ok]
        return choice

    def _solve(self, conc: np.ndarray, st: _OSVDState, shared: bool = False):
        """Deconvolve a block ``(m, N)``: returns flow, tmax, candidate index, residue or None.

        ``shared``: every row takes the largest threshold any non-zero row chose
        (:meth:`fit_shared`).
        """
        spec = cm.rfft_rows(conc, st.dft)
        # a new C-ordered (N+1, m) array: spec itself stays intact for the final pass
        spec_t = np.multiply(spec.T, st.inv_eig[:, None], order="C")
        lo = self._search(spec_t, st) if self.search == "bisect" else self._scan(spec_t, st)
        if shared:
            lo = shared_index(lo, conc)
        # final residues with voxels in rows: argmax along the last axis is faster
        spec *= st.inv_eig
        spec *= st.last_kept[None, :] >= lo[:, None].astype(np.int16)
        k = np.fft.irfft(spec, n=st.length, axis=1)
        flow, tmax = cm.peak_of_residue(k, st.dt, st.n_frames, circular=True)
        return flow, tmax, lo, (k[:, :st.n_frames] if self.keep_residue else None)

    def _fit_chunk(self, conc: np.ndarray, st: _OSVDState) -> DeconvFit:
        m = conc.shape[0]
        blocks = cm.row_blocks(m)
        if self._shared:        # fit_shared: one choice over the whole (small) chunk
            results = [self._solve(conc, st, shared=True)]
        elif self.threads == 1 or len(blocks) == 1:
            results = [self._solve(conc[sl], st) for sl in blocks]
        else:
            with ThreadPoolExecutor(min(self.threads, len(blocks))) as pool:
                results = list(pool.map(lambda sl: self._solve(conc[sl], st), blocks))
        flow, tmax, choice = (np.concatenate([r[i] for r in results]) for i in range(3))
        residue = np.concatenate([r[3] for r in results]) if self.keep_residue else None
        counts = np.bincount(choice, minlength=self.thresholds.size)
        return DeconvFit(flow=flow, tmax=tmax, failed=np.zeros(m, bool), residue=residue,
                         info={"threshold_counts": counts.tolist()})

    def merge_info(self, infos):
        counts, median = merge_choice_counts(infos, "threshold_counts", self.thresholds)
        return {"thresholds": self.thresholds.tolist(), "threshold_counts": counts,
                "threshold_median": median}
