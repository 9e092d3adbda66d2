"""The QIBA DCE-MRI digital reference objects (Duke) read as DICOM series.

Data in ``../shared/data/qiba_dce_dro`` (see its README.txt). Frame counts,
frame timing, TR and flip angle are checked against the official descriptions
shipped with the data (``Dynamic_v3_description.txt``,
``T1_mapping_v3_description.txt``, ``Dynamic_v6_beta1_description_Rev1.pdf``)
and, where dcm2niix is installed, the voxels and affines against its conversion.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from perfmap.errors import ImageReadError
from perfmap.io.dicom import find_series, load_dicom_series

DCM2NIIX = shutil.which("dcm2niix")
V12 = "v12_quantiphyse/QIBA_v12_Tofts_beta1/QIBA_v12_Tofts_GE"

@pytest.fixture(scope="module")
def qiba(shared_data) -> Path:
    root = shared_data / "qiba_dce_dro"
    if not root.is_dir():
        pytest.skip(f"QIBA DCE DRO not found at {root}")
    return root


def _pdf_text(path: Path) -> str:
    """Text of a simple PDF: the strings shown by Tj/TJ in its Flate-compressed streams."""
    raw = path.read_bytes()
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", raw, re.S):
        try:
            content = zlib.decompress(m.group(1))
        except zlib.error:
            continue
        for arr, single in re.findall(rb"\[(.*?)\]\s*TJ|\((.*?)\)\s*Tj", content, re.S):
            parts = re.findall(rb"\(((?:\\.|[^\\)])*)\)", arr) if arr else [single]
            out.append(b"".join(parts).decode("latin1"))
    return re.sub(r"\s+", " ", " ".join(out))


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not found in the description"
    return float(m.group(1))


def _dcm2niix_4d(src: Path, out: Path):
    if DCM2NIIX is None:
        pytest.skip("dcm2niix not installed (pip install dcm2niix): no reference conversion")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-o", str(out), str(src)],
                   capture_output=True, timeout=120, check=False)
    images = [nib.load(p) for p in sorted(out.glob("*.nii"))]
    return [img for img in images if img.ndim == 4]


def _assert_same_as(vol, img):
    assert vol.data.shape == img.shape
    np.testing.assert_array_equal(vol.data, img.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(vol.affine, img.affine, atol=1e-4)


# ---------------------------------------------------------------- version 4 (DCEMRI.jl)
@pytest.fixture(scope="module")
def v4(qiba):
    folder = qiba / "v4_DCEMRIjl" / "DICOM"
    infos = find_series(folder)
    dyn = [i for i in infos if i.description == "dynamic"]
    assert len(dyn) == 1
    return folder, infos, load_dicom_series(folder, series=dyn[0].uid)


def test_v4_dynamic_series(v4):
    folder, infos, vol = v4
    text = re.sub(r"\s+", " ", (folder / "Dynamic_v3_description.txt").read_text())
    dt = _number(text, r"Time interval between the DCE images = ([\d.]+) seconds")
    assert vol.data.shape == (60, 200, 1, 661)            # README: 661 frames, 200x60
    np.testing.assert_allclose(vol.frame_times, dt * np.arange(661), atol=1e-6)
    assert vol.uniform and vol.meta["frame_interval"] == pytest.approx(dt)
    assert vol.meta["frame_times_source"] == "AcquisitionTime"
    assert vol.tr == pytest.approx(_number(text, r"Repetition Time = ([\d.]+) msecs") / 1000)
    assert vol.meta["FlipAngle"] == _number(text, r"Flip angle = ([\d.]+) degrees")
    assert vol.te == pytest.approx(0.0021) and vol.meta["MagneticFieldStrength"] == 1.5


def test_v4_variable_flip_angle_series(v4):
    folder, infos, _ = v4
    text = (folder / "T1_mapping_v3_description.txt").read_text()
    table = {f"fa{a}.dcm": float(b) for a, b in re.findall(r"^fa(\d+)\s+(\d+)", text, re.M)}
    assert sorted(table.values()) == [3, 6, 9, 15, 24, 35]
    tr = _number(re.sub(r"\s+", " ", text), r"Repetition Time = ([\d.]+) msecs") / 1000
    vfa = [i for i in infos if i.description == "ax flip"]
    assert len(vfa) == 6 and len(infos) == 7
    for info in vfa:
        vol = load_dicom_series(folder, series=info)     # no second search of the folder
        assert vol.data.shape == (60, 200, 1, 1) and vol.tr == pytest.approx(tr)
        assert vol.meta["FlipAngle"] == table[info.files[0].name]
    # Every series of this folder is number 10: the number alone cannot choose.
    with pytest.raises(ImageReadError, match="series number 10 is shared by 7 series"):
        load_dicom_series(folder, series="10")


def test_v4_matches_dcm2niix(v4, tmp_path):
    folder, _, vol = v4
    [img] = _dcm2niix_4d(folder, tmp_path)
    _assert_same_as(vol, img)


# ---------------------------------------------------------------- version 6 (GE headers)
@pytest.fixture(scope="module")
def v6(qiba):
    folder = qiba / "v6_DCEMRIjl" / "DICOM"
    return folder, load_dicom_series(folder)


def test_v6_dynamic_series_timed_by_trigger_time(v6, qiba):
    _, vol = v6
    text = _pdf_text(qiba / "v12_quantiphyse" / "qiba" / "Dynamic_v6_beta1_description_Rev1.pdf")
    dt = _number(text, r"Time interval between the DCE images = ([\d.]+) seconds")
    total = _number(text, r"total duration of imaging is (\d+) seconds")
    n = int(round(total / dt)) + 1
    assert vol.data.shape == (50, 80, 1, n) == (50, 80, 1, 1321)
    # AcquisitionTime is the same on every image; the frames are timed by TriggerTime
    # (absent, i.e. 0 ms, on the first image).
    assert vol.meta["frame_times_source"] == "TriggerTime"
    np.testing.assert_allclose(vol.frame_times, dt * np.arange(n), atol=1e-9)
    assert vol.frame_times[-1] == pytest.approx(total)
    assert vol.tr == pytest.approx(_number(text, r"Repetition Time = ([\d.]+) msecs") / 1000)
    assert vol.meta["FlipAngle"] == _number(text, r"Flip angle = ([\d.]+) degrees")


def test_v6_matches_dcm2niix(v6, tmp_path):
    folder, vol = v6
    [img] = _dcm2niix_4d(folder, tmp_path)
    _assert_same_as(vol, img)


# ---------------------------------------------------------------- version 9 (pydcemri)
def test_v9_two_series_in_one_folder(qiba, tmp_path):
    folder = qiba / "v9_pydcemri"
    infos = find_series(folder)
    assert len(infos) == 2 and {i.number for i in infos} == {"18"}
    with pytest.raises(ImageReadError) as err:
        load_dicom_series(folder)
    assert str(err.value).count("(1 slices x 61 time points") == 2
    with pytest.raises(ImageReadError, match="series number 18 is shared by 2 series"):
        load_dicom_series(folder, series="18")
    sources = set()
    for info in infos:
        vol = load_dicom_series(folder, series=info.uid)
        # File names: "..._6s_0s_...": 6 s sampling, no jitter.
        assert all("_6s_0s_" in p.name for p in info.files)
        assert vol.data.shape == (50, 80, 1, 61)
        np.testing.assert_allclose(vol.frame_times, 6.0 * np.arange(61), atol=1e-9)
        assert vol.tr == pytest.approx(0.005) and vol.meta["FlipAngle"] == 30.0
        sources.add(vol.meta["frame_times_source"])
        if DCM2NIIX:
            one = tmp_path / info.uid
            one.mkdir()
            for p in info.files:
                shutil.copy(p, one / p.name)
            [img] = _dcm2niix_4d(one, tmp_path / (info.uid + "_out"))
            _assert_same_as(vol, img)
    # One series is timed by AcquisitionTime, the other only by TriggerTime.
    assert sources == {"AcquisitionTime", "TriggerTime"}


# ---------------------------------------------------------------- version 12 (quantiphyse)
@pytest.mark.parametrize("t1", ["200", "500"])
def test_v12_dynamic_series(qiba, t1, tmp_path):
    folder = qiba / V12 / f"6s_jit_3s_T1_{t1}_S0_500_sigma_5" / "DICOM_dyn"
    vol = load_dicom_series(folder)
    assert vol.data.shape == (50, 80, 1, 61)
    assert vol.meta["frame_times_source"] == "TriggerTime"
    # "6s_jit_3s": 6 s sampling; the 3 s jitter is not in the frame timing -- the stored
    # TriggerTimes (0, 6000, ..., 360000 ms) and the time labels burned into the images
    # (0, 6, 12, ...) are evenly spaced, so the series is uniform.
    np.testing.assert_allclose(vol.frame_times, 6.0 * np.arange(61), atol=1e-9)
    assert vol.uniform and vol.meta["frame_interval"] == pytest.approx(6.0)
    assert vol.tr == pytest.approx(0.005) and vol.meta["FlipAngle"] == 30.0
    if DCM2NIIX:
        [img] = _dcm2niix_4d(folder, tmp_path)
        _assert_same_as(vol, img)


@pytest.mark.parametrize("t1", ["200", "500"])
def test_v12_variable_flip_angle_series_match_the_shipped_nifti(qiba, t1):
    folder = qiba / V12 / f"6s_jit_3s_T1_{t1}_S0_500_sigma_5" / "DICOM_T1"
    infos = find_series(folder)
    assert [i.number for i in infos] == ["10", "11", "12", "13", "14", "15"]
    angles = []
    for info in infos:
        # Choose by SeriesNumber once, then by the SeriesInfo (no second folder search).
        vol = load_dicom_series(folder, series=info.number if info.number == "10" else info)
        [dcm] = info.files
        angle = float(dcm.stem[2:])                      # fa3.dcm ... fa35.dcm
        assert vol.meta["FlipAngle"] == angle and vol.tr == pytest.approx(0.005)
        angles.append(angle)
        # The NIfTI files shipped next to the DICOM were converted independently.
        ref = nib.load(dcm.with_suffix(".nii"))
        assert vol.data.shape[:3] == ref.shape
        np.testing.assert_array_equal(vol.data[..., 0], ref.get_fdata(dtype=np.float32))
        np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    assert angles == [3, 6, 9, 15, 24, 35]
