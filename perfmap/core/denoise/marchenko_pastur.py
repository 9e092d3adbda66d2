r"""Marchenko-Pastur (MP) classification of PCA eigenvalues, for many patches at once.

Theory (Veraart et al. 2016, section 2; Marchenko & Pastur 1967)
----------------------------------------------------------------
Let ``Y`` be an ``r x q`` matrix (``r <= q``) of independent zero-mean noise of
variance ``sigma^2``. For large ``r, q`` at fixed ``gamma = r / q`` the
eigenvalues of ``Y Y^T / q`` follow the MP density::

    p(lam) = sqrt((lam_+ - lam) (lam - lam_-)) / (2 pi gamma sigma^2 lam),
    lam_+- = sigma^2 (1 +- sqrt(gamma))^2,

whose mean is ``sigma^2`` and whose width is ``lam_+ - lam_- = 4 sqrt(gamma) sigma^2``.
When a patch holds ``P`` signal components, its ``r`` eigenvalues sorted
decreasingly ``lam_1 >= ... >= lam_r`` are ``P`` signal values followed by
``r - P`` noise values whose bulk has ``gamma_P = (r - P) / q``. Veraart et al.
estimate ``sigma^2`` twice from the noise values, from their mean and from
their width, and take ``P`` as the smallest ``p`` at which the two agree::

    sigma2_mean(p)  = sum_{i > p} lam_i / (r - p)
    sigma2_width(p) = (lam_{p+1} - lam_r) / (4 sqrt((r - p) / q))
    P = min { p : sigma2_width(p) <= sigma2_mean(p) },   sigma^2 = sigma2_mean(P)

The denoised patch keeps its ``P`` leading components. This is the rule of the
paper and of MRtrix's ``dwidenoise`` (by the same authors; its ``Exp1``
estimator). Here the mean of each frame over the patch is removed first, which
leaves ``N - 1`` degrees of freedom to a patch of ``N`` voxels (Anderson 2003,
theorem 3.3.2): ``r = min(T, N - 1)``, ``q = max(T, N - 1)``.

DIPY's ``mppca`` (``dipy.denoise.localpca.genpca``, DIPY 1.12)
---------------------------------------------------------------
* The noise variance follows the paper: ``_pca_classifier`` tests
  ``L[c] - L[0] - 4 sqrt((c + 1) / N) var > 0``, which is
  ``sigma2_width(p) > sigma2_mean(p)`` multiplied by the positive
  ``4 sqrt(gamma)`` with ``gamma = (T - p) / N``: the same decision, so it is no
  mathematical error (DIPY issue #2666 asks for a division; that would change
  no decision). One difference: DIPY divides by the ``N`` voxels although the
  mean was removed, which leaves ``N - 1`` degrees of freedom, so its
  ``sigma^2`` is low by ``(N - 1) / N`` (0.8 % for 125 voxels).
* The components kept do not follow the paper. DIPY discards the ``P`` of the
  criterion and keeps every component with
  ``lam >= tau = (1 + sqrt(T / N))^2 sigma^2``, the asymptotic upper MP edge of
  a patch of pure noise. The paper's ``P`` is the right count, for two
  reasons. (1) ``gamma = T / N`` is the pure-noise value: with ``P`` signal
  components the noise eigenvalues obey Cauchy interlacing,
  ``lam_{P+1} <= `` the largest eigenvalue of an ``N x (T - P)`` noise matrix,
  whose edge is ``sigma^2 (1 + sqrt((T - P) / N))^2``; and ``sigma^2`` was
  estimated from the partition with ``P`` signal components, which ``tau``
  then overrides. (2) At finite ``N, T`` the edge is soft (the largest noise
  eigenvalue fluctuates on the Tracy-Widom scale, the smallest lies above
  ``lam_-``), so a fixed asymptotic cut passes noise components that the
  paper's test of the observed spread ``lam_{P+1} - lam_r`` rejects. The two
  effects have opposite signs; on 3000 simulated 125 x 60 patches per case
  (``benchmarks/bench_denoise.py``) DIPY's rule keeps a spurious component in
  13.7 % of pure-noise patches (paper: 10.1 %), finds the exact rank of three
  strong components in 82.5 % (84.5 %), and its error is 1-13 % larger
  (0.0937 vs 0.0926 sigma^2 per element; pure noise 0.0149 vs 0.0132).
  ``variant="dipy"`` of :func:`perfmap.core.denoise.mppca.mppca` reproduces
  DIPY to float32 rounding.

References
----------
Veraart J, Novikov DS, Christiaens D, Ades-Aron B, Sijbers J, Fieremans E.
    Denoising of diffusion MRI using random matrix theory. NeuroImage
    2016;142:394-406.
Marchenko VA, Pastur LA. Distribution of eigenvalues for some sets of random
    matrices. Math USSR Sbornik 1967;1:457-483.
Anderson TW. An Introduction to Multivariate Statistical Analysis, 3rd ed.
    Wiley 2003 (sample covariance of centred data: Wishart with N - 1 d.o.f.).
Manjon JV et al. Diffusion weighted image denoising using overcomplete local
    PCA. PLoS One 2013;8:e73021 (the hard threshold ``tau`` DIPY reuses).
Tracy CA, Widom H. On orthogonal and symplectic matrix ensembles. Commun Math
    Phys 1996;177:727-754 (fluctuations of the largest eigenvalue).
Horn RA, Johnson CR. Matrix Analysis, 2nd ed. Cambridge 2013, theorem 4.3.28
    (Cauchy interlacing for compressions).
"""

