"""MP-PCA: against a textbook implementation, closed-form error bounds, DIPY, and invariances."""

from __future__ import annotations

import numpy as np
import pytest

from perfmap.core.denoise.marchenko_pastur import mp_classify
from perfmap.core.denoise.mppca import mppca
from perfmap.core.denoise.patches import auto_patch, axis_starts, select_patches
from perfmap.errors import ParameterError


# -- textbook versions, written from the formulas (no vectorisation) ----------------

def paper_rank(lam, q):
    """Veraart 2016: the smallest p whose remaining eigenvalues have MP mean and width."""
    lam = np.sort(lam)[::-1]
    for p in range(lam.size):
        noise = lam[p:]
        if noise[0] - noise[-1] <= 4.0 * np.sqrt(noise.size / q) * noise.mean():
            return p, noise.mean()
    raise AssertionError("unreachable")


def dipy_keep(lam, N, T):
    """DIPY 1.12 genpca: classify with q = N, then keep lam >= (1 + sqrt(T/N))^2 sigma^2."""
    _, var = paper_rank(np.sort(lam)[::-1][:min(T, N - 1)], N)
    return int(np.sum(lam >= (1.0 + np.sqrt(T / N)) ** 2 * var)), var


def textbook_patch(a, variant="veraart2016"):
    """Denoise one N x T patch by SVD; returns (estimate, sigma^2, kept)."""
    N, T = a.shape
    mu = a.mean(axis=0)
    u, s, vt = np.linalg.svd(a - mu, full_matrices=False)
    if variant == "veraart2016":
        q = max(T, N - 1)
        keep, var = paper_rank(s[:min(T, N - 1)] ** 2 / q, q)
    else:
        keep, var = dipy_keep(s ** 2 / N, N, T)
    return (u[:, :keep] * s[:keep]) @ vt[:keep] + mu, var, keep


