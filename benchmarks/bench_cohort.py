"""perfmap cohort benchmark: ``perfmap batch`` throughput and scheduling overhead.

Simulates a cohort of ``--subjects`` phantoms (default 64x64x12 voxels, 60
frames, SNR 50), then runs :func:`perfmap.pipeline.batch.run_batch` for every
method and every ``--jobs`` value into a fresh folder and reports

* throughput: subjects per minute (batch wall time, all subjects, one method);
* compute seconds per subject: the mean ``seconds`` of cohort.tsv (the time
  ``compute`` itself measured: load, concentration, AIF, deconvolution, write);
* scheduling overhead per subject: ``(wall - sum of compute seconds) / subjects``
  for ``--jobs 1`` (process start-up, task pickling, result collection, cohort
  table rewrites), and ``(wall * jobs - sum of compute seconds) / subjects`` for
  more workers, i.e. the worker time not spent computing (it includes idle
  workers at the end of the batch, and compute slowed by sharing the cores).

With ``--scheduler local`` the same is measured on a Dask ``LocalCluster``.

Usage::

    python benchmarks/bench_cohort.py [--subjects 8] [--methods osvd,tikhonov]
        [--jobs 1,2] [--shape 64x64x12] [--frames 60] [--scheduler local]

These machines are shared and noisy: compare rows within one run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--methods", default="osvd,tikhonov")
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values")
    parser.add_argument("--shape", default="64x64x12")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--scheduler", default=None,
                        help="also run on a Dask scheduler (an address or 'local')")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    methods = [m for m in args.methods.split(",") if m]
    jobs_list = [int(j) for j in args.jobs.split(",") if j]

    from perfmap.pipeline.batch import run_batch
    from perfmap.simulate import simulate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        manifest = simulate_cohort(tmp / "data", n_subjects=args.subjects, snr=50.0,
                                   shape=shape, n_frames=args.frames, seed=1)
        print(f"simulated {args.subjects} subjects {shape}x{args.frames} in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs = [(method, jobs, None) for method in methods for jobs in jobs_list]
        if args.scheduler:
            runs += [(method, max(jobs_list), args.scheduler) for method in methods]
        header = (f"{'method':<10} {'runner':<14} {'subj/min':>9} {'wall s':>8} "
                  f"{'compute s/subj':>15} {'overhead s/subj':>16} {'failed':>6}")
        print(header)
        print("-" * len(header))
        for k, (method, jobs, scheduler) in enumerate(runs):
            out = tmp / f"run{k}"
            result = run_batch(manifest, out, [method], jobs=jobs, scheduler=scheduler)
            n = len(result.rows)
            secs = [r["seconds"] for r in result.rows
                    if r["status"] == "ok" and math.isfinite(r["seconds"])]
            workers = 1 if (jobs == 1 and not scheduler) else jobs
            overhead = (result.wall_s * workers - sum(secs)) / n
            runner = f"dask {scheduler}"[:14] if scheduler else f"jobs {jobs}"
            print(f"{method:<10} {runner:<14} {60.0 * n / result.wall_s:9.1f} "
                  f"{result.wall_s:8.2f} {statistics.mean(secs) if secs else math.nan:15.3f} "
                  f"{overhead:16.3f} {result.n_failed:6d}", flush=True)


if __name__ == "__main__":
    main()
