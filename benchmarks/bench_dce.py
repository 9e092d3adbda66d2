"""End-to-end ``perfmap compute --kind dce`` on a whole-brain-sized DCE phantom.

Simulates one 128x128x20 DCE subject with 100 frames (``perfmap simulate --kind
dce`` physics: SPGR, Parker AIF, extended Tofts tissue, VFA series, SNR 30),
then runs ``perfmap compute --kind dce --vfa ...`` (extended Tofts) in a fresh
process ``repeats`` times and reports the median wall time, the fit step's time
from the JSON (``timings.fit_s``), the voxels per second of the fit and the
peak resident memory of the process.

Run::

    python benchmarks/bench_dce.py [--repeats 3] [--shape 128x128x20] [--frames 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(cmd):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(proc.stderr.read().decode())
    return wall, rusage.ru_maxrss / 1024.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", default="128x128x20")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--method", default="etofts")
    parser.add_argument("--t10", type=float,
                        help="one T10 (s) for every voxel instead of the VFA fit")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    from perfmap.simulate_dce import simulate_dce_cohort

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        simulate_dce_cohort(tmp / "d", n_subjects=1, snr=30.0, shape=shape,
                            n_frames=args.frames, dt=3.0, seed=1, hgg_fraction=1.0)
        d = tmp / "d"
        print(f"simulated {shape} x {args.frames} frames in {time.perf_counter() - t0:.1f} s; "
              f"load average {os.getloadavg()[0]:.1f}")
        walls, mems, fits, voxels = [], [], [], 0
        for i in range(args.repeats):
            out = tmp / f"o{i}"
            t10 = ["--t10", f"{args.t10:g}"] if args.t10 else ["--vfa",
                                                               str(d / "sub-01_vfa.nii.gz")]
            cmd = [sys.executable, "-m", "perfmap", "compute", str(d / "sub-01.nii.gz"),
                   "--kind", "dce", "--method", args.method, *t10,
                   "--mask", str(d / "sub-01_brainmask.nii.gz"),
                   "--aif", str(d / "sub-01_aifmask.nii.gz"), "--out-dir", str(out), "-q"]
            wall, mem = _run(cmd)
            prov = json.loads((out / "sub-01_perfmap.json").read_text())
            walls.append(wall)
            mems.append(mem)
            fits.append(prov["timings"]["fit_s"])
            voxels = prov["voxels"]["brain"]
        fit = statistics.median(fits)
        source = f"T10 {args.t10:g} s" if args.t10 else "VFA T10"
        print("| method | T10 | brain voxels | fit (s) | voxels/s | end to end (s) | peak memory "
              "(MiB) |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {args.method} | {source} | {voxels} | {fit:.2f} | {voxels / fit:,.0f} | "
              f"{statistics.median(walls):.2f} | {max(mems):.0f} |")


if __name__ == "__main__":
    main()
