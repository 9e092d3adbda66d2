"""Bad DICOM input through the command line: one clear error, no traceback, no output.

Every case runs ``perfmap convert`` and ``perfmap compute`` (``click.testing.CliRunner``)
on a small DSC phantom written as DICOM: special files in the series folder (named
pipes, sockets, links) must be skipped without being opened -- a pipe would block
any read forever, so those tests run under a deadline --, degenerate geometry must
stop the run with one line naming the folder and the problem, and a ``convert``
target below a regular file must be refused before any work. The pixel reader's
fast path is checked bit for bit against pydicom on the encodings scanners write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

import dicom_factory as F
import perfmap.io.dicom as dicom_io
from perfmap.cli.main import cli
from perfmap.core.phantom import make_phantom
from perfmap.errors import ImageReadError
from perfmap.io.dicom import find_series, load_dicom_series

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(signal, "SIGALRM"),
                                reason="needs named pipes and SIGALRM (POSIX)")
DEADLINE_S = 60


@contextlib.contextmanager
def deadline(seconds: int = DEADLINE_S):
    """Fail (instead of hanging the suite) if the block blocks on a read."""
    def expire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def dsc_pixels():
    """A DSC phantom stored as DICOM does it: int16, slope 0.1, ``(T, Z, rows, cols)``."""
    ph = make_phantom(shape=(48, 48, 3), n_frames=40, snr=40.0, seed=11)
    stored = np.rint(np.clip(ph.signal, 0, None) / 0.1).astype(np.int16)
    return np.transpose(stored, (3, 2, 1, 0)), ph


def _write(folder: Path, dsc_pixels, **kw):
    pixels, ph = dsc_pixels
    return F.write_classic_series(folder, pixels, slope=0.1, frame_interval=ph.tr,
                                  te_ms=ph.te * 1000.0, **kw)


def _edit(spec, change) -> None:
    for path in spec.files:
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path)


def _tree(root: Path) -> dict:
    """Every path below ``root`` with its size and modification time (links not followed)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def _commands(src: Path, tmp_path: Path) -> dict:
    return {"convert": ["convert", str(src), str(tmp_path / "nifti" / "perf.nii.gz")],
            "compute": ["compute", str(src), "--out-dir", str(tmp_path / "maps")]}


def _assert_one_error(result, *needles) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("perfmap: error: "), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def _refused(tmp_path: Path, src: Path, *needles) -> None:
    """Both commands stop with one line naming ``src`` and ``needles``; nothing is written."""
    before = _tree(tmp_path)
    for name, args in _commands(src, tmp_path).items():
        result = CliRunner().invoke(cli, args)
        _assert_one_error(result, src, *needles)
        assert _tree(tmp_path) == before, f"{name} wrote files"


# ---------------------------------------------------------------- special files
def _special_entries(folder: Path, tmp_path: Path, monkeypatch) -> int:
    """A pipe (with a DICOM-like name), a link to it, a broken link, a socket, a link to a
    character device; returns how many entries that are not regular files were made."""
    os.mkfifo(folder / "IM_0001.dcm")
    (folder / "s0" / "to_fifo").symlink_to(folder / "IM_0001.dcm")
    (folder / "dangling").symlink_to(tmp_path / "does-not-exist")
    (folder / "null").symlink_to(os.devnull)
    monkeypatch.chdir(folder)  # keep the socket path short (108 bytes at most)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("sock")
    sock.close()
    return 5


@needs_fifo
def test_pipes_sockets_and_broken_links_in_the_series_folder_are_skipped(tmp_path, dsc_pixels,
                                                                        monkeypatch):
    src = tmp_path / "dicom"
    spec = _write(src, dsc_pixels)
    # A link to a regular file is followed: the series is incomplete without this one.
    outside = tmp_path / "elsewhere.dcm"
    shutil.move(str(spec.files[0]), outside)
    spec.files[0].symlink_to(outside)
    _special_entries(src, tmp_path, monkeypatch)
    with deadline():
        vol = load_dicom_series(src)
        [info] = find_series(src)
        runs = {name: CliRunner().invoke(cli, args)
                for name, args in _commands(src, tmp_path).items()}
    assert vol.data.shape == (48, 48, 3, 40)
    assert info.n_files == 120
    for name, result in runs.items():
        assert result.exit_code == 0, (name, result.output)
    assert (tmp_path / "nifti" / "perf.nii.gz").is_file()
    # a folder named "dicom" takes its parent's name first in the outputs
    assert (tmp_path / "maps" / f"{tmp_path.name}_dicom_cbf.nii.gz").is_file()


