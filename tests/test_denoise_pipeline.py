"""Denoising as a pipeline step (``--denoise``, ``DSCModel(denoise=)``) and ``perfmap denoise``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from perfmap.cli.main import cli
from perfmap.core.phantom import make_phantom
from perfmap.errors import ParameterError
from perfmap.models import DSCModel


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _relative_error(fit_map, truth, ph):
    """Median |error| of WM-normalised values over the brain's tissue voxels."""
    tissue = ph.masks["brain"] & ~ph.masks["aif"]
    wm = ph.masks["wm"]
    got = fit_map[tissue] / np.nanmean(fit_map[wm])
    ref = truth[tissue] / np.nanmean(truth[wm])
    return float(np.nanmedian(np.abs(got - ref) / ref))


@pytest.mark.slow
def test_mppca_lowers_the_low_snr_errors_by_a_quarter():
    """SNR 10, oSVD: MP-PCA denoising lowers the rCBF and rCBV errors by at least 25 %
    (the denoising issue's target; measured here 0.30 -> 0.19 and 0.32 -> 0.09)."""
    ph = make_phantom(shape=(48, 48, 6), snr=10.0, seed=1)
    kw = dict(mask=ph.masks["brain"], aif=ph.masks["aif"])
    raw = DSCModel("osvd", te=ph.te, tr=ph.tr, leakage="none").fit(ph.signal, **kw)
    den = DSCModel("osvd", te=ph.te, tr=ph.tr, leakage="none", denoise="mppca").fit(
        ph.signal, **kw)
    for name in ("cbf", "cbv"):
        before = _relative_error(getattr(raw, name), ph.truth[name], ph)
        after = _relative_error(getattr(den, name), ph.truth[name], ph)
        assert after <= 0.75 * before, (name, before, after)
    info = den.provenance["denoise"]
    assert info["method"] == "mppca" and info["noise_sigma"] > 0
    assert raw.provenance["denoise"] == {"method": "none"}


def test_unknown_denoiser_is_refused():
    with pytest.raises(ParameterError, match="unknown denoising method 'nlm'"):
        DSCModel("osvd", te=0.03, tr=1.5, denoise="nlm")


def test_denoise_command(subject, tmp_path):
    out = tmp_path / "den.nii.gz"
    res = invoke(["denoise", subject["input"], out, "--method", "gaussian", "--param",
                  "sigma=1.0", "--mask", subject["mask"], "-q"])
    assert res.exit_code == 0, res.output
    src, dst = nib.load(subject["input"]), nib.load(out)
    assert dst.shape == src.shape and np.allclose(dst.affine, src.affine)
    side = json.loads((tmp_path / "den.json").read_text())
    with open(subject["input"].replace(".nii.gz", ".json")) as fh:
        before = json.load(fh)
    assert side["EchoTime"] == before["EchoTime"]
    assert side["perfmapDenoise"]["method"] == "gaussian"
    assert side["perfmapDenoise"]["sigma"] in (1.0, [1.0, 1.0, 1.0])
    mask = nib.load(subject["mask"]).get_fdata() > 0
    a, b = src.get_fdata(), dst.get_fdata()
    np.testing.assert_allclose(b[~mask], a[~mask], rtol=1e-5, atol=1e-4)   # outside: unchanged
    assert np.std(np.diff(b[mask], axis=-1)) < np.std(np.diff(a[mask], axis=-1))
    again = invoke(["denoise", subject["input"], out, "--method", "gaussian"])
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_denoise_command_bad_output_name(subject, tmp_path):
    res = invoke(["denoise", subject["input"], tmp_path / "den.txt"])
    assert res.exit_code == 1 and "den.txt" in res.stderr and ".nii" in res.stderr
    assert not list(tmp_path.glob("den*"))


def test_compute_with_denoise_records_it(subject, tmp_path):
    out = tmp_path / "o"
    res = invoke(["compute", subject["input"], "--aif", subject["aif"], "--mask",
                  subject["mask"], "--denoise", "gaussian", "--out-dir", out, "-q"])
    assert res.exit_code == 0, res.output
    prov = json.loads(next(out.glob("*_perfmap.json")).read_text())
    assert prov["denoise"]["method"] == "gaussian" and prov["timings"]["denoise_s"] >= 0
