"""Speed and memory of the extended Tofts fit on a whole-brain-sized DCE exam, against curve_fit.

The exam: ``n_voxels`` noisy curves of ``n_frames`` frames (3 s apart), Parker
2006 plasma AIF (Hct 0.42, arrival 30 s), Ktrans 0.01-0.3 /min, ve 0.05-0.6,
vp 0.005-0.1, Gaussian noise of SD 0.02 mM, float32 (about what a brain DCE
exam holds inside its mask). Reported:

- perfmap ``etofts`` (``perfmap.kinetics``): median wall and CPU time of
  ``repeats`` fits (after a warm-up), voxels per second, failures, median
  |relative error| of Ktrans; with ``n_threads`` 1 and 2;
- peak memory: the resident memory of the process sampled every 20 ms during a
  fit (above what it held before) and the peak of the allocations traced by
  ``tracemalloc`` (NumPy reports its buffers to it) in a separate fit;
- the usual per-voxel loop: ``scipy.optimize.curve_fit`` (TRF, bounds, numeric
  Jacobian) with a textbook model (discrete convolution ``dt * convolve``) on
  ``loop_voxels`` voxels, timed and extrapolated to the exam.

Run::

    python benchmarks/bench_kinetics.py [--voxels 140000] [--frames 100] [--repeats 3]

The machine's load average is printed: on a shared machine the wall times
include waiting for the CPU; the CPU times are less sensitive to it.

OSIPI's ``osipy`` package is not compared: every release (0.0.2 to 0.1.4)
requires Python >= 3.12 and ``pip download osipy`` finds none for Python 3.11.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import tracemalloc

import numpy as np

from perfmap.core.dce_aif import parker_aif, plasma_from_blood
from perfmap.kinetics import get_model


def synthetic_exam(n_voxels: int = 140_000, n_frames: int = 100, dt: float = 3.0,
                   noise: float = 0.02, seed: int = 0):
    """``conc`` (n, T) float32, ``aif`` (T,), ``times`` (T,) and the true parameter maps."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) * dt
    aif = plasma_from_blood(parker_aif(t, 30.0), 0.42)
    truth = {"ktrans": rng.uniform(0.01, 0.3, n_voxels), "ve": rng.uniform(0.05, 0.6, n_voxels),
             "vp": rng.uniform(0.005, 0.1, n_voxels)}
    conc = get_model("etofts")().predict(truth, aif, t)
    conc += rng.normal(0.0, noise, conc.shape)
    return conc.astype(np.float32), aif, t, truth


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return float("nan")


class PeakRss:
    """Samples the resident memory in a thread while the ``with`` block runs."""

    def __enter__(self):
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
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


def time_perfmap(conc, aif, t, truth, repeats: int = 3, n_threads: int = 1) -> dict:
    model = get_model("etofts")(n_threads=n_threads)
    model.fit(conc[:2000], aif, t)                            # warm-up (imports, caches)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fit = model.fit(conc, aif, t)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    err = np.abs(fit.params["ktrans"] / truth["ktrans"] - 1)
    med = float(np.median(walls))
    return {"n_threads": n_threads, "median_s": med, "min_s": float(min(walls)),
            "median_cpu_s": float(np.median(cpus)), "voxels_per_s": conc.shape[0] / med,
            "n_failed": fit.n_failed, "ktrans_median_rel_error": float(np.nanmedian(err))}


def memory_perfmap(conc, aif, t) -> dict:
    model = get_model("etofts")()
    with PeakRss() as rss:
        model.fit(conc, aif, t)
    tracemalloc.start()
    model.fit(conc, aif, t)
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rss_before_mb": rss.start, "rss_peak_mb": rss.peak,
            "rss_increase_mb": rss.peak - rss.start, "traced_peak_mb": traced / 2 ** 20,
            "input_mb": conc.nbytes / 2 ** 20}


def textbook_etofts(t, aif):
    """The model most scripts write: a discrete (rectangle-rule) convolution."""
    dt = t[1] - t[0]

    def model(_, ktrans, ve, vp):
        kep = ktrans / ve
        return vp * aif + ktrans / 60 * dt * np.convolve(aif, np.exp(-kep / 60 * t))[:t.size]

    return model


def time_curve_fit(conc, aif, t, truth, loop_voxels: int = 500) -> dict:
    from scipy.optimize import curve_fit

    model = textbook_etofts(t, aif)
    n = min(loop_voxels, conc.shape[0])
    est = np.full(n, np.nan)
    failures = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):                    # the per-voxel loop this package avoids
        try:
            p, _ = curve_fit(model, t, conc[i].astype(float), p0=(0.1, 0.2, 0.02),
                             bounds=([0, 1e-3, 0], [5, 1, 1]), method="trf")
            est[i] = p[0]
        except RuntimeError:
            failures += 1
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    err = np.abs(est / truth["ktrans"][:n] - 1)
    return {"voxels": n, "wall_s": wall, "cpu_s": cpu, "voxels_per_s": n / wall,
            "extrapolated_s": wall * conc.shape[0] / n, "failures": failures,
            "ktrans_median_rel_error": float(np.nanmedian(err))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=140_000)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-voxels", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}, CPUs: {os.cpu_count()}")
    conc, aif, t, truth = synthetic_exam(args.voxels, args.frames)
    print(f"exam: {args.voxels} voxels x {args.frames} frames, float32 "
          f"({conc.nbytes / 2 ** 20:.0f} MiB)")
    for threads in (1, 2):
        r = time_perfmap(conc, aif, t, truth, args.repeats, threads)
        print(f"perfmap etofts, {threads} thread(s): median {r['median_s']:.2f} s "
              f"(min {r['min_s']:.2f}, CPU {r['median_cpu_s']:.2f}), "
              f"{r['voxels_per_s']:.0f} voxels/s, {r['n_failed']} failed, "
              f"median |Ktrans error| {100 * r['ktrans_median_rel_error']:.1f} %")
    m = memory_perfmap(conc, aif, t)
    print(f"memory: resident {m['rss_before_mb']:.0f} -> {m['rss_peak_mb']:.0f} MiB during a fit "
          f"(+{m['rss_increase_mb']:.0f}); tracemalloc peak {m['traced_peak_mb']:.0f} MiB "
          f"(input {m['input_mb']:.0f} MiB)")
    c = time_curve_fit(conc, aif, t, truth, args.loop_voxels)
    print(f"scipy curve_fit loop: {c['voxels']} voxels in {c['wall_s']:.2f} s "
          f"({c['voxels_per_s']:.0f} voxels/s), extrapolated to {args.voxels}: "
          f"{c['extrapolated_s']:.0f} s; median |Ktrans error| "
          f"{100 * c['ktrans_median_rel_error']:.1f} % (rectangle-rule model)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
