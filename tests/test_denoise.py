"""The denoiser registry, the contract every denoiser keeps, bad input, and Gaussian smoothing."""

from __future__ import annotations

import doctest
import importlib
import json

import numpy as np
import pytest

from perfmap.core.denoise import DenoiseResult, available, denoise, get_denoiser
from perfmap.core.denoise.base import mad_noise_sigma
from perfmap.core.denoise.gaussian import GaussianDenoiser, gaussian_smooth
from perfmap.errors import InputDataError, ParameterError, PerfmapError, ShapeError

MODULES = ("perfmap.core.denoise", "perfmap.core.denoise.base", "perfmap.core.denoise.registry",
           "perfmap.core.denoise.gaussian", "perfmap.core.denoise.mppca",
           "perfmap.core.denoise.marchenko_pastur", "perfmap.core.denoise.patches")


def noisy_series(shape=(14, 13, 7), T=40, sigma=2.0, seed=0, dtype=np.float32):
    """Smooth rank-2 signal (baseline + bolus) plus white noise; returns (clean, noisy)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, T)
    x, y, z = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    s0 = 300 + 20 * np.sin(x + y) * np.cos(z)       # spatially smooth, so that
    amp = 60 * (1 + 0.3 * x * y)                     # smoothing reduces the error
    clean = s0[..., None] - amp[..., None] * np.exp(-((t - 0.4) / 0.12) ** 2)
    return clean, (clean + sigma * rng.standard_normal(clean.shape)).astype(dtype)


@pytest.fixture(scope="module")
def data():
    clean, noisy = noisy_series()
    mask = np.zeros(noisy.shape[:3], bool)
    mask[2:12, 3:11, 1:6] = True
    return clean, noisy, mask


# -- registry -----------------------------------------------------------------

def test_registry_lists_builtins():
    assert available() == ["cae", "dae", "gaussian", "mppca"]
    assert get_denoiser("gaussian") is GaussianDenoiser
    assert get_denoiser("mppca").name == "mppca"


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ParameterError, match=r"unknown denoising method 'nlm'; choose one of: "
                                             r"cae, dae, gaussian, mppca$"):
        get_denoiser("nlm")
    with pytest.raises(ParameterError):
        denoise(np.zeros((4, 4, 4, 5)), method="none")


def test_register_rejects_a_second_class_under_a_taken_name():
    from perfmap.core.denoise.registry import register

    with pytest.raises(ValueError, match="already registered"):
        @register("gaussian")
        class Other(GaussianDenoiser):
            pass


@pytest.mark.parametrize("name, bad", [("gaussian", {"sigma": -1}), ("gaussian", {"sigma": (1, 2)}),
                                       ("gaussian", {"truncate": 0}), ("mppca", {"patch": 4}),
                                       ("mppca", {"patch": (5, 5)}), ("mppca", {"step": 0}),
                                       ("mppca", {"patch": 5, "step": 5}),
                                       ("mppca", {"variant": "mrtrix"}),
                                       ("mppca", {"weights": "x"}),
                                       ("mppca", {"chunk": 0}), ("mppca", {"threads": 1.5}),
                                       ("mppca", {"engine": "cupy"}),
                                       ("dae", {"chunk": 0}), ("dae", {"threads": True}),
                                       ("cae", {"chunk": -3}), ("cae", {"threads": "2"})])
def test_bad_parameters_raise_at_construction(name, bad):
    with pytest.raises(ParameterError) as exc:
        get_denoiser(name)(**bad)
    assert "\n" not in str(exc.value)


# -- the contract, for every registered denoiser --------------------------------

@pytest.mark.parametrize("name", available())
def test_contract(name, data):
    clean, noisy, mask = data
    before = noisy.copy()
    res = get_denoiser(name)().denoise(noisy, mask)
    assert isinstance(res, DenoiseResult)
    assert res.data.shape == noisy.shape and res.data.dtype == np.float32
    assert np.array_equal(noisy, before)                     # input untouched
    assert res.data is not noisy and not np.shares_memory(res.data, noisy)
    assert np.array_equal(res.data[~mask], noisy[~mask])     # outside the mask: unchanged
    assert np.all(np.isfinite(res.data))
    info = json.loads(json.dumps(res.info))                  # JSON-serialisable
    assert info["method"] == name
    # the noise estimate is the true 2.0 within 10 %
    assert info["noise_sigma"] == pytest.approx(2.0, rel=0.10)
    # and the error against the noise-free series goes down inside the mask
    err_in = np.sqrt(np.mean((noisy[mask] - clean[mask]) ** 2))
    err_out = np.sqrt(np.mean((res.data[mask] - clean[mask]) ** 2))
    assert err_out < 0.7 * err_in


@pytest.mark.parametrize("name", available())
def test_contract_float64_and_int_input_and_no_mask(name, data):
    _, noisy, _ = data
    for series in (noisy.astype(np.float64), np.round(noisy).astype(np.int16)):
        res = denoise(series, name)
        assert res.data.dtype == np.float32 and res.data.shape == noisy.shape


@pytest.mark.parametrize("name", available())
def test_nan_outside_the_mask_is_allowed_and_kept(name, data):
    _, noisy, mask = data
    x = noisy.copy()
    x[0, 0, 0, :] = np.nan
    res = denoise(x, name, mask=mask)
    assert np.all(np.isnan(res.data[0, 0, 0]))
    assert np.all(np.isfinite(res.data[mask]))


# -- bad input: one sentence, a perfmap exception ------------------------------

@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("series, mask, error, text", [
    (np.zeros((5, 5, 10)), None, ShapeError, "4D series"),
    (np.zeros((5, 5, 5, 2)), None, ShapeError, "at least 3 frames"),
    (np.zeros((6, 6, 6, 8)), np.ones((6, 6, 5), bool), ShapeError, "mask has shape"),
    (np.zeros((6, 6, 6, 8)), np.zeros((6, 6, 6), bool), InputDataError, "mask is empty"),
    (np.zeros((6, 6, 6, 8)), np.full((6, 6, 6), 2), InputDataError, "boolean"),
    (np.full((6, 6, 6, 8), np.nan), None, InputDataError, "NaN or Inf"),
    (np.zeros((6, 6, 6, 8), complex), None, InputDataError, "real numbers"),
])
def test_bad_input(name, series, mask, error, text):
    with pytest.raises(error, match=text) as exc:
        denoise(series, name, mask=mask)
    assert isinstance(exc.value, PerfmapError)
    assert "\n" not in str(exc.value)


def test_patch_larger_than_image():
    with pytest.raises(ParameterError, match="patch 7x7x7 is larger than the image 6x6x6"):
        denoise(np.zeros((6, 6, 6, 8)), "mppca", patch=7)
    with pytest.raises(ShapeError, match="image 2x2x2 is too small for MP-PCA"):
        denoise(np.zeros((2, 2, 2, 8)), "mppca")


def test_mppca_on_a_single_slice():
    rng = np.random.default_rng(8)
    res = denoise(100 + rng.standard_normal((30, 30, 1, 60)), "mppca")
    assert res.info["patch"] == [9, 9, 1] and res.info["step"] == [2, 2, 1]
    assert res.info["noise_sigma"] == pytest.approx(1.0, rel=0.03)


# -- Gaussian smoothing ---------------------------------------------------------

def test_gaussian_matches_a_direct_normalised_convolution():
    """Every smoothed voxel equals sum(g m x) / sum(g m) with the kernel written out here."""
    rng = np.random.default_rng(4)
    x = rng.normal(100, 10, (9, 8, 5, 3))
    mask = rng.random((9, 8, 5)) < 0.6
    sigma, radius = (1.2, 0.8, 0.5), 4
    out = gaussian_smooth(x, mask, sigma=sigma, truncate=radius / 1.2 + 1e-9)
    r = [int(radius / 1.2 * s + 0.5) for s in sigma]   # scipy's radius: int(truncate * s + 0.5)
    for (i, j, k) in zip(*np.nonzero(mask)):
        num = np.zeros(3)
        den = 0.0
        for a in range(-r[0], r[0] + 1):
            for b in range(-r[1], r[1] + 1):
                for c in range(-r[2], r[2] + 1):
                    p, q, s = i + a, j + b, k + c
                    if 0 <= p < 9 and 0 <= q < 8 and 0 <= s < 5 and mask[p, q, s]:
                        g = np.exp(-0.5 * ((a / sigma[0]) ** 2 + (b / sigma[1]) ** 2
                                           + (c / sigma[2]) ** 2))
                        num += g * x[p, q, s]
                        den += g
        np.testing.assert_allclose(out[i, j, k], num / den, rtol=2e-6)
    np.testing.assert_array_equal(out[~mask], x[~mask].astype(np.float32))


def test_gaussian_noise_reduction_is_the_kernel_norm():
    """White noise of SD s comes out with SD s * sqrt(sum g^2), g the normalised kernel."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 64, 4, 8)).astype(np.float32)
    out = gaussian_smooth(x, None, sigma=(1.5, 1.5, 0.0))
    k = np.exp(-0.5 * (np.arange(-6, 7) / 1.5) ** 2)
    k /= k.sum()
    expected = np.sum(k ** 2)       # two smoothed axes, each a factor sqrt(sum k^2)
    inner = out[8:-8, 8:-8]
    assert np.std(inner) == pytest.approx(expected, rel=0.05)


