"""The DSC phantom, the cohort writer and ``perfmap simulate``."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from perfmap.cli.main import cli
from perfmap.core.curves import RESIDUE_SHAPES
from perfmap.core.maps import cbv_from_curves
from perfmap.core.phantom import Phantom, make_phantom
from perfmap.errors import OutputExistsError, ParameterError
from perfmap.simulate import MANIFEST_COLUMNS, simulate_cohort, write_subject

SHAPE = (32, 32, 6)


@pytest.fixture(scope="module")
def ph():
    return make_phantom(shape=SHAPE, snr=50.0, seed=5)


def test_shapes_dtypes_and_masks(ph):
    assert isinstance(ph, Phantom)
    assert ph.signal.shape == SHAPE + (60,) and ph.signal.dtype == np.float32
    assert ph.affine.shape == (4, 4)
    np.testing.assert_allclose(np.diag(ph.affine)[:3], [2.0, 2.0, 5.0])
    centre = ph.affine @ np.r_[(np.array(SHAPE) - 1) / 2.0, 1.0]
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    assert set(ph.masks) == {"brain", "aif", "tumour", "ref", "gm", "wm"}
    for m in ph.masks.values():
        assert m.dtype == bool and m.shape == SHAPE and m.any()
    brain = ph.masks["brain"]
    for k in ("aif", "tumour", "ref", "gm", "wm"):
        assert not (ph.masks[k] & ~brain).any()
    assert not (ph.masks["ref"] & ~ph.masks["wm"]).any()
    assert not (ph.masks["tumour"] & (ph.masks["gm"] | ph.masks["wm"] | ph.masks["aif"])).any()
    # tumour and ref lie in opposite hemispheres (x), mirrored about the midline
    xt = np.argwhere(ph.masks["tumour"])[:, 0].mean()
    xr = np.argwhere(ph.masks["ref"])[:, 0].mean()
    mid = (SHAPE[0] - 1) / 2.0
    assert xt < mid < xr and abs((mid - xt) - (xr - mid)) < 1.5
    assert ph.aif.shape == (60,) and ph.times[1] == pytest.approx(1.5)


def test_truth_maps(ph):
    tissue = ph.masks["gm"] | ph.masks["wm"] | ph.masks["tumour"]
    for k in ("cbf", "cbv", "mtt"):
        m = ph.truth[k]
        assert m.dtype == np.float32 and m.shape == SHAPE
        assert np.isfinite(m[tissue]).all() and np.isnan(m[~tissue]).all()
    cbf, cbv, mtt = (ph.truth[k][tissue].astype(np.float64) for k in ("cbf", "cbv", "mtt"))
    np.testing.assert_allclose(mtt, 60.0 * cbv / cbf, rtol=1e-5)
    gm, wm = ph.masks["gm"], ph.masks["wm"]
    assert 45 < np.mean(ph.truth["cbf"][gm]) < 75 and 3.2 < np.mean(ph.truth["cbv"][gm]) < 4.8
    assert 18 < np.mean(ph.truth["cbf"][wm]) < 28 and 1.6 < np.mean(ph.truth["cbv"][wm]) < 2.6
    # small voxel heterogeneity (5 % log-normal)
    assert 0.03 < np.std(np.log(ph.truth["cbf"][wm])) < 0.07


def test_grades_set_tumour_ratios():
    for seed in range(4):
        hgg = make_phantom(shape=SHAPE, grade="HGG", seed=seed, snr=None).params
        lgg = make_phantom(shape=SHAPE, grade="LGG", seed=seed, snr=None).params
        assert 1.9 < hgg["cbf_ratio"] < 4.2 and 1.9 < hgg["cbv_ratio"] < 4.2
        assert 0.75 < lgg["cbf_ratio"] < 1.6 and 0.75 < lgg["cbv_ratio"] < 1.6


@pytest.mark.parametrize("residue", RESIDUE_SHAPES)
def test_noise_free_curves_give_true_cbv(residue):
    """The CBV formula of DESIGN section 4 recovers the truth from the phantom's curves."""
    p = make_phantom(shape=SHAPE, snr=None, seed=6, residue=residue, keep_concentration=True,
                     delay=1.0, dispersion=1.0 if residue == "exponential" else 0.0)
    tissue = p.masks["gm"] | p.masks["wm"] | p.masks["tumour"]
    # Tissue dR2* carries the tissue/blood relaxivity ratio; the truth is physiological.
    ratio = p.params["relaxivity_ratio"]
    assert ratio == 8.0
    cbv = cbv_from_curves(p.concentration[tissue], p.aif, p.tr, kh=p.params["kh"],
                          rho=p.params["rho"]) / ratio
    truth = p.truth["cbv"][tissue]
    if residue == "lorentzian":
        # its 1/t^2 tail outlasts the 60-frame series: truncation lowers CBV by a few %
        assert np.all(cbv <= truth * 1.001)
        np.testing.assert_allclose(cbv, truth, rtol=0.06)
    else:
        np.testing.assert_allclose(cbv, truth, rtol=0.01)
    art = p.concentration[p.masks["aif"]]
    np.testing.assert_allclose(art, np.broadcast_to(p.aif, art.shape), rtol=1e-6)


