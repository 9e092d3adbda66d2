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
                                    [--device cpu] [--threads 2] [--json out.json]
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


def bench(shape=(128, 128, 20), n_frames: int = 60, repeats: int = 3, device: str = "cpu",
          batch_size: int = 512, model=None) -> dict:
    """Median wall time of ``repeats`` PHAE fits of ``prod(shape)`` curves."""
    import torch

    from perfmap.deconv import get_backend

    n = int(np.prod(shape))
    conc, aif, dt = synthetic_exam(n, n_frames)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    backend = get_backend("phae")(model=model, device=device, batch_size=batch_size)
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
           "voxels_per_s": n / med, "n_failed": fit.n_failed,
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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    row = bench(tuple(args.shape), args.frames, args.repeats, args.device, args.batch_size,
                args.model)
    print(f"PHAE {row['voxels']} voxels x {row['frames']} frames on {row['device']} "
          f"({row['torch_threads']} threads): median {row['median_s']:.2f} s "
          f"({row['voxels_per_s']:.0f} voxels/s), RSS {row['rss_before_fit_mb']:.0f} MB before "
          f"the fits, peak {row['peak_rss_during_fit_mb']:.0f} MB during them "
          f"(process peak {row['peak_rss_mb']:.0f} MB)"
          + (f", peak GPU {row['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in row else ""))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