@needs_fifo
def test_a_folder_of_special_entries_only_names_what_was_skipped(tmp_path, monkeypatch):
    src = tmp_path / "dicom"
    (src / "s0").mkdir(parents=True)
    (src / "notes.txt").write_text("not DICOM\n")
    n = _special_entries(src, tmp_path, monkeypatch)
    with deadline():
        _refused(tmp_path, src, "no DICOM image series found", "1 non-DICOM file",
                 f"{n} entries not a regular file")


@needs_fifo
def test_a_pipe_among_the_files_of_a_chosen_series_is_refused_unopened(tmp_path, dsc_pixels):
    src = tmp_path / "dicom"
    _write(src, dsc_pixels)
    [info] = find_series(src)
    os.mkfifo(src / "pipe")
    bad = dataclasses.replace(info, files=info.files + (src / "pipe",))
    with deadline(), pytest.raises(ImageReadError, match=r"pipe: not a regular file"):
        load_dicom_series(src, series=bad)


# ---------------------------------------------------------------- degenerate geometry
RANGE = "accepted: 0.01 to 50 mm"
GEOMETRY = {
    "pixel-spacing-zero": (dict(pixel_spacing=(0.0, 0.0)), None,
                           ["PixelSpacing of [0, 0] mm", RANGE]),
    "pixel-spacing-negative": (dict(pixel_spacing=(-1.8, 1.6)), None,
                               ["PixelSpacing of [-1.8, 1.6] mm", RANGE]),
    "pixel-spacing-nan": (dict(pixel_spacing=(float("nan"), 1.6)), None,
                          ["PixelSpacing", "not a finite number"]),
    "pixel-spacing-tiny": (dict(pixel_spacing=(0.001, 0.001)), None,
                           ["PixelSpacing of [0.001, 0.001] mm", RANGE]),
    "pixel-spacing-huge": (dict(pixel_spacing=(1.8, 120.0)), None,
                           ["PixelSpacing of [1.8, 120] mm", RANGE]),
    "slice-spacing-huge": (dict(slice_spacing=80.0), None, ["slice spacing of [80] mm", RANGE]),
    "positions-coincide": (dict(slice_spacing=0.0), None,
                           ["single-slice series", "[0] mm", RANGE]),
    "positions-coincide-slice-location-differs": (
        {}, lambda ds: setattr(ds, "ImagePositionPatient", ["-110", "-95", "-20"]),
        ["are different slices (SliceLocation", "slice spacing 0 mm"]),
    "orientation-zero": (dict(iop=(0.0,) * 6), None,
                         ["ImageOrientationPatient [0, 0, 0, 0, 0, 0]", "orthogonal unit"]),
    "orientation-not-orthogonal": (dict(iop=(1.0, 0.0, 0.0, 0.6, 0.8, 0.0)), None,
                                   ["not two orthogonal unit vectors", "dot product 0.6"]),
    "orientation-not-unit": (dict(iop=(2.0, 0.0, 0.0, 0.0, 2.0, 0.0)), None,
                             ["not two orthogonal unit vectors", "length 2 and 2"]),
}


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # the NaN spacing
@pytest.mark.parametrize("case", list(GEOMETRY))
def test_degenerate_geometry_is_one_error_before_anything_is_written(tmp_path, dsc_pixels, case):
    kw, change, needles = GEOMETRY[case]
    src = tmp_path / "dicom"
    spec = _write(src, dsc_pixels, **kw)
    if change is not None:
        _edit(spec, change)
    _refused(tmp_path, src, *needles)


@pytest.mark.parametrize("case", ["pixel-spacing-zero", "positions-coincide"])
def test_degenerate_enhanced_geometry(tmp_path, dsc_pixels, case):
    pixels, ph = dsc_pixels
    kw = {"pixel-spacing-zero": dict(pixel_spacing=(0.0, 0.0)),
          "positions-coincide": dict(slice_spacing=0.0)}[case]
    src = tmp_path / "enhanced"
    F.write_enhanced_series(src / "multi.dcm", pixels, slope=0.1, frame_interval=ph.tr,
                            te_ms=ph.te * 1000.0, **kw)
    needles = {"pixel-spacing-zero": ["PixelSpacing of [0, 0] mm", RANGE],
               "positions-coincide": ["are different slices (InStackPositionNumber"]}[case]
    _refused(tmp_path, src, *needles)