@pytest.mark.parametrize("snr", [50.0, 20.0])
def test_measured_snr_matches_request(snr):
    p = make_phantom(shape=(48, 48, 8), snr=snr, seed=7)
    start, stop = p.baseline_frames
    base = p.signal[p.masks["brain"]][:, start:stop].astype(np.float64)
    measured = base.mean() / base.std(axis=1, ddof=1).mean()
    assert abs(measured / snr - 1.0) < 0.10
    assert p.params["noise_sd"] == pytest.approx(p.s0[p.masks["brain"]].mean() / snr, rel=1e-6)


def test_noise_free_baseline_and_nonsteady_frames():
    p = make_phantom(shape=SHAPE, snr=float("inf"), seed=8, n_nonsteady=3)
    assert p.snr is None and p.params["noise_sd"] == 0.0
    start, stop = p.baseline_frames
    assert start == 3 and p.times[stop] > p.params["aif"]["t0"] >= p.times[stop - 1]
    brain = p.masks["brain"]
    for k in range(start, stop):
        np.testing.assert_array_equal(p.signal[..., k], p.s0)
    for k, f in enumerate([1.8, 1.4, 1.2]):
        np.testing.assert_allclose(p.signal[..., k][brain], f * p.s0[brain], rtol=1e-6)
    assert (p.signal[~brain] == 0).all()
    # arterial signal stays well above the noise floor of an SNR-20 acquisition
    art = p.signal[p.masks["aif"]].min(axis=1) / p.s0[p.masks["aif"]]
    assert art.min() > 0.05


def test_determinism():
    a = make_phantom(shape=SHAPE, seed=9)
    b = make_phantom(shape=SHAPE, seed=9)
    c = make_phantom(shape=SHAPE, seed=10)
    np.testing.assert_array_equal(a.signal, b.signal)
    for k in a.truth:
        np.testing.assert_array_equal(a.truth[k], b.truth[k])
    assert a.params == b.params
    assert not np.array_equal(a.signal, c.signal)


def test_bad_parameters():
    for kwargs in [dict(grade="GBM"), dict(residue="triangle"), dict(snr=-1.0),
                   dict(shape=(8, 8, 2)), dict(n_frames=20), dict(tr=0.0), dict(delay=-1.0)]:
        with pytest.raises(ParameterError):
            make_phantom(**kwargs)


