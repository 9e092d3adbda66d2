"""Marchenko-Pastur PCA denoising over overlapping local patches (Veraart et al. 2016).

For every patch of ``N`` voxels (default 5x5x5) and ``T`` frames:

1. form the ``N x T`` matrix ``A`` of the patch's curves and remove the mean
   of each frame over the patch (``mu``);
2. eigen-decompose the smaller Gram matrix (``A^T A``, ``T x T``, when
   ``T <= N - 1``; else ``A A^T``), eigenvalues ``lam_i = s_i^2 / q``;
3. estimate the noise variance ``sigma^2`` and the number of signal
   components ``P`` by the Marchenko-Pastur criterion
   (:func:`perfmap.core.denoise.marchenko_pastur.mp_classify`);
4. keep the ``P`` leading components: ``A_hat = A V_P V_P^T + mu``.

Each voxel's estimate is the weighted mean of the estimates of the patches
that contain it, with weights ``1 / (1 + P)`` (Manjon et al. 2013, eq. 3; what
DIPY does) or equal weights; its noise map is the same weighted mean of the
patches' ``sigma^2``, square-rooted.

Vectorisation and memory: the patches are processed ``chunk`` at a time in
x-major order (so a chunk touches a slab of the image): one gather of their
curves, one batched Gram product, one batched ``eigh`` (see below), the MP
criterion for all of them with cumulative sums, one batched reconstruction;
only the scatter-add of the estimates loops, over the ``N`` voxel offsets
of a patch, never over patches. Memory besides the input and the float32
output (which is also the accumulator): two float64 maps of the volume
(weights, noise); per batch being computed about ``chunk * (20 N T + 24 r^2)``
bytes, ``r = min(T, N)`` (30 MB for 128 patches of 125 voxels and 60 frames);
``chunk * 4 N T`` bytes per computed batch waiting to be added (at most
``threads + 1``); and one C-ordered copy of the input if it is not C-contiguous
or has NaN/Inf outside the mask.

Cost is dominated by ``eigh`` (about 0.35 ms per 60 x 60 float64 matrix on
one core), so ``step`` (the spacing of the patch grid) sets the speed:
``step = 1`` centres a patch on every mask voxel as DIPY does; ``step = 2``
computes about 8 times fewer patches, each voxel still averaging 8-27
overlapping estimates. ``numpy.linalg.eigh`` (LAPACK ``syevd``) starts
OpenBLAS worker threads that wait for a time slice whenever another process
holds a core: on a shared 2-core machine it ran 4 times slower (1.5 ms per
matrix) than single-threaded; its batched 60 x 60 x 125 Gram products are
also above OpenBLAS's threading threshold. ``torch.linalg.eigh`` and
``torch.bmm`` with torch limited to one thread per call do not start such
threads, and batches run on ``threads`` Python threads (the GIL is released),
so torch is used when importable. On the 128x128x20 x 60-frame phantom
(23 536 patches at ``step = 2``) that takes 9.1 s on one core, 4.7 s on two
(``benchmarks/bench_denoise.py``). Eigenvalues
and vectors are computed in float64: in float32 the noise eigenvalues of a
patch straddling the brain edge lose about ``1e-7 * lam_max / sigma^2``
(a few percent at SNR 50) of relative precision.

References
----------
Veraart J, Novikov DS, Christiaens D, Ades-Aron B, Sijbers J, Fieremans E.
    Denoising of diffusion MRI using random matrix theory. NeuroImage
    2016;142:394-406.
Manjon JV, Coupe P, Concha L, Buades A, Collins DL, Robles M. Diffusion
    weighted image denoising using overcomplete local PCA. PLoS One
    2013;8:e73021.
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import ParameterError, ShapeError
from .base import DenoiseResult, Denoiser, nonfinite_to_zero, positive_int
from .marchenko_pastur import mp_classify, mp_upper_edge
from .patches import PatchIndex, auto_patch, check_patch, check_step, select_patches
from .registry import register

VARIANTS = ("veraart2016", "dipy")
ENGINES = ("auto", "numpy", "torch")
WEIGHTS = ("rank", "uniform")
DEFAULT_STEP = 2
DEFAULT_CHUNK = 128


def mppca(series, mask=None, patch=None, step: int = DEFAULT_STEP, variant: str = "veraart2016",
          weights: str = "rank", chunk: int = DEFAULT_CHUNK, threads=None,
          engine: str = "auto") -> DenoiseResult:
    """Denoise a 4D series by Marchenko-Pastur PCA (see the module docstring).

    Parameters
    ----------
    series : array_like, shape (X, Y, Z, T)
        Real-valued series, time last (signal units). Not modified.
    mask : array_like of bool, shape (X, Y, Z), optional
        Voxels to denoise (default: all). Patches around them may include
        voxels outside (their non-finite values read as 0); outside voxels
        keep their input values.
    patch : int or sequence of 3 odd int, optional
        Patch size in voxels. Default: 5x5x5, grown (odd cube, clipped to the
        image) until ``N - 1 >= T`` as Veraart et al. advise.
    step : int
        Largest spacing of the patch grid in voxels (1: a patch centred on
        every mask voxel, as DIPY; at most ``p - 1``).
    variant : {"veraart2016", "dipy"}
        ``veraart2016``: keep the ``P`` components of the MP criterion, with
        ``N - 1`` degrees of freedom after the mean is removed (the paper).
        ``dipy``: DIPY 1.12's ``mppca`` rule (normalise by ``N``, keep the
        components above ``(1 + sqrt(T / N))^2 sigma^2``); DIPY also clips the
        result at 0 and zeroes voxels outside the mask, which this does not.
    weights : {"rank", "uniform"}
        Weights of overlapping patch estimates: ``1 / (1 + P)`` or equal.
    chunk : int
        Patches per batch (bounds memory, see the module docstring).
    threads : int, optional
        Batches computed in parallel (default: ``OMP_NUM_THREADS`` if set,
        else the usable CPUs, at most 4); estimates are added up in batch
        order, so the result does not depend on it.
    engine : {"auto", "numpy", "torch"}
        Gram products and eigen-solver: torch run single-threaded per call
        (``auto``, when torch is importable) or numpy (whose OpenBLAS threads
        slow down on busy machines, see the module docstring). Results agree
        to float32 rounding.

    Returns
    -------
    DenoiseResult
        ``data`` float32; ``noise_map`` the local noise standard deviation;
        ``info`` with ``noise_sigma`` (median of the noise map in the mask),
        ``components_median`` / ``components_max`` (retained components per
        patch), ``patches``, ``patch`` and ``step``.

    Raises
    ------
    ShapeError, InputDataError
        Bad series or mask (:func:`perfmap.core.denoise.base.check_series`).
    ParameterError
        A patch that does not fit the image, bad ``step``, ``variant``,
        ``weights`` or ``chunk``.

    Examples
    --------
    A rank-2 series plus noise of standard deviation 2:

    >>> rng = np.random.default_rng(0)
    >>> t = np.linspace(0, 1, 30)
    >>> maps = rng.uniform(50, 150, (16, 16, 8, 2))
    >>> clean = maps @ np.stack([np.ones_like(t), np.exp(-((t - .4) / .1) ** 2)])
    >>> res = mppca(clean + 2.0 * rng.standard_normal(clean.shape), step=1)
    >>> round(res.info["noise_sigma"], 1), res.info["components_median"]
    (2.0, 2.0)
    >>> rmse = float(np.sqrt(np.mean((res.data - clean) ** 2)))
    >>> rmse < 2.0 / 2.5
    True
    """
    return MPPCADenoiser(patch=patch, step=step, variant=variant, weights=weights, chunk=chunk,
                         threads=threads, engine=engine).denoise(series, mask)


def _choice(name, value, choices):
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _torch():
    """torch if importable (its LAPACK eigh runs single-threaded per call), else None."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of perfmap
        return None
    return torch


