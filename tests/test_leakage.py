"""Leakage correction (BSW, bidirectional), its reference voxels and its K2 gates.

Independent sources: curves built exactly as the models say (integrals by
``scipy.integrate.cumulative_trapezoid`` or a 10 ms convolution, not
perfmap's), a per-voxel ``numpy.linalg.lstsq``, the phantom's leak-free truth
(:func:`perfmap.core.phantom.make_phantom` with ``leakage=``) and the dual-echo
curves of a real tumour. Bands measured from perfmap's own output are
regression guards and say so.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid
from scipy.io import loadmat

from perfmap.core.concentration import detect_baseline, dsc_concentration
from perfmap.core.curves import gamma_variate
from perfmap.core.dual_echo import dual_echo_concentration
from perfmap.core.leakage import correct_leakage, cumulative_integral
from perfmap.core.leakage_gate import gate_voxels, smooth_rows
from perfmap.core.leakage_reference import reference_curve, select_reference
from perfmap.core.maps import cbv_from_curves, perfusion_maps
from perfmap.core.phantom import make_phantom
from perfmap.deconv import get_backend
from perfmap.errors import InputDataError, ParameterError, ShapeError

DT = 1.5
TIMES = np.arange(60) * DT


def ref_fn(t):
    """A reference dR2* (1/s): first pass, recirculation and a small plateau."""
    t = np.asarray(t, dtype=np.float64)
    return (gamma_variate(t, 15.0, 3.0, 1.5, 10.0) + gamma_variate(t, 25.0, 3.0, 2.5, 1.5)
            + 0.8 * (1.0 - np.exp(-np.clip(t - 15.0, 0.0, None) / 5.0)))


REF = ref_fn(TIMES)
IREF = cumulative_trapezoid(REF, TIMES, initial=0.0)


# --- closed forms -------------------------------------------------------------------------

@pytest.mark.parametrize("k1, k2", [(1.0, 0.0), (2.5, 0.02), (0.8, -0.01), (3.0, 0.05)])
def test_bsw_recovers_k1_k2_of_a_closed_form_curve(k1, k2):
    y = (k1 * REF - k2 * IREF).astype(np.float32)
    res = correct_leakage(y[None], REF, DT, gate="none")
    assert res.k1[0] == pytest.approx(k1, rel=0.01)
    assert res.k2[0] == pytest.approx(k2, rel=0.01, abs=1e-6)
    np.testing.assert_allclose(res.corrected[0], k1 * REF, atol=1e-3 * k1 * REF.max())
    assert res.corrected.dtype == np.float32 and res.n_corrected == 1


def test_bsw_equals_a_per_voxel_textbook_least_squares():
    rng = np.random.default_rng(0)
    k1, k2 = rng.uniform(0.5, 3.0, 500), rng.uniform(-0.02, 0.05, 500)
    y = k1[:, None] * REF - k2[:, None] * IREF + 0.3 * rng.standard_normal((500, REF.size))
    res = correct_leakage(y.astype(np.float32), REF, DT, gate="none", chunk_size=64)
    design = np.column_stack([REF, -IREF])
    coef = np.linalg.lstsq(design, y.astype(np.float32).astype(np.float64).T, rcond=None)[0]
    np.testing.assert_allclose(res.k1, coef[0], rtol=1e-5)
    np.testing.assert_allclose(res.k2, coef[1], rtol=1e-4, atol=1e-8)


def test_bidirectional_recovers_kep_where_bsw_is_biased():
    """Leu 2016 model built on a 10 ms grid (np.convolve), sampled every 1.5 s."""
    fine = 0.01
    tf = np.arange(0.0, TIMES[-1] + fine / 2, fine)
    k1, k2, kep = 1.8, 0.02, 0.01
    leak = np.convolve(ref_fn(tf), np.exp(-kep * tf))[:tf.size] * fine
    y = (k1 * ref_fn(tf) - k2 * leak)[::150]
    bi = correct_leakage(y[None], REF, DT, method="bidirectional", gate="none")
    assert (bi.k1[0], bi.k2[0], bi.kep[0]) == pytest.approx((k1, k2, kep), rel=0.01)
    np.testing.assert_allclose(bi.corrected[0], k1 * REF, atol=0.002 * k1 * REF.max())
    bsw = correct_leakage(y[None], REF, DT, gate="none")
    assert abs(bsw.k2[0] / k2 - 1) > 0.2                   # unidirectional model misses kep


def test_bidirectional_without_backflux_is_bsw():
    y = 2.0 * REF - 0.03 * IREF
    bi = correct_leakage(y[None], REF, DT, method="bidirectional", gate="none")
    assert bi.k2[0] == pytest.approx(0.03, rel=0.01) and bi.kep[0] < 1e-4
    assert bi.info["kep_fallback_to_bsw"] in (0, 1)


def test_cumulative_integral_is_the_trapezoid_rule():
    np.testing.assert_allclose(cumulative_integral(REF, DT), IREF, rtol=1e-12)
    t = np.cumsum(np.r_[0.0, np.full(59, 1.5) + 0.1 * np.sin(np.arange(59))])
    np.testing.assert_allclose(cumulative_integral(REF, times=t),
                               cumulative_trapezoid(REF, t, initial=0.0), rtol=1e-12)


def test_cv_gate_uses_the_toolbox_formula():
    """CV = 100 sqrt(sigma_baseline^2 [(A^T A)^-1]_22) / |K2| (DSC_mri_cbv_lc.m)."""
    rng = np.random.default_rng(1)
    y = 2.0 * REF - 0.01 * IREF + 0.2 * rng.standard_normal((3, REF.size))
    res = correct_leakage(y, REF, DT, gate="cv", cv_limit=25.0, baseline=(0, 8))
    design = np.column_stack([REF, -IREF])
    k2 = np.linalg.lstsq(design, y.T, rcond=None)[0][1]
    se = np.sqrt(y[:, :8].var(axis=1, ddof=1) * np.linalg.inv(design.T @ design)[1, 1])
    np.testing.assert_allclose(res.k2_cv, 100 * se / np.abs(k2), rtol=1e-4)
    np.testing.assert_array_equal(res.corrected_mask, res.k2_cv < 25.0)


# --- order, NaN, bad input -----------------------------------------------------------------

def test_results_do_not_depend_on_voxel_order():
    rng = np.random.default_rng(2)
    n = 300
    y = (rng.uniform(1, 2, (n, 1)) * REF + 0.3 * rng.standard_normal((n, REF.size)))
    y[:20] -= 0.02 * IREF                                   # 20 leaky voxels
    y = y.astype(np.float32)
    perm = rng.permutation(n)
    sel = select_reference(y, (0, 8))
    assert not sel[:20].any()
    np.testing.assert_array_equal(select_reference(y[perm], (0, 8)), sel[perm])
    ref = reference_curve(y, sel)
    np.testing.assert_array_equal(reference_curve(y[perm], sel[perm]), ref)
    a = correct_leakage(y, ref, DT, reference=sel)
    b = correct_leakage(y[perm], ref, DT, reference=sel[perm])
    np.testing.assert_array_equal(b.k2, a.k2[perm])
    np.testing.assert_array_equal(b.corrected, a.corrected[perm])
    assert a.corrected_mask[:20].all() and a.n_corrected < 30


def test_smoothed_gate_follows_a_flipped_volume():
    rng = np.random.default_rng(3)
    mask = rng.random((6, 5, 4)) > 0.2
    vol = rng.standard_normal(mask.shape)
    flipped = smooth_rows(vol[::-1, :, ::-1][mask[::-1, :, ::-1]], mask[::-1, :, ::-1])
    back = np.zeros(mask.shape)
    back[mask[::-1, :, ::-1]] = flipped
    np.testing.assert_allclose(back[::-1, :, ::-1][mask], smooth_rows(vol[mask], mask),
                               rtol=1e-12)


def test_non_finite_rows_are_not_fitted_nor_corrected():
    y = np.stack([2.0 * REF - 0.02 * IREF] * 4).astype(np.float32)
    y[1, 5], y[3, 9] = np.nan, np.inf
    res = correct_leakage(y, REF, DT, gate="none", method="bidirectional")
    assert np.isnan(res.k2[[1, 3]]).all() and np.isnan(res.corrected[[1, 3]]).all()
    assert res.corrected_mask.tolist() == [True, False, True, False]
    assert res.n_failed == 2 and res.info["failed"] == 2 and res.info["corrected"] == 2


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(conc=REF), ShapeError, "2-D"),
    (dict(ref=REF[:-1]), ShapeError, "frames"),
    (dict(ref=np.where(TIMES > 30, np.nan, REF)), InputDataError, "finite"),
    (dict(method="weisskoff"), ParameterError, "bsw or bidirectional"),
    (dict(gate="t-test"), ParameterError, "reference, cv, none"),
    (dict(gate="reference"), ParameterError, "reference voxels"),
    (dict(gate="reference", reference=np.ones(3, bool)), ShapeError, "shape (2,)"),
    (dict(dt=0.0), ParameterError, "sampling interval"),
    (dict(baseline=(5, 5)), ParameterError, "baseline frames"),
])
def test_bad_input_raises_one_clear_sentence(kwargs, exc, words):
    args = dict(conc=np.stack([REF, REF]), ref=REF, dt=DT, gate="none")
    args.update(kwargs)
    with pytest.raises(exc) as info:
        correct_leakage(args.pop("conc"), args.pop("ref"), args.pop("dt"), **args)
    msg = str(info.value)
    assert words in msg and "\n" not in msg


def test_reference_skips_non_finite_rows():
    rng = np.random.default_rng(4)
    y = rng.uniform(1, 2, (50, 1)) * REF + 0.3 * rng.standard_normal((50, REF.size))
    y[3, 20], y[7, 30], y[9] = np.inf, np.nan, 0.0            # 9: no baseline noise
    sel = select_reference(y, (0, 8))
    assert not sel[[3, 7, 9]].any() and sel.sum() > 35


def test_gate_and_reference_refuse_too_few_voxels():
    with pytest.raises(InputDataError, match="at least 10"):
        gate_voxels("reference", np.zeros(5), np.zeros(5), np.ones(5, bool))
    with pytest.raises(InputDataError, match="reference voxels"):
        select_reference(np.tile(REF, (4, 1)) + np.arange(4)[:, None] * 0.01 *
                         np.sin(TIMES), (0, 8))


# --- phantoms ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def phantom_case(seed: int, flip_angle: float = 30.0, leak: bool = True):
    """Phantom rows -> dR2* (detected baseline, non-steady frames dropped) -> reference."""
    ph = make_phantom(shape=(64, 64, 8), snr=30.0, seed=seed,
                      leakage={"flip_angle": flip_angle} if leak else None)
    brain = ph.masks["brain"]
    window = detect_baseline(ph.signal[brain].mean(axis=0))
    conc = dsc_concentration(ph.signal[brain], ph.te, window)[0][:, window.start:]
    base = (0, window.stop - window.start)
    rois = {k: ph.masks[k][brain] for k in ("tumour", "ref", "gm", "wm", "aif")}
    sel = select_reference(conc, base)
    cbf, cbv = ph.truth["cbf"][brain], ph.truth["cbv"][brain]
    ok = sel & np.isfinite(cbf)
    mtt_ratio = ph.params["tissues"]["tumour"]["mtt"] / (60 * cbv[ok].sum() / cbf[ok].sum())
    aif = conc[rois["aif"]].mean(axis=0)
    return dict(ph=ph, brain=brain, conc=conc, base=base, rois=rois, sel=sel, aif=aif,
                ref=reference_curve(conc, sel), mtt_ratio=mtt_ratio,
                cbv0=roi_cbv(conc, aif, ph.tr, rois))


def roi_cbv(conc, aif, dt, rois):
    """ROI-mean CBV: oSVD fit, then perfusion_maps (CBV is the integral ratio)."""
    cbv = perfusion_maps(conc, aif, dt, get_backend("osvd")().fit(conc, aif, dt))["cbv"]
    return {k: float(np.nanmean(cbv[m])) for k, m in rois.items()}


def corrected_case(seed, flip_angle=30.0, leak=True, **kwargs):
    c = phantom_case(seed, flip_angle, leak)
    kwargs.setdefault("mask", c["brain"])
    res = correct_leakage(c["conc"], c["ref"], c["ph"].tr, reference=c["sel"],
                          baseline=c["base"], **kwargs)
    cbv = roi_cbv(res.corrected, c["aif"], c["ph"].tr, c["rois"])
    truth = c["ph"].params["cbv_ratio"]
    errs = {name: v["tumour"] / v["ref"] / truth - 1 for name, v in
            (("uncorrected", c["cbv0"]), ("corrected", cbv))}
    change = {k: cbv[k] / c["cbv0"][k] - 1 for k in ("ref", "gm", "wm")}
    return c, res, cbv, errs, change


@pytest.mark.parametrize("seed", [4, 2])
@pytest.mark.parametrize("method", ["bsw", "bidirectional"])
def test_leaky_tumour_is_corrected_and_normal_tissue_kept(seed, method):
    """SNR 30, 30 deg: BSW's assumption (tumour MTT near the reference's) holds for seeds 4
    and 2; the ratio must come within 10 % of the leak-free truth, twice closer than
    uncorrected, with GM, WM and NAWM CBV changed by under 2 %."""
    c, res, cbv, errs, change = corrected_case(seed, method=method)
    assert abs(c["mtt_ratio"] - 1) < 0.15
    assert errs["uncorrected"] < -0.25                      # T1 leakage lowers tumour CBV
    assert abs(errs["corrected"]) < 0.10
    assert abs(errs["corrected"]) < 0.5 * abs(errs["uncorrected"])
    for k, v in change.items():
        assert abs(v) < 0.02, (k, change)
    k2_tumour = res.k2[c["rois"]["tumour"]]
    assert np.median(k2_tumour) > 0.005 and np.mean(k2_tumour > 0) > 0.9   # T1: K2 > 0
    assert res.corrected_mask[c["rois"]["tumour"]].mean() > 0.9


def test_cv_gate_changes_normal_tissue_where_the_reference_gate_does_not():
    """Seed 1: white matter's longer MTT reads as a small, voxel-wise significant
    negative K2; the toolbox's 25 % CV limit corrects it, the reference gate does not."""
    _, res_cv, _, _, cv = corrected_case(1, gate="cv", cv_limit=25.0)
    _, res_ref, _, _, ref = corrected_case(1)
    assert min(cv["wm"], cv["ref"]) < -0.02
    assert max(abs(v) for v in ref.values()) < 0.005


