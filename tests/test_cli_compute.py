"""End-to-end ``perfmap compute`` on a simulated phantom, through Click's runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from perfmap.cli.main import cli

MAPS = ("cbf", "cbv", "mtt", "tmax", "ttp")


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("method", ["osvd", "tikhonov", "csvd", "ssvd"])
def test_compute_writes_maps_on_input_grid(subject, tmp_path, method):
    out = tmp_path / "out"
    res = run(["compute", subject["input"], "--aif", subject["aif"], "--mask", subject["mask"],
               "--method", method, "--roi", f"tumour={subject['tumour']}", "--ref", subject["ref"],
               "--out-dir", out])
    assert res.exit_code == 0, res.output
    stem = subject["subject"]
    ref_img = nib.load(subject["input"])
    for name in MAPS:
        img = nib.load(out / f"{stem}_{name}.nii.gz")
        assert img.shape == ref_img.shape[:3]
        assert img.get_data_dtype() == np.float32
        np.testing.assert_allclose(img.affine, ref_img.affine, atol=1e-6)
        data = img.get_fdata()
        mask = nib.load(subject["mask"]).get_fdata() > 0
        assert np.all(np.isnan(data[~mask])), "maps must be NaN outside the brain mask"
    prov = json.loads((out / f"{stem}_perfmap.json").read_text())
    assert prov["method"] == method
    assert prov["te_s"] == pytest.approx(0.03)
    assert prov["tr_s"] == pytest.approx(1.5)
    tum = prov["rois"]["tumour"]
    assert tum["voxels"] == int((nib.load(subject["tumour"]).get_fdata() > 0).sum())
    for key in ("cbf_ratio", "cbv_ratio", "mtt_ratio", "cbf_mean", "cbv_median"):
        assert np.isfinite(tum[key])
    # The ratio is the ROI mean over the reference mean, as written in the JSON.
    assert tum["cbf_ratio"] == pytest.approx(tum["cbf_mean"] / prov["ref"]["cbf_mean"])
    aif = np.loadtxt(out / f"{stem}_aif.tsv", skiprows=1)
    assert aif.shape[1] == 2 and np.all(np.diff(aif[:, 0]) > 0)


def test_compute_recovers_phantom_ratios(subject, tmp_path):
    """On the SNR-50 phantom, oSVD's tumour/WM CBF ratio is within 15 % of the truth."""
    out = tmp_path / "out"
    res = run(["compute", subject["input"], "--aif", subject["aif"], "--mask", subject["mask"],
               "--roi", f"tumour={subject['tumour']}", "--ref", subject["ref"], "--out-dir", out])
    assert res.exit_code == 0, res.output
    truth = nib.load(subject["truth_cbf"]).get_fdata()
    tumour = nib.load(subject["tumour"]).get_fdata() > 0
    ref = nib.load(subject["ref"]).get_fdata() > 0
    true_ratio = np.nanmean(truth[tumour]) / np.nanmean(truth[ref])
    prov = json.loads((out / f"{subject['subject']}_perfmap.json").read_text())
    assert prov["rois"]["tumour"]["cbf_ratio"] == pytest.approx(true_ratio, rel=0.15)


def test_compute_auto_aif_and_mask_write_selection(subject, tmp_path):
    out = tmp_path / "out"
    res = run(["compute", subject["input"], "--out-dir", out, "-v"])
    assert res.exit_code == 0, res.output
    stem = subject["subject"]
    aifmask = nib.load(out / f"{stem}_aifmask.nii.gz").get_fdata() > 0
    true_aif = nib.load(subject["aif"]).get_fdata() > 0
    assert aifmask.sum() > 0
    assert (aifmask & true_aif).sum() / aifmask.sum() >= 0.8
    brain = nib.load(out / f"{stem}_brainmask.nii.gz").get_fdata() > 0
    truth = nib.load(subject["mask"]).get_fdata() > 0
    dice = 2 * (brain & truth).sum() / (brain.sum() + truth.sum())
    assert dice > 0.9
    prov = json.loads((out / f"{stem}_perfmap.json").read_text())
    assert prov["aif"]["voxels"] == int(aifmask.sum())
    assert len(prov["aif"]["indices"]) == prov["aif"]["voxels"]


def test_compute_with_text_aif_matches_mask_aif(subject, tmp_path):
    """The AIF written as TSV, fed back as --aif, reproduces the same maps."""
    first, second = tmp_path / "a", tmp_path / "b"
    args = ["compute", subject["input"], "--mask", subject["mask"]]
    assert run(args + ["--aif", subject["aif"], "--out-dir", first]).exit_code == 0
    stem = subject["subject"]
    # Rebuild a per-frame curve: the TSV starts at the first steady-state frame.
    prov = json.loads((first / f"{stem}_perfmap.json").read_text())
    skipped = prov["baseline"]["skipped_frames"]
    values = np.loadtxt(first / f"{stem}_aif.tsv", skiprows=1)[:, 1]
    curve = np.concatenate([np.zeros(skipped), values])
    txt = tmp_path / "aif.txt"
    np.savetxt(txt, curve)
    res = run(args + ["--aif", txt, "--out-dir", second,
                      "--skip-frames", skipped,
                      "--baseline-frames", f"{prov['baseline']['start']}:{prov['baseline']['stop']}"])
    assert res.exit_code == 0, res.output
    a = nib.load(first / f"{stem}_cbf.nii.gz").get_fdata()
    b = nib.load(second / f"{stem}_cbf.nii.gz").get_fdata()
    np.testing.assert_allclose(a, b, rtol=1e-4, equal_nan=True)


def test_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from perfmap.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(cli, ['compute', '--help']); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("method", ["osvd", "tikhonov"])
def test_matrix_backends_import_neither_torch_nor_scipy_fft(subject, tmp_path, method):
    """Start-up cost: torch is for PHAE only, and scipy.fft (about 0.2 s to import)
    is not needed by the FFT-based backends (perfmap.deconv.convmatrix.real_dft_matrix)."""
    args = ["compute", subject["input"], "--aif", subject["aif"], "--mask", subject["mask"],
            "--method", method, "--out-dir", str(tmp_path / method), "-q"]
    code = ("import sys; from click.testing import CliRunner; from perfmap.cli.main import cli; "
            f"r = CliRunner().invoke(cli, {args!r}); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'scipy.fft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
    assert (tmp_path / method / (Path(subject["input"]).name[:-7] + "_cbf.nii.gz")).is_file()


def test_unknown_method_lists_choices(subject):
    res = run(["compute", subject["input"], "--method", "nope"])
    assert res.exit_code == 2
    assert "osvd" in res.output and "tikhonov" in res.output