def _default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (the batch workers set it), else the usable CPUs, at most 4."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)


def _mm(x: np.ndarray, y: np.ndarray, torch) -> np.ndarray:
    """Batched float64 matrix product, with torch (one thread per call) when available.

    For the Gram products: OpenBLAS runs products of more than 2^18
    multiply-adds (60 x 60 x 125 is 450 000) on worker threads, which wait for
    a time slice whenever the cores are busy (measured 83 us per patch with
    numpy, 39 us with torch on a shared 2-core machine).
    """
    if torch is None:
        return np.matmul(x, y)
    return torch.matmul(torch.from_numpy(x), torch.from_numpy(y)).numpy()


def _eigh(gram: np.ndarray, torch):
    """Eigen-decomposition of a stack of symmetric float64 matrices (ascending)."""
    if torch is None:
        return np.linalg.eigh(gram)
    lam, vec = torch.linalg.eigh(torch.from_numpy(gram))
    return lam.numpy(), vec.numpy()


def _patch_estimates(block: np.ndarray, variant: str, torch=None):
    """Denoise a batch of patch matrices ``block`` (B, N, T).

    Returns the estimates (B, N, T) float64, ``sigma^2`` (B,) and the number
    of kept components (B,).
    """
    a = block.astype(np.float64)
    mu = a.mean(axis=1, keepdims=True)
    a -= mu
    _, N, T = a.shape
    time_side = T <= N - 1
    at = a.transpose(0, 2, 1)
    lam, vec = _eigh(_mm(at, a, torch) if time_side else _mm(a, at, torch), torch)
    lam, vec = lam[:, ::-1], vec[:, :, ::-1]          # decreasing
    r = min(T, N - 1)
    if variant == "veraart2016":
        q = max(T, N - 1)
        sigma2, kept = mp_classify(lam[:, :r] / q, q)
    else:  # DIPY 1.12 genpca(tau_factor=None)
        lam = lam / N
        sigma2, _ = mp_classify(lam[:, :r], N)
        tau = mp_upper_edge(sigma2, T / N)
        kept = np.count_nonzero(lam >= tau[:, None], axis=1)
    k = int(kept.max())
    if k == 0:
        return np.broadcast_to(mu, a.shape), sigma2, kept
    basis = vec[:, :, :k] * (np.arange(k) < kept[:, None])[:, None, :]
    bt = basis.transpose(0, 2, 1)     # products of k <= ~30 columns: numpy is faster here
    est = np.matmul(np.matmul(a, basis), bt) if time_side else np.matmul(basis, np.matmul(bt, a))
    est += mu
    return est, sigma2, kept


