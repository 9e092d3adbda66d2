"""DSC signal-to-concentration conversion and baseline / bolus-arrival detection."""

from __future__ import annotations

import numpy as np
import pytest

from perfmap.core.concentration import (BASELINE_GAP, SIGNAL_FLOOR, BaselineWindow,
                                        detect_baseline, dsc_concentration)
from perfmap.core.curves import gamma_variate, signal_from_concentration
from perfmap.core.phantom import make_phantom
from perfmap.errors import InputDataError, ParameterError

TE = 0.03


def _mean_brain(ph):
    return ph.signal[ph.masks["brain"]].mean(axis=0, dtype=np.float64)


@pytest.fixture(scope="module")
def clean():
    return make_phantom(shape=(32, 32, 6), snr=None, seed=3, keep_concentration=True)


def test_round_trip_closed_form():
    t = np.arange(50) * 1.5
    conc = np.stack([gamma_variate(t, 15.0, 3.0, 1.5, p) for p in (0.5, 5.0, 40.0, 80.0)])
    s0 = np.array([300.0, 650.0, 900.0, 1200.0])
    sig = signal_from_concentration(conc, s0, TE)
    out, invalid = dsc_concentration(sig, TE, (0, 10))
    assert out.dtype == np.float32 and out.shape == conc.shape
    assert not invalid.any()
    np.testing.assert_allclose(out, conc, rtol=1e-4, atol=1e-4 * conc.max())


def test_round_trip_noise_free_phantom(clean):
    start, stop = clean.baseline_frames
    conc, invalid = dsc_concentration(clean.signal, clean.te, BaselineWindow(start, stop, stop,
                                                                             "user"))
    tissue = clean.masks["brain"]
    assert conc.shape == clean.signal.shape and conc.dtype == np.float32
    assert not invalid[tissue].any()
    truth = clean.concentration[tissue][:, start:]
    got = conc[tissue][:, start:]
    np.testing.assert_allclose(got, truth, rtol=1e-4, atol=1e-4 * float(truth.max()))
    # the non-steady-state frames are brighter: negative "concentration" there
    assert np.all(conc[tissue][:, :start] < -1.0)


def test_invalid_background_is_nan(clean):
    conc, invalid = dsc_concentration(clean.signal, clean.te, clean.baseline_frames)
    np.testing.assert_array_equal(invalid, clean.s0 <= 0)
    assert np.isnan(conc[invalid]).all()
    assert np.isfinite(conc[~invalid]).all()


def test_invalid_s0_and_nonfinite_voxels():
    sig = np.full((5, 20), 500.0, dtype=np.float32)
    sig[1] = 0.0                  # zero baseline
    sig[2, :5] = -10.0            # negative baseline
    sig[3, 12] = np.nan           # non-finite sample
    sig[4, :5] = np.nan           # non-finite S0
    conc, invalid = dsc_concentration(sig, TE, (0, 5))
    assert invalid.tolist() == [False, True, True, True, True]
    assert np.isnan(conc[1:]).all()
    np.testing.assert_array_equal(conc[0], 0.0)


def test_nonpositive_samples_are_floored_not_infinite():
    sig = np.array([[100.0] * 6 + [50.0, 0.0, -20.0, 1e-9, 100.0]])
    conc, invalid = dsc_concentration(sig, TE, (0, 6))
    assert not invalid.any()
    cap = np.log(1.0 / SIGNAL_FLOOR) / TE
    np.testing.assert_allclose(conc[0, 7:10], cap, rtol=1e-6)
    np.testing.assert_allclose(conc[0, 6], np.log(2.0) / TE, rtol=1e-6)


def test_input_not_modified_and_shapes():
    rng = np.random.default_rng(0)
    sig = (500 + 10 * rng.standard_normal((4, 3, 2, 30))).astype(np.float32)
    sig[0, 0, 0, 20] = -5.0
    before = sig.copy()
    conc4, inv4 = dsc_concentration(sig, TE, (0, 8))
    np.testing.assert_array_equal(sig, before)
    assert conc4.shape == sig.shape and inv4.shape == sig.shape[:3]
    conc2, _ = dsc_concentration(sig.reshape(-1, 30), TE, (0, 8))
    np.testing.assert_array_equal(conc2, conc4.reshape(-1, 30))
    conc1, inv1 = dsc_concentration(sig[1, 1, 1], TE, (0, 8))
    assert conc1.shape == (30,) and inv1.shape == ()
    np.testing.assert_array_equal(conc1, conc4[1, 1, 1])


