"""Matrix deconvolution backends on closed-form phantoms.

Phantoms: gamma-variate AIF (Thompson 1964; ``t0 = 10 s``, ``alpha = 3``,
``beta = 1.5 s``, as in Ostergaard 1996) convolved on a 0.01 s grid with a
known residue (``perfmap.core.curves.tissue_concentration``), sampled at
``dt``; CBV 4 ml/100 g, default kH and rho.

What noise-free phantoms can and cannot show
--------------------------------------------
Every residue jumps from 0 to ``F`` when the bolus arrives, and CBF is read as
the peak of the residue *sampled* every ``dt``. A deconvolution on the
sampling grid cannot place that jump exactly, so CBF carries a discretisation
bias that depends on MTT / dt and on the residue shape, on top of the bias
from regularisation. Measured with the defaults (linear discretisation,
arrival on the sampling grid, no noise), CBF error in % for MTT 2, 3, 4, 5,
6, 8, 10, 12 s:

    exponential dt 1.0 osvd  -24.6 -13.9  -8.0  -4.2  -1.6  +1.8  +3.8  +5.2
    exponential dt 1.0 tikh  -24.4 -13.3  -7.2  -3.4  -0.7  +2.7  +5.8  +8.1
    exponential dt 1.5 osvd  -23.6  -8.3  +0.6  +6.3 +10.3 +15.5 +18.6 +20.7
    linear ramp dt 1.0 osvd   -9.5  -2.2  +1.0  +3.6  +5.0  +6.9  +8.0  +8.7
    gamma(2)    dt 1.5 osvd   -9.2  +9.5 +18.2 +22.8 +25.5 +28.4 +29.8 +30.5

So the 5 % target holds only near MTT 4-6 s at dt = 1 s (tested below at the
grey-matter point MTT 5 s); elsewhere the tests bound the error at 35 %.
Exact recovery is tested on data generated with the discrete model itself.

Rectangle vs linear discretisation
----------------------------------
Mean |MTT error| in % over MTT 2-12 s, rectangle -> linear (defaults otherwise):

============================  ===================  ===================
no noise, onset on the grid   dt 1.0 s             dt 1.5 s
============================  ===================  ===================
osvd, exponential             16.0 -> 9.3          17.7 -> 12.7
osvd, gamma (lambda 2)         6.3 -> 7.9          11.0 -> 17.6
osvd, Lorentzian              11.7 -> 12.3         17.8 -> 20.2
osvd, linear ramp              6.3 -> 5.5           8.4 -> 14.1
tikhonov, exponential         20.5 -> 9.4          17.8 -> 15.3
tikhonov, gamma (lambda 2)     7.1 -> 9.0          11.0 -> 12.8
noise, onset anywhere in a
frame (3 shapes, 4 delays)
osvd, CNR 200 / 100 / 30      19.9 / 22.5 / 30.0   27.1 / 31.9 / 42.2
  -> linear                   15.3 / 17.7 / 26.3   18.3 / 23.4 / 36.1
tikhonov, CNR 200 / 100 / 30  23.2 / 28.7 / 48.8   31.4 / 36.1 / 50.0
  -> linear                   16.5 / 23.8 / 46.3   17.6 / 22.5 / 42.8
============================  ===================  ===================

The team's "about half the MTT error" holds for the exponential residue with
the onset on a sample; for flat-topped residues in that idealised setting the
rectangle rule, which represents a jump on a sample exactly, can win. With
sub-frame arrival times and noise, as in real data, ``linear`` was better in
every condition, hence the default; ``test_linear_beats_rectangle`` checks it.

Tikhonov weight: on noisy phantoms the L-curve gave a mean |CBF bias| / RMSE
of 12.9 / 14.7, 17.7 / 19.0 and 29.0 / 29.7 % at CNR 200, 100, 30 (dt 1 s)
against 15.2 / 18.7, 20.0 / 24.5 and 29.3 / 34.2 % for GCV, whose occasional
far-too-small weights widen the spread.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfmap.core import curves
from perfmap.core.maps import perfusion_maps
from perfmap.deconv import convmatrix as cm
from perfmap.deconv import get_backend
from perfmap.errors import ParameterError

CBV = 4.0  # ml/100 g


def aif_fn(t):
    return curves.gamma_variate(t, t0=10.0, alpha=3.0, beta=1.5, peak=1.0)


def phantom(dt, n_frames, mtt, shape="exponential", delay=0.0):
    """Noise-free tissue curves (n, T), AIF (T,), true CBF (n,) in ml/100 g/min."""
    t = np.arange(n_frames) * dt
    mtt = np.atleast_1d(np.asarray(mtt, float))
    cbf = 60.0 * CBV / mtt
    conc = curves.tissue_concentration(t, aif_fn, curves.flow_per_second(cbf), mtt,
                                       shape=shape, delay=delay, fine_dt=0.01)
    return np.atleast_2d(conc), aif_fn(t), cbf


def maps_for(name, conc, aif, dt, **kw):
    fit = get_backend(name)(**kw).fit(conc, aif, dt)
    return perfusion_maps(conc, aif, dt, fit), fit


# -- discretisation helpers --------------------------------------------------------------

def test_causal_rectangle_is_dt_times_aif():
    aif = np.array([0.0, 1.0, 3.0, 2.0])
    a = cm.causal_matrix(aif, 0.5, "rectangle")
    expected = 0.5 * np.array([[0, 0, 0, 0], [1, 0, 0, 0], [3, 1, 0, 0], [2, 3, 1, 0.0]])
    np.testing.assert_allclose(a, expected)


def test_causal_linear_integrates_piecewise_linear_curves_exactly():
    # for a constant residue the row sums are the trapezoid integral of the AIF,
    # and for k(t) = t they equal the exact integral of the linear interpolant
    rng = np.random.default_rng(3)
    aif, dt = rng.uniform(0, 2, 12), 0.7
    aif[0] = 0.0
    a = cm.causal_matrix(aif, dt, "linear")
    t = np.arange(12) * dt
    np.testing.assert_allclose(a @ np.ones(12), np.concatenate(
        [[0.0], np.cumsum(0.5 * dt * (aif[1:] + aif[:-1]))]), rtol=1e-12)
    fine = np.linspace(0, t[-1], 200001)
    af = np.interp(fine, t, aif)
    exact = [np.trapezoid(af[fine <= ti] * (ti - fine[fine <= ti]), fine[fine <= ti]) for ti in t]
    np.testing.assert_allclose(a @ t, exact, rtol=1e-6, atol=1e-9)


def test_pad_length_is_the_smallest_fast_length_of_at_least_2n():
    def smooth(m):
        for prime in (2, 3, 5):
            while m % prime == 0:
                m //= prime
        return m == 1

    for n in range(1, 400):
        length = cm.pad_length(n)
        assert length >= 2 * n and smooth(length)
        assert not any(smooth(m) for m in range(2 * n, length))
    assert [cm.pad_length(n) for n in (58, 59, 60, 61, 161)] == [120, 120, 120, 125, 324]
    assert cm.circulant_kernel(np.ones(58), 1.0).size == 120
    with pytest.raises(ValueError, match="at least one frame"):
        cm.pad_length(0)


def test_circulant_kernel_singular_values_are_fft_magnitudes():
    aif = aif_fn(np.arange(20) * 1.5)
    for disc in cm.DISCRETISATIONS:
        b = cm.circulant_kernel(aif, 1.5, disc)
        assert b.shape == (40,)
        s = np.linalg.svd(cm.circulant_matrix(b), compute_uv=False)
        np.testing.assert_allclose(np.sort(s), np.sort(np.abs(np.fft.fft(b))), rtol=1e-9,
                                   atol=1e-12 * s.max())
    lin = cm.circulant_kernel(aif, 1.5, "linear")
    rect = cm.circulant_kernel(aif, 1.5, "rectangle")
    np.testing.assert_allclose(lin, (np.roll(rect, 1) + 4 * rect + np.roll(rect, -1)) / 6)
    with pytest.raises(ParameterError, match="rectangle"):
        cm.circulant_kernel(aif, 1.5, "simpson")


@pytest.mark.parametrize("n_frames,length", [(58, 120), (59, 125), (7, 16), (1, 2), (5, 5)])
def test_real_dft_matrix_is_the_real_fft_of_the_padded_rows(n_frames, length):
    x = np.random.default_rng(n_frames).normal(size=(40, n_frames)).astype(np.float32)
    spec = cm.rfft_rows(x, cm.real_dft_matrix(n_frames, length))
    assert spec.dtype == np.complex64 and spec.shape == (40, length // 2 + 1)
    ref = np.fft.rfft(x.astype(np.float64), n=length, axis=1)
    np.testing.assert_allclose(spec, ref, rtol=0, atol=2e-6 * np.abs(ref).max())
    with pytest.raises(ValueError, match="n_frames"):
        cm.real_dft_matrix(length + 1, length)


def test_oscillation_index_definition():
    L = 40
    assert cm.oscillation_index(np.ones((1, L)))[0] == 0.0
    assert cm.oscillation_index(np.zeros((1, L)))[0] == 0.0
    alt = np.where(np.arange(L) % 2, 1.0, -1.0)[None]       # second differences of +-4
    np.testing.assert_allclose(cm.oscillation_index(alt), 4.0 * (L - 2) / L)


def test_peak_of_residue_reads_the_second_half_as_negative_lags():
    k = np.zeros((2, 10))
    k[0, 3], k[1, 8] = 2.0, 5.0
    flow, tmax = cm.peak_of_residue(k, 1.5, 5, circular=True)
    np.testing.assert_allclose(flow, [2.0, 5.0])
    np.testing.assert_allclose(tmax, [4.5, -3.0])


# -- exact recovery on data made with the discrete model ----------------------------------

@pytest.mark.parametrize("disc", cm.DISCRETISATIONS)
@pytest.mark.parametrize("dt,n_frames", [(1.0, 90), (1.5, 60)])
def test_model_consistent_data_are_inverted_exactly(disc, dt, n_frames):
    """A smooth residue pushed through each backend's own matrix comes back to 1e-4."""
    t = np.arange(n_frames) * dt
    aif = aif_fn(t)
    flow = 0.01
    lag = np.arange(2 * n_frames) * dt
    k = flow * np.exp(-((lag - 15.0) ** 2) / (2 * 4.0 ** 2))      # peak 1/s at 15 s
    b = cm.circulant_kernel(aif, dt, disc)
    circ = np.real(np.fft.ifft(np.fft.fft(b) * np.fft.fft(k)))[:n_frames]
    causal = cm.causal_matrix(aif, dt, disc) @ k[:n_frames]
    for name, conc, kw in [("ssvd", causal, {"threshold": 0.005}),
                           ("csvd", circ, {"threshold": 0.005}),
                           ("osvd", circ, {}), ("tikhonov", circ, {}),
                           ("tikhonov", circ, {"criterion": "gcv"})]:
        fit = get_backend(name)(discretisation=disc, keep_residue=True, **kw).fit(
            np.stack([conc, 2 * conc]), aif, dt)
        np.testing.assert_allclose(fit.flow, [flow, 2 * flow], rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(fit.tmax, 15.0, err_msg=name)
        np.testing.assert_allclose(fit.residue[0], k[:n_frames], atol=2e-4 * flow,
                                   err_msg=name)


# -- continuous closed-form phantoms -----------------------------------------------------

@pytest.mark.parametrize("name", ["osvd", "tikhonov"])
@pytest.mark.parametrize("shape", ["exponential", "linear"])
def test_grey_matter_point_within_5_percent(name, shape):
    """MTT 5 s, CBF 48 ml/100 g/min, dt 1 s, 90 frames, no noise: CBF, CBV, MTT within 5 %.

    Tikhonov reaches 8 % here (CBF +7.5 % for the linear residue with the default,
    first difference and oscillation index; +7.3 % with standard-form GCV, the
    earlier default): noise-free curves take the smallest weight of the grid, and
    the linear residue's onset is then over-resolved (see perfmap.deconv.tikhonov).
    """
    tol = 0.05 if name == "osvd" else 0.08
    conc, aif, cbf = phantom(1.0, 90, 5.0, shape)
    maps, fit = maps_for(name, conc, aif, 1.0)
    assert not fit.failed.any()
    np.testing.assert_allclose(maps["cbv"], CBV, rtol=0.01)
    np.testing.assert_allclose(maps["cbf"], cbf, rtol=tol)
    np.testing.assert_allclose(maps["mtt"], 5.0, rtol=tol)
    np.testing.assert_allclose(maps["tmax"], 0.0, atol=1.0)


def test_team_tolerance_mtt_5_to_10_s_at_dt_1_s():
    """Team decision (issue 10): noise-free CBF within 5 % at MTT 5-10 s with dt <= 1 s.

    Met by the default oSVD at dt 1 s (exponential residue: -4.2 % to +3.8 %).
    Measured but NOT met at dt 0.5 s (oSVD -9.4 % at MTT 5 s, -1.2 % at 10 s; Tikhonov
    -6.6 % at 5 s): finer sampling gives the oscillation-index threshold more
    high-frequency noise-free structure to cut. Reported to the team; the dt 0.5 s
    values are held below as a regression guard.
    """
    mtt = np.array([5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    conc, aif, cbf = phantom(1.0, 90, mtt, "exponential")
    maps, fit = maps_for("osvd", conc, aif, 1.0)
    np.testing.assert_allclose(maps["cbf"], cbf, rtol=0.05)
    np.testing.assert_allclose(maps["mtt"], mtt, rtol=0.05)
    # regression guard (perfmap's own measurement, see the docstring): dt 0.5 s within 10 %
    conc, aif, cbf = phantom(0.5, 180, mtt, "exponential")
    maps, fit = maps_for("osvd", conc, aif, 0.5)
    np.testing.assert_allclose(maps["cbf"], cbf, rtol=0.10)


@pytest.mark.parametrize("name", ["osvd", "tikhonov"])
@pytest.mark.parametrize("dt,n_frames", [(1.0, 90), (1.5, 60)])
@pytest.mark.parametrize("shape", ["exponential", "gamma", "linear"])
def test_closed_form_grid(name, dt, n_frames, shape):
    """MTT 3-12 s: CBV within 1 %, CBF and MTT within the documented 35 % bias band.

    Regression guard: the band was measured from perfmap's own output. It is wide because of the sampling of the residue's onset (module
    notes), but a wrong dt scaling, kernel weight or FFT convention moves CBF
    by a factor of 1.5 or more and fails it.
    """
    mtt = np.array([3.0, 4.0, 6.0, 8.0, 12.0])
    # Tikhonov overshoots long-MTT flat-topped residues at dt 1.5 s by up to 42 % (at the
    # smallest weight of its grid, which noise-free curves choose; GCV, the earlier
    # default, chose 1.3-1.8 times that weight here and measured up to 40 %).
    band = 0.35 if name == "osvd" else 0.45
    conc, aif, cbf = phantom(dt, n_frames, mtt, shape)
    maps, fit = maps_for(name, conc, aif, dt)
    np.testing.assert_allclose(maps["cbv"], CBV, rtol=0.01)
    np.testing.assert_allclose(maps["cbf"], cbf, rtol=band)
    np.testing.assert_allclose(maps["mtt"], mtt, rtol=band)
    assert np.all(np.abs(maps["tmax"]) <= dt)


def noisy_phantoms(dt, n_frames, cnr, n_noise, seed):
    """Exponential, gamma and Lorentzian residues, MTT 2-12 s, arrival anywhere in a frame."""
    rng = np.random.default_rng(seed)
    mtt = np.array([2.0, 3.0, 4.0, 6.0, 8.0, 12.0])
    rows, truth = [], []
    for shape in ("exponential", "gamma", "lorentzian"):
        for delay in np.arange(4) * dt / 4:
            conc, aif, cbf = phantom(dt, n_frames, mtt, shape, delay)
            rows.append(conc)
            truth.append(mtt)
    conc = np.repeat(np.concatenate(rows), n_noise, axis=0)
    sd = conc.max() / cnr
    conc = conc + rng.normal(0.0, sd, conc.shape)
    return conc, aif + rng.normal(0.0, sd, aif.shape), np.repeat(np.concatenate(truth), n_noise)


@pytest.mark.parametrize("name", ["osvd", "tikhonov"])
@pytest.mark.parametrize("dt,n_frames", [(1.0, 90), (1.5, 60)])
def test_linear_beats_rectangle(name, dt, n_frames):
    """With noise (CNR 100) and sub-frame arrival, linear gives the smaller MTT error."""
    conc, aif, mtt = noisy_phantoms(dt, n_frames, cnr=100.0, n_noise=10, seed=7)
    err = {}
    for disc in cm.DISCRETISATIONS:
        maps, _ = maps_for(name, conc, aif, dt, discretisation=disc)
        rel = (maps["mtt"] / mtt - 1.0).reshape(-1, 10)
        err[disc] = np.mean(np.abs(np.median(rel, axis=1)))
    assert err["linear"] < 0.9 * err["rectangle"], err


def test_osvd_bisection_agrees_with_exhaustive_scan():
    """Bisection assumes the OI falls as the threshold rises; check against Wu's scan."""
    conc, aif, _ = noisy_phantoms(1.5, 60, cnr=30.0, n_noise=8, seed=11)
    fast = get_backend("osvd")().fit(conc, aif, 1.5)
    scan = get_backend("osvd")(search="scan").fit(conc, aif, 1.5)
    same = fast.flow == scan.flow
    assert same.mean() > 0.97
    # where they differ, the CBF medians still agree
    assert abs(np.median(fast.flow) / np.median(scan.flow) - 1) < 0.01


@pytest.mark.parametrize("name,key", [("osvd", "threshold_median"), ("tikhonov", "mu_median")])
def test_regularisation_is_chosen_per_voxel(name, key):
    """Noisier voxels get stronger regularisation within one fit (not one value per image)."""
    clean, aif, _ = noisy_phantoms(1.5, 60, cnr=300.0, n_noise=2, seed=5)
    noisy, _, _ = noisy_phantoms(1.5, 60, cnr=10.0, n_noise=2, seed=6)
    backend = get_backend(name)()
    both = backend.fit(np.concatenate([clean, noisy]), aif, 1.5)
    alone = [backend.fit(c, aif, 1.5).info[key] for c in (clean, noisy)]
    assert alone[1] >= 2 * alone[0], alone
    n = len(clean)
    np.testing.assert_array_equal(both.flow[:n], backend.fit(clean, aif, 1.5).flow)
    counts = both.info["threshold_counts" if name == "osvd" else "mu_counts"]
    assert sum(c > 0 for c in counts) >= 4                      # a spread of choices
    json.dumps(both.info)


def test_robust_gcv_never_regularises_less_than_gcv_and_tames_outliers():
    """RGCV (Lukas 2006) = GCV times a factor that falls with the weight: its choice is
    never below GCV's, gamma = 1 is GCV, and at CNR 20 it removes GCV's rare far too
    small weights (their CBF many times the truth)."""
    conc, aif, mtt = noisy_phantoms(1.5, 60, cnr=20.0, n_noise=40, seed=8)
    gcv = get_backend("tikhonov")(criterion="gcv")
    rgcv = get_backend("tikhonov")(criterion="rgcv")
    assert rgcv.params()["gamma"] == 0.3 and "gamma" not in gcv.params()
    grid = gcv.mu_grid
    chosen = {name: backend.fit(conc, aif, 1.5) for name, backend in
              (("gcv", gcv), ("rgcv", rgcv))}
    # the fit reports how many voxels chose each weight: RGCV's choices sit higher
    g = np.repeat(np.arange(grid.size), chosen["gcv"].info["mu_counts"])
    r = np.repeat(np.arange(grid.size), chosen["rgcv"].info["mu_counts"])
    assert np.median(r) > np.median(g) and r.min() >= g.min()
    cbf_true = 60.0 * CBV / mtt
    ratio = {k: (0.73 / 1.04) * 100 * 60 * v.flow / cbf_true for k, v in chosen.items()}
    # measured (2880 curves): GCV 43 voxels above twice the truth, p99 3.0; RGCV 2, p99 0.95
    assert np.count_nonzero(ratio["gcv"] > 2) >= 15 and np.percentile(ratio["gcv"], 99) > 2
    assert np.count_nonzero(ratio["rgcv"] > 2) <= 3 and np.percentile(ratio["rgcv"], 99) < 1.2
    same = get_backend("tikhonov")(criterion="rgcv", gamma=1.0).fit(conc, aif, 1.5)
    np.testing.assert_array_equal(same.flow, chosen["gcv"].flow)
    for bad in (0.0, 1.5, "x"):
        with pytest.raises(ParameterError, match="gamma"):
            get_backend("tikhonov")(criterion="rgcv", gamma=bad)


def test_osvd_threads_do_not_change_results():
    conc, aif, _ = noisy_phantoms(1.5, 60, cnr=50.0, n_noise=60, seed=3)
    assert conc.shape[0] >= 4096                   # enough rows to be split between threads
    one = get_backend("osvd")(threads=1).fit(conc, aif, 1.5)
    two = get_backend("osvd")(threads=2).fit(conc, aif, 1.5)
    np.testing.assert_array_equal(one.flow, two.flow)
    np.testing.assert_array_equal(one.tmax, two.tmax)
    assert one.info == two.info


# -- delay -------------------------------------------------------------------------------

def test_tikhonov_oi_bisection_agrees_with_exhaustive_scan():
    """The "oi" weight is found by bisection; Wu's definition scans the grid upwards."""
    from perfmap.deconv.tikhonov import _meets_oi

    conc, aif, _ = noisy_phantoms(1.5, 60, cnr=30.0, n_noise=8, seed=11)
    backend = get_backend("tikhonov")()
    st = backend.prepare(aif, 1.5, 60)
    spec = cm.rfft_rows(conc, st.dft)
    scan = np.full(len(conc), backend.n_mu - 1)
    todo = np.ones(len(conc), bool)
    for p in range(backend.n_mu):
        ok = todo & _meets_oi(backend._residues(spec, np.full(len(conc), p), st).T, 0.095)
        scan[ok] = p
        todo &= ~ok
    assert np.mean(backend._oi_search(spec, st) == scan) > 0.97     # measured: all 576


def test_tikhonov_penalty_orders():
    """Order 0 is the standard form; a difference penalty leaves the residue's area free."""
    from perfmap.deconv.tikhonov import penalty_spectrum

    np.testing.assert_allclose(penalty_spectrum(120, 0), 1.0)
    d1, d2 = penalty_spectrum(120, 1), penalty_spectrum(120, 2)
    assert d1[0] == d2[0] == 0.0 and d1.max() == d2.max() == 1.0
    np.testing.assert_allclose(d2, d1 ** 2)
    aif = aif_fn(np.arange(60) * 1.5)
    b = cm.circulant_kernel(aif, 1.5)
    for order in (1, 2):
        st = get_backend("tikhonov")(order=order).prepare(aif, 1.5, 60)
        # phi_0 = 1 for every weight: K_0 = C_0 / B_0, the area of the residue
        np.testing.assert_allclose(st.filters[:, 0], 1.0 / np.fft.rfft(b)[0], rtol=1e-5)
    st0 = get_backend("tikhonov")(order=0).prepare(aif, 1.5, 60)
    assert abs(st0.filters[-1, 0]) < 0.99 * abs(1.0 / np.fft.rfft(b)[0])
    for bad in (3, -1, 1.5, "one"):
        with pytest.raises(ParameterError, match="order"):
            get_backend("tikhonov")(order=bad)
    with pytest.raises(ParameterError, match="oi_limit"):
        get_backend("tikhonov")(oi_limit=0)
    params = get_backend("tikhonov")().params()
    assert params["criterion"] == "oi" and params["order"] == 1 and params["oi_limit"] == 0.095


@pytest.mark.parametrize("criterion", ["gcv", "rgcv", "lcurve", "oi"])
@pytest.mark.parametrize("order", [0, 1, 2])
def test_tikhonov_every_criterion_and_order_recovers_clean_curves(criterion, order):
    """CNR 300: CBF within the closed-form bias band of the noise-free curves."""
    conc, aif, cbf = phantom(1.0, 90, np.array([4.0, 6.0, 8.0]), "exponential")
    conc = conc + np.random.default_rng(1).normal(0, conc.max() / 300, conc.shape)
    maps, fit = maps_for("tikhonov", conc, aif, 1.0, criterion=criterion, order=order)
    assert not fit.failed.any()
    np.testing.assert_allclose(maps["cbf"], cbf, rtol=0.25)


@pytest.mark.parametrize("name", ["osvd", "csvd", "tikhonov"])
def test_circulant_backends_ignore_arrival_delay(name):
    """Whole-frame delays from -3 to +6 s leave CBF unchanged; Tmax follows the delay.

    A delay that is not a whole number of frames moves the residue's onset
    between samples, which changes the sampled peak like any sub-frame timing
    does (module notes), so it is held to 10 % only.
    """
    dt, n_frames = 1.0, 90
    delays = np.array([-3.0, 0.0, 2.0, 3.0, 6.0, 1.5])
    conc = np.concatenate([phantom(dt, n_frames, 5.0, "exponential", d)[0] for d in delays])
    aif = aif_fn(np.arange(n_frames) * dt)
    fit = get_backend(name)().fit(conc, aif, dt)
    ratio = fit.flow / fit.flow[1]
    np.testing.assert_allclose(ratio[:5], 1.0, atol=0.01)
    np.testing.assert_allclose(ratio[5], 1.0, atol=0.10)
    # whole-frame shifts move Tmax by exactly the shift, including the wrapped negative one
    np.testing.assert_allclose(fit.tmax[:5] - fit.tmax[1], delays[:5])
    # the regularised peak sits 0-2 frames after the onset (the onset jump is smoothed)
    assert np.all((fit.tmax >= delays) & (fit.tmax <= delays + 2 * dt + 0.5)), fit.tmax
    assert fit.tmax[0] < 0                        # negative delay wrapped, read as negative


def test_ssvd_underestimates_delayed_flow_more():
    """sSVD's causal matrix is delay-sensitive (Wu 2003): the reason oSVD is preferred."""
    dt, n_frames = 1.0, 90
    conc = np.concatenate([phantom(dt, n_frames, 5.0, "exponential", d)[0] for d in (0, 4)])
    fit = get_backend("ssvd")().fit(conc, aif_fn(np.arange(n_frames) * dt), dt)
    assert fit.flow[1] < 0.95 * fit.flow[0]
