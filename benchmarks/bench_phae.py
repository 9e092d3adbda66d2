"""Speed and memory of PHAE inference on a whole-brain-sized exam (CPU or GPU).

Deconvolves ``128 x 128 x 20`` voxels (327,680 curves) of ``60`` frames with
the shipped weights through :meth:`perfmap.deconv.Backend.fit` (the same call
the pipeline makes, including resampling/normalisation and the Tmax delay
search), ``repeats`` times, and reports the median wall time, voxels per
second, the peak resident memory of the process (``ru_maxrss``, which
includes building the synthetic exam) and the peak resident memory sampled
every 20 ms during the fits, next to the resident memory just before them
(Linux ``/proc/self/statm``; on CUDA also the peak GPU memory). The curves are the closed-form noisy exam of
``benchmarks/bench_deconv.py``. Run::

    python benchmarks/bench_phae.py [--shape 128 128 20] [--frames 60] [--repeats 3]
                                    [--device cpu] [--threads 2]
                                    [--precision float32 bfloat16] [--json out.json]

Each ``--precision`` runs in the same process, one after the other, and the
MTT maps of the later ones are compared with the first (median and largest
relative difference). ``brain_s`` scales the median to a 145,000-voxel brain.
"""

from __future__ import annotations

import argparse
import json
import platform
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deconv import synthetic_exam  # noqa: E402


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return float("nan")


class _PeakRss:
    """Samples the resident memory in a thread while the ``with`` block runs."""

    def __enter__(self):
        self.peak, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


#: Voxels of a whole brain at 128 x 128 x 20 (the issue's figure; the DSC benchmark's
#: brain mask holds 137,264).
BRAIN_VOXELS = 145000


def bench(shape=(128, 128, 20), n_frames: int = 60, repeats: int = 3, device: str = "cpu",
          batch_size: int = 512, model=None, precision: str = "float32") -> dict:
    """Median wall time of ``repeats`` PHAE fits of ``prod(shape)`` curves."""
    import torch

    from perfmap.deconv import get_backend

    n = int(np.prod(shape))
    conc, aif, dt = synthetic_exam(n, n_frames)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    backend = get_backend("phae")(model=model, device=device, batch_size=batch_size,
                                  precision=precision)
    backend.fit(conc[:4096], aif, dt)                       # warm-up
    if backend.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    rss_before = _rss_mb()
    with _PeakRss() as peak:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fit = backend.fit(conc, aif, dt)
            if backend.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    out = {"backend": "phae", "voxels": n, "shape": list(shape), "frames": n_frames,
           "repeats": repeats, "times_s": [round(t, 3) for t in times], "median_s": med,
           "voxels_per_s": n / med, "brain_s": BRAIN_VOXELS * med / n,
           "precision": precision, "n_failed": fit.n_failed, "mtt": fit.mtt,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "rss_before_backend_mb": rss0 / 1024.0, "rss_before_fit_mb": rss_before,
           "peak_rss_during_fit_mb": peak.peak, "input_mb": conc.nbytes / 2 ** 20,
           "device": str(backend.device), "torch_threads": torch.get_num_threads(),
           "batch_size": batch_size, "chunk_size": backend.chunk_size,
           "torch": torch.__version__, "cpu": platform.processor() or platform.machine()}
    if backend.device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 20])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--precision", nargs="+", default=["float32"],
                        choices=["float32", "bfloat16"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows, first_mtt = [], None
    for precision in args.precision:
        row = bench(tuple(args.shape), args.frames, args.repeats, args.device,
                    args.batch_size, args.model, precision)
        mtt = row.pop("mtt")
        if first_mtt is not None:
            ok = np.isfinite(mtt) & np.isfinite(first_mtt)
            rel = np.abs(mtt[ok] / first_mtt[ok] - 1.0)
            row["mtt_rel_diff_vs_" + rows[0]["precision"]] = {
                "median": float(np.median(rel)), "p99": float(np.percentile(rel, 99)),
                "max": float(rel.max())}
        else:
            first_mtt = mtt
        rows.append(row)
        print(f"PHAE {precision} {row['voxels']} voxels x {row['frames']} frames on "
              f"{row['device']} ({row['torch_threads']} threads): median {row['median_s']:.2f} s "
              f"({row['voxels_per_s']:.0f} voxels/s, {row['brain_s']:.1f} s per 145k-voxel "
              f"brain), RSS {row['rss_before_fit_mb']:.0f} MB before the fits, peak "
              f"{row['peak_rss_during_fit_mb']:.0f} MB during them (process peak "
              f"{row['peak_rss_mb']:.0f} MB)"
              + (f", peak GPU {row['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in row else ""))
        for key, val in row.items():
            if key.startswith("mtt_rel_diff"):
                print(f"  MTT vs {rows[0]['precision']}: median {val['median']:.4f}, "
                      f"p99 {val['p99']:.4f}, max {val['max']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
