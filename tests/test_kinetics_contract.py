"""Contract of every registered kinetic model (``perfmap.kinetics``).

Each model must accept dense (n, T) curves in float32 or float64, return maps of
shape (n,) in float32 with NaN and a count for every voxel it could not fit,
give results that do not depend on the chunk size, the number of threads or the
order of the voxels, leave its input untouched, and refuse bad shapes
(``ShapeError``) and bad options (``ParameterError``). Its analytic Jacobian
must match central finite differences of its own model curves.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfmap.errors import InputDataError, ParameterError, ShapeError
from perfmap.kinetics import DEFAULT_MODEL, KineticFit, available, get_model
from perfmap.kinetics.fitting import ArterialInput

MODELS = available()
T = np.arange(0.0, 240.0, 2.0)                         # 120 frames, s


def aif_curve(t=T):
    """A smooth bolus and washout (mM), closed form, zero before 12 s."""
    s = np.clip(t - 12.0, 0, None)
    return 6.0 * (s / 8.0) * np.exp(1 - s / 8.0) + 1.2 * (np.exp(-s / 300) - np.exp(-s / 20))


# plausible parameters per model, three voxels each (reported units)
TRUTH = {
    "tofts": {"ktrans": [0.05, 0.2, 0.4], "ve": [0.1, 0.3, 0.5]},
    "etofts": {"ktrans": [0.05, 0.2, 0.4], "ve": [0.1, 0.3, 0.5], "vp": [0.01, 0.05, 0.1]},
    "patlak": {"ktrans": [0.01, 0.03, 0.1], "vp": [0.02, 0.05, 0.1]},
    "2cxm": {"fp": [20.0, 50.0, 100.0], "ps": [3.0, 10.0, 20.0], "vp": [0.02, 0.05, 0.1],
             "ve": [0.1, 0.2, 0.4]},
}


def test_registry_lists_the_four_models_and_the_default():
    assert MODELS == ["2cxm", "etofts", "patlak", "tofts"]
    assert DEFAULT_MODEL == "etofts"
    with pytest.raises(ParameterError, match="unknown kinetic model 'nope'.*2cxm, etofts"):
        get_model("nope")


@pytest.fixture(params=MODELS)
def case(request):
    name = request.param
    model = get_model(name)()
    rng = np.random.default_rng(7)
    clean = model.predict(TRUTH[name], aif_curve(), T)
    conc = np.vstack([clean, clean + rng.normal(0, 0.01, clean.shape)])   # 6 voxels
    return name, model, conc


def test_shapes_types_and_units(case):
    name, model, conc = case
    fit = model.fit(conc, aif_curve(), T)
    assert isinstance(fit, KineticFit)
    assert set(fit.params) == set(model.units) == set(fit.info["units"])
    for v in fit.params.values():
        assert v.shape == (6,) and v.dtype == np.float32
    assert fit.failed.shape == (6,) and fit.failed.dtype == bool
    assert fit.rms.shape == (6,) and fit.rms.dtype == np.float32
    assert fit.n_failed == int(fit.failed.sum()) == fit.info["n_failed"] == 0
    json.dumps(fit.info)                                # provenance is JSON-serialisable
    # noise-free rows: the residual is at rounding level; noisy rows: about the noise SD
    assert np.all(fit.rms[:3] < 1e-5) and np.all(np.abs(fit.rms[3:] - 0.01) < 0.004)


def test_float32_input_gives_the_float64_result(case):
    _, model, conc = case
    a = model.fit(conc, aif_curve(), T)
    b = model.fit(conc.astype(np.float32), aif_curve().astype(np.float32), T)
    for key in a.params:
        np.testing.assert_allclose(b.params[key], a.params[key], rtol=2e-3, atol=1e-5)


def test_chunk_size_threads_and_voxel_order_do_not_matter(case):
    name, _, conc = case
    ref = get_model(name)().fit(conc, aif_curve(), T)
    for opts in ({"chunk_size": 1}, {"chunk_size": 4}, {"chunk_size": 2, "n_threads": 2}):
        other = get_model(name)(**opts).fit(conc, aif_curve(), T)
        for key in ref.params:
            np.testing.assert_allclose(other.params[key], ref.params[key], rtol=1e-6, atol=1e-9)
    order = np.array([4, 1, 5, 0, 3, 2])
    permuted = get_model(name)().fit(conc[order], aif_curve(), T)
    for key in ref.params:
        np.testing.assert_allclose(permuted.params[key], ref.params[key][order], rtol=1e-6,
                                   atol=1e-9)


def test_nan_voxel_is_nan_and_counted_and_input_untouched(case):
    _, model, conc = case
    conc = conc.copy()
    conc[2, 40] = np.nan
    conc[4, :] = np.inf
    before = conc.copy()
    fit = model.fit(conc, aif_curve(), T)
    np.testing.assert_array_equal(conc, before)
    assert fit.failed.tolist() == [False, False, True, False, True, False]
    assert fit.info["failures"]["nonfinite_input"] == 2 == fit.n_failed
    for v in fit.params.values():
        assert np.isnan(v[[2, 4]]).all() and np.isfinite(v[[0, 1, 3, 5]]).all()
    assert np.isnan(fit.rms[[2, 4]]).all()


def test_unconverged_voxels_are_nan_never_the_start(case):
    # One iteration cannot meet the convergence tests on noisy curves, except for
    # Patlak: linear, its start is already the least-squares solution.
    name, _, conc = case
    fit = get_model(name)(max_iter=1).fit(conc[3:], aif_curve(), T)
    if name == "patlak":
        assert fit.n_failed == 0
        return
    assert fit.info["failures"]["not_converged"] == fit.n_failed > 0
    for v in fit.params.values():
        assert np.isnan(v[fit.failed]).all()


def test_bad_shapes_raise_shape_error(case):
    _, model, conc = case
    aif = aif_curve()
    with pytest.raises(ShapeError, match="2-D"):
        model.fit(conc[0], aif, T)
    with pytest.raises(ShapeError, match="2-D"):
        model.fit(conc[None], aif, T)
    with pytest.raises(ShapeError, match="AIF must be 1-D with 120 frames"):
        model.fit(conc, aif[:-1], T)
    with pytest.raises(ShapeError, match="times must be 1-D with 120 frames"):
        model.fit(conc, aif, T[:-1])
    with pytest.raises(ShapeError, match="needs at least"):
        model.fit(conc[:, :3], aif[:3], T[:3])


def test_bad_parameters_raise_parameter_error(case):
    name, model, conc = case
    cls = get_model(name)
    for opts in ({"max_iter": 0}, {"chunk_size": 0}, {"n_threads": 0},
                 {"delay_range": (5, -5)}, {"delay_step": 0}, {"delay_step": 100}):
        with pytest.raises(ParameterError):
            cls(**opts)
    with pytest.raises(ParameterError, match="strictly increasing"):
        model.fit(conc, aif_curve(), T[::-1])
    with pytest.raises(InputDataError, match="NaN"):
        model.fit(conc, np.full(T.size, np.nan), T)
    with pytest.raises(InputDataError, match="no positive value"):
        model.fit(conc, np.zeros(T.size), T)


def test_analytic_jacobian_matches_finite_differences(case):
    name, model, _ = case
    x = model.from_maps({k: np.asarray(v, float) for k, v in TRUTH[name].items()})
    inp = ArterialInput(aif_curve(), T)
    _, cols = model.curves(x, inp, True)
    scale = model.bounds()[2]
    for p in range(x.shape[1]):
        h = 1e-6 * np.maximum(np.abs(x[:, p]), 1e-3 * scale[p])
        up, down = x.copy(), x.copy()
        up[:, p] += h
        down[:, p] -= h
        fd = (model.curves(up, inp, False)[0] - model.curves(down, inp, False)[0]) / (2 * h)
        col = np.broadcast_to(cols[p] if cols[p].ndim == 2 else cols[p][:, None], fd.shape)
        np.testing.assert_allclose(col, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


def test_fitted_delay_is_reported_in_seconds(case):
    name, _, conc = case
    model = get_model(name)(fit_delay=True, delay_range=(-4.0, 8.0), delay_step=1.0)
    shifted = model.predict(TRUTH[name], aif_curve(), T, delay=3.0)
    fit = model.fit(shifted, aif_curve(), T)
    assert fit.info["units"]["delay"] == "s" and fit.n_failed == 0
    np.testing.assert_allclose(fit.params["delay"], 3.0, atol=0.25)