from __future__ import annotations

import numpy as np


def mp_classify(eigvals, q):
    """Noise variance and number of signal components of each row of eigenvalues.

    Parameters
    ----------
    eigvals : array_like, shape (..., r)
        Eigenvalues ``lam_i = s_i^2 / q`` (``s_i`` the singular values of the
        centred patch matrix), in any order; negative round-off is set to 0.
    q : float
        The larger dimension (``max(T, N - 1)``): the number of samples that
        normalise the eigenvalues and set ``gamma = (r - p) / q``.

    Returns
    -------
    sigma2 : ndarray, shape (...)
        Noise variance (squared signal units) from the mean of the noise
        eigenvalues.
    n_signal : ndarray of int64, shape (...)
        ``P``: the number of leading components that are signal.

    Notes
    -----
    See the module docstring (Veraart et al. 2016). The smallest ``p`` that
    satisfies the criterion is found for all rows at once with cumulative
    sums; the last ``p`` (one noise value) always satisfies it.

    Examples
    --------
    Pure noise: no signal component, ``sigma^2`` close to the true 4.0.

    >>> rng = np.random.default_rng(0)
    >>> y = 2.0 * rng.standard_normal((40, 400))
    >>> lam = np.linalg.eigvalsh(y @ y.T / 400)
    >>> s2, p = mp_classify(lam, 400)
    >>> int(p), bool(abs(s2 - 4.0) < 0.2)
    (0, True)
    """
    lam = np.sort(np.maximum(np.asarray(eigvals, dtype=np.float64), 0.0), axis=-1)[..., ::-1]
    r = lam.shape[-1]
    m = np.arange(r, 0, -1, dtype=np.float64)          # noise count r - p, p = 0 .. r-1
    tail = np.cumsum(lam[..., ::-1], axis=-1)[..., ::-1]  # sum_{i >= p} lam_i
    sigma2_mean = tail / m
    width = lam - lam[..., -1:]
    ok = width <= 4.0 * np.sqrt(m / float(q)) * sigma2_mean
    n_signal = np.argmax(ok, axis=-1)
    sigma2 = np.take_along_axis(sigma2_mean, n_signal[..., None], axis=-1)[..., 0]
    return sigma2, n_signal.astype(np.int64)


def mp_upper_edge(sigma2, gamma):
    """Upper edge ``sigma^2 (1 + sqrt(gamma))^2`` of the MP bulk (Marchenko & Pastur 1967).

    DIPY's ``mppca`` keeps the components above this edge with ``gamma = T / N``.

    Examples
    --------
    >>> float(mp_upper_edge(1.0, 0.25))
    2.25
    """
    return np.asarray(sigma2, dtype=np.float64) * (1.0 + np.sqrt(gamma)) ** 2
