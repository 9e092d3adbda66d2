"""The array API: DSCModel(...).fit(signal, mask, aif) -> DSCFit."""

import subprocess
import sys

import numpy as np
import pytest

from perfmap.core.concentration import dsc_concentration
from perfmap.core.maps import cbv_from_curves
from perfmap.core.phantom import make_phantom
from perfmap.errors import InputDataError, ParameterError, ShapeError
from perfmap.models import DSCFit, DSCModel


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(32, 32, 4), n_frames=50, snr=60.0, seed=4)


def fit_phantom(ph, **kw):
    """Fit without leakage correction unless asked: these tests check the formulas."""
    options = {"leakage": "none", **kw.pop("model", {})}
    model = DSCModel(kw.pop("method", "osvd"), te=ph.te, tr=ph.tr, **options)
    return model.fit(ph.signal, mask=kw.pop("mask", ph.masks["brain"]),
                     aif=kw.pop("aif", ph.masks["aif"]), **kw)


def test_maps_are_3d_float32_nan_outside_the_mask(phantom):
    fit = fit_phantom(phantom)
    assert isinstance(fit, DSCFit)
    for name in ("cbf", "cbv", "mtt", "tmax", "ttp"):
        m = getattr(fit, name)
        assert m.shape == phantom.signal.shape[:3] and m.dtype == np.float32
        assert np.isnan(m[~phantom.masks["brain"]]).all()
        assert np.isfinite(m[phantom.masks["brain"]]).mean() > 0.98
    assert fit.brain_mask.dtype == bool and fit.aif_mask.sum() == phantom.masks["aif"].sum()


def test_maps_are_derived_on_first_access(phantom):
    fit = fit_phantom(phantom)
    assert fit._rows is None                 # nothing derived by fit() itself
    _ = fit.cbv
    assert fit._rows is not None


def test_cbv_equals_an_independent_integral_ratio(phantom):
    """CBV = kH/rho * 100 * int C_t / int C_a, recomputed here from the signal."""
    fit = fit_phantom(phantom, model={"kh": 0.73, "rho": 1.04})
    start, stop = (fit.provenance["baseline"][k] for k in ("start", "stop"))
    conc, _ = dsc_concentration(phantom.signal[..., start:], phantom.te, (0, stop - start))
    aif = conc[phantom.masks["aif"]].astype(np.float64).mean(axis=0)
    brain = phantom.masks["brain"]
    expected = 0.73 / 1.04 * 100 * np.trapezoid(conc[brain], axis=-1) / np.trapezoid(aif)
    np.testing.assert_allclose(fit.cbv[brain], expected, rtol=2e-4)


def test_tumour_to_wm_cbf_ratio_is_recovered(phantom):
    fit = fit_phantom(phantom)
    ratio = np.nanmean(fit.cbf[phantom.masks["tumour"]]) / np.nanmean(fit.cbf[phantom.masks["ref"]])
    truth = phantom.truth["cbf"][phantom.masks["tumour"]].mean() / \
        phantom.truth["cbf"][phantom.masks["ref"]].mean()
    assert ratio == pytest.approx(truth, rel=0.15)


def test_aif_curve_input_equals_the_mask_input(phantom):
    by_mask = fit_phantom(phantom)
    start = by_mask.provenance["baseline"]["start"]
    stop = by_mask.provenance["baseline"]["stop"]
    # the same curve, on the acquisition grid (frames before `start` included)
    conc, _ = dsc_concentration(phantom.signal[phantom.masks["aif"]], phantom.te, (start, stop))
    curve = conc.astype(np.float64).mean(axis=0)
    by_curve = fit_phantom(phantom, aif=curve)
    np.testing.assert_allclose(by_curve.aif, by_mask.aif, rtol=1e-5)
    np.testing.assert_allclose(by_curve.cbf, by_mask.cbf, rtol=1e-4)
    assert not by_curve.aif_mask.any()
    assert by_curve.provenance["aif"]["source"] == "curve"


