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


def test_dual_echo_series_in_one_folder_are_paired_by_echo_time(tmp_path):
    """Two series of one folder (TE 5 and 20 ms, same grid): --second-echo auto pairs them
    and gives the same maps as the two echoes given as separate folders."""
    ph1 = make_phantom(shape=(48, 48, 4), n_frames=45, snr=None, seed=11, second_te=0.02,
                       te=0.005)
    folder, other = tmp_path / "both", tmp_path / "echo2"
    for i, (sig, te_ms, number) in enumerate(((ph1.signal, 5.0, 7), (ph1.second_echo, 20.0, 8))):
        stored = np.rint(np.clip(sig, 0, None) / 0.1).astype(np.int16)
        px = np.transpose(stored, (3, 2, 1, 0))
        write_classic_series(folder, px, slope=0.1, frame_interval=ph1.tr, te_ms=te_ms,
                             series_number=number, series_uid=f"1.2.3.4.{number}")
        if i == 1:
            write_classic_series(other, px, slope=0.1, frame_interval=ph1.tr, te_ms=te_ms,
                                 series_number=number, series_uid=f"1.2.3.4.{number}")
    only1 = tmp_path / "echo1"
    stored = np.rint(np.clip(ph1.signal, 0, None) / 0.1).astype(np.int16)
    write_classic_series(only1, np.transpose(stored, (3, 2, 1, 0)), slope=0.1,
                         frame_interval=ph1.tr, te_ms=5.0, series_number=7,
                         series_uid="1.2.3.4.7")
    res = invoke(["compute", folder, "--second-echo", "auto", "--out-dir", tmp_path / "a", "-q"])
    assert res.exit_code == 0, res.output
    res = invoke(["compute", only1, "--second-echo", other, "--out-dir", tmp_path / "b", "-q"])
    assert res.exit_code == 0, res.output
    a = json.loads((tmp_path / "a" / "both_perfmap.json").read_text())
    b = json.loads((tmp_path / "b" / "echo1_perfmap.json").read_text())
    assert a["dual_echo"]["te1_s"] == b["dual_echo"]["te1_s"] == 0.005
    assert a["dual_echo"]["te2_s"] == b["dual_echo"]["te2_s"] == 0.02
    assert a["leakage"]["method"] == b["leakage"]["method"] == "none"
    cbv_a = nib.load(tmp_path / "a" / "both_cbv.nii.gz").get_fdata()
    cbv_b = nib.load(tmp_path / "b" / "echo1_cbv.nii.gz").get_fdata()
    np.testing.assert_allclose(cbv_a, cbv_b, rtol=1e-5, equal_nan=True)


def test_two_exams_in_folders_named_dicom_do_not_collide(tmp_path):
    """sub01/DICOM and sub02/DICOM computed into one output folder write different names."""
    ph = make_phantom(shape=(48, 48, 4), n_frames=45, snr=40.0, seed=11)
    stored = np.rint(np.clip(ph.signal, 0, None) / 0.1).astype(np.int16)
    px = np.transpose(stored, (3, 2, 1, 0))
    out = tmp_path / "maps"
    for sub in ("sub01", "sub02"):
        write_classic_series(tmp_path / sub / "DICOM", px, slope=0.1, frame_interval=ph.tr,
                             te_ms=ph.te * 1000.0)
        res = invoke(["compute", tmp_path / sub / "DICOM", "--out-dir", out, "-q"])
        assert res.exit_code == 0, res.output
    assert (out / "sub01_DICOM_perfmap.json").is_file()
    assert (out / "sub02_DICOM_perfmap.json").is_file()


def test_second_echo_auto_needs_exactly_two_echo_series(tmp_path):
    """One dynamic series in the folder: --second-echo auto stops with one line, no output."""
    ph = make_phantom(shape=(48, 48, 4), n_frames=45, snr=40.0, seed=11)
    stored = np.rint(np.clip(ph.signal, 0, None) / 0.1).astype(np.int16)
    write_classic_series(tmp_path / "one", np.transpose(stored, (3, 2, 1, 0)), slope=0.1,
                         frame_interval=ph.tr, te_ms=30.0)
    res = CliRunner().invoke(cli, ["compute", str(tmp_path / "one"), "--second-echo", "auto",
                                   "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "exactly two dynamic series, found 1" in lines[0]
    assert not (tmp_path / "o").exists()