def _ordered(fn, items, threads):
    """``map(fn, items)`` in order, on ``threads`` threads, at most ``threads`` results waiting."""
    if threads == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        queue = deque()
        for item in items:
            queue.append(pool.submit(fn, item))
            if len(queue) > threads:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


@register("mppca")
class MPPCADenoiser(Denoiser):
    """Marchenko-Pastur PCA denoiser; parameters as :func:`mppca`.

    Examples
    --------
    >>> MPPCADenoiser(patch=5).params()
    {'patch': [5, 5, 5], 'step': 2, 'variant': 'veraart2016', 'weights': 'rank'}
    """

    def __init__(self, patch=None, step: int = DEFAULT_STEP, variant: str = "veraart2016",
                 weights: str = "rank", chunk: int = DEFAULT_CHUNK, threads=None,
                 engine: str = "auto"):
        self.patch = None if patch is None else check_patch(patch, (np.inf,) * 3)
        check_step(step, self.patch or (np.inf,) * 3)
        self.step = int(step)
        self.variant = _choice("variant", variant, VARIANTS)
        self.weights = _choice("weights", weights, WEIGHTS)
        self.chunk = positive_int("chunk", chunk)
        self.threads = positive_int("threads", threads, allow_none=True)
        self.engine = _choice("engine", engine, ENGINES)

    def params(self):
        """The parameters that change the result (not chunk, threads, engine)."""
        return {"patch": None if self.patch is None else list(self.patch), "step": self.step,
                "variant": self.variant, "weights": self.weights}

    def _denoise(self, series, mask):
        shape, T = series.shape[:3], series.shape[3]
        patch = auto_patch(shape, T) if self.patch is None else check_patch(self.patch, shape)
        if patch[0] * patch[1] * patch[2] < 2:
            raise ShapeError(f"the image {'x'.join(map(str, shape))} is too small for MP-PCA: "
                             "no patch of odd sides with 2 or more voxels fits")
        step = check_step(self.step, patch)
        starts = select_patches(mask, patch, step)
        index = PatchIndex(shape, patch)
        flat = np.reshape(np.ascontiguousarray(nonfinite_to_zero(series)), (-1, T))
        acc = np.zeros(flat.shape, np.float32)
        wsum = np.zeros(flat.shape[0], np.float64)
        s2sum = np.zeros(flat.shape[0], np.float64)
        kept_all = np.empty(len(starts), np.int64)
        torch = _torch() if self.engine in ("auto", "torch") else None
        if self.engine == "torch" and torch is None:  # pragma: no cover
            raise ParameterError("engine 'torch' needs PyTorch, which is not installed")
        threads = self.threads or _default_threads()
        batches = [starts[lo:lo + self.chunk] for lo in range(0, len(starts), self.chunk)]

        def work(batch):
            est, sigma2, kept = _patch_estimates(flat[index.rows(batch)], self.variant, torch)
            w = 1.0 / (1.0 + kept) if self.weights == "rank" else np.ones(len(batch))
            # (N, B, T) float32: one contiguous (B, T) block per voxel offset
            weighted = np.ascontiguousarray((est * w[:, None, None]).transpose(1, 0, 2),
                                            np.float32)
            return weighted, w, sigma2, kept

        previous = torch.get_num_threads() if torch is not None else None
        try:
            if torch is not None:
                torch.set_num_threads(1)   # parallel over batches instead (see module notes)
            lo = 0
            for batch, (weighted, w, sigma2, kept) in zip(batches,
                                                          _ordered(work, batches, threads)):
                kept_all[lo:lo + len(batch)] = kept
                lo += len(batch)
                _scatter(acc, wsum, s2sum, index.base(batch), index.offsets, weighted, w, sigma2)
        finally:
            if previous is not None:
                torch.set_num_threads(previous)
        return _finish(series, mask, acc, wsum, s2sum, kept_all, patch, step)


