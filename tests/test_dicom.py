"""DICOM series input: discovery, 4D assembly, geometry, timing, errors, conversion.

Series are written by pydicom inside the tests (``tests/dicom_factory.py``). The
geometry is checked twice, independently: against the DICOM Image Plane formula
(every voxel traced back to its source pixel through a unique label) and against
dcm2niix's conversion of the same files (skipped when dcm2niix is not installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

import dicom_factory as F
from perfmap.cli.main import cli
from perfmap.errors import ImageReadError, OutputExistsError, ParameterError, ShapeError
from perfmap.io.dicom import (find_series, load_dicom_series, sidecar,
                              write_nifti_with_sidecar)
from perfmap.io.nifti import load_nifti_4d

T, Z, ROWS, COLS = 6, 4, 5, 7
LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
DCM2NIIX = shutil.which("dcm2niix")
needs_dcm2niix = pytest.mark.skipif(
    DCM2NIIX is None, reason="dcm2niix not installed (pip install dcm2niix): the independent "
                             "reference converter is needed for this comparison")

ORIENTATIONS = {"axial": F.AXIAL, "sagittal": F.SAGITTAL, "coronal": F.CORONAL,
                "oblique": F.oblique_iop()}


@pytest.fixture(scope="module")
def pixels():
    return F.labelled_pixels(T, Z, ROWS, COLS)


def _series(tmp_path, pixels, **kw):
    spec = F.write_classic_series(tmp_path / "dicom", pixels, **kw)
    return tmp_path / "dicom", spec


def _traced_positions(vol, spec):
    """World (RAS) position of each voxel's source pixel, from its label at t = 0."""
    values = vol.data[..., 0].astype(np.int64) - 1
    z, rem = np.divmod(values, ROWS * COLS)
    row, col = np.divmod(rem, COLS)
    r_cos, c_cos = spec.iop[:3], spec.iop[3:]
    lps = (spec.positions[z] + (col * spec.pixel_spacing[1])[..., None] * r_cos
           + (row * spec.pixel_spacing[0])[..., None] * c_cos)
    return lps * LPS_TO_RAS


def _voxel_positions(vol):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in vol.spatial_shape], indexing="ij"), -1)
    return ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3]


def _assert_time_labels(vol):
    """Each voxel's time course is its label + 7 t: one source pixel, frames in order."""
    steps = vol.data - vol.data[..., :1]
    np.testing.assert_array_equal(steps, np.broadcast_to(7.0 * np.arange(T), steps.shape))


