"""Tikhonov-regularised deconvolution with a per-voxel weight.

Tikhonov regularisation minimises ``||A k - c||^2 + mu^2 ||D k||^2``: with
``D`` the identity this is the standard form of Calamante et al. 2003 (MRM
50:1237); with a difference operator it is the general form (Hansen 1998,
Ch. 2.1 and 5), which penalises roughness instead of size. The matrix is the
block-circulant one of oSVD (Wu et al. 2003, MRM 50:164) on the zero-padded
``L >= 2N`` grid (:func:`~perfmap.deconv.convmatrix.pad_length`), for the
same two reasons: the result does not depend on the tracer arrival delay,
and the matrix is diagonalised by the DFT. A circular difference operator is
diagonalised by the same DFT (:func:`penalty_spectrum`: ``|D_f| = 2 sin(pi f
/ L)`` for the first difference), so the solution is a filter per frequency
bin (Hansen 1998, Ch. 4, filter factors)::

    K_f = phi_f C_f / B_f,     phi_f = |B_f|^2 / (|B_f|^2 + mu^2 |D_f|^2)

with ``C = rfft(c)`` and ``B = rfft(b)`` of the padded curves (see
:mod:`perfmap.deconv.convmatrix`). A difference penalty leaves ``f = 0``
free: the residue's area, ``C_0 / B_0`` (the CBV of the integral ratio), is
never shrunk, only its roughness.

The weight ``mu`` is chosen per voxel from a logarithmic grid, by one of four
criteria evaluated for every ``mu`` and every voxel of a chunk at once:

``"oi"`` (default)
    The smallest weight whose residue has an oscillation index below
    ``oi_limit`` (0.095): Wu's oSVD criterion, applied to the Tikhonov
    family instead of the truncation thresholds. Searched by bisection over
    the grid (six residues for 48 weights; it agreed with the exhaustive scan
    for all 576 noisy closed-form curves of the tests).
``"gcv"``
    Generalised cross-validation (Golub, Heath & Wahba 1979; for perfusion
    Sourbron et al. 2004)::

        G(mu) = ||A k_mu - c||^2 / (L - sum_i phi_i)^2
``"rgcv"``
    Robust GCV (Lukas 2006), which guards GCV against its known failure, a
    far too small weight for some noise realisations::

        R(mu) = (gamma + (1 - gamma) mu_2(mu)) G(mu),   mu_2 = sum_i phi_i^2 / L

    ``mu_2`` falls as ``mu`` rises, so the factor penalises under-smoothing;
    ``gamma = 1`` is GCV. ``gamma = 0.3`` was picked among 0.1-0.5 on
    perfmap's phantoms as a compromise: smaller values smooth more (best at
    SNR 10, worst at SNR 50), 0.4-0.5 left more single outlier voxels (up to
    14-30 times the expected CBF; 0.3: one subject's at 7.7 times).
``"lcurve"`` (as in Calamante 2003)
    The corner of the L-curve ``(log ||A k_mu - c||, log ||D k_mu||)``: the
    point of maximum curvature (Hansen & O'Leary 1993)::

        kappa = (x' y'' - x'' y') / (x'^2 + y'^2)^(3/2),   x = log rho, y = log eta

    with derivatives along ``log mu`` by central differences at the interior
    points of the grid.

Because ``U`` is square (no residual outside its range) both norms are sums
over frequency bins::

    rho(mu) = ||A k_mu - c||^2 = sum_f w_f (1 - phi_f)^2 |C_f|^2 / L
    eta(mu) = ||D k_mu||^2     = sum_f w_f |D_f|^2 phi_f^2 |C_f / B_f|^2 / L

with ``w_f`` the bin multiplicities, so for a chunk they are two matrix
products of the power spectra ``(m, N+1)`` with ``(N+1, n_mu)`` tables that
depend only on the AIF.

Why the first difference and the oscillation index (the default since the
ratio-bias study, ``benchmarks/ratio_bias.py``): standard-form GCV, the
earlier default, chose larger weights in low-CNR white matter than in the
tumour, so white matter was smoothed more and every tumour/white-matter
ratio came out too high; on perfmap's phantoms (6 subjects per cell,
48 x 48 x 6, tumour and NAWM alike) the white-matter CBF was 34 / 49 / 56 %
low at SNR 50 / 20 / 10 against 24 / 25 / 34 % in the tumour, its median
weight twice the tumour's, and the voxel-mean ratio +15 / +46 / +43 % off
(first difference with the oscillation index: +9 / +8 / -1 %, oSVD +9 / +7
/ +3 %). On 64 x 64 x 12 phantoms (6 subjects per SNR, exponential residue)
the voxel median of the white-matter-normalised CBF error was 16 / 25 / 38 %
with standard-form GCV, 11 / 17 / 25 % with the new default and 10 / 16 /
24 % with oSVD; the MTT error 57 / 92 / 158 %, 36 / 50 / 66 % and 39 / 54 /
72 %. The oscillation index alone on the standard form measured 10.8 / 16.7
/ 26.0 % (CBF) and 46 / 70 / 112 % (MTT): it is the difference penalty, which
smooths without shrinking the residue toward zero, that brings MTT below
oSVD's. The second difference measured CBF errors 9 % above oSVD's at SNR
50 and was not taken. On the reference data: OSIPI DSC curves median CBF
error 10.8 % (GCV 13.6 %; largest 30.3 %, on the CNR-12 case, GCV 25.8 %),
Bezier DSC DRO grey/white CBF contrast within 1.3 % (GCV +22 to +27 %).

On whole images the L-curve picks a spurious corner at a tiny weight in a
few voxels per region, whose huge CBF ruins the ROI means the grading ratios
are made of (perfmap's phantom at SNR 20, seeds 0-3: white-matter mean CBF
+161 % with the L-curve, -17 % with GCV). GCV has the same failure, less
often (largest white-matter CBF of a subject 2-52 times the expected value
on 6 phantoms per SNR); robust GCV removes most of it but smooths low-signal
tissue more (Bezier DRO grey/white contrast +49 to +67 %). The three remain
available (``--param criterion=gcv order=0`` is the earlier default).

References
----------
Calamante F, Gadian DG, Connelly A. Quantification of bolus-tracking MRI:
    improved characterization of the tissue residue function using Tikhonov
    regularization. MRM 2003;50:1237-1247.
Hansen PC, O'Leary DP. The use of the L-curve in the regularization of
    discrete ill-posed problems. SIAM J Sci Comput 1993;14:1487-1503.
Golub GH, Heath M, Wahba G. Generalized cross-validation as a method for
    choosing a good ridge parameter. Technometrics 1979;21:215-223.
Lukas MA. Robust generalized cross-validation for choosing the
    regularization parameter. Inverse Problems 2006;22:1883-1902.
Hansen PC. Rank-deficient and discrete ill-posed problems. SIAM 1998.
Sourbron S, Luypaert R, Van Schuerbeek P, Dujardin M, Stadnik T. Choice of
    the regularization parameter for perfusion quantification with MRI.
    Phys Med Biol 2004;49:3307-3324.
Wu O et al. Tracer arrival timing-insensitive technique for estimating flow
    in MR perfusion-weighted imaging using singular value decomposition with
    a block-circulant deconvolution matrix. MRM 2003;50:164-174.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from . import convmatrix as cm
from .base import Backend, DeconvFit, merge_choice_counts
from .registry import register
from .shared import SharedChoice, shared_index

#: Criteria for the per-voxel regularisation weight.
CRITERIA = ("oi", "gcv", "rgcv", "lcurve")
#: Orders of the penalty operator: 0 = identity (standard form), 1 = first, 2 = second difference.
ORDERS = (0, 1, 2)


@dataclass
class _TikState:
    resid: np.ndarray       # (N+1, n_mu) float32: w_f (1 - phi_f)^2
    tables: np.ndarray      # (N+1, 2 n_mu) float32: resid, then w_f d_f^2 phi_f^2 / |B_f|^2
    gcv_den: np.ndarray     # (n_mu,) float32: (L - sum_f w_f phi_f)^2, / the RGCV factor
    filters: np.ndarray     # (n_mu, N+1) complex64: phi_f / FFT(b)_f
    dft: np.ndarray         # (N, L + 2) float32: the real DFT as a matrix (cm.real_dft_matrix)
    length: int
    dt: float
    n_frames: int


def penalty_spectrum(length: int, order: int) -> np.ndarray:
    """``|D_f|^2`` of the circular difference operator of ``order`` on the real-FFT bins.

    The first difference ``(D k)_j = k_j - k_(j-1)`` on the periodic grid of
    ``length`` points has the eigenvalues ``1 - exp(-2 pi i f / L)``, of modulus
    ``2 sin(pi f / L)``; the second difference has their squares. The result is
    scaled to a largest value of 1, so that ``mu`` keeps its meaning as a
    fraction of ``s_max`` whatever the order. Order 0 (the identity) gives ones.

    Examples
    --------
    >>> penalty_spectrum(8, 1).round(3).tolist()
    [0.0, 0.146, 0.5, 0.854, 1.0]
    >>> penalty_spectrum(8, 0).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    if order == 0:
        return np.ones(length // 2 + 1)
    d2 = (2.0 * np.sin(np.pi * np.arange(length // 2 + 1) / length)) ** (2 * order)
    return d2 / d2.max()


def _meets_oi(k: np.ndarray, limit: float) -> np.ndarray:
    """``OI < limit`` for each column of ``k`` ``(L, m)`` (Wu 2003; an all-zero column passes).

    Time runs down the first axis, as in oSVD: the second differences and the
    reductions are then long vectorised row operations.
    """
    d = k[2:] + k[:-2]
    d -= k[1:-1]
    d -= k[1:-1]
    np.abs(d, out=d)
    rough = d.sum(axis=0)
    peak = np.maximum(k.max(axis=0), -k.min(axis=0))
    return (rough < limit * k.shape[0] * peak) | (peak == 0)


@register("tikhonov")
class Tikhonov(SharedChoice, Backend):
    """Tikhonov deconvolution on the circulant grid, weight chosen per voxel.

    Parameters
    ----------
    criterion : {"oi", "gcv", "rgcv", "lcurve"}, default "oi"
        How each voxel's weight is chosen: the smallest weight whose residue
        has an oscillation index below ``oi_limit`` (the oSVD criterion of
        Wu 2003 applied to the Tikhonov family), generalised cross-validation,
        robust GCV (Lukas 2006) or the L-curve corner (Calamante 2003); see
        the module notes.
    order : {0, 1, 2}, default 1
        Penalty ``||D k||^2``: 0 the identity (standard form, Calamante
        2003), 1 the first and 2 the second difference (general form, Hansen
        1998). A difference penalty leaves the residue's area, hence CBV,
        unpenalised and smooths instead of shrinking; see the module notes.
    oi_limit : float, default 0.095
        Oscillation-index limit of ``"oi"`` (Wu 2003, as for oSVD).
    gamma : float, default 0.3
        Robustness parameter of ``"rgcv"``, in (0, 1]; 1 gives GCV.
    mu_range : (float, float), default (1e-3, 1.0)
        Smallest and largest regularisation weight ``mu``, as fractions of the
        largest singular value ``s_max`` of the circulant matrix (the penalty
        spectrum is scaled to a largest value of 1, :func:`penalty_spectrum`).
    n_mu : int, default 48
        Number of weights on a logarithmic grid over ``mu_range`` (about 16
        per decade, so neighbouring weights differ by 15 %).
    discretisation : {"linear", "rectangle"}, default "linear"
        Quadrature of the convolution integral (:mod:`perfmap.deconv.convmatrix`).
    chunk_size, keep_residue
        See :class:`perfmap.deconv.Backend`.

    Notes
    -----
    Noise-free curves drive the weight towards the small end of the grid,
    which therefore bounds the resolution. With ``"oi"`` the grid is searched
    by bisection (six residues for 48 weights), which assumes, as oSVD does,
    that the oscillation index falls as the weight rises. Tmax is read on the
    circular grid as for oSVD (negative when the tissue bolus precedes the
    AIF); ``residue`` (when kept) holds lags ``0 .. (N-1) dt``. ``info``
    holds the weight grid (fractions of ``s_max``), how many voxels chose
    each, and the median.

    Examples
    --------
    >>> import numpy as np
    >>> from perfmap.core.curves import gamma_variate
    >>> aif = gamma_variate(np.arange(60) * 1.5, t0=10)
    >>> fit = Tikhonov().fit(np.zeros((1, 60)), aif, 1.5)
    >>> float(fit.flow[0]), bool(fit.failed[0])
    (0.0, False)
    """

    def __init__(self, criterion: str = "oi", order: int = 1, mu_range=(1e-3, 1.0),
                 n_mu: int = 48, gamma: float = 0.3, oi_limit: float = 0.095,
                 discretisation: str = cm.DEFAULT_DISCRETISATION,
                 chunk_size: int = 16384, keep_residue: bool = False):
        super().__init__(chunk_size=chunk_size, keep_residue=keep_residue)
        if criterion not in CRITERIA:
            raise ParameterError(
                f"unknown criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
        self.criterion = criterion
        try:
            order_f = float(order)
        except (TypeError, ValueError):
            order_f = None
        if order_f not in ORDERS:
            raise ParameterError(f"order must be 0, 1 or 2, got {order!r}")
        self.order = int(order_f)
        try:
            self.gamma = float(gamma)
        except (TypeError, ValueError):
            raise ParameterError(f"gamma must be a number in (0, 1], got {gamma!r}") from None
        if not 0.0 < self.gamma <= 1.0:
            raise ParameterError(f"gamma must be a number in (0, 1], got {gamma!r}")
        try:
            self.oi_limit = float(oi_limit)
        except (TypeError, ValueError):
            raise ParameterError(f"oi_limit must be a positive number, got {oi_limit!r}") \
                from None
        if not (np.isfinite(self.oi_limit) and self.oi_limit > 0):
            raise ParameterError(f"oi_limit must be a positive number, got {oi_limit!r}")
        try:
            lo, hi = (float(v) for v in mu_range)
        except (TypeError, ValueError):
            raise ParameterError(f"mu_range must be two numbers, got {mu_range!r}") from None
        if not (0 < lo < hi and np.isfinite(hi)):
            raise ParameterError(f"mu_range must satisfy 0 < low < high, got {mu_range!r}")
        if int(n_mu) < 3:
            raise ParameterError(f"n_mu must be at least 3, got {n_mu!r}")
        self.mu_range = (lo, hi)
        self.n_mu = int(n_mu)
        self.discretisation = cm.check_discretisation(discretisation)
        self.mu_grid = np.geomspace(lo, hi, self.n_mu)

    def params(self) -> dict:
        out = {"criterion": self.criterion, "order": self.order,
               "mu_range": list(self.mu_range), "n_mu": self.n_mu,
               "discretisation": self.discretisation}
        if self.criterion == "rgcv":
            out["gamma"] = self.gamma
        if self.criterion == "oi":
            out["oi_limit"] = self.oi_limit
        return out

    def prepare(self, aif, dt, n_frames):
        b = cm.circulant_kernel(aif, dt, self.discretisation)
        length = b.size
        eig = np.fft.rfft(b)
        s2 = np.abs(eig) ** 2
        d2 = penalty_spectrum(length, self.order)[:, None]
        mu2 = (self.mu_grid * np.sqrt(s2.max())) ** 2
        denom = s2[:, None] + mu2[None, :] * d2
        # a bin the penalty leaves free (the mean for order >= 1) and the AIF does not
        # carry has 0 / 0: it is not part of the solution
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(denom > 0, s2[:, None] / denom, 0.0)            # (N+1, n_mu)
            inv = np.where(denom > 0, 1.0 / denom, 0.0)
        w = cm.rfft_weights(length)[:, None]
        resid = w * (1.0 - phi) ** 2
        norm = w * d2 * s2[:, None] * inv ** 2                         # w d^2 phi^2 / |B|^2
        gcv_den = (length - (w * phi).sum(axis=0)) ** 2
        if self.criterion == "rgcv":
            # R = (gamma + (1 - gamma) mu_2) G: folded into G's denominator (Lukas 2006)
            gcv_den /= self.gamma + (1.0 - self.gamma) * (w * phi ** 2).sum(axis=0) / length
        filters = (np.conj(eig)[:, None] * inv).T                      # phi / B, (n_mu, N+1)
        return _TikState(resid.astype(np.float32),
                         np.concatenate([resid, norm], axis=1).astype(np.float32),
                         gcv_den.astype(np.float32),
                         np.ascontiguousarray(filters, np.complex64),
                         cm.real_dft_matrix(n_frames, length), length, dt, n_frames)

    def _choices(self, spec: np.ndarray, st: _TikState) -> np.ndarray:
        """Index into the ``mu`` grid for each row of the spectra ``spec`` ``(m, N+1)``."""
        if self.criterion == "oi":
            return self._oi_search(spec, st)
        return self._choose(spec.real ** 2 + spec.imag ** 2, st)

    def _residues(self, spec: np.ndarray, choice: np.ndarray, st: _TikState) -> np.ndarray:
        return np.fft.irfft(spec * st.filters[choice], n=st.length, axis=1)

    def _oi_search(self, spec: np.ndarray, st: _TikState) -> np.ndarray:
        """Smallest weight with ``OI < oi_limit`` per row, by bisection over the grid."""
        m = spec.shape[0]
        spec_t = np.ascontiguousarray(spec.T)                  # (N+1, m): time-first residues
        filters_t = np.ascontiguousarray(st.filters.T)         # (N+1, n_mu)
        lo = np.zeros(m, np.int64)
        hi = np.full(m, self.n_mu - 1, np.int64)
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            k_t = np.fft.irfft(spec_t * filters_t[:, mid], n=st.length, axis=0)
            ok = _meets_oi(k_t, self.oi_limit)
            active = lo < hi
            hi = np.where(active & ok, mid, hi)
            lo = np.where(active & ~ok, mid + 1, lo)
        return lo

    def _solve(self, conc: np.ndarray, st: _TikState, shared: bool = False):
        spec = cm.rfft_rows(conc, st.dft)
        choice = self._choices(spec, st)
        if shared:
            choice = shared_index(choice, conc)
        k = self._residues(spec, choice, st)
        flow, tmax = cm.peak_of_residue(k, st.dt, st.n_frames, circular=True)
        return flow, tmax, choice, (k[:, :st.n_frames] if self.keep_residue else None)

    def _fit_chunk(self, conc: np.ndarray, st: _TikState) -> DeconvFit:
        if self._shared:        # fit_shared: one choice over the whole (small) chunk
            parts = [self._solve(conc, st, shared=True)]
        else:
            parts = [self._solve(conc[sl], st) for sl in cm.row_blocks(len(conc))]
        flow, tmax, choice = (np.concatenate([p[i] for p in parts]) for i in range(3))
        residue = np.concatenate([p[3] for p in parts]) if self.keep_residue else None
        counts = np.bincount(choice, minlength=self.n_mu)
        return DeconvFit(flow=flow, tmax=tmax, failed=np.zeros(len(conc), bool),
                         residue=residue, info={"mu_counts": counts.tolist()})

    def _choose(self, power: np.ndarray, st: _TikState) -> np.ndarray:
        """GCV, RGCV or L-curve index into the ``mu`` grid from the power spectra ``(m, N+1)``."""
        # np.einsum without optimisation runs its own loops rather than a BLAS product:
        # these (m, N+1) x (N+1, n_mu) products are too small to gain from BLAS threads,
        # which stall when the other cores are busy, and each row's result is then
        # independent of the rows around it (chunk-size invariance)
        if self.criterion in ("gcv", "rgcv"):
            rho = np.einsum("mf,fk->mk", power, st.resid, optimize=False)
            return np.argmin(rho / st.gcv_den, axis=1)
        both = np.einsum("mf,fk->mk", power, st.tables, optimize=False)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = np.log(both[:, :self.n_mu])
            y = np.log(both[:, self.n_mu:])
            # central differences at the interior grid points; a common factor on the
            # first derivatives only rescales kappa, so the grid spacing is left out
            x1 = x[:, 2:] - x[:, :-2]
            y1 = y[:, 2:] - y[:, :-2]
            x2 = x[:, 2:] + x[:, :-2]
            x2 -= 2.0 * x[:, 1:-1]
            y2 = y[:, 2:] + y[:, :-2]
            y2 -= 2.0 * y[:, 1:-1]
            num = x1 * y2
            num -= x2 * y1
            den = x1 * x1
            den += y1 * y1
            kappa = num / (den * np.sqrt(den))
        # an all-zero curve has no L-curve (kappa all NaN): any weight gives k = 0
        kappa[~np.isfinite(kappa)] = -np.inf
        return np.argmax(kappa, axis=1) + 1

    def merge_info(self, infos):
        counts, median = merge_choice_counts(infos, "mu_counts", self.mu_grid)
        return {"mu_grid": self.mu_grid.tolist(), "mu_counts": counts, "mu_median": median}