def test_bad_te_and_window():
    sig = np.full((2, 20), 100.0)
    with pytest.raises(ParameterError):
        dsc_concentration(sig, 0.0, (0, 5))
    with pytest.raises(InputDataError, match="outside"):
        dsc_concentration(sig, TE, (5, 25))


@pytest.mark.parametrize("n_nonsteady,snr,seed", [
    (2, 50.0, 0), (2, 50.0, 1), (0, 50.0, 2), (3, 20.0, 3), (2, 20.0, 4), (2, None, 5),
    (4, 20.0, 6),
])
def test_detect_baseline_on_phantoms(n_nonsteady, snr, seed):
    ph = make_phantom(shape=(32, 32, 6), snr=snr, seed=seed, n_nonsteady=n_nonsteady)
    true_start, true_stop = ph.baseline_frames   # [first steady frame, first frame with tracer)
    w = detect_baseline(_mean_brain(ph))
    assert w.method == "auto"
    assert w.start == true_start
    # the window holds no tracer and loses at most 3 frames at its end
    assert true_stop - 3 <= w.stop <= true_stop
    assert w.stop == w.arrival - BASELINE_GAP
    assert true_stop <= w.arrival <= true_stop + 3


def test_detect_baseline_follows_a_delayed_bolus():
    ph0 = make_phantom(shape=(32, 32, 6), snr=20.0, seed=7)
    ph1 = make_phantom(shape=(32, 32, 6), snr=20.0, seed=7, delay=4.5, dispersion=2.0)
    w0, w1 = detect_baseline(_mean_brain(ph0)), detect_baseline(_mean_brain(ph1))
    assert w1.start == w0.start == 2
    assert 3 <= w1.arrival - w0.arrival <= 5   # 4.5 s delay at TR 1.5 s, dispersion widens


def test_n_skip_override():
    ph = make_phantom(shape=(32, 32, 6), snr=50.0, seed=8, n_nonsteady=2)
    w = detect_baseline(_mean_brain(ph), n_skip=5)
    assert w.start == 5 and w.method == "auto"
    assert w.stop == detect_baseline(_mean_brain(ph)).stop


def test_user_baseline_frames():
    ph = make_phantom(shape=(32, 32, 6), snr=50.0, seed=9)
    auto = detect_baseline(_mean_brain(ph))
    w = detect_baseline(_mean_brain(ph), baseline_frames=(3, 9))
    assert (w.start, w.stop, w.method) == (3, 9, "user")
    assert w.arrival == auto.arrival
    for bad in [(5, 100), (8, 4), (-1, 5), (3, 3), ("a", 4)]:
        with pytest.raises(InputDataError):
            detect_baseline(_mean_brain(ph), baseline_frames=bad)


def test_error_when_bolus_arrives_in_first_frames():
    ph = make_phantom(shape=(32, 32, 6), snr=50.0, seed=10)
    start, stop = ph.baseline_frames
    late = _mean_brain(ph)[stop - 2:]   # series cut just before the bolus
    with pytest.raises(InputDataError, match="baseline"):
        detect_baseline(late)
    s = np.r_[1000.0, 900.0, 600.0, 500.0, 700.0, [950.0] * 20]
    with pytest.raises(InputDataError, match="baseline"):
        detect_baseline(s)


def test_error_without_bolus_or_finite_values():
    rng = np.random.default_rng(1)
    flat = 800.0 + 0.5 * rng.standard_normal(40)
    with pytest.raises(InputDataError, match="no bolus"):
        detect_baseline(flat)
    bad = np.r_[[800.0] * 10, np.nan, [600.0] * 10]
    with pytest.raises(InputDataError, match="NaN"):
        detect_baseline(bad)