def _dcm2niix(src: Path, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([DCM2NIIX, "-z", "n", "-b", "y", "-o", str(out), str(src)],
                         capture_output=True, text=True, timeout=60)
    niis = sorted(out.glob("*.nii"))
    assert len(niis) == 1, run.stdout + run.stderr
    return nib.load(niis[0]), json.loads(niis[0].with_suffix(".json").read_text())


# ---------------------------------------------------------------- geometry and layout
@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_every_voxel_sits_where_the_dicom_standard_puts_its_pixel(tmp_path, pixels,
                                                                  orientation, descending):
    src, spec = _series(tmp_path, pixels, iop=ORIENTATIONS[orientation], descending=descending)
    vol = load_dicom_series(src)
    assert vol.data.shape == (COLS, ROWS, Z, T) and vol.data.dtype == np.float32
    np.testing.assert_allclose(_voxel_positions(vol), _traced_positions(vol, spec), atol=1e-4)
    # Every time point of a voxel comes from the same pixel, in acquisition order.
    _assert_time_labels(vol)
    # dcm2niix layout: i along the row cosine, j against the column cosine (rows flipped),
    # k along the slice normal.
    normal = np.cross(spec.iop[:3], spec.iop[3:])
    lps_cols = vol.affine[:3, :3] * LPS_TO_RAS[:, None]
    np.testing.assert_allclose(lps_cols[:, 0] / 1.6, spec.iop[:3], atol=1e-9)
    np.testing.assert_allclose(lps_cols[:, 1] / 1.8, -spec.iop[3:], atol=1e-9)
    np.testing.assert_allclose(lps_cols[:, 2] / 5.0, normal, atol=1e-9)


def test_files_in_subfolders_with_random_names_and_junk(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels)
    junk = F.write_junk(src)
    (src / "deeper" / "still").mkdir(parents=True)
    shutil.move(str(spec.files[0]), src / "deeper" / "still" / "IM_0001.dcm")
    names = {p.name for p in src.rglob("*") if p.is_file()}
    assert len(names) == T * Z + len(junk)
    vol = load_dicom_series(src)
    np.testing.assert_allclose(_voxel_positions(vol), _traced_positions(vol, spec), atol=1e-4)
    [info] = find_series(src)
    assert (info.n_files, info.n_images, info.n_slices, info.n_time_points) == (T * Z, T * Z, Z, T)


def test_enhanced_multiframe_equals_the_classic_series(tmp_path, pixels):
    kw = dict(iop=F.oblique_iop(), descending=True, slope=0.5, intercept=-3.0)
    classic = load_dicom_series(_series(tmp_path, pixels, **kw)[0])
    spec = F.write_enhanced_series(tmp_path / "enh" / "multi.dcm", pixels, **kw)
    vol = load_dicom_series(tmp_path / "enh")
    np.testing.assert_array_equal(vol.data, classic.data)
    np.testing.assert_allclose(vol.affine, classic.affine, atol=1e-9)
    np.testing.assert_allclose(vol.frame_times, 1.5 * np.arange(T), atol=1e-6)
    assert vol.te == pytest.approx(0.03) and vol.tr == pytest.approx(1.5)
    assert vol.meta["FlipAngle"] == 90.0 and vol.meta["multiframe"]
    [info] = find_series(tmp_path / "enh")
    assert info.multiframe and info.n_files == 1 and info.n_images == T * Z
    assert info.uid == spec.series_uid


def test_rescale_slope_and_intercept_are_applied(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels, slope=1.2345, intercept=-17.5)
    vol = load_dicom_series(src)
    assert vol.data.dtype == np.float32
    raw = load_dicom_series(_series(tmp_path / "raw", pixels)[0]).data
    np.testing.assert_allclose(vol.data, raw.astype(np.float64) * 1.2345 - 17.5, rtol=1e-6)


def test_signed_pixels(tmp_path):
    px = (F.labelled_pixels(3, 2, 4, 4).astype(np.int32) - 20).astype(np.int16)
    vol = load_dicom_series(_series(tmp_path, px)[0])
    assert vol.data.min() == px.min() and vol.data.max() == px.max()


# ---------------------------------------------------------------- timing and parameters
def test_parameters_and_identity_in_meta(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels, te_ms=32.0, tr_ms=1450.0, frame_interval=1.45,
                        flip=75.0, field_t=1.5, series_number=12, description="perf DSC",
                        protocol="ep2d_perf")
    vol = load_dicom_series(src)
    assert vol.te == pytest.approx(0.032) and vol.tr == pytest.approx(1.45)
    m = vol.meta
    assert m["FlipAngle"] == 75.0 and m["MagneticFieldStrength"] == 1.5
    assert (m["SeriesNumber"], m["SeriesDescription"], m["ProtocolName"]) == \
        (12, "perf DSC", "ep2d_perf")
    assert m["SeriesInstanceUID"] == spec.series_uid
    assert m["frame_interval"] == pytest.approx(1.45)
    assert m["frame_times_source"] == "AcquisitionTime"
    np.testing.assert_allclose(vol.frame_times, 1.45 * np.arange(T), atol=1e-5)
    assert vol.uniform


def test_frame_interval_is_measured_not_taken_from_tr(tmp_path, pixels):
    # A 3D DCE-like series: TR 5 ms, one volume every 4 s.
    vol = load_dicom_series(_series(tmp_path, pixels, tr_ms=5.0, frame_interval=4.0)[0])
    assert vol.tr == pytest.approx(0.005)
    assert vol.meta["frame_interval"] == pytest.approx(4.0)


def test_jittered_frames_are_not_uniform(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels, jitter=0.4)
    vol = load_dicom_series(src)
    np.testing.assert_allclose(vol.frame_times, spec.times.min(axis=1) - spec.times[0, 0],
                               atol=1e-5)
    assert not vol.uniform


def test_series_running_past_midnight(tmp_path, pixels):
    vol = load_dicom_series(_series(tmp_path, pixels, start="235957.0")[0])
    np.testing.assert_allclose(vol.frame_times, 1.5 * np.arange(T), atol=1e-5)


@pytest.mark.parametrize("timing,source", [("trigger", "TriggerTime"), ("tpi", "AcquisitionTime")])
def test_other_timing_attributes(tmp_path, pixels, timing, source):
    src, spec = _series(tmp_path, pixels, timing=timing, iop=F.CORONAL)
    vol = load_dicom_series(src)
    assert vol.meta["frame_times_source"] == source
    np.testing.assert_allclose(vol.frame_times, 1.5 * np.arange(T), atol=1e-5)
    np.testing.assert_allclose(_voxel_positions(vol), _traced_positions(vol, spec), atol=1e-4)


def test_trigger_time_missing_on_the_first_frame_reads_as_zero(tmp_path):
    # GE / QIBA DRO convention: the first image carries no TriggerTime.
    px = F.labelled_pixels(5, 1, 4, 4)
    src, spec = _series(tmp_path, px, timing="trigger")
    for path in spec.files:
        ds = pydicom.dcmread(path)
        if float(ds.TriggerTime) == 0:
            del ds.TriggerTime
            ds.save_as(path)
    vol = load_dicom_series(src)
    np.testing.assert_allclose(vol.frame_times, 1.5 * np.arange(5), atol=1e-6)
    np.testing.assert_array_equal(vol.data[0, 0, 0], px[:, 0, -1, 0])


def test_constant_temporal_position_identifier_is_ignored(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels)
    for path in spec.files:
        ds = pydicom.dcmread(path)
        ds.TemporalPositionIdentifier = 1
        ds.save_as(path)
    vol = load_dicom_series(src)
    _assert_time_labels(vol)
    np.testing.assert_allclose(vol.frame_times, 1.5 * np.arange(T), atol=1e-5)


def test_no_timing_falls_back_to_tr(tmp_path, pixels):
    vol = load_dicom_series(_series(tmp_path, pixels, timing="none")[0])
    _assert_time_labels(vol)
    np.testing.assert_allclose(vol.frame_times, 1.5 * np.arange(T))
    assert vol.meta["frame_times_source"].startswith("RepetitionTime")


# ---------------------------------------------------------------- bad series
def test_missing_frame_is_named(tmp_path, pixels):
    src, _ = _series(tmp_path, pixels, omit=[(3, 2)])
    with pytest.raises(ImageReadError, match=r"slice 2 \(z = -10\.0 mm\) has 5 of 6 time "
                                             r"points; time point 3 \(t = 4\.5 s\) is missing"):
        load_dicom_series(src)


@pytest.mark.parametrize("t,z", [(0, 3), (5, 0)], ids=["first", "last"])
def test_missing_first_or_last_frame_is_named(tmp_path, pixels, t, z):
    src, _ = _series(tmp_path, pixels, omit=[(t, z)])
    with pytest.raises(ImageReadError, match=rf"slice {z} .* time point {t} .* is missing"):
        load_dicom_series(src)


def test_missing_frame_with_temporal_position_identifier(tmp_path, pixels):
    src, _ = _series(tmp_path, pixels, omit=[(4, 1)], timing="tpi")
    with pytest.raises(ImageReadError, match=r"slice 1 .* time point 4 .* is missing"):
        load_dicom_series(src)


def test_duplicated_frame_is_an_error(tmp_path, pixels):
    src, _ = _series(tmp_path, pixels, duplicate=[(2, 1)])
    with pytest.raises(ImageReadError, match=r"slice 1 .* the same image twice \(time point 2"):
        load_dicom_series(src)


def test_duplicate_with_another_instance_number_is_an_error(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels)
    ds = next(d for d in map(pydicom.dcmread, spec.files) if int(d.InstanceNumber) == 4 * Z + 3)
    ds.InstanceNumber = 999
    ds.save_as(src / "copy.dcm")
    with pytest.raises(ImageReadError, match=r"slice 2 .* 7 images for 6 time points; time "
                                             r"point 4 \(t = 6\.0 s\) appears twice .*copy\.dcm"):
        load_dicom_series(src)


def test_missing_slice_is_an_error(tmp_path, pixels):
    src, _ = _series(tmp_path, pixels, omit=[(t, 1) for t in range(T)])
    with pytest.raises(ImageReadError, match="unevenly spaced.*is a slice missing"):
        load_dicom_series(src)


def test_two_series_need_a_choice(tmp_path, pixels):
    a = F.write_classic_series(tmp_path, pixels, series_number=5, description="ep2d_perf")
    b = F.write_classic_series(tmp_path, pixels[:3], series_number=9, description="t1_vibe",
                               iop=F.SAGITTAL)
    with pytest.raises(ImageReadError) as err:
        load_dicom_series(tmp_path)
    msg = str(err.value)
    assert "2 DICOM series" in msg and "--series" in msg
    assert "series 5 'ep2d_perf' (4 slices x 6 time points" in msg and a.series_uid in msg
    assert "series 9 't1_vibe' (4 slices x 3 time points" in msg and b.series_uid in msg
    assert load_dicom_series(tmp_path, series="9").n_frames == 3
    assert load_dicom_series(tmp_path, series=a.series_uid).n_frames == T
    with pytest.raises(ImageReadError, match="no series matches '7'"):
        load_dicom_series(tmp_path, series="7")
    assert [i.number for i in find_series(tmp_path)] == ["5", "9"]


def test_shared_series_number_needs_the_uid(tmp_path, pixels):
    F.write_classic_series(tmp_path, pixels, series_number=5)
    F.write_classic_series(tmp_path, pixels, series_number=5)
    with pytest.raises(ImageReadError, match="series number 5 is shared by 2 series"):
        load_dicom_series(tmp_path, series="5")


def test_no_dicom_at_all(tmp_path):
    F.write_junk(tmp_path)
    with pytest.raises(ImageReadError, match="no DICOM image series found .*5 non-DICOM"):
        load_dicom_series(tmp_path)
    assert find_series(tmp_path) == []
    with pytest.raises(ImageReadError, match="DICOM folder not found"):
        load_dicom_series(tmp_path / "nowhere")


def test_truncated_file_is_named(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels)
    victim = spec.files[5]
    victim.write_bytes(victim.read_bytes()[:-40])
    with pytest.raises(ImageReadError, match=victim.name):
        load_dicom_series(src)


def test_mixed_orientations_are_refused(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels)
    ds = pydicom.dcmread(spec.files[0])
    ds.ImageOrientationPatient = list(F.CORONAL)
    ds.save_as(spec.files[0])
    with pytest.raises(ImageReadError, match="different ImageOrientationPatient"):
        load_dicom_series(src)


def test_multi_echo_series_is_refused(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels)
    for path in spec.files[::2]:
        ds = pydicom.dcmread(path)
        ds.EchoTime = "75"
        ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"2 echoes \(TE = 30, 75 ms\)"):
        load_dicom_series(src)