def test_arteries_outside_the_brain_mask(phantom):
    brain = phantom.masks["brain"] & ~phantom.masks["aif"]
    fit = fit_phantom(phantom, mask=brain)
    start, stop = (fit.provenance["baseline"][k] for k in ("start", "stop"))
    conc, _ = dsc_concentration(phantom.signal[phantom.masks["aif"]], phantom.te, (start, stop))
    np.testing.assert_allclose(fit.aif, conc[:, start:].astype(np.float64).mean(axis=0),
                               rtol=1e-6)
    assert np.isnan(fit.cbf[phantom.masks["aif"]]).all()


def test_input_is_not_modified(phantom):
    signal = phantom.signal.copy()
    aif = phantom.masks["aif"].copy()
    DSCModel("osvd", te=phantom.te, tr=phantom.tr).fit(signal, mask="auto", aif=aif)
    np.testing.assert_array_equal(signal, phantom.signal)
    np.testing.assert_array_equal(aif, phantom.masks["aif"])


def test_jittered_frame_times_are_resampled(phantom):
    n = phantom.signal.shape[-1]
    times = np.arange(n) * phantom.tr
    times[1::2] += 0.3 * phantom.tr
    fit = fit_phantom(phantom, frame_times=times)
    assert fit.provenance["timing"]["resampled"] is True
    assert fit.dt == pytest.approx(np.median(np.diff(times)))


@pytest.mark.parametrize("transform", ["flip_x", "flip_y", "transpose_xy", "flip_z_transpose"])
def test_auto_mask_and_auto_aif_do_not_depend_on_orientation(transform):
    """A flipped or transposed series gives the same maps, flipped (DESIGN section 2)."""
    ph = make_phantom(shape=(48, 48, 6), n_frames=50, snr=25.0, seed=9)
    ops = {"flip_x": lambda a: a[::-1],
           "flip_y": lambda a: a[:, ::-1],
           "transpose_xy": lambda a: np.swapaxes(a, 0, 1),
           "flip_z_transpose": lambda a: np.swapaxes(a[:, :, ::-1], 0, 1)}
    op = ops[transform]
    model = DSCModel("osvd", te=ph.te, tr=ph.tr)
    ref = model.fit(ph.signal, mask="auto", aif="auto")
    # a Fortran-ordered copy too, as nibabel returns
    moved = np.asfortranarray(op(ph.signal))
    got = model.fit(moved, mask="auto", aif="auto")
    np.testing.assert_array_equal(got.aif_mask, op(ref.aif_mask))
    np.testing.assert_array_equal(got.brain_mask, op(ref.brain_mask))
    np.testing.assert_allclose(got.aif, ref.aif, rtol=1e-6)
    np.testing.assert_allclose(got.cbf, op(ref.cbf), rtol=1e-5, equal_nan=True)


def test_wrong_inputs_raise_one_clear_error(phantom):
    model = DSCModel("osvd", te=phantom.te, tr=phantom.tr)
    with pytest.raises(ShapeError, match="4D"):
        model.fit(phantom.signal[..., 0])
    with pytest.raises(ShapeError, match="brain mask has shape"):
        model.fit(phantom.signal, mask=phantom.masks["brain"][:-1])
    with pytest.raises(InputDataError, match="brain mask is empty"):
        model.fit(phantom.signal, mask=np.zeros(phantom.signal.shape[:3], bool))
    with pytest.raises(ShapeError, match="AIF curve has 3 values"):
        model.fit(phantom.signal, aif=np.ones(3))
    bad = phantom.signal.copy()
    bad[3, 3, 1, 7] = np.nan
    with pytest.raises(InputDataError, match="NaN"):
        model.fit(bad)
    with pytest.raises(ParameterError, match="TE"):
        DSCModel("osvd", te=None, tr=1.5)
    with pytest.raises(ParameterError, match="unknown deconvolution method 'nope'"):
        DSCModel("nope", te=0.03, tr=1.5)


def test_unknown_method_parameter_lists_the_valid_keys():
    with pytest.raises(ParameterError, match=r"unknown parameter 'threshold' for method osvd; "
                                             r"valid: .*oi_limit"):
        DSCModel("osvd", te=0.03, tr=1.5, threshold=0.2)
    with pytest.raises(ParameterError, match="invalid parameter for method tikhonov"):
        DSCModel("tikhonov", te=0.03, tr=1.5, n_mu="many")


