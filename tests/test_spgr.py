"""SPGR signal to concentration (``perfmap.core.spgr``).

Checked against the signal equation solved numerically here (``brentq``), the
forward equation round trip, the OSIPI ``SI_to_Conc`` cases (tolerance 1e-5 mM
+ 1e-5 relative, OSIPI's), and the rules: undefined frames and unusable
baselines are NaN and counted, never clipped.
"""

from __future__ import annotations

import numpy as np
import pytest

from perfmap.core import spgr
from perfmap.core.spgr import r1_from_ratio, spgr_concentration, spgr_signal
from perfmap.errors import ParameterError, ShapeError

from osipi_dce import folder, read_cases, within


def textbook_signal(m0, r1, tr, fa_deg):
    a = np.deg2rad(fa_deg)
    e = np.exp(-tr * r1)
    return m0 * np.sin(a) * (1 - e) / (1 - np.cos(a) * e)


def test_signal_equation():
    # Ernst-angle identity: the signal peaks at cos(a) = E1
    tr, r1 = 0.005, 1 / 1.2
    ernst = np.rad2deg(np.arccos(np.exp(-tr * r1)))
    angles = np.linspace(ernst - 2, ernst + 2, 41)
    assert angles[np.argmax(spgr_signal(1.0, r1, tr, angles))] == pytest.approx(ernst, abs=0.1)
    np.testing.assert_allclose(spgr_signal(3.0, r1, tr, 25.0), textbook_signal(3.0, r1, tr, 25.0))


def test_inversion_matches_a_numerical_root():
    from scipy.optimize import brentq

    tr, fa, r10 = 0.004, 18.0, 1 / 1.4
    for r1_true in (0.5, 1 / 1.4, 2.0, 7.5, 30.0):
        ratio = textbook_signal(1, r1_true, tr, fa) / textbook_signal(1, r10, tr, fa)
        root = brentq(lambda r: textbook_signal(1, r, tr, fa) / textbook_signal(1, r10, tr, fa)
                      - ratio, 1e-3, 1e3, xtol=1e-14)
        assert r1_from_ratio(ratio, r10, tr, fa) == pytest.approx(root, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_concentration_round_trip(dtype):
    tr, fa, t10, r1 = 0.005, 25.0, np.array([0.8, 1.0, 1.6]), 4.5
    conc = np.array([0, 0, 0, 0.1, 0.5, 2.0, 5.0, 1.0])                # mM
    r1_t = 1 / t10[:, None] + r1 * conc[None, :]
    signal = textbook_signal(700.0, r1_t, tr, fa).astype(dtype)
    before = signal.copy()
    out = spgr_concentration(signal, baseline=3, t10=t10, tr=tr, flip_angle_deg=fa, r1=r1)
    np.testing.assert_array_equal(signal, before)
    assert out.conc.dtype == dtype and out.n_undefined == 0 == out.n_bad_baseline
    tol = 2e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(out.conc, np.broadcast_to(conc, out.conc.shape), atol=tol)


def test_window_forms_and_explicit_baseline_agree():
    tr, fa = 0.005, 30.0
    s = textbook_signal(100.0, 1.0 + 4.5 * np.array([0, 0, 0, 0, 1.0, 2.0]), tr, fa)[None]
    a = spgr_concentration(s, 4, 1.0, tr, fa).conc
    b = spgr_concentration(s, (1, 3), 1.0, tr, fa).conc
    c = spgr_concentration(s, slice(0, 4), 1.0, tr, fa).conc
    d = spgr_concentration(s, None, 1.0, tr, fa, s_baseline=spgr_signal(100.0, 1.0, tr, fa)).conc
    for x in (b, c, d):
        np.testing.assert_allclose(x, a, atol=1e-12)
    np.testing.assert_allclose(a[0, 4:], [1.0, 2.0], rtol=1e-9)


def test_undefined_frames_and_bad_baselines_are_nan_and_counted():
    tr, fa = 0.005, 30.0
    s0 = spgr_signal(1000.0, 1.0, tr, fa)
    limit = 1000.0 * np.sin(np.deg2rad(fa))                  # signal as R1 -> infinity
    signal = np.array([[s0, s0, 1.5 * s0, limit * 1.01, 2 * limit],
                       [s0, s0, s0, s0, s0],
                       [0.0, 0.0, 5.0, 5.0, 5.0],
                       [np.nan, s0, s0, s0, s0]])
    out = spgr_concentration(signal, 2, 1.0, tr, fa)
    assert out.n_undefined == 2 and out.n_bad_baseline == 2
    assert np.isfinite(out.conc[0, :3]).all() and np.isnan(out.conc[0, 3:]).all()
    np.testing.assert_allclose(out.conc[1], 0.0, atol=1e-12)
    assert np.isnan(out.conc[2:]).all()                       # zero and NaN baselines


def test_chunking_does_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(0)
    s = 500 + 100 * rng.random((50, 12))
    t10 = rng.uniform(0.5, 2, 50)
    ref = spgr_concentration(s, 3, t10, 0.005, 20.0)
    monkeypatch.setattr(spgr, "CHUNK", 7 * 12)             # 7 voxels of 12 frames
    out = spgr_concentration(s, 3, t10, 0.005, 20.0)
    np.testing.assert_array_equal(out.conc, ref.conc)


def test_bad_input_raises():
    s = np.ones((2, 5))
    with pytest.raises(ShapeError, match="2-D"):
        spgr_concentration(s[0], 2, 1.0, 0.005, 20.0)
    with pytest.raises(ShapeError, match="t10"):
        spgr_concentration(s, 2, [1.0, 1.0, 1.0], 0.005, 20.0)
    for kwargs, match in (({"tr": 0.0}, "repetition time"), ({"flip_angle_deg": 0.0}, "flip"),
                          ({"flip_angle_deg": 180.0}, "flip"), ({"r1": -1.0}, "relaxivity"),
                          ({"t10": 0.0}, "T10"), ({"baseline": 0}, "baseline window"),
                          ({"baseline": (3, 9)}, "baseline window"),
                          ({"s_baseline": 1.0}, "either a baseline window or s_baseline")):
        args = dict(signal=s, baseline=2, t10=1.0, tr=0.005, flip_angle_deg=20.0)
        args.update(kwargs)
        with pytest.raises(ParameterError, match=match):
            spgr_concentration(**args)


def test_osipi_si_to_conc(shared_data):
    cases = read_cases(folder(shared_data, "SI_to_Conc", "data") / "SI2Conc_data.csv")
    assert len(cases) == 5
    for c in cases:
        # OSIPI: baseline = frames 1 .. numbaselinepts-1; the first frame is not assessed
        n_base = int(c["numbaselinepts"])
        out = spgr_concentration(c["s"][None], (1, n_base), c["T1base"], c["TR"], c["FA"],
                                 r1=c["r1"])
        assert out.n_undefined == 0
        ok = within(out.conc[0, 1:], c["conc"][1:], 1e-5, 1e-5)
        assert ok.all(), (c["label"], np.flatnonzero(~ok))