def test_nearly_orthonormal_orientation_is_accepted(tmp_path, dsc_pixels):
    # Scanners write the cosines with a few decimals; rounding is no reason to refuse.
    iop = tuple(round(v, 4) for v in F.oblique_iop())
    _write(tmp_path / "dicom", dsc_pixels, iop=iop)
    assert load_dicom_series(tmp_path / "dicom").data.shape == (48, 48, 3, 40)


# ---------------------------------------------------------------- convert target
@pytest.mark.parametrize("target", ["a_file/perf.nii.gz", "a_file/sub/perf.nii"])
def test_convert_target_below_a_regular_file(tmp_path, dsc_pixels, target):
    src = tmp_path / "dicom"
    _write(src, dsc_pixels)
    (tmp_path / "a_file").write_text("keep me\n")
    before = _tree(tmp_path)
    out = tmp_path / target
    result = CliRunner().invoke(cli, ["convert", str(src), str(out)])
    _assert_one_error(result, out, f"{tmp_path / 'a_file'} exists and is not a folder")
    assert _tree(tmp_path) == before
    # Checked before any work: a missing DICOM folder is not even looked at.
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "nowhere"), str(out)])
    _assert_one_error(result, "is not a folder")


# ---------------------------------------------------------------- pixel reading
#: Encodings scanners write, with the stored type of the reference series.
ENCODINGS = {"trailing-padding": np.int16, "signed-12-bit": np.int16,
             "unused-high-bits-signed": np.int16, "unused-high-bits-unsigned": np.uint16,
             "big-endian": np.int16, "implicit-vr": np.int16, "rle-compressed": np.int16}


def _recode(ds, path: Path, encoding: str) -> None:
    px = ds.pixel_array
    bits = px.astype(px.dtype.newbyteorder("<")).view(np.uint16)
    if encoding == "trailing-padding":
        ds.add_new(0xFFFCFFFC, "OB", b"\0" * 64)  # Data Set Trailing Padding after the pixels
    elif encoding == "signed-12-bit":
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = (bits & 0x0FFF).tobytes()
    elif encoding.startswith("unused-high-bits"):  # e.g. overlay bits: pydicom drops them
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = (bits | 0xF000).tobytes()
    elif encoding == "big-endian":
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        ds.PixelData = px.astype(px.dtype.newbyteorder(">")).tobytes()
        pydicom.dcmwrite(path, ds, little_endian=False, implicit_vr=False)
        return
    elif encoding == "implicit-vr":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif encoding == "rle-compressed":
        ds.compress(RLELossless)
    ds.save_as(path)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_pixels_bit_for_bit_as_pydicom_reads_them(tmp_path, dsc_pixels, encoding, monkeypatch):
    values = (dsc_pixels[0][:12] & 0x07FF).astype(ENCODINGS[encoding])  # within 12 bits
    if values.dtype.kind == "i":
        values[:, :, :4, :4] = -5
    n_z = values.shape[1]
    F.write_classic_series(tmp_path / "ref", values)
    reference = load_dicom_series(tmp_path / "ref")
    spec = F.write_classic_series(tmp_path / "src", values)
    for path in spec.files:
        ds = pydicom.dcmread(path)
        _recode(ds, path, encoding)
        ds = pydicom.dcmread(path)
        t, z = divmod(int(ds.InstanceNumber) - 1, n_z)
        np.testing.assert_array_equal(ds.pixel_array, values[t, z])  # pydicom's view
    fallback = []
    monkeypatch.setattr(dicom_io, "_pydicom_pixels",
                        lambda p, real=dicom_io._pydicom_pixels: fallback.append(p) or real(p))
    vol = load_dicom_series(tmp_path / "src")
    assert vol.data.tobytes() == reference.data.tobytes()
    # Native data are read at the offset the header parse recorded: no second parse.
    assert len(fallback) == (len(spec.files) if encoding == "rle-compressed" else 0)
