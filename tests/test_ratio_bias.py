"""Tumour/NAWM ratio estimators: the deconvolved ROI-mean curves and the shared regularisation.

The phantom checks use ``benchmarks/ratio_bias.py``'s subjects (perfmap's
simulator, tumour voxels from a phantom with the tumour's residue shape and
delay, the rest from one with the NAWM settings; same seed, hence same AIF,
tissue values and noise). Bands are regression guards set from perfmap's own
measurements with a margin (values in the comments), not accuracy claims; the
README "Grading ratios" tables hold the cohort results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from perfmap.core.curves import flow_per_second, gamma_variate, tissue_concentration
from perfmap.core.roi import mean_curve_ratios
from perfmap.deconv import get_backend, make_backend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ratio_bias  # noqa: E402

OSVD = make_backend("osvd")

T = np.arange(60) * 1.5


def aif_fn(t):
    return gamma_variate(t, t0=12.3, alpha=3.0, beta=1.5, peak=50.0)


def two_regions(cnr_roi=None, cnr_ref=None, n_roi=40, n_ref=20, seed=0):
    """Exponential residues, MTT 4 s; ROI flow twice the reference's; optional noise."""
    rng = np.random.default_rng(seed)
    c = tissue_concentration(T, aif_fn, flow_per_second(np.array([60.0, 30.0])),
                             np.array([4.0, 4.0]))
    conc = np.repeat(c, [n_roi, n_ref], axis=0)
    for rows, cnr, peak in ((slice(0, n_roi), cnr_roi, c[0].max()),
                            (slice(n_roi, None), cnr_ref, c[1].max())):
        if cnr:
            conc[rows] += rng.normal(0.0, peak / cnr, conc[rows].shape)
    roi = np.arange(n_roi + n_ref) < n_roi
    return conc, roi, ~roi