def _scatter(acc, wsum, s2sum, base, offsets, weighted, w, sigma2):
    """Add weighted patch estimates ``weighted`` (N, B, T) to the accumulators.

    One fancy-index addition per voxel offset of the patch: the patches of a
    batch have distinct start corners ``base``, so no row repeats within one
    addition.
    """
    ws2 = w * sigma2
    for k, off in enumerate(offsets):
        rows = base + off
        acc[rows] += weighted[k]
        wsum[rows] += w
        s2sum[rows] += ws2


def _finish(series, mask, acc, wsum, s2sum, kept, patch, step):
    """Weighted means inside the mask, the input outside; the noise map and the info."""
    m = mask.ravel()
    if not np.all(wsum[m] > 0):  # guaranteed by select_patches; a bug otherwise
        raise RuntimeError("MP-PCA left mask voxels without a patch")
    # in place, without fancy-indexed temporaries of the series' size
    acc /= np.where(wsum > 0, wsum, 1.0).astype(np.float32)[:, None]
    out = acc.reshape(series.shape)
    np.copyto(out, series, where=~mask[..., None], casting="unsafe")
    noise = np.full(m.shape, np.nan, np.float32)
    noise[m] = np.sqrt(s2sum[m] / wsum[m])
    info = {"noise_sigma": float(np.median(noise[m])),
            "components_median": float(np.median(kept)),
            "components_max": int(kept.max()), "patches": int(kept.size),
            "patch": list(patch), "step": list(step)}
    return DenoiseResult(out, info, noise.reshape(mask.shape))