def test_tumour_mtt_longer_than_reference_leaves_cbv_low():
    """Bjornerud 2011: BSW reads part of a longer MTT as leakage, so corrected CBV stays
    low. Seed 3 (tumour MTT 1.48 x the reference's): a regression guard, measured -19 %."""
    c, _, _, errs, _ = corrected_case(3)
    assert c["mtt_ratio"] > 1.3
    assert -0.25 < errs["corrected"] < -0.12 and errs["uncorrected"] < -0.28


@pytest.mark.parametrize("flip_angle, band", [(60.0, (-0.22, -0.11)), (90.0, (-0.36, -0.23))])
def test_large_flip_angles_without_preload(flip_angle, band):
    """Uncorrected tumour CBV is negative; BSW makes it positive but leaves it low (SPGR T1
    saturation and back-flux; Boxerman 2020 consensus). Bands are regression guards around
    the measured -17 % (60 deg) and -29 % (90 deg)."""
    c, res, cbv, errs, change = corrected_case(4, flip_angle)
    assert c["cbv0"]["tumour"] < 0 < cbv["tumour"]
    assert band[0] < errs["corrected"] < band[1]
    assert max(abs(v) for v in change.values()) < 0.02


def test_leak_free_phantom_is_left_alone():
    c, res, cbv, errs, change = corrected_case(4, leak=False)
    assert abs(errs["uncorrected"]) < 0.03 and abs(errs["corrected"]) < 0.03
    assert res.corrected_mask[c["rois"]["tumour"]].mean() < 0.05
    assert max(abs(v) for v in change.values()) < 0.005


