"""End-to-end time of PHAE2 vs oSVD (and PHAE) on a full-size brain, same run, CPU threads.

A 128 x 128 x 20 phantom (60 frames of 1.5 s, SNR 20) through the array API,
``DSCModel(method, te, tr, leakage="none").fit(signal, mask, aif)`` plus the
maps (conversion, AIF, deconvolution, CBF/CBV/MTT/Tmax/TTP): wall time, best
of ``--repeat``, methods interleaved so load changes on a shared machine hit
all of them alike.

Run::

    python benchmarks/phae2_speed.py [--threads 2] [--repeat 3] [--methods osvd phae2 phae]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from perfmap.core.phantom import make_phantom
from perfmap.models import DSCModel


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["osvd", "phae2", "phae"])
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 128, 20])
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    ph = make_phantom(shape=tuple(args.shape), n_frames=60, snr=20.0, seed=5)
    brain = int(ph.masks["brain"].sum())
    models = {m: DSCModel(m, te=ph.te, tr=ph.tr, leakage="none",
                          **({"device": "cpu", "threads": args.threads}
                             if m.startswith("phae") else {})) for m in args.methods}
    times = {m: [] for m in args.methods}
    for _ in range(args.repeat):
        for m, model in models.items():
            t = time.perf_counter()
            fit = model.fit(ph.signal, mask=ph.masks["brain"], aif=ph.masks["aif"])
            _ = fit.cbf, fit.cbv, fit.mtt, fit.tmax, fit.ttp
            times[m].append(time.perf_counter() - t)
    base = min(times["osvd"]) if "osvd" in times else np.nan
    print(f"{tuple(args.shape)} phantom, {brain} brain voxels, {args.threads} threads, best of "
          f"{args.repeat}")
    print("| method | end-to-end s (best) | all runs s | x oSVD |")
    print("|---|---:|---|---:|")
    for m, ts in times.items():
        print(f"| {m} | {min(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} | "
              f"{min(ts) / base:.2f} |")


if __name__ == "__main__":
    main()