def test_write_subject_refuses_overwrite(tmp_path, ph):
    paths = write_subject(ph, tmp_path, "sub-07")
    assert all(p.exists() for p in paths.values())
    before = paths["input"].stat().st_mtime_ns
    with pytest.raises(OutputExistsError):
        write_subject(ph, tmp_path, "sub-07")
    assert paths["input"].stat().st_mtime_ns == before
    write_subject(ph, tmp_path, "sub-07", overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_simulate_cohort_grades_and_seed(tmp_path):
    m1 = simulate_cohort(tmp_path / "a", n_subjects=4, hgg_fraction=0.25, shape=SHAPE,
                         n_frames=40, seed=3)
    m2 = simulate_cohort(tmp_path / "b", n_subjects=4, hgg_fraction=0.25, shape=SHAPE,
                         n_frames=40, seed=3)
    rows = list(csv.DictReader(m1.open(), delimiter="\t"))
    assert [r["grade"] for r in rows].count("HGG") == 1
    assert m1.read_text() == m2.read_text()
    s1 = nib.load(str(m1.parent / "sub-02.nii.gz")).get_fdata()
    s2 = nib.load(str(m2.parent / "sub-02.nii.gz")).get_fdata()
    np.testing.assert_array_equal(s1, s2)


def test_cli_simulate_writes_everything(tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", str(out), "--subjects", "2", "--shape", "32x32x4", "--frames", "40",
            "--snr", "30", "--seed", "1", "--residue", "lorentzian", "--delay", "1.5"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    manifest = out / "manifest.tsv"
    assert res.stdout.strip() == str(manifest)
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    assert [r["subject"] for r in rows] == ["sub-01", "sub-02"]
    for r in rows:
        assert (r["te"], r["tr"], r["snr"]) == ("0.03", "1.5", "30")
        assert r["grade"] in ("HGG", "LGG")
        for col in ("input", "aif", "mask", "tumour", "ref"):
            assert (out / r[col]).is_file()
    for sub in ("sub-01", "sub-02"):
        names = [f"{sub}.nii.gz", f"{sub}.json"] + [
            f"{sub}_{s}.nii.gz" for s in ("aifmask", "brainmask", "tumour", "ref", "truth_cbf",
                                          "truth_cbv", "truth_mtt")]
        for n in names:
            assert (out / n).is_file(), n
    img = nib.load(str(out / "sub-01.nii.gz"))
    assert img.shape == (32, 32, 4, 40)
    assert img.header.get_zooms()[3] == pytest.approx(1.5)
    assert img.header.get_xyzt_units()[1] == "sec"
    side = json.loads((out / "sub-01.json").read_text())
    assert side["EchoTime"] == 0.03 and side["RepetitionTime"] == 1.5
    truth = side["perfmapPhantom"]
    assert truth["residue"] == "lorentzian" and truth["delay"] == 1.5 and truth["snr"] == 30
    assert truth["grade"] == rows[0]["grade"] and truth["cbf_ratio"] > 0.7
    cbf = nib.load(str(out / "sub-01_truth_cbf.nii.gz"))
    assert cbf.get_data_dtype() == np.float32
    np.testing.assert_allclose(cbf.affine, img.affine)
    mask = nib.load(str(out / "sub-01_tumour.nii.gz"))
    assert mask.get_data_dtype() == np.uint8 and mask.get_fdata().max() == 1
    tum = mask.get_fdata() > 0
    assert np.nanmean(cbf.get_fdata()[tum]) == pytest.approx(
        truth["truth_roi_means"]["cbf"]["mean_tumour"], rel=1e-5)

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    err = again.stderr.strip()
    assert "\n" not in err and "already exists" in err and "Traceback" not in again.output
    forced = CliRunner().invoke(cli, args + ["--overwrite", "-q"])
    assert forced.exit_code == 0 and forced.stderr == ""


def test_cli_simulate_usage_errors(tmp_path):
    res = CliRunner().invoke(cli, ["simulate", str(tmp_path), "--shape", "32x32"])
    assert res.exit_code == 2
    res = CliRunner().invoke(cli, ["simulate", str(tmp_path), "--residue", "triangle"])
    assert res.exit_code == 2
    res = CliRunner().invoke(cli, ["simulate", str(tmp_path), "--shape", "8x8x2"])
    assert res.exit_code == 1 and "16x16" in res.stderr


# --- leaky phantom and second echo -------------------------------------------------------

def test_leakage_off_is_the_default_phantom():
    base = make_phantom(shape=SHAPE, seed=5)
    for off in (None, False):
        p = make_phantom(shape=SHAPE, seed=5, leakage=off)
        np.testing.assert_array_equal(p.signal, base.signal)
        assert p.params == base.params and set(p.truth) == {"cbf", "cbv", "mtt"}
        assert p.second_echo is None


def test_tofts_ees_matches_the_gamma_exponential_closed_form():
    """C_e = Ktrans (C_p (x) exp(-kep t)); for a gamma-variate C_p this is exact
    (curves.gamma_exponential_convolution)."""
    from perfmap.core.curves import gamma_exponential_convolution, gamma_variate
    from perfmap.core.extravasation import BLOOD_R2S_PER_MM, LeakageSpec, ees_concentration

    spec = LeakageSpec(ktrans=0.12, ve=0.25, hct=0.42)
    t = np.arange(60) * 1.5
    t0, alpha, beta, peak = 15.0, 3.0, 1.5, 50.0
    ce = ees_concentration(t, lambda s: gamma_variate(s, t0, alpha, beta, peak), spec)
    scale = peak * (alpha * beta) ** -alpha * np.exp(alpha) / (BLOOD_R2S_PER_MM * 0.58)
    exact = gamma_exponential_convolution(t, t0, alpha, beta, mtt=60 * 0.25 / 0.12,
                                          flow=0.12 / 60, scale=scale)
    np.testing.assert_allclose(ce, exact, rtol=2e-3, atol=1e-3 * exact.max())


def test_leaky_tumour_signal_is_the_spgr_and_t2star_factor():
    """Noise-free: tumour signal / leak-free signal = exp(-TE r2e C_e) * S_SPGR ratio,
    written out here with the Ernst formula; every other voxel is unchanged."""
    spec = dict(ktrans=0.1, ve=0.3, flip_angle=60.0, t10=1.6, r1=4.5, r2s_ees=5.0)
    kw = dict(shape=SHAPE, snr=None, seed=6, heterogeneity=0.0)
    leaky = make_phantom(leakage=spec, **kw)
    clean = make_phantom(**kw)
    tum = leaky.masks["tumour"]
    np.testing.assert_array_equal(leaky.signal[~tum], clean.signal[~tum])
    for k in ("cbf", "cbv", "mtt"):
        np.testing.assert_array_equal(leaky.truth[k], clean.truth[k])
    np.testing.assert_allclose(leaky.truth["ktrans"][tum], 0.1, rtol=1e-6)
    assert np.all(leaky.truth["ktrans"][leaky.masks["wm"]] == 0)
    from perfmap.core.extravasation import LeakageSpec, ees_concentration

    from perfmap.core.curves import gamma_variate

    q = leaky.params["aif"]                                  # the phantom's AIF, rebuilt

    def aif(s):
        return gamma_variate(s, q["t0"], q["alpha"], q["beta"], q["peak"]) + gamma_variate(
            s, q["t0"] + q["recirculation_delay"], 3.0, q["recirculation_beta"],
            q["peak"] * q["recirculation_fraction"])

    np.testing.assert_allclose(aif(leaky.times), leaky.aif, rtol=1e-12)
    ce = ees_concentration(leaky.times, aif, LeakageSpec(**spec))
    a, tr, r10 = np.deg2rad(60.0), leaky.tr, 1 / 1.6

    def ernst(r1):
        e1 = np.exp(-tr * r1)
        return np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)

    factor = np.exp(-leaky.te * 5.0 * ce) * ernst(r10 + 4.5 * ce) / ernst(r10)
    ratio = leaky.signal[tum] / clean.signal[tum]
    np.testing.assert_allclose(ratio, np.broadcast_to(factor, ratio.shape), rtol=3e-3)
    assert factor.max() > 1.05                              # T1 wins at 60 deg, TE 30 ms
    assert leaky.params["leakage"]["flip_angle"] == 60.0


def test_second_echo_series():
    p = make_phantom(shape=SHAPE, snr=None, seed=7, second_te=0.01, keep_concentration=True)
    assert p.second_echo.shape == p.signal.shape and p.second_te == 0.01
    start = p.params["n_nonsteady"]
    body = p.masks["brain"]
    s0_2 = p.s0[body] * np.exp(-(0.01 - 0.03) * 20.0)
    expect = s0_2[:, None] * np.exp(-0.01 * p.concentration[body][:, start:])
    np.testing.assert_allclose(p.second_echo[body][:, start:], expect, rtol=1e-5)
    noisy = make_phantom(shape=(48, 48, 8), snr=20.0, seed=7, second_te=0.01)
    base = noisy.second_echo[noisy.masks["brain"]][:, 2:noisy.baseline_frames[1]]
    assert base.std(axis=1, ddof=1).mean() == pytest.approx(noisy.params["noise_sd"], rel=0.1)
    first = noisy.signal[noisy.masks["brain"]][:, 2:noisy.baseline_frames[1]]
    assert np.corrcoef((base - base.mean(1, keepdims=True)).ravel(),
                       (first - first.mean(1, keepdims=True)).ravel())[0, 1] < 0.05


def test_bad_leakage_parameters():
    for kwargs in [dict(leakage={"ve": 1.5}), dict(leakage={"flip_angle": 120}),
                   dict(leakage={"kep": 0.1}), dict(leakage="yes"), dict(second_te=0.03),
                   dict(second_te=-0.01)]:
        with pytest.raises(ParameterError) as info:
            make_phantom(shape=SHAPE, **kwargs)
        assert "\n" not in str(info.value)


def test_simulate_cohort_with_leakage_and_second_echo(tmp_path):
    m = simulate_cohort(tmp_path, n_subjects=2, hgg_fraction=0.5, shape=SHAPE, n_frames=40,
                        seed=3, leakage={"flip_angle": 60.0}, second_te=0.01)
    rows = list(csv.DictReader(m.open(), delimiter="\t"))
    for r in rows:
        sub = r["subject"]
        side = json.loads((tmp_path / f"{sub}.json").read_text())
        echo2 = json.loads((tmp_path / f"{sub}_secondecho.json").read_text())
        assert echo2["EchoTime"] == 0.01 and side["EchoTime"] == 0.03
        assert (tmp_path / f"{sub}_secondecho.nii.gz").is_file()
        leaky = r["grade"] == "HGG"
        assert (tmp_path / f"{sub}_truth_ktrans.nii.gz").is_file() == leaky
        assert ("FlipAngle" in side) == leaky and ("leakage" in side["perfmapPhantom"]) == leaky