def test_dicom_without_an_image_is_skipped(tmp_path, pixels):
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "SR"
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(ImageReadError, match="1 DICOM file without an image were skipped"):
        load_dicom_series(tmp_path)
    _series(tmp_path, pixels)
    assert load_dicom_series(tmp_path).data.shape == (COLS, ROWS, Z, T)


def test_min_frames(tmp_path, pixels):
    with pytest.raises(ShapeError, match="6 time points; at least 10"):
        load_dicom_series(_series(tmp_path, pixels)[0], min_frames=10)


# ---------------------------------------------------------------- dcm2niix as the oracle
ORACLE_CASES = {
    **{f"{o}-{d}": dict(iop=iop, descending=d == "desc") for o, iop in ORIENTATIONS.items()
       for d in ("asc", "desc")},
    "rescaled": dict(slope=1.2345, intercept=-17.5, iop=F.SAGITTAL),
    "trigger-time": dict(timing="trigger"),
    "jittered": dict(jitter=0.4, iop=F.CORONAL),
    "enhanced": dict(enhanced=True, iop=F.oblique_iop(), descending=True, slope=0.5,
                     intercept=-3.0),
}


@needs_dcm2niix
@pytest.mark.parametrize("case", list(ORACLE_CASES))
def test_same_voxels_and_affine_as_dcm2niix(tmp_path, pixels, case):
    kw = dict(ORACLE_CASES[case])
    if kw.pop("enhanced", False):
        F.write_enhanced_series(tmp_path / "dicom" / "multi.dcm", pixels, **kw)
    else:
        F.write_classic_series(tmp_path / "dicom", pixels, **kw)
    vol = load_dicom_series(tmp_path / "dicom")
    ref, meta = _dcm2niix(tmp_path / "dicom", tmp_path / "dcm2niix")
    expected = ref.get_fdata()
    assert vol.data.shape == expected.shape
    np.testing.assert_allclose(vol.data, expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    assert vol.te == pytest.approx(meta["EchoTime"])
    if "FrameTimesStart" in meta:
        np.testing.assert_allclose(vol.frame_times, meta["FrameTimesStart"], atol=1e-4)


# ---------------------------------------------------------------- writing and the CLI
def test_write_nifti_with_sidecar_round_trip(tmp_path):
    px = F.labelled_pixels(12, 3, 4, 5)  # the NIfTI reader wants >= 10 frames
    vol = load_dicom_series(_series(tmp_path, px, jitter=0.3, iop=F.oblique_iop())[0])
    out = tmp_path / "out" / "perf.nii.gz"
    paths = write_nifti_with_sidecar(vol, out)
    assert paths == [out, tmp_path / "out" / "perf.json"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["perf.json", "perf.nii.gz"]
    img = nib.load(out)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), vol.data)
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-5)
    assert img.get_data_dtype() == np.float32
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert img.header.get_zooms()[3] == pytest.approx(vol.meta["frame_interval"], rel=1e-6)
    assert (int(img.header["qform_code"]), int(img.header["sform_code"])) == (1, 1)
    js = json.loads((tmp_path / "out" / "perf.json").read_text())
    assert js == sidecar(vol)
    assert js["EchoTime"] == 0.03 and js["RepetitionTime"] == 1.5 and js["FlipAngle"] == 90.0
    assert js["SeriesInstanceUID"] == vol.meta["SeriesInstanceUID"] and js["SeriesNumber"] == 5
    back = load_nifti_4d(out)
    assert back.te == pytest.approx(vol.te) and back.tr == pytest.approx(vol.tr)
    np.testing.assert_allclose(back.frame_times, vol.frame_times, atol=1e-6)
    with pytest.raises(OutputExistsError):
        write_nifti_with_sidecar(vol, out)
    with pytest.raises(ParameterError, match="must end with .nii or .nii.gz"):
        write_nifti_with_sidecar(vol, tmp_path / "out" / "perf.img")


