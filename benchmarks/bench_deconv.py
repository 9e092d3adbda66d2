"""Timing of the matrix deconvolution backends on a brain-sized synthetic exam.

``time_backends`` deconvolves ``n_voxels`` closed-form tissue curves (gamma-variate
AIF, exponential residues with MTT 2-12 s, CBF 10-80 ml/100 g/min, Gaussian noise)
with every registered backend except PHAE, and returns one row per backend with
the median wall time of ``repeats`` runs. The lead folds it into the overall
benchmark; run it directly for a table::

    python benchmarks/bench_deconv.py [--voxels 145000] [--frames 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from perfmap.core import curves
from perfmap.deconv import available, get_backend

#: Backends timed here (PHAE has its own benchmark: it needs torch and weights).
MATRIX_BACKENDS = ("ssvd", "csvd", "osvd", "tikhonov")


def synthetic_exam(n_voxels: int, n_frames: int, dt: float = 1.5, snr: float = 50.0,
                   seed: int = 0, dtype=np.float32):
    """Noisy tissue curves ``(n_voxels, n_frames)`` and their AIF ``(n_frames,)``.

    64 distinct noise-free curves (exponential residue, MTT 2-12 s, CBF 10-80
    ml/100 g/min, arrival delay 0-3 s) are tiled to ``n_voxels`` rows and
    Gaussian noise of SD ``peak / snr`` is added, so no two rows are equal.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) * dt

    def aif_fn(x):
        return curves.gamma_variate(x, t0=10.0, alpha=3.0, beta=1.5, peak=1.0)

    n_base = 64
    mtt = rng.uniform(2.0, 12.0, n_base)
    flow = curves.flow_per_second(rng.uniform(10.0, 80.0, n_base))
    base = np.concatenate([
        curves.tissue_concentration(t, aif_fn, flow[i:i + 1], mtt[i:i + 1], delay=d,
                                    fine_dt=0.05)
        for i, d in enumerate(rng.uniform(0.0, 3.0, n_base))
    ])
    conc = np.resize(base, (n_voxels, n_frames)).astype(dtype)
    conc += rng.normal(0.0, base.max() / snr, conc.shape).astype(dtype)
    return conc, aif_fn(t), dt


def time_backends(n_voxels: int = 145000, n_frames: int = 60, repeats: int = 5,
                  backends=None) -> list[dict]:
    """Median wall time of each matrix backend on ``n_voxels`` x ``n_frames`` curves.

    Returns
    -------
    list of dict
        One row per backend: ``backend``, ``params``, ``n_voxels``, ``n_frames``,
        ``repeats``, ``median_s``, ``min_s`` (wall time), ``median_cpu_s`` (CPU
        time of all threads: less sensitive to other load on a shared machine),
        ``voxels_per_s`` (from the median) and ``n_failed``.
    """
    conc, aif, dt = synthetic_exam(n_voxels, n_frames)
    names = [b for b in (backends or MATRIX_BACKENDS) if b in available()]
    rows = []
    for name in names:
        backend = get_backend(name)()
        backend.fit(conc[:1000], aif, dt)                  # warm-up (imports, FFT plans)
        times, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fit = backend.fit(conc, aif, dt)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        med = float(np.median(times))
        rows.append({"backend": name, "params": backend.params(), "n_voxels": n_voxels,
                     "n_frames": n_frames, "repeats": repeats, "median_s": med,
                     "min_s": float(np.min(times)), "median_cpu_s": float(np.median(cpu)),
                     "voxels_per_s": n_voxels / med, "n_failed": fit.n_failed})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=145000)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", action="append", help="time only these (repeatable)")
    args = parser.parse_args(argv)
    rows = time_backends(args.voxels, args.frames, args.repeats, args.backend)
    print(f"{'backend':10s} {'median s':>9s} {'min s':>8s} {'cpu s':>8s} {'voxels/s':>12s} "
          f"{'failed':>7s}")
    for r in rows:
        print(f"{r['backend']:10s} {r['median_s']:9.3f} {r['min_s']:8.3f} "
              f"{r['median_cpu_s']:8.3f} {r['voxels_per_s']:12.0f} {r['n_failed']:7d}")


if __name__ == "__main__":
    main()
