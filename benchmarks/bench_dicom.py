"""Time loading a classic DICOM DSC series: 20 slices x 60 time points = 1200 files.

Usage::

    python benchmarks/bench_dicom.py [--repeats 7] [--rows 128] [--keep DIR]
                                     [--encoding native|trailing-padding|signed-12-bit]

The series (128 x 128 uint16, random file names in two sub-folders, written with
``tests/dicom_factory.py``) is generated once; ``--encoding`` rewrites every file
with Data Set Trailing Padding after the pixels, or as 12-bit signed pixels (both
common in scanner exports). Then, in the same run and
interleaved (the order alternates from one repeat to the next, so a drifting
machine load hits both alike), the benchmark times

- ``find_series``: discovery only;
- ``load_dicom_series``: :func:`perfmap.io.dicom.load_dicom_series` on the folder from
  scratch (discovery, header parsing, assembly, pixel reading, rescaling);
- ``bare pydicom``: ``[pydicom.dcmread(p).pixel_array for p in files]`` over the same
  files, the floor any pydicom-based reader is measured against.

Medians and spreads are printed, then the ratio of the load median to the bare
median (target: at most 2.5). The first run may include a cold file cache, so
the medians are the numbers to quote.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import dicom_factory as F  # noqa: E402
from perfmap.io.dicom import find_series, load_dicom_series  # noqa: E402

N_SLICES, N_FRAMES = 20, 60


ENCODINGS = ("native", "trailing-padding", "signed-12-bit")


def _recode(path: Path, encoding: str) -> None:
    ds = pydicom.dcmread(path)
    if encoding == "trailing-padding":
        ds.add_new(0xFFFCFFFC, "OB", b"\0" * 64)
    elif encoding == "signed-12-bit":
        values = ds.pixel_array.astype(np.int16) - 2000
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
        ds.PixelData = (values.view(np.uint16) & 0x0FFF).tobytes()
    ds.save_as(path)


def _make(folder: Path, rows: int, encoding: str) -> None:
    rng = np.random.default_rng(0)
    px = rng.integers(200, 4000, size=(N_FRAMES, N_SLICES, rows, rows)).astype(np.uint16)
    spec = F.write_classic_series(folder, px, slope=1.0, frame_interval=1.5)
    if encoding != "native":
        for path in spec.files:
            _recode(path, encoding)


def _files(folder: Path) -> list:
    """Every regular file below ``folder``, sorted (the series' files)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _bare(files) -> list:
    return [pydicom.dcmread(p).pixel_array for p in files]


def _time_interleaved(fns: dict, repeats: int) -> dict:
    """``{name: [seconds, ...]}``; each repeat runs every function once, order alternating."""
    runs = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            fns[name]()
            runs[name].append(time.perf_counter() - t0)
    return runs


def _report(name: str, runs: list, n_files: int) -> None:
    med = statistics.median(runs)
    print(f"{name:18s} median {med:6.3f} s  min {min(runs):6.3f}  max {max(runs):6.3f}"
          f"  ({1000 * med / n_files:.2f} ms/file, {len(runs)} runs)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--keep", type=Path, default=None,
                    help="write/reuse the series in this folder instead of a temporary one")
    ap.add_argument("--encoding", choices=ENCODINGS, default="native",
                    help="how the generated files store their pixels (not used with an "
                         "existing --keep folder)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "series"
        if not folder.is_dir() or not any(folder.rglob("*")):
            t0 = time.perf_counter()
            _make(folder, args.rows, args.encoding)
            print(f"wrote {N_SLICES * N_FRAMES} files in {time.perf_counter() - t0:.1f} s")
        files = _files(folder)
        vol = load_dicom_series(folder)
        assert vol.data.shape == (args.rows, args.rows, N_SLICES, N_FRAMES), vol.data.shape
        assert len(_bare(files)) == N_SLICES * N_FRAMES
        print(f"{len(files)} files, {os.cpu_count()} CPUs, {args.repeats} interleaved repeats, "
              f"perfmap from {Path(sys.modules['perfmap'].__file__).parent}")
        runs = _time_interleaved({"find_series": lambda: find_series(folder),
                                  "load_dicom_series": lambda: load_dicom_series(folder),
                                  "bare pydicom": lambda: _bare(files)}, args.repeats)
        for name, values in runs.items():
            _report(name, values, len(files))
        load, bare = (statistics.median(runs[k]) for k in ("load_dicom_series", "bare pydicom"))
        pairs = [a / b for a, b in zip(runs["load_dicom_series"], runs["bare pydicom"])]
        print(f"ratio load/bare    {load / bare:6.2f}  (median of medians; median of per-repeat "
              f"ratios {statistics.median(pairs):.2f}; target <= 2.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
