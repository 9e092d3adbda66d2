"""The contract every registered deconvolution backend keeps (DESIGN section 2).

Run over ``perfmap.deconv.available()``: result shapes and dtypes, NaN rows
reported as failed (all-zero rows are not failures), inputs never modified,
results independent of the chunk size, float32 input accepted, and shape
errors raised as :class:`perfmap.errors.ShapeError`. PHAE is skipped when its
module or model weights are not available.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfmap.core import curves
from perfmap.deconv import Backend, DeconvFit, available, get_backend
from perfmap.errors import InputDataError, ParameterError, PerfmapError, ShapeError

DT = 1.5
N_FRAMES = 40


def make_backend(name, **kw):
    """Construct a backend; PHAE is skipped when it cannot run here (no weights, no torch)."""
    try:
        return get_backend(name)(**kw)
    except (PerfmapError, OSError, ImportError) as exc:
        if name == "phae":
            pytest.skip(f"phae not usable here: {exc}")
        raise


@pytest.fixture(scope="module")
def data():
    """22 curves (22 = 3 * 7 + 1: chunk size 7 leaves a one-row chunk), AIF, dt."""
    t = np.arange(N_FRAMES) * DT
    aif_fn = lambda x: curves.gamma_variate(x, t0=8.0, alpha=3.0, beta=1.5)  # noqa: E731
    rng = np.random.default_rng(5)
    mtt = rng.uniform(2.0, 10.0, 22)
    flow = curves.flow_per_second(rng.uniform(10.0, 80.0, 22))
    conc = curves.tissue_concentration(t, aif_fn, flow, mtt, delay=1.0, fine_dt=0.02)
    conc += rng.normal(0.0, 0.02 * conc.max(), conc.shape)
    return conc, aif_fn(t)


@pytest.fixture(params=available())
def name(request):
    return request.param


def test_registry_lists_the_matrix_backends():
    assert {"ssvd", "csvd", "osvd", "tikhonov"} <= set(available())
    with pytest.raises(ParameterError, match="osvd"):
        get_backend("nonsense")


def test_result_shapes_dtypes_and_info(name, data):
    conc, aif = data
    backend = make_backend(name)
    assert isinstance(backend, Backend) and backend.name == name
    json.dumps(backend.params())
    fit = backend.fit(conc, aif, DT)
    assert isinstance(fit, DeconvFit)
    for arr in (fit.flow, fit.tmax):
        assert arr.shape == (22,) and arr.dtype == np.float32
    assert fit.failed.shape == (22,) and fit.failed.dtype == bool
    assert not fit.failed.any()
    assert np.all(np.isfinite(fit.flow)) and np.all(fit.flow > 0)
    if fit.mtt is not None:
        assert fit.mtt.shape == (22,) and fit.mtt.dtype == np.float32
    assert fit.residue is None
    json.dumps(fit.info)


def test_keep_residue(name, data):
    conc, aif = data
    fit = make_backend(name, keep_residue=True).fit(conc, aif, DT)
    if fit.residue is None:
        pytest.skip(f"{name} does not produce a residue")
    assert fit.residue.shape == conc.shape and fit.residue.dtype == np.float32
    if fit.mtt is None:   # flow is the peak of k, read within the first N lags unless wrapped
        inside = fit.tmax >= 0
        np.testing.assert_allclose(fit.residue.max(axis=1)[inside], fit.flow[inside], rtol=1e-6)


def test_nan_rows_fail_zero_rows_do_not(name, data):
    conc, aif = data
    conc = conc.copy()
    conc[3, 5] = np.nan
    conc[7, :] = np.inf
    conc[11, :] = 0.0
    fit = make_backend(name).fit(conc, aif, DT)
    assert fit.failed.tolist() == [i in (3, 7) for i in range(22)]
    assert np.isnan(fit.flow[[3, 7]]).all() and np.isnan(fit.tmax[[3, 7]]).all()
    assert fit.n_failed == 2
    assert np.isfinite(fit.flow[11]) and fit.flow[11] == 0.0


def test_inputs_are_not_modified(name, data):
    conc, aif = data
    for dtype in (np.float64, np.float32):
        c, a = conc.astype(dtype), aif.astype(dtype)
        c[2, 4] = np.nan
        c0, a0 = c.copy(), a.copy()
        make_backend(name).fit(c, a, DT)
        np.testing.assert_array_equal(c, c0)
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("chunk", [7, 1])
def test_chunk_size_does_not_change_results(name, data, chunk):
    conc, aif = data
    small = make_backend(name, chunk_size=chunk, keep_residue=True).fit(conc, aif, DT)
    large = make_backend(name, chunk_size=100000, keep_residue=True).fit(conc, aif, DT)
    # BLAS may block a matrix product differently for different row counts, so
    # equal up to float32 rounding (not bitwise); a mixed-up row would be far off.
    np.testing.assert_allclose(small.flow, large.flow, rtol=1e-5, atol=0)
    np.testing.assert_array_equal(small.tmax, large.tmax)
    np.testing.assert_array_equal(small.failed, large.failed)
    if small.residue is not None:
        np.testing.assert_allclose(small.residue, large.residue, rtol=1e-5,
                                   atol=1e-6 * np.abs(large.residue).max())
    if small.mtt is not None:
        np.testing.assert_allclose(small.mtt, large.mtt, rtol=1e-5, atol=0)


def test_float32_input_is_accepted(name, data):
    conc, aif = data
    f64 = make_backend(name).fit(conc, aif, DT)
    f32 = make_backend(name).fit(conc.astype(np.float32), aif.astype(np.float32), DT)
    assert f32.flow.dtype == np.float32
    np.testing.assert_allclose(f32.flow, f64.flow, rtol=1e-3)


def test_wrong_shapes_raise_shape_error(name, data):
    conc, aif = data
    backend = make_backend(name)
    with pytest.raises(ShapeError):
        backend.fit(conc[0], aif, DT)                     # 1-D curves
    with pytest.raises(ShapeError):
        backend.fit(conc[None], aif, DT)                  # 3-D
    with pytest.raises(ShapeError):
        backend.fit(conc, aif[:-1], DT)                   # AIF of another length
    with pytest.raises(ShapeError):
        backend.fit(conc, np.stack([aif, aif]), DT)       # 2-D AIF
    with pytest.raises(ValueError):                       # ShapeError is also a ValueError
        backend.fit(conc[:, :-2], aif, DT)


def test_bad_aif_or_dt_raise_input_data_error(name, data):
    conc, aif = data
    backend = make_backend(name)
    bad = aif.copy()
    bad[3] = np.nan
    with pytest.raises(InputDataError):
        backend.fit(conc, bad, DT)
    with pytest.raises(InputDataError):
        backend.fit(conc, np.zeros_like(aif), DT)
    with pytest.raises(InputDataError):
        backend.fit(conc, aif, 0.0)


def test_empty_input(name, data):
    conc, aif = data
    fit = make_backend(name).fit(conc[:0], aif, DT)
    assert fit.flow.shape == (0,) and fit.n_failed == 0


@pytest.mark.parametrize("matrix_backend,bad", [
    ("ssvd", {"threshold": 1.5}), ("csvd", {"threshold": -0.1}),
    ("osvd", {"oi_limit": 0}), ("osvd", {"thresholds": [0.2, 0.1]}),
    ("osvd", {"search": "random"}), ("tikhonov", {"criterion": "aic"}),
    ("tikhonov", {"mu_range": (1.0, 0.1)}), ("ssvd", {"discretisation": "simpson"}),
])
def test_bad_hyper_parameters_raise_parameter_error(matrix_backend, bad):
    with pytest.raises(ParameterError):
        get_backend(matrix_backend)(**bad)