def low_rank(shape=(24, 24, 16), T=60, sigma=5.0, seed=0):
    """Rank-3 series (baseline, first pass, recirculation) with smooth maps, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, T)
    comps = np.stack([np.ones(T), np.exp(-((t - .35) / .08) ** 2), np.exp(-((t - .55) / .15) ** 2)])
    x, y, z = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    maps = np.stack([500 + 200 * np.sin(3 * x + 2 * y) * np.cos(2 * z),
                     100 * (1 + np.cos(4 * x) * np.sin(3 * y + z)), 80 * (x + y * z + 0.5)], -1)
    clean = maps @ comps
    return clean, clean + sigma * rng.standard_normal(clean.shape)


# -- the MP criterion ---------------------------------------------------------------

def test_mp_classify_equals_the_plain_loop():
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(300):
        n, q = rng.integers(5, 40), rng.integers(40, 200)
        y = rng.standard_normal((n, q))
        y[:rng.integers(0, 4)] *= rng.uniform(1, 6)            # a few spikes, some weak
        rows.append((np.linalg.eigvalsh(y @ y.T / q), q))
    for lam, q in rows:
        s2, p = mp_classify(lam, q)
        p_ref, s2_ref = paper_rank(lam, q)
        assert int(p) == p_ref and s2 == pytest.approx(s2_ref, rel=1e-12)
    # batched rows give the row-by-row answers
    lam = np.stack([r[0][-5:] for r in rows[:50]])
    s2, p = mp_classify(lam, 100)
    for i in range(50):
        assert (int(p[i]), s2[i]) == pytest.approx(paper_rank(lam[i], 100))


def test_mp_classify_pure_noise_is_unbiased():
    rng = np.random.default_rng(2)
    y = 3.0 * rng.standard_normal((200, 60, 200))
    lam = np.linalg.eigvalsh(np.matmul(y, y.transpose(0, 2, 1)) / 200)
    s2, p = mp_classify(lam, 200)
    assert np.sqrt(np.mean(s2)) == pytest.approx(3.0, rel=0.005)
    assert np.mean(p == 0) > 0.85


# -- one patch: the textbook SVD implementation ------------------------------------------

@pytest.mark.parametrize("T", [40, 150])     # T <= N - 1: time Gram; T > N - 1: voxel Gram
@pytest.mark.parametrize("variant", ["veraart2016", "dipy"])
def test_single_patch_equals_textbook_svd(T, variant):
    clean, noisy = low_rank(shape=(5, 5, 5), T=T, seed=3)
    res = mppca(noisy, patch=5, step=1, variant=variant)
    est, var, keep = textbook_patch(noisy.reshape(125, T), variant)
    np.testing.assert_allclose(res.data.reshape(125, T), est, rtol=2e-6)
    np.testing.assert_allclose(res.noise_map, np.sqrt(var), rtol=1e-6)
    assert res.info["patches"] == 1 and res.info["components_median"] == keep


# -- a low-rank series with white noise of known sigma ----------------------------------

def test_low_rank_sigma_rank_and_error_bound():
    """sigma within 10 %, rank 3 recovered, error within closed-form bounds.

    Truncating an N x T matrix of rank r plus white noise to its true rank
    leaves an error of about sigma^2 r (N + T - r) per matrix at high SNR
    (Gavish & Donoho 2014, IEEE Trans Inf Theory 60:5040); with the removed
    mean one more component: per element
    sigma^2 (r + 1)(N + T - r - 1) / (N T) = 0.097 sigma^2 (N = 125, T = 60,
    r = 3). Averaging overlapping patches can only lower it, but not below the
    voxel's own noise projected on the r-dimensional signal subspace, r / T =
    0.05 sigma^2. Measured: 0.064.
    """
    clean, noisy = low_rank()
    res = mppca(noisy)
    N, T, r = 125, 60, 3
    assert res.info["noise_sigma"] == pytest.approx(5.0, rel=0.10)
    assert np.nanmax(np.abs(res.noise_map / 5.0 - 1)) < 0.10
    assert res.info["components_median"] == 3
    ratio = np.mean((res.data - clean) ** 2) / 25.0
    assert r / T < ratio < (r + 1) * (N + T - r - 1) / (N * T)


def test_pure_noise_keeps_no_component():
    rng = np.random.default_rng(4)
    noisy = 200 + 2.0 * rng.standard_normal((20, 20, 12, 60))
    res = mppca(noisy)
    assert res.info["noise_sigma"] == pytest.approx(2.0, rel=0.02)
    assert res.info["components_median"] == 0
    # patch means only: the error is about sigma^2 / N per patch, less after averaging
    assert np.mean((res.data - 200) ** 2) < 4.0 / 125 * 1.5


# -- invariances --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    clean, noisy = low_rank(shape=(17, 15, 9), T=30, seed=5)
    mask = np.zeros(noisy.shape[:3], bool)
    mask[1:14, 2:15, 0:7] = True
    return noisy.astype(np.float32), mask


def test_chunks_threads_and_engines_give_the_same_result(small):
    noisy, mask = small
    ref = mppca(noisy, mask, chunk=128, threads=1)
    scale = np.abs(noisy).max()
    for kw in ({"chunk": 5}, {"chunk": 1000, "threads": 3}, {"chunk": 17, "threads": 2},
               {"engine": "numpy"}, {"engine": "numpy", "chunk": 9}):
        res = mppca(noisy, mask, **kw)
        np.testing.assert_allclose(res.data, ref.data, rtol=0, atol=4e-7 * scale, err_msg=str(kw))
        np.testing.assert_allclose(res.noise_map, ref.noise_map, rtol=1e-9, err_msg=str(kw))
        assert res.info == ref.info


def test_flipped_and_transposed_inputs_give_flipped_and_transposed_results(small):
    noisy, mask = small
    ref = mppca(noisy, mask)
    atol = 4e-7 * np.abs(noisy).max()
    flip = mppca(noisy[::-1, :, ::-1], mask[::-1, :, ::-1])
    np.testing.assert_allclose(flip.data[::-1, :, ::-1], ref.data, rtol=0, atol=atol)
    tr = mppca(noisy.transpose(1, 0, 2, 3), mask.transpose(1, 0, 2))
    np.testing.assert_allclose(tr.data.transpose(1, 0, 2, 3), ref.data, rtol=0, atol=atol)


def test_fortran_ordered_input(small):
    noisy, mask = small
    ref = mppca(noisy, mask)
    res = mppca(np.asfortranarray(noisy), np.asfortranarray(mask))
    np.testing.assert_array_equal(res.data, ref.data)


# -- the patch grid -------------------------------------------------------------------------

@pytest.mark.parametrize("patch, step", [((5, 5, 5), (1, 1, 1)), ((5, 5, 5), (2, 2, 2)),
                                         ((5, 5, 3), (4, 3, 2)), ((7, 3, 1), (6, 2, 1))])
def test_patches_cover_the_mask_and_mirror_with_the_image(patch, step):
    rng = np.random.default_rng(6)
    shape = (19, 14, 8)
    mask = rng.random(shape) < 0.05
    mask[0, 0, 0] = mask[-1, -1, -1] = True
    starts = select_patches(mask, patch, step)
    covered = np.zeros(shape, bool)
    for sx, sy, sz in starts:
        covered[sx:sx + patch[0], sy:sy + patch[1], sz:sz + patch[2]] = True
    assert covered[mask].all()
    flipped = select_patches(mask[::-1], patch, step)
    mirrored = starts.copy()
    mirrored[:, 0] = shape[0] - patch[0] - starts[:, 0]
    assert sorted(map(tuple, flipped)) == sorted(map(tuple, mirrored))


def test_step_one_centres_a_patch_on_every_mask_voxel():
    mask = np.zeros((12, 11, 9), bool)
    mask[2:10, 2:9, 2:7] = True
    centres = select_patches(mask, (5, 5, 5), (1, 1, 1)) + 2
    assert sorted(map(tuple, centres)) == sorted(zip(*np.nonzero(mask)))


def test_axis_starts_spacing_and_ends():
    for size in range(5, 40):
        for step in (1, 2, 3, 4):
            g = axis_starts(size, 5, step)
            assert g[0] == 0 and g[-1] == size - 5 and np.all(np.diff(g) <= step)
            assert np.array_equal(g, (size - 5 - g)[::-1])


def test_auto_patch_has_enough_voxels_for_the_frames():
    for T in (10, 60, 124, 125, 200, 343, 400):
        p = auto_patch((64, 64, 30), T)
        assert len(set(p)) == 1 and p[0] % 2 == 1 and p[0] ** 3 - 1 >= T
        assert p[0] == 5 or (p[0] - 2) ** 3 - 1 < T           # the smallest such cube
    assert auto_patch((64, 64, 3), 60) == (5, 5, 3)
    assert auto_patch((64, 64, 3), 100) == (7, 7, 3)


def test_step_too_large_for_the_patch():
    with pytest.raises(ParameterError, match="use at most 2"):
        mppca(np.zeros((9, 9, 9, 5)), patch=(5, 3, 5), step=3)


# -- DIPY -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def localpca():
    return pytest.importorskip("dipy.denoise.localpca", reason="DIPY (test extra) is not installed")


def test_dipy_variant_reproduces_dipy_mppca(localpca):
    """Same patches (step 1, mask 2+ voxels from the border), DIPY's rule: float32 rounding."""
    clean, noisy = low_rank(shape=(16, 15, 11), T=40, seed=7)
    mask = np.zeros(noisy.shape[:3], bool)
    mask[2:-2, 2:-2, 2:-2] = True
    with np.errstate(invalid="ignore"):
        ref, ref_sigma = localpca.mppca(noisy, mask=mask, patch_radius=2, return_sigma=True)
    res = mppca(noisy, mask, patch=5, step=1, variant="dipy")
    np.testing.assert_allclose(res.data[mask], ref[mask], rtol=2e-6)
    np.testing.assert_allclose(res.noise_map[mask], ref_sigma[mask], rtol=1e-6)
    # The paper's rule differs in the components kept near the MP edge and in the N - 1
    # normalisation: close but not equal (measured: median 7e-6, max 5e-4 relative, noise
    # SD 0.43 % higher; a regression guard).
    paper = mppca(noisy, mask, patch=5, step=1)
    rel = np.abs(paper.data[mask] / ref[mask] - 1)
    assert np.median(rel) < 1e-4 and 1e-5 < rel.max() < 1e-2
    ratio = np.median(paper.noise_map[mask] / ref_sigma[mask])
    assert ratio == pytest.approx(np.sqrt(125 / 124), abs=1e-3)


