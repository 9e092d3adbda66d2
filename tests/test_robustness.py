"""``perfmap robustness``: degraded series reach the SNR, reruns are identical, AUC vs SNR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from perfmap.cli.robustness import robustness as robustness_cmd
from perfmap.io.tables import read_tsv
from perfmap.pipeline.noise import add_noise, baseline_snr, noise_seed

LEVELS = (40.0, 20.0, 10.0)


def run(args):
    return CliRunner().invoke(robustness_cmd, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four noise-free tiny phantoms (2 HGG, 2 LGG)."""
    from perfmap.simulate import simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    return Path(simulate_cohort(out, n_subjects=4, snr=None, shape=(16, 16, 3), n_frames=40,
                                seed=5))


@pytest.fixture(scope="module")
def study(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "rob"
    res = run([cohort, "--snr", ",".join(f"{x:g}" for x in LEVELS), "--method", "osvd,csvd",
               "--out-dir", out, "--seed", 7, "--jobs", 1, "--n-boot", 100, "-q"])
    return res, out


def measured_snr(series, mask, sidecar):
    """The paper's SNR measured independently: brain baseline mean / temporal noise SD."""
    phantom = json.loads(Path(sidecar).read_text())["perfmapPhantom"]
    start, stop = phantom["n_nonsteady"], phantom["arrival_frame"] - 1
    data = np.asarray(nib.load(series).dataobj, dtype=np.float64)
    brain = np.asarray(nib.load(mask).dataobj) > 0
    base = data[brain][:, start:stop]
    return base.mean() / np.sqrt(base.var(axis=1, ddof=1).mean())


def test_degraded_series_reach_the_requested_snr(study, cohort):
    res, out = study
    assert res.exit_code == 0, res.stderr
    src = cohort.parent
    for level in LEVELS:
        folder = out / "degraded" / f"snr{level:g}"
        manifest = read_tsv(folder / "manifest.tsv")
        assert [r["subject"] for r in manifest] == ["sub-01", "sub-02", "sub-03", "sub-04"]
        for row in manifest:
            subject = row["subject"]
            series = folder / row["input"]
            snr = measured_snr(series, src / f"{subject}_brainmask.nii.gz",
                               src / f"{subject}.json")
            assert snr == pytest.approx(level, rel=0.10), (subject, level)
            # Same grid and timing as the input, and a sidecar with TE/TR and the noise.
            img, ref = nib.load(series), nib.load(src / f"{subject}.nii.gz")
            assert img.shape == ref.shape
            np.testing.assert_array_equal(img.affine, ref.affine)
            assert img.header.get_zooms() == ref.header.get_zooms()
            side = json.loads((folder / f"{subject}.json").read_text())
            assert side["EchoTime"] == 0.03 and side["RepetitionTime"] == 1.5
            assert side["perfmapNoise"]["snr"] == level
            assert side["perfmapPhantom"]["subject"] == subject
    noise = read_tsv(out / "degraded" / "noise.tsv")
    assert len(noise) == 12
    assert all(math.isinf(float(r["snr_input"])) for r in noise)  # noise-free input
    assert all(float(r["snr_achieved"]) == pytest.approx(float(r["snr"]), rel=0.1)
               for r in noise)


def test_cohort_has_snr_column_and_report_has_auc_vs_snr(study):
    _, out = study
    rows = read_tsv(out / "cohort.tsv")
    assert len(rows) == 4 * 3 * 2
    assert {float(r["snr"]) for r in rows} == set(LEVELS)
    assert all(r["status"] == "ok" for r in rows)
    report = json.loads((out / "robustness.json").read_text())
    points = {(p["method"], p["snr"]): p for p in report["robustness"]}
    assert set(points) == {(m, s) for m in ("osvd", "csvd") for s in LEVELS}
    for p in points.values():
        assert p["n_hgg"] == 2 and p["n_lgg"] == 2
        assert 0.0 <= p["auc"] <= 1.0
    html = (out / "robustness.html").read_text()
    assert "Robustness to noise" in html and "AUC vs SNR" in html
    # The AIF was recomputed from each degraded series, not copied.
    a40 = np.loadtxt(out / "snr40" / "sub-01" / "osvd" / "sub-01_aif.tsv", skiprows=1)
    a10 = np.loadtxt(out / "snr10" / "sub-01" / "osvd" / "sub-01_aif.tsv", skiprows=1)
    assert not np.array_equal(a40[:, 1], a10[:, 1])


def test_rerun_gives_identical_series_and_numbers(study, cohort, tmp_path):
    _, first = study
    res = run([cohort, "--snr", "40,20,10", "--method", "osvd,csvd", "--out-dir",
               tmp_path / "again", "--seed", 7, "--jobs", 2, "--n-boot", 100, "-q"])
    assert res.exit_code == 0, res.stderr
    for level in ("snr40", "snr10"):
        a = nib.load(first / "degraded" / level / "sub-03.nii.gz").get_fdata()
        b = nib.load(tmp_path / "again" / "degraded" / level / "sub-03.nii.gz").get_fdata()
        np.testing.assert_array_equal(a, b)

    def ratios(folder):
        return {(r["subject"], r["method"], r["snr"]): (r["cbf_ratio"], r["cbv_ratio"])
                for r in read_tsv(folder / "cohort.tsv")}

    assert ratios(first) == ratios(tmp_path / "again")
    a = json.loads((first / "robustness.json").read_text())["robustness"]
    b = json.loads((tmp_path / "again" / "robustness.json").read_text())["robustness"]
    assert a == b


def test_subject_already_noisier_is_reported(tmp_path):
    from perfmap.simulate import simulate_cohort

    manifest = simulate_cohort(tmp_path / "c", n_subjects=4, snr=30.0, shape=(16, 16, 3),
                               n_frames=40, seed=2)
    res = run([manifest, "--snr", "60,15", "--method", "osvd", "--out-dir", tmp_path / "r",
               "--jobs", 1, "--n-boot", 50])
    assert res.exit_code == 0, res.stderr
    assert res.stderr.count("already noisier than SNR 60") == 4
    noise = {(r["subject"], r["snr"]): r for r in read_tsv(tmp_path / "r" / "degraded" /
                                                           "noise.tsv")}
    row = noise[("sub-01", "60.0")]
    assert float(row["added_sd"]) == 0.0 and "already noisier" in row["noise_note"]
    assert float(row["snr_achieved"]) == pytest.approx(30.0, rel=0.1)
    assert float(noise[("sub-01", "15.0")]["snr_achieved"]) == pytest.approx(15.0, rel=0.1)
    original = nib.load(tmp_path / "c" / "sub-01.nii.gz").get_fdata()
    copy = nib.load(tmp_path / "r" / "degraded" / "snr60" / "sub-01.nii.gz").get_fdata()
    # No noise added: the same values (the copy is float32, the original int16 scaled).
    np.testing.assert_allclose(copy, original, rtol=1e-6, atol=1e-4)
    cohort = {(r["subject"], r["snr"]): r for r in read_tsv(tmp_path / "r" / "cohort.tsv")
              if r["method"] == "osvd"}
    assert "already noisier" in cohort[("sub-01", "60")]["noise_note"]
    # The study folder is not reused without --resume/--overwrite.
    again = run([manifest, "--snr", "60,15", "--out-dir", tmp_path / "r"])
    assert again.exit_code == 1 and "--resume" in again.stderr


def test_add_noise_accounts_for_existing_noise():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    data = (1000.0 + 20.0 * rng.standard_normal((20, 20, 2, 40))).astype(np.float32)
    window = SimpleNamespace(start=0, stop=40)
    mask = np.ones((20, 20, 2), bool)
    mean, sd, snr = baseline_snr(data, mask, window)
    assert snr == pytest.approx(50.0, rel=0.03)
    noisy, added = add_noise(data, 25.0, mean, sd, np.random.default_rng(1))
    assert added == pytest.approx(math.sqrt((mean / 25.0) ** 2 - sd ** 2))
    assert baseline_snr(noisy, mask, window)[2] == pytest.approx(25.0, rel=0.03)
    assert noisy.dtype == np.float32 and not np.shares_memory(noisy, data)
    same, zero = add_noise(data, 80.0, mean, sd, np.random.default_rng(1))
    assert zero == 0.0 and np.array_equal(same, data)
    a = np.random.default_rng(noise_seed(3, "sub-01", 20.0)).standard_normal(3)
    b = np.random.default_rng(noise_seed(3, "sub-01", 20.0)).standard_normal(3)
    c = np.random.default_rng(noise_seed(3, "sub-02", 20.0)).standard_normal(3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_levels_are_usage_errors(cohort, tmp_path):
    for bad in ("abc", "0,10", "-5", "inf"):
        res = run([cohort, "--snr", bad, "--out-dir", tmp_path / "x"])
        assert res.exit_code == 2, bad
    assert not (tmp_path / "x").exists()