def test_aif_without_positive_integral_is_refused(phantom):
    """A baseline window inside the bolus leaves an AIF whose integral is negative."""
    model = DSCModel("osvd", te=phantom.te, tr=phantom.tr)
    arrival = fit_phantom(phantom).provenance["baseline"]["arrival"]
    late = DSCModel("osvd", te=phantom.te, tr=phantom.tr, leakage="none",
                    baseline_frames=(arrival + 2, arrival + 6))
    with pytest.raises(InputDataError, match="AIF"):
        late.fit(phantom.signal, mask=phantom.masks["brain"], aif=phantom.masks["aif"])
    assert model is not None


def test_importing_perfmap_and_the_array_api_does_not_import_torch():
    code = ("import sys, perfmap; perfmap.DSCModel; perfmap.DSCFit; perfmap.compute; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cbv_helper_agrees_with_the_fit(phantom):
    fit = fit_phantom(phantom, model={"kh": 1.0, "rho": 1.0})
    brain = phantom.masks["brain"]
    start, stop = (fit.provenance["baseline"][k] for k in ("start", "stop"))
    conc, _ = dsc_concentration(phantom.signal[brain], phantom.te, (start, stop))
    cbv = cbv_from_curves(conc[:, start:], fit.aif, fit.dt, kh=1.0, rho=1.0)
    np.testing.assert_allclose(fit.cbv[brain], cbv, rtol=1e-5)


def test_auto_aif_on_a_full_size_brain_with_few_arterial_voxels():
    """128x128x20 at SNR 30 with only 20 arterial voxels (the rest of the phantom's
    artery replaced by white-matter curves): every selected voxel is arterial, and a
    flipped and transposed copy selects the same voxels."""
    ph = make_phantom(shape=(128, 128, 20), n_frames=60, snr=30.0, seed=0)
    art = ph.masks["aif"]
    keep = np.zeros_like(art)
    x0, y0 = np.argwhere(art)[:, :2].min(axis=0)
    keep[x0, y0, :] = art[x0, y0, :]
    signal = ph.signal
    donors = np.argwhere(ph.masks["wm"])[:: max(1, int(ph.masks["wm"].sum()) // 1000)]
    for i, v in enumerate(np.argwhere(art & ~keep)):
        signal[tuple(v)] = signal[tuple(donors[i % len(donors)])]
    model = DSCModel("csvd", te=ph.te, tr=ph.tr)
    fit = model.fit(signal, mask=ph.masks["brain"], aif="auto")
    chosen = fit.aif_mask
    assert chosen.sum() >= 10 and not (chosen & ~keep).any()
    op = (lambda a: np.swapaxes(a[::-1, :, ::-1], 0, 1))
    moved = model.fit(np.asfortranarray(op(signal)), mask=op(ph.masks["brain"]), aif="auto")
    np.testing.assert_array_equal(moved.aif_mask, op(chosen))


# ------------------------------------------------------------------ leakage and dual echo

@pytest.fixture(scope="module")
def leaky():
    """A leaky HGG phantom (SNR 30, 30 deg, Tofts extravasation in the tumour) whose tumour
    MTT is within 15 % of the reference tissue's (BSW's own assumption; seed 4)."""
    return make_phantom(shape=(64, 64, 8), n_frames=60, snr=30.0, seed=4, leakage=True,
                        second_te=0.06)


def _ratio(fit, ph, name="cbv"):
    m = getattr(fit, name)
    return np.nanmean(m[ph.masks["tumour"]]) / np.nanmean(m[ph.masks["ref"]])


def test_default_leakage_correction_fixes_the_tumour_cbv_ratio(leaky):
    ph = leaky
    truth = ph.truth["cbv"][ph.masks["tumour"]].mean() / ph.truth["cbv"][ph.masks["ref"]].mean()
    kw = dict(mask=ph.masks["brain"], aif=ph.masks["aif"])
    raw = DSCModel("osvd", te=ph.te, tr=ph.tr, leakage="none").fit(ph.signal, **kw)
    bsw = DSCModel("osvd", te=ph.te, tr=ph.tr).fit(ph.signal, **kw)
    assert bsw.provenance["leakage"]["method"] == "bsw"
    err_raw, err_bsw = abs(_ratio(raw, ph) / truth - 1), abs(_ratio(bsw, ph) / truth - 1)
    assert err_bsw <= 0.10 and err_bsw <= err_raw / 2, (err_raw, err_bsw)
    # K2 > 0 in the tumour (T1-dominant leakage), a 3D float32 map NaN outside the brain
    assert np.nanmedian(bsw.k2[ph.masks["tumour"]]) > 0
    assert bsw.k2.dtype == np.float32 and np.isnan(bsw.k2[~ph.masks["brain"]]).all()
    # normal tissue unchanged (< 2 %)
    for region in ("gm", "wm"):
        a = np.nanmean(raw.cbv[ph.masks[region]])
        b = np.nanmean(bsw.cbv[ph.masks[region]])
        assert abs(b / a - 1) < 0.02, region
    # reference voxels come from non-enhancing tissue: at most a few noisy tumour voxels
    ref = bsw.leakage_reference
    assert ref.sum() > 0.3 * ph.masks["wm"].sum()
    assert (ref & ph.masks["tumour"]).sum() <= 0.10 * ph.masks["tumour"].sum()


def test_dual_echo_defaults_to_no_leakage_correction(leaky):
    ph = leaky
    model = DSCModel("osvd", te=ph.te, tr=ph.tr, te2=0.06)
    assert model.leakage == "none" and "k2" not in model.map_names
    fit = model.fit(ph.signal, mask=ph.masks["brain"], aif=ph.masks["aif"],
                    second_echo=ph.second_echo)
    assert fit.provenance["dual_echo"]["te2_s"] == 0.06
    with pytest.raises(KeyError, match="no map 'k2'"):
        fit.map("k2")
    with pytest.raises(ShapeError, match="second echo has shape"):
        model.fit(ph.signal, second_echo=ph.second_echo[..., :-1])
    with pytest.raises(ParameterError, match="other than TE"):
        DSCModel("osvd", te=0.03, tr=1.5, te2=0.03)


def test_mean_curve_ratio_in_the_json_and_on_a_noise_free_phantom(subject, tmp_path):
    """The second grading estimator (deconvolved ROI-mean curves) is in the JSON next to
    the voxel-mean ratio; on a noise-free phantom (same residue in tumour and NAWM) it is
    within 10 % of the true CBF ratio."""
    import json

    import perfmap

    ph = make_phantom(shape=(48, 48, 4), n_frames=50, snr=None, seed=3)
    fit = DSCModel("osvd", te=ph.te, tr=ph.tr, leakage="none").fit(
        ph.signal, mask=ph.masks["brain"], aif=ph.masks["aif"])
    out = fit.mean_curve_ratios(ph.masks["tumour"], ph.masks["ref"])
    truth = ph.truth["cbf"][ph.masks["tumour"]].mean() / ph.truth["cbf"][ph.masks["ref"]].mean()
    assert out["cbf_ratio"] == pytest.approx(truth, rel=0.10)
    assert out["shared_regularisation"] is True
    assert out["roi_voxels"] == int(ph.masks["tumour"].sum())
    res = perfmap.compute(subject["input"], aif=subject["aif"], mask=subject["mask"],
                          rois={"tumour": subject["tumour"]}, ref=subject["ref"],
                          out_dir=tmp_path / "o")
    prov = json.loads(next((tmp_path / "o").glob("*_perfmap.json")).read_text())
    mc = prov["rois"]["tumour"]["mean_curve"]
    assert mc["cbf_ratio"] == res.provenance["rois"]["tumour"]["mean_curve"]["cbf_ratio"]
    assert 0.5 < mc["cbf_ratio"] / prov["rois"]["tumour"]["cbf_ratio"] < 2.0