def test_reference_excludes_vessels_and_leaky_tumour():
    c = phantom_case(4, 60.0)
    sel, rois = c["sel"], c["rois"]
    assert not (sel & rois["aif"]).any() and not (sel & rois["tumour"]).any()
    assert (sel & (rois["gm"] | rois["wm"])).sum() > 0.8 * (rois["gm"] | rois["wm"]).sum()


def test_t2star_dominant_leakage_gives_negative_k2():
    """No T1 effect (r1 = 0), strong extravascular T2*: the curve stays high, K2 < 0."""
    ph = make_phantom(shape=(32, 32, 4), snr=None, seed=4,
                      leakage={"r1": 0.0, "r2s_ees": 40.0})
    tum = ph.masks["tumour"]
    window = ph.baseline_frames
    conc = dsc_concentration(ph.signal[..., window[0]:], ph.te,
                             (0, window[1] - window[0]))[0]
    normal = ph.masks["gm"] | ph.masks["wm"]
    res = correct_leakage(conc[tum], conc[normal].mean(axis=0), ph.tr, gate="none")
    assert np.all(res.k2 < 0)


# --- real curves: OSIPI LCB-BNI dual-echo tumour, NAWM and AIF ROIs -------------------------

@pytest.fixture(scope="module")
def real():
    d = loadmat(Path(__file__).parent / "data" / "lcb_bni_dualecho_dsc_roi_curves.mat")
    te1, te2, tr = (float(np.squeeze(d[k])) for k in ("TE1", "TE2", "TR"))
    sig = {k: d[f"{k}_SIt"].astype(np.float64) for k in ("AIF", "NAWM", "tumor")}
    window = detect_baseline(sig["NAWM"][1])
    single = {k: dsc_concentration(s[1], te2, window)[0].astype(np.float64)
              for k, s in sig.items()}
    dual = {k: dual_echo_concentration(s[0], s[1], te1, te2, window)[0].astype(np.float64)
            for k, s in sig.items()}
    return {"single": single, "dual": dual, "tr": tr}