def test_cli_convert_round_trip_and_overwrite_refusal(tmp_path, pixels):
    src, spec = _series(tmp_path, pixels, iop=F.SAGITTAL)
    out = tmp_path / "nifti" / "subj01_perf.nii"
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", str(src), str(out)])
    assert res.exit_code == 0, res.output
    side = out.with_name("subj01_perf.json")
    assert out.is_file() and side.is_file()
    vol = load_dicom_series(src)
    np.testing.assert_array_equal(nib.load(out).get_fdata(), vol.data)
    assert json.loads(side.read_text())["FrameTimesStart"][:2] == [0.0, 1.5]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, side)}
    res = runner.invoke(cli, ["convert", str(src), str(out)])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0] and "--overwrite" in lines[0]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out, side)} == before
    assert sorted(os.listdir(out.parent)) == ["subj01_perf.json", "subj01_perf.nii"]
    res = runner.invoke(cli, ["convert", str(src), str(out), "--overwrite", "-q"])
    assert res.exit_code == 0 and res.output == ""


def test_cli_convert_series_choice_and_errors(tmp_path, pixels):
    F.write_classic_series(tmp_path / "in", pixels, series_number=5)
    F.write_classic_series(tmp_path / "in", pixels[:2], series_number=6)
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", str(tmp_path / "in"), str(tmp_path / "a.nii.gz")])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "2 DICOM series found" in res.stderr and not (tmp_path / "a.nii.gz").exists()
    res = runner.invoke(cli, ["convert", str(tmp_path / "in"), str(tmp_path / "a.nii.gz"),
                              "--series", "6"])
    assert res.exit_code == 0, res.output
    assert nib.load(tmp_path / "a.nii.gz").shape == (COLS, ROWS, Z, 2)
    res = runner.invoke(cli, ["convert", str(tmp_path / "nowhere"), str(tmp_path / "b.nii")])
    assert res.exit_code == 1 and "DICOM folder not found" in res.stderr
    assert "Traceback" not in res.output
