"""``perfmap compute`` on a DICOM folder equals the run on the NIfTI of the same data."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from perfmap.cli.main import cli
from perfmap.core.phantom import make_phantom

from dicom_factory import write_classic_series


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_dicom_and_nifti_give_identical_maps(tmp_path):
    ph = make_phantom(shape=(48, 48, 4), n_frames=45, snr=40.0, seed=11)
    # Stored as int16 with a rescale slope, as scanners do: (T, Z, rows, cols).
    slope = 0.1
    stored = np.rint(np.clip(ph.signal, 0, None) / slope).astype(np.int16)
    pixels = np.transpose(stored, (3, 2, 1, 0))
    dicom_dir = tmp_path / "sub-dcm"
    spec = write_classic_series(dicom_dir, pixels, slope=slope, frame_interval=ph.tr,
                                te_ms=ph.te * 1000.0, description="perf phantom",
                                protocol="ep2d_perf_phantom")
    nifti = tmp_path / "sub-nii.nii.gz"
    res = invoke(["convert", dicom_dir, nifti])
    assert res.exit_code == 0, res.output

    # An ROI drawn on the converted grid (as a user would) works for both inputs.
    img = nib.load(nifti)
    roi = np.zeros(img.shape[:3], np.uint8)
    roi[10:30, 10:30, 1:3] = 1
    roi_path = tmp_path / "roi.nii.gz"
    nib.save(nib.Nifti1Image(roi, img.affine), str(roi_path))

    outs = {}
    for name, src in (("dicom", dicom_dir), ("nifti", nifti)):
        out = tmp_path / f"out_{name}"
        res = invoke(["compute", src, "--out-dir", out, "--roi", f"box={roi_path}",
                      "--ref", roi_path])
        assert res.exit_code == 0, res.output
        outs[name] = out
    for m in ("cbf", "cbv", "mtt", "tmax", "ttp"):
        a = nib.load(outs["dicom"] / f"sub-dcm_{m}.nii.gz")
        b = nib.load(outs["nifti"] / f"sub-nii_{m}.nii.gz")
        np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
        np.testing.assert_array_equal(np.isnan(a.get_fdata()), np.isnan(b.get_fdata()))
        np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), rtol=1e-5, atol=1e-6,
                                   equal_nan=True)
    prov = json.loads((outs["dicom"] / "sub-dcm_perfmap.json").read_text())
    series = prov["series"]
    assert series["SeriesInstanceUID"] == spec.series_uid
    assert series["SeriesDescription"] == "perf phantom"
    assert series["ProtocolName"] == "ep2d_perf_phantom"
    assert prov["te_s"] == np.float64(ph.te).round(6)
    assert prov["rois"]["box"]["cbf_ratio"] == 1.0