def ratio(curves, tr, tumour=None):
    tumour = curves["tumor"] if tumour is None else tumour
    return float(cbv_from_curves(tumour[None], curves["AIF"], tr)[0]
                 / cbv_from_curves(curves["NAWM"][None], curves["AIF"], tr)[0])


def bsw_roi(curves, tr):
    """ROI curves have no reference voxels: the NAWM curve, the only non-enhancing
    curve available, is the reference (so NAWM itself gets K1 = 1, K2 = 0)."""
    rows = np.stack([curves["tumor"], curves["NAWM"]])
    return correct_leakage(rows, curves["NAWM"], tr, gate="none")


def test_real_single_echo_bsw_makes_tumour_cbv_positive(real):
    s, tr = real["single"], real["tr"]
    res = bsw_roi(s, tr)
    assert ratio(s, tr) < 0 < ratio(s, tr, res.corrected[0])
    assert res.k2[0] > 0.02                                 # T1-dominant at TE 30 ms, 60 deg
    assert res.k1[1] == pytest.approx(1.0) and abs(res.k2[1]) < 1e-12
    # T1-free dual echo shows the opposite sign: T2*-dominant leakage (Paulson 2008).
    assert bsw_roi(real["dual"], tr).k2[0] < -0.02
    # Regression guard: measured 0.17 (module notes of perfmap.core.leakage).
    assert 0.1 < ratio(s, tr, res.corrected[0]) < 0.3


@pytest.mark.xfail(strict=True, reason="measured 0.17 against 4.29: the tumour's T1 effect is "
                   "already at -11 1/s at the bolus peak and then flat (SPGR saturation), "
                   "not proportional to the integral of the NAWM curve, so K1 absorbs it; "
                   "and 4.29 itself holds a T2* leakage plateau (BSW on dual echo: 1.15)")
def test_real_single_echo_bsw_ratio_within_25_percent_of_dual_echo(real):
    s, tr = real["single"], real["tr"]
    corrected = bsw_roi(s, tr).corrected[0]
    assert abs(ratio(s, tr, corrected) / ratio(real["dual"], tr) - 1) < 0.25
