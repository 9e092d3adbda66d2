"""Time loading a classic DICOM DSC series: 20 slices x 60 time points = 1200 files.

Usage::

    python benchmarks/bench_dicom.py [--repeats 7] [--rows 128] [--keep DIR]

The series (128 x 128 uint16, random file names in two sub-folders, written with
``tests/dicom_factory.py``) is generated once; each repeat runs
:func:`perfmap.io.dicom.load_dicom_series` on the folder from scratch (discovery,
header parsing, assembly, pixel reading, rescaling). The median and the spread
are printed; the first run may include a cold file cache, so the median is the
number to quote. Target: < 2 s for the 1200 files.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import dicom_factory as F  # noqa: E402
from perfmap.io.dicom import find_series, load_dicom_series  # noqa: E402

N_SLICES, N_FRAMES = 20, 60


def _make(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    px = rng.integers(200, 4000, size=(N_FRAMES, N_SLICES, rows, rows)).astype(np.uint16)
    F.write_classic_series(folder, px, slope=1.0, frame_interval=1.5)


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--keep", type=Path, default=None,
                    help="write/reuse the series in this folder instead of a temporary one")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "series"
        if not folder.is_dir() or not any(folder.rglob("*")):
            t0 = time.perf_counter()
            _make(folder, args.rows)
            print(f"wrote {N_SLICES * N_FRAMES} files in {time.perf_counter() - t0:.1f} s")
        vol = load_dicom_series(folder)
        assert vol.data.shape == (args.rows, args.rows, N_SLICES, N_FRAMES), vol.data.shape
        for name, fn in (("find_series", lambda: find_series(folder)),
                         ("load_dicom_series", lambda: load_dicom_series(folder))):
            runs = _time(fn, args.repeats)
            med = statistics.median(runs)
            print(f"{name:18s} median {med:6.3f} s  min {min(runs):6.3f}  max {max(runs):6.3f}"
                  f"  ({1000 * med / (N_SLICES * N_FRAMES):.2f} ms/file, {args.repeats} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