# -- the function ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["osvd", "tikhonov", "csvd", "ssvd"])
def test_noise_free_uniform_rois_give_the_voxel_ratio(method):
    conc, roi, ref = two_regions()
    backend = make_backend(method)
    out = mean_curve_ratios(conc, roi, ref, aif_fn(T), 1.5, backend)
    fit = backend.fit(conc, aif_fn(T), 1.5)
    assert out["cbf_ratio"] == pytest.approx(fit.flow[roi].mean() / fit.flow[ref].mean(),
                                             rel=1e-5)
    assert out["cbf_ratio"] == pytest.approx(2.0, rel=1e-5)
    assert out["cbv_ratio"] == pytest.approx(2.0, rel=1e-9)
    assert out["mtt_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert (out["roi_voxels"], out["ref_voxels"]) == (40, 20)
    assert out["shared_regularisation"] == (method in ("osvd", "tikhonov"))
    assert set(out["roi"]) == {"cbf", "cbv", "mtt"}


def test_cbv_ratio_equals_the_voxel_mean_ratio_with_noise():
    """CBV is linear in the curves: both estimators agree whatever the noise."""
    from perfmap.core.maps import cbv_from_curves

    conc, roi, ref = two_regions(cnr_roi=5.0, cnr_ref=3.0)
    out = mean_curve_ratios(conc, roi, ref, aif_fn(T), 1.5, OSVD)
    cbv = cbv_from_curves(conc, aif_fn(T), 1.5)
    assert out["cbv_ratio"] == pytest.approx(cbv[roi].mean() / cbv[ref].mean(), rel=1e-6)


def test_non_finite_curves_are_left_out_and_counted():
    conc, roi, ref = two_regions()
    conc[3, 10] = np.nan
    conc[45, 0] = np.inf
    out = mean_curve_ratios(conc, roi, ref, aif_fn(T), 1.5, OSVD)
    assert (out["roi_voxels"], out["roi_excluded"]) == (39, 1)
    assert (out["ref_voxels"], out["ref_excluded"]) == (19, 1)
    assert out["cbf_ratio"] == pytest.approx(2.0, rel=1e-5)


def test_empty_roi_and_wrong_mask_shape():
    conc, roi, ref = two_regions()
    out = mean_curve_ratios(conc, roi, np.zeros_like(ref), aif_fn(T), 1.5, OSVD)
    assert out["cbf_ratio"] is None and out["roi"] is None and out["ref_voxels"] == 0
    with pytest.raises(ValueError, match="ref mask"):
        mean_curve_ratios(conc, roi, ref[:-1], aif_fn(T), 1.5, OSVD)


def test_volumes_as_input():
    """Curves may be given as a 4D volume with 3D masks."""
    conc, roi, ref = two_regions(n_roi=8, n_ref=8)
    vol = conc.reshape(4, 2, 2, 60)
    out = mean_curve_ratios(vol, roi.reshape(4, 2, 2), ref.reshape(4, 2, 2), aif_fn(T), 1.5,
                            make_backend("tikhonov"))
    assert out["cbf_ratio"] == pytest.approx(2.0, rel=1e-5)


# -- shared regularisation -------------------------------------------------------------------

@pytest.mark.parametrize("method, key", [("osvd", "threshold_counts"), ("tikhonov", "mu_counts")])
def test_fit_shared_applies_the_strongest_choice_to_every_curve(method, key):
    conc, _, _ = two_regions(cnr_roi=200.0, cnr_ref=8.0, n_roi=1, n_ref=1)
    backend = get_backend(method)()
    alone = [int(np.argmax(backend.fit(c[None], aif_fn(T), 1.5).info[key])) for c in conc]
    assert alone[1] > alone[0]                         # the noisy curve needs more
    shared = backend.fit_shared(conc, aif_fn(T), 1.5)
    counts = shared.info[key]
    assert counts[max(alone)] == 2 and sum(counts) == 2
    # the clean curve alone, deconvolved with the noisy curve's choice, gives the same flow
    again = backend.fit_shared(np.stack([conc[0], conc[1]]), aif_fn(T), 1.5)
    np.testing.assert_array_equal(again.flow, shared.flow)
    if method == "osvd":
        fixed = get_backend("csvd")(threshold=float(backend.thresholds[max(alone)])).fit(
            conc, aif_fn(T), 1.5)
        np.testing.assert_allclose(shared.flow, fixed.flow, rtol=1e-4)
    # fit_shared leaves the backend as it was
    assert backend.chunk_size == 16384 and not backend._shared
    np.testing.assert_array_equal(backend.fit(conc, aif_fn(T), 1.5).flow,
                                  get_backend(method)().fit(conc, aif_fn(T), 1.5).flow)


def test_fit_shared_ignores_zero_and_non_finite_rows():
    conc, _, _ = two_regions(cnr_roi=200.0, n_roi=1, n_ref=1)
    rows = np.stack([conc[0], np.zeros(60), np.full(60, np.nan)])
    fit = get_backend("osvd")().fit_shared(rows, aif_fn(T), 1.5)
    alone = get_backend("osvd")().fit(conc[:1], aif_fn(T), 1.5)
    assert fit.flow[0] == alone.flow[0] and fit.flow[1] == 0.0 and fit.failed.tolist() == [
        False, False, True]


# -- on perfmap's phantoms ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def alike():
    """Four subjects (2 HGG, 2 LGG), tumour and NAWM alike: exponential residue, no delay."""
    return {snr: [ratio_bias.simulate(7000 + i, snr, None, {"residue": "exponential"},
                                      ("HGG", "LGG")[i % 2]) for i in range(4)]
            for snr in (None, 50.0, 10.0)}


def _median_errors(subjects, method, **params):
    errs = [ratio_bias.evaluate(s, method, params) for s in subjects]
    return {est: float(np.median([e[est] for e in errs])) for est in ("voxel", "curve")}


def test_gcv_weights_bias_the_voxel_mean_not_the_mean_curve(alike):
    """Standard-form GCV (the earlier Tikhonov default) smooths low-CNR NAWM more.

    Measured (median of 4): voxel mean +2 / +20 / +35 % (noise-free, SNR 50, SNR 10),
    mean curve +2 / +7 / -4 %.
    """
    free, snr10 = (_median_errors(alike[s], "tikhonov", criterion="gcv", order=0)
                   for s in (None, 10.0))
    assert snr10["voxel"] > free["voxel"] + 0.2
    assert abs(snr10["curve"] - free["curve"]) < 0.12


def test_one_fixed_threshold_lets_noise_raise_low_cnr_white_matter(alike):
    """cSVD (one threshold for all voxels): noise peaks raise the low-CNR NAWM CBF.

    Measured (median of 4): voxel mean +4 / +2 / -31 %, mean curve +4 / +6 / +2 %.
    """
    free, snr10 = (_median_errors(alike[s], "csvd") for s in (None, 10.0))
    assert snr10["voxel"] < free["voxel"] - 0.2
    assert abs(snr10["curve"] - free["curve"]) < 0.12


@pytest.mark.parametrize("method", ["osvd", "tikhonov"])
def test_mean_curve_ratio_of_alike_regions(alike, method):
    """Measured (median of 4): oSVD +2 / +8 / -1 %, Tikhonov +2 / +11 / -6 % (noise-free,
    SNR 50, SNR 10); 4 subjects spread by +-15 %, hence the wide guard."""
    for snr in (None, 50.0, 10.0):
        assert abs(_median_errors(alike[snr], method)["curve"]) < 0.15, snr


def test_dispersion_physics_is_the_peak_of_the_dispersed_residue():
    # exponential residue, MTT 4 s, dispersion 1 s: peak of (exp(-t/1)/1) * exp(-t/4) is
    # (4/3) (r^(1/3) - r^(4/3)) at its maximum, r = 1/4: 0.63
    assert ratio_bias.dispersion_peak(4.0, 1.0) == pytest.approx(
        4 / 3 * (0.25 ** (1 / 3) - 0.25 ** (4 / 3)), rel=2e-3)
    assert ratio_bias.dispersion_peak(4.0, 0.0) == pytest.approx(1.0)