def test_dipy_threshold_departs_from_the_paper(localpca):
    """One patch whose weak fourth component the two rules classify differently.

    A centred 125 x 60 noise matrix keeps its singular vectors; its singular
    values get three strong signal values and a weak fourth one chosen where
    the paper's criterion and DIPY's edge ``(1 + sqrt(T/N))^2 sigma^2`` disagree.
    DIPY's output is then the reconstruction with DIPY's count, ours (paper)
    the one with the paper's count.
    """
    rng = np.random.default_rng(7)
    N, T = 125, 60
    z = rng.standard_normal((N, T))
    u, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    s[:3] = [200.0, 150.0, 100.0]

    def counts(w):
        sv = s.copy()
        sv[3] = w
        return paper_rank(sv ** 2 / (N - 1), N - 1)[0], dipy_keep(sv ** 2 / N, N, T)[0]

    grid = np.linspace(s[4], 1.5 * s[4], 600)
    differ = [w for w in grid if counts(w)[0] != counts(w)[1]]
    assert differ, "the two rules agree everywhere: nothing to document"
    s[3] = differ[len(differ) // 2]
    paper_k, dipy_k = counts(s[3])
    t = np.linspace(0, 1, T)
    patch = (u * s) @ vt + 1000.0 + 50.0 * np.sin(6 * t)
    image = patch.reshape(5, 5, 5, T)
    with np.errstate(invalid="ignore"):
        ref = localpca.mppca(image, patch_radius=2)
    ours_dipy = mppca(image, patch=5, step=1, variant="dipy")
    ours = mppca(image, patch=5, step=1)
    mu = patch.mean(axis=0)

    def recon(k):
        return ((u[:, :k] * s[:k]) @ vt[:k] + mu).reshape(image.shape)

    np.testing.assert_allclose(ref, recon(dipy_k), rtol=1e-9)
    np.testing.assert_allclose(ours_dipy.data, recon(dipy_k), rtol=2e-6)
    np.testing.assert_allclose(ours.data, recon(paper_k), rtol=2e-6)
    assert ours.info["components_median"] == paper_k != dipy_k
    assert np.abs(ours.data - ref).max() > 1e-3 * s[3] / np.sqrt(N * T)