def test_gaussian_does_not_bleed_background_and_zero_sigma_is_identity(data):
    _, noisy, mask = data
    flat = np.where(mask[..., None], np.float32(500), np.float32(0)) + 0 * noisy
    out = gaussian_smooth(flat, mask, sigma=2.0)
    np.testing.assert_allclose(out[mask], 500, rtol=1e-5)
    same = denoise(noisy, "gaussian", mask=mask, sigma=0)
    np.testing.assert_array_equal(same.data, noisy)


def test_gaussian_transposed_input_gives_transposed_output(data):
    _, noisy, mask = data
    a = gaussian_smooth(noisy, mask, sigma=1.0)
    b = gaussian_smooth(noisy.transpose(2, 1, 0, 3), mask.transpose(2, 1, 0), sigma=1.0)
    np.testing.assert_allclose(b.transpose(2, 1, 0, 3), a, rtol=1e-5, atol=1e-3)


# -- noise estimate --------------------------------------------------------------

def test_mad_noise_sigma_on_white_noise_and_on_a_bolus_phantom():
    from perfmap.core.phantom import make_phantom

    rng = np.random.default_rng(2)
    x = 50 + 4.0 * rng.standard_normal((30, 30, 3, 40))
    assert mad_noise_sigma(x, np.ones((30, 30, 3), bool)) == pytest.approx(4.0, rel=0.03)
    ph = make_phantom(shape=(48, 48, 6), n_frames=60, snr=20, seed=3)
    est = mad_noise_sigma(ph.signal, ph.masks["brain"])
    assert est == pytest.approx(ph.params["noise_sd"], rel=0.10)


# -- docstring examples ----------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- imports: layering and laziness ------------------------------------------------

def test_listing_denoisers_imports_neither_torch_nor_scipy_ndimage():
    import subprocess
    import sys

    code = ("import sys; from perfmap.core.denoise import available; available(); "
            "print(sorted(m for m in ('torch', 'scipy.ndimage', 'dipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", MODULES)
def test_core_modules_import_only_what_core_may(module):
    """Module level: stdlib, numpy, relative imports; inside functions also scipy and torch."""
    import ast
    import sys

    path = importlib.import_module(module).__file__
    tree = ast.parse(open(path).read())
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")]
            assert not any(a.name.startswith("_") for a in node.names), "a private name imported"
        else:
            continue
        for name in names:
            root = name.lstrip(".").split(".")[0]
            relative = name.startswith(".")
            if relative:  # perfmap.core.*, perfmap.errors and perfmap.registry only
                assert not name.startswith("...") or name in ("...errors", "...registry"), name
            elif id(node) in top:
                assert root in sys.stdlib_module_names | {"numpy"}, name
            else:
                assert root in sys.stdlib_module_names | {"numpy", "scipy", "torch"}, name
