"""perfmap benchmark: deconvolution speed, end-to-end ``perfmap compute`` time and peak memory.

Simulates a 128x128x20 volume with 60 frames (about 145k brain voxels... the
exact count is printed), then for every backend reports

* deconvolution seconds (median of ``--repeats`` runs of ``Backend.fit`` on all
  brain voxels) and voxels per second;
* end-to-end seconds of ``perfmap compute`` in a fresh process (median), and
  that process's peak resident memory (from ``wait4`` rusage), with the
  simulated brain and arterial masks given; with ``--auto`` also of the
  default run (``--mask auto --aif auto``).

Usage::

    python benchmarks/bench.py [--repeats 5] [--methods osvd,tikhonov,csvd,ssvd] [--shape 128x128x20]
                               [--auto]

These machines are shared and noisy: compare methods within one run and quote
medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _run_child(cmd, env=None):
    """Run ``cmd`` (``env``: extra environment variables); return (wall seconds, peak RSS
    in MiB, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(proc.stderr.read().decode())
    return wall, rusage.ru_maxrss / 1024.0, code


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default="osvd,tikhonov,csvd,ssvd")
    parser.add_argument("--shape", default="128x128x20")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--no-e2e", action="store_true", help="skip end-to-end runs")
    parser.add_argument("--auto", action="store_true",
                        help="also time the default run (--mask auto --aif auto) end to end")
    parser.add_argument("--extra", action="append", default=[], metavar="ARG",
                        help="extra argument for this tree's 'perfmap compute' only (repeat; "
                             "e.g. --extra=--leakage --extra=none)")
    parser.add_argument("--baseline-tree", metavar="DIR",
                        help="also time 'perfmap compute' from another source tree (e.g. a "
                             "'git worktree' of an older commit), interleaved with this one")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    methods = [m for m in args.methods.split(",") if m]

    from perfmap.deconv import get_backend
    from perfmap.io.nifti import load_mask
    from perfmap.io.series import load_series
    from perfmap.models import DSCModel
    from perfmap.io.tables import read_tsv
    from perfmap.simulate import simulate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        manifest = simulate_cohort(tmp / "data", n_subjects=1, snr=50.0, shape=shape,
                                   n_frames=args.frames, seed=1)
        sim_s = time.perf_counter() - t0
        row = read_tsv(manifest)[0]
        base = Path(manifest).parent
        inp, aif, mask = (str(base / row[k]) for k in ("input", "aif", "mask"))
        volume = load_series(inp)
        brain = load_mask(mask, volume)
        aif_mask = load_mask(aif, volume)
        work = DSCModel("csvd", te=volume.te, tr=volume.tr).prepare(
            volume.data, mask=brain, aif=aif_mask, frame_times=volume.frame_times)
        conc, curve, dt = work.brain_conc, work.aif.curve, work.grid.dt
        n = conc.shape[0]
        print(f"volume {shape} x {args.frames} frames, {n} brain voxels "
              f"(simulated in {sim_s:.1f} s); torch threads n/a; cores {os.cpu_count()}")
        rows = []
        for method in methods:
            backend = get_backend(method)()
            backend.fit(conc[:2048], curve, dt)  # warm-up
            med, _ = _median_time(lambda: backend.fit(conc, curve, dt), args.repeats)
            e2e = mem = auto = old = float("nan")
            if not args.no_e2e:
                given = ["--aif", aif, "--mask", mask]
                e2e, mem, old = _end_to_end(inp, given, method, args.repeats, tmp / "given",
                                            args.baseline_tree, args.extra)
                if args.auto:
                    auto, auto_mem, _ = _end_to_end(inp, [], method, args.repeats,
                                                    tmp / "auto")
                    mem = max(mem, auto_mem)
            rows.append((method, med, n / med, e2e, auto, mem, old))
        print()
        auto_col = " end-to-end, auto mask and AIF (s) |" if args.auto else ""
        old_col = " end-to-end, baseline tree (s) |" if args.baseline_tree else ""
        print("| method | deconvolution (s) | voxels/s | end-to-end compute (s) |"
              f"{auto_col}{old_col} peak memory (MiB) |")
        print("|---|---|---|---|" + ("---|" if args.auto else "")
              + ("---|" if args.baseline_tree else "") + "---|")
        for method, med, vps, e2e, auto, mem, old in rows:
            auto_cell = f" {auto:.2f} |" if args.auto else ""
            old_cell = f" {old:.2f} |" if args.baseline_tree else ""
            print(f"| {method} | {med:.3f} | {vps:,.0f} | {e2e:.2f} |{auto_cell}{old_cell} "
                  f"{mem:.0f} |")


def _end_to_end(inp, options, method, repeats, out_root, baseline_tree=None, extra=()):
    """Median wall seconds, largest peak RSS (MiB) of ``perfmap compute`` runs, and the
    median wall seconds of the same runs from ``baseline_tree`` (NaN without one),
    alternating the two so both see the same machine load."""
    walls, mems, old = [], [], []
    for i in range(repeats):
        base = [sys.executable, "-m", "perfmap", "compute", inp, *options, "--method", method]
        cmd = base + list(extra) + ["--out-dir", str(out_root / f"{method}_{i}"), "-q"]
        wall, peak, code = _run_child(cmd, {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        if code != 0:
            raise SystemExit(f"perfmap compute failed for {method}")
        walls.append(wall)
        mems.append(peak)
        if baseline_tree:
            cmd = base + ["--out-dir", str(out_root / f"{method}_{i}_baseline"), "-q"]
            wall, _, code = _run_child(cmd, {"PYTHONPATH": str(Path(baseline_tree).resolve())})
            if code != 0:
                raise SystemExit(f"perfmap compute from {baseline_tree} failed for {method}")
            old.append(wall)
    return (statistics.median(walls), max(mems),
            statistics.median(old) if old else float("nan"))


if __name__ == "__main__":
    main()
