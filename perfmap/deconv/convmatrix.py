"""Discretisation of the indicator-dilution convolution, shared by the SVD and Tikhonov backends.

The tissue curve is the convolution of the arterial input function (AIF) with
the flow-scaled residue ``k = F R`` (Ostergaard et al. 1996, MRM 36:715)::

    C_t(t) = integral_0^t C_a(tau) k(t - tau) dtau

Sampled at ``t_i = i dt`` this becomes ``c = A k``. Two quadratures are offered
(parameter ``discretisation``), in two matrix geometries:

``"rectangle"``
    Rectangle rule, ``A_ij = dt a_(i-j)`` for ``j <= i`` (the discretisation
    of Ostergaard 1996). It treats ``k`` as constant over each frame.
``"linear"``
    Both ``C_a`` and ``k`` vary linearly between samples and the integral of
    their product is exact (Sourbron et al. 2007, Phys Med Biol 52:6761,
    "LIN"; the interior weights are those Ostergaard 1996 derived for
    linearly varying curves)::

        A_ij = dt/6 (a_(i-j-1) + 4 a_(i-j) + a_(i-j+1))    0 < j < i
        A_i0 = dt/6 (a_(i-1) + 2 a_i),   A_ii = dt/6 (2 a_0 + a_1)

    In the circulant geometry every column is interior, so the matrix is the
    AIF convolved with the kernel ``dt [1, 4, 1] / 6`` on the periodic grid.

Geometries:

*causal* (:func:`causal_matrix`)
    The lower-triangular ``N x N`` Toeplitz matrix of standard SVD (sSVD,
    Ostergaard 1996). It cannot represent a tissue bolus that arrives before
    the AIF.
*block-circulant* (:func:`circulant_kernel`)
    Both curves zero-padded to ``L >= 2N`` points (:func:`pad_length`) and the matrix made circulant
    (Wu et al. 2003, MRM 50:164). Time shifts become circular shifts,
    so truncation no longer depends on the arrival delay. A circulant matrix
    is diagonalised by the DFT (e.g. Golub & Van Loan, "Matrix
    computations"): its eigenvalues are ``FFT(b)`` of the first column
    ``b`` and its singular values ``|FFT(b)|``, so the backends work with
    real FFTs instead of an explicit SVD. A negative delay (tissue before the
    AIF) wraps to the end of the padded grid; :func:`peak_of_residue` reads
    grid points ``j >= N`` as the negative lags ``(j - L) dt``.

The default discretisation is ``"linear"``: on noisy closed-form phantoms
with the bolus arriving anywhere within a frame it reduced the mean MTT error
of oSVD and Tikhonov by 5-44 % relative to the rectangle rule (table in
``tests/test_deconv_closed_form.py``), and for the exponential residue on
noise-free data it roughly halves it.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

#: Quadratures accepted by every matrix-based backend.
DISCRETISATIONS = ("linear", "rectangle")
DEFAULT_DISCRETISATION = "linear"


def check_discretisation(name: str) -> str:
    """Return ``name`` if it is a known discretisation, else raise ParameterError."""
    if name not in DISCRETISATIONS:
        raise ParameterError(
            f"unknown discretisation {name!r}; choose one of: {', '.join(DISCRETISATIONS)}"
        )
    return name


def pad_length(n_frames: int) -> int:
    """Length ``L`` of the zero-padded grid: the smallest 5-smooth number ``>= 2N``.

    Wu et al. 2003 pad to ``L >= 2N`` so that the circular convolution does
    not alias in time; any longer zero padding is as valid. ``L`` is rounded
    up to a product of 2, 3 and 5 because the FFTs the backends run are 1.4
    to 2.8 times slower for lengths with a large prime factor (measured:
    ``2N`` = 116 = 4 x 29, 118 and 122 against 120; real data often have
    such frame counts once the non-steady-state frames are dropped).

    Examples
    --------
    >>> pad_length(60), pad_length(58), pad_length(59), pad_length(3)
    (120, 120, 120, 6)
    """
    if int(n_frames) < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    length = 2 * int(n_frames)
    while True:
        rest = length
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return length
        length += 1


def causal_matrix(aif, dt: float, discretisation: str = DEFAULT_DISCRETISATION) -> np.ndarray:
    """Lower-triangular convolution matrix ``A`` (N x N) with ``c = A k``.

    Parameters
    ----------
    aif : array_like, shape (N,)
        Arterial concentration per frame.
    dt : float
        Sampling interval in seconds; ``A`` is in AIF units times seconds.
    discretisation : {"linear", "rectangle"}
        Quadrature, see the module docstring (Ostergaard 1996; Sourbron 2007).

    Returns
    -------
    ndarray, shape (N, N), float64

    Examples
    --------
    >>> causal_matrix([0.0, 6.0, 6.0], 1.0, "linear")
    array([[0., 0., 0.],
           [2., 1., 0.],
           [3., 5., 1.]])
    """
    check_discretisation(discretisation)
    a = np.asarray(aif, dtype=np.float64)
    n = a.shape[0]
    i, j = np.indices((n, n))
    lag = i - j
    lower = lag >= 0
    if discretisation == "rectangle":
        return np.where(lower, dt * a[np.clip(lag, 0, n - 1)], 0.0)
    ap = np.concatenate([[0.0], a, [0.0]])        # ap[m + 1] = a_m, a_-1 = a_N = 0
    lc = np.clip(lag, 0, n - 1) + 1
    left, mid, right = ap[lc - 1], ap[lc], ap[lc + 1]
    interior = (left + 4.0 * mid + right) / 6.0
    first_col = (left + 2.0 * mid) / 6.0          # k_0: only the half hat after t = 0
    diagonal = (2.0 * mid + right) / 6.0          # j = i: only the half hat before t_i
    out = np.where(j == 0, first_col, np.where(lag == 0, diagonal, interior))
    out = np.where(lower, out, 0.0)
    out[0, 0] = 0.0                                # c(0) = 0: an empty integral
    return dt * out


def circulant_kernel(aif, dt: float, discretisation: str = DEFAULT_DISCRETISATION,
                     length: int | None = None) -> np.ndarray:
    """First column ``b`` of the block-circulant convolution matrix (Wu 2003).

    ``D_ij = b_((i - j) mod L)``. For ``"rectangle"`` ``b = dt a`` zero-padded to
    ``L``; for ``"linear"`` ``b_m = dt (a_(m-1) + 4 a_m + a_(m+1)) / 6`` with
    circular indices on the padded grid (the linear weights, made periodic).

    Parameters
    ----------
    aif : array_like, shape (N,)
    dt : float
        Sampling interval in seconds.
    discretisation : {"linear", "rectangle"}
    length : int, optional
        Padded length ``L``; default :func:`pad_length` ``(N)`` (``2N`` rounded up to a
        fast FFT length).

    Returns
    -------
    ndarray, shape (L,), float64

    Examples
    --------
    >>> circulant_kernel([0.0, 6.0, 0.0], 1.0, "linear")
    array([1., 4., 1., 0., 0., 0.])
    """
    check_discretisation(discretisation)
    a = np.asarray(aif, dtype=np.float64)
    n = a.shape[0]
    length = pad_length(n) if length is None else int(length)
    if length < n:
        raise ValueError(f"padded length {length} is shorter than the {n} frames")
    b = np.zeros(length)
    b[:n] = a
    if discretisation == "linear":
        b = (np.roll(b, 1) + 4.0 * b + np.roll(b, -1)) / 6.0
    return dt * b


def circulant_matrix(kernel) -> np.ndarray:
    """Dense circulant matrix ``D_ij = b_((i - j) mod L)`` (for checks; backends use FFTs)."""
    b = np.asarray(kernel, dtype=np.float64)
    idx = (np.arange(b.size)[:, None] - np.arange(b.size)[None, :]) % b.size
    return b[idx]


def rfft_weights(length: int) -> np.ndarray:
    """Multiplicity of each real-FFT bin in the full spectrum (1 for DC and Nyquist, else 2).

    With these weights ``sum_f w_f |X_f|^2 / L`` over the ``L // 2 + 1`` bins of
    ``rfft(x)`` equals ``sum_t x_t^2`` (Parseval).
    """
    w = np.full(length // 2 + 1, 2.0)
    w[0] = 1.0
    if length % 2 == 0:
        w[-1] = 1.0
    return w


def real_dft_matrix(n_frames: int, length: int) -> np.ndarray:
    """Matrix ``W`` (float32) with ``(x @ W).view(complex64) == rfft(x, n=length)``.

    Columns alternate the real and imaginary parts of the ``length // 2 + 1``
    bins of the real DFT of ``n_frames`` samples zero-padded to ``length``,
    ``X_f = sum_t x_t exp(-2 pi i f t / length)``, so a float32 product of
    rows with ``W`` is, byte for byte, the complex64 spectrum.

    Why a matrix product instead of an FFT: the forward transform is the only
    one NumPy's FFT does slowly for these sizes (2 ms per 2048 curves in
    float32, six times SciPy's), while importing :mod:`scipy.fft` costs about
    0.2 s of every ``perfmap compute``; the product (through
    :func:`blocked_matmul`) takes about as long as SciPy's FFT. The inverse
    transforms use :func:`numpy.fft.irfft`, as fast as SciPy's.
    """
    if not 0 < n_frames <= length:
        raise ValueError(f"need 0 < n_frames <= length, got {n_frames} and {length}")
    angle = (-2.0 * np.pi / length) * np.outer(np.arange(n_frames),
                                                np.arange(length // 2 + 1))
    w = np.empty((n_frames, 2 * (length // 2 + 1)), np.float32)
    w[:, 0::2] = np.cos(angle)
    w[:, 1::2] = np.sin(angle)
    return w


def rfft_rows(x: np.ndarray, dft_matrix: np.ndarray) -> np.ndarray:
    """Real DFT of each row of ``x`` (float32) with a :func:`real_dft_matrix`, as complex64."""
    return blocked_matmul(np.asarray(x, np.float32), dft_matrix).view(np.complex64)


#: Products of at most this many multiply-adds (rows x inner x outer) run on one
#: thread in OpenBLAS (its SMP threshold 65536 x GEMM_MULTITHREAD_THRESHOLD 4).
SINGLE_THREAD_GEMM = 262144

#: Rows the backends process at a time within a chunk.
SUB_BLOCK = 2048


def row_blocks(m: int, size: int = SUB_BLOCK) -> list[slice]:
    """Slices of at most ``size`` rows covering ``range(m)``.

    The backends work through a chunk in such blocks: their temporaries then
    stay small enough to be recycled by the allocator, where chunk-sized ones
    are fresh memory each time and page faults cost more than the arithmetic
    (measured 2-3x slower for Tikhonov with 16384-row temporaries).
    """
    return [slice(start, min(start + size, m)) for start in range(0, m, size)]


def blocked_matmul(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``x @ matrix`` as products of one fixed, small number of rows (the last zero-padded).

    Two reasons for the fixed, small row blocks:

    * BLAS picks different kernels for different row counts (GEMV for one
      row, edge kernels for a remainder), which changes the last bits of a
      row's result with the chunk it falls in. Products of one fixed shape
      (a multiple of 16 rows) give every row the same arithmetic, so results
      do not depend on ``chunk_size``.
    * Products small enough for OpenBLAS to run on one thread
      (:data:`SINGLE_THREAD_GEMM`) avoid its worker threads, which wait for a
      scheduler time slice whenever another process holds a core: on the
      shared 2-core machine 1024-row products made sSVD 10-30 times slower
      (0.04 s became up to 1.2 s for 145k voxels); small ones stay at 0.05 s.

    Parameters
    ----------
    x : ndarray, shape (m, n), float32
    matrix : ndarray, shape (n, p), float32

    Returns
    -------
    ndarray, shape (m, p), float32
    """
    m, n = x.shape
    p = matrix.shape[1]
    block = max(16, SINGLE_THREAD_GEMM // max(1, n * p) // 16 * 16)
    out = np.empty((m, p), np.float32)
    for start in range(0, m, block):
        part = x[start:start + block]
        if part.shape[0] < block:
            padded = np.zeros((block, n), np.float32)
            padded[:part.shape[0]] = part
            out[start:] = (padded @ matrix)[:part.shape[0]]
        else:
            np.matmul(part, matrix, out=out[start:start + block])
    return out


def oscillation_index(k, axis: int = -1) -> np.ndarray:
    """Wu's oscillation index of residues ``k`` (Wu et al. 2003, MRM 50:164).

    ``OI = (1/L) (1/max_t |k|) sum_(j=2)^(L-1) |k_j - 2 k_(j-1) + k_(j-2)|``,
    with ``L`` the number of points along ``axis``; 0 for an all-zero row.
    This is the reference implementation; the oSVD backend evaluates the same
    expression in place on float32 blocks.
    """
    k = np.moveaxis(np.asarray(k, dtype=np.float64), axis, -1)
    length = k.shape[-1]
    rough = np.abs(k[..., 2:] - 2.0 * k[..., 1:-1] + k[..., :-2]).sum(-1)
    peak = np.abs(k).max(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, rough / (length * np.where(peak > 0, peak, 1.0)), 0.0)


def peak_of_residue(k: np.ndarray, dt: float, n_frames: int, circular: bool, axis: int = 1):
    """Flow ``max_t k`` (1/s) and Tmax (s) of residues on the causal or circular grid.

    Parameters
    ----------
    k : ndarray
        Flow-scaled residues in 1/s, time along ``axis``: ``N`` points on the
        causal grid or ``L >= 2N`` on the circular one.
    dt : float
        Sampling interval in seconds.
    n_frames : int
        Number of acquired frames ``N``.
    circular : bool
        For the block-circulant grid the peak is searched over the whole grid,
        and a peak at ``j >= N`` is read as the negative lag ``(j - L) dt``: a
        tissue bolus that arrived before the AIF wraps round to the end of the
        grid (Wu 2003), and lags of ``N`` frames or more cannot be resolved by
        an ``N``-frame acquisition. A negative Tmax thus flags an AIF that
        arrives later than the tissue.
    axis : int
        Time axis of ``k`` (1 for voxels in rows, 0 for voxels in columns).

    Returns
    -------
    flow, tmax : ndarray, shape (m,), float64

    Examples
    --------
    >>> k = np.zeros((1, 8)); k[0, 7] = 2.0          # peak one frame before lag 0
    >>> peak_of_residue(k, 1.5, 4, circular=True)
    (array([2.]), array([-1.5]))
    """
    idx = np.argmax(k, axis=axis)
    flow = np.take_along_axis(k, np.expand_dims(idx, axis), axis=axis)
    flow = np.squeeze(flow, axis=axis).astype(np.float64)
    lag = idx.astype(np.float64)
    if circular:
        lag = np.where(idx >= n_frames, lag - k.shape[axis], lag)
    return flow, lag * dt
