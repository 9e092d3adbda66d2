"""Denoising benchmark: MP-PCA and Gaussian speed, memory and PSNR gain on the DSC phantom.

Simulates :func:`perfmap.core.phantom.make_phantom` (default 128x128x20, 60
frames) without noise and with noise at SNR 50, 20 and 10 (same seed: the
noisy series is the noise-free one plus noise), then prints two markdown
tables:

* speed and memory at SNR 10: wall seconds (median of ``--repeats``), CPU
  seconds, and peak memory above the loaded series (resident set of a child
  process, whose peak is reset after loading) for ``mppca`` with the default
  grid (``step=2``), ``mppca`` on DIPY's grid (``step=1``, one run) and
  ``gaussian``; DIPY's ``mppca`` (``patch_radius=2``) timed on a central
  crop of the brain and extrapolated by its number of patches (DIPY takes
  minutes on the whole volume);
* PSNR inside the brain against the noise-free phantom
  (``skimage.metrics.peak_signal_noise_ratio`` with ``data_range`` the range
  of the noise-free brain signal) before and after each denoiser, and the
  estimated noise SD against the true one;
* the component-selection rules of Veraart et al. 2016 and of DIPY on
  simulated 125 x 60 patches (white noise of SD 1 plus 0-4 components of
  known strength): how often each recovers the true rank, keeps too many or
  too few, its noise SD estimate and the error of the reconstruction.

Usage::

    python benchmarks/bench_denoise.py [--shape 128x128x20] [--frames 60] [--repeats 3]
                                       [--no-dipy] [--no-step1]

The machines these run on are shared: quote medians, compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DENOISERS = {
    "mppca (step 2, default)": ("mppca", {}),
    "mppca (step 1, DIPY's grid)": ("mppca", {"step": 1}),
    "gaussian (sigma 1 voxel)": ("gaussian", {}),
    "gaussian (sigma 1 voxel in-plane)": ("gaussian", {"sigma": (1.0, 1.0, 0.0)}),
}


def _phantom(shape, frames, snr):
    from perfmap.core.phantom import make_phantom

    return make_phantom(shape=shape, n_frames=frames, snr=snr, seed=0)


def _timed(fn, repeats):
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def _psnr(truth, est, mask):
    from skimage.metrics import peak_signal_noise_ratio

    t = truth[mask].astype(np.float64)
    return peak_signal_noise_ratio(t, est[mask].astype(np.float64),
                                   data_range=float(t.max() - t.min()))


def _child_memory(path, method, params):
    """Peak RSS growth (MiB) of one denoising call in a fresh process."""
    code = f"""
import json, resource, sys, numpy as np
sys.path.insert(0, {str(REPO)!r})
from perfmap.core.denoise import denoise
import torch  # imported before the reset, as in a pipeline that has it loaded
d = np.load({str(path)!r})
series, mask = d["series"], d["mask"]
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
base = rss("VmRSS:")
try:
    open("/proc/self/clear_refs", "w").write("5")   # reset the peak (VmHWM)
except OSError:
    pass
denoise(series, {method!r}, mask=mask, **json.loads({json.dumps(params)!r}))
print(rss("VmHWM:") - base)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr)
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def _denoisers(args):
    return {k: v for k, v in DENOISERS.items() if not (args.no_step1 and v[1].get("step") == 1)}


def speed_table(noisy, args, tmp):
    from perfmap.core.denoise import denoise

    series, mask = noisy.signal, noisy.masks["brain"]
    path = Path(tmp) / "series.npz"
    np.savez(path, series=series, mask=mask)
    denoise(series[:16, :16, :8], "mppca", mask=None)       # warm-up: imports torch
    print("| method | patches | wall s (median) | CPU s | peak memory above input (MiB) |")
    print("|---|---|---|---|---|")
    for label, (method, params) in _denoisers(args).items():
        reps = 1 if params.get("step") == 1 else args.repeats
        wall, cpu, res = _timed(lambda: denoise(series, method, mask=mask, **params), reps)
        mem = _child_memory(path, method, params)
        note = "" if reps > 1 else " (1 run)"
        print(f"| {label} | {res.info.get('patches', '-')} | {wall:.2f}{note} | {cpu:.2f} "
              f"| {mem:.0f} |")
    if not args.no_dipy:
        dipy_row(series, mask)


def dipy_row(series, mask):
    """DIPY's mppca on a central crop, extrapolated by the number of patches it computes."""
    import warnings

    from dipy.denoise.localpca import mppca as dipy_mppca

    X, Y, Z = mask.shape
    cx, cy = X // 2, Y // 2
    crop = (slice(cx - 10, cx + 10), slice(cy - 10, cy + 10), slice(None))
    sub, sub_mask = series[crop], mask[crop]

    def centred(m):  # DIPY computes one patch per mask voxel at least 2 voxels from the border
        inner = np.zeros_like(m)
        inner[2:-2, 2:-2, 2:-2] = m[2:-2, 2:-2, 2:-2]
        return int(inner.sum())

    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        wall, cpu, _ = _timed(lambda: dipy_mppca(sub, mask=sub_mask, patch_radius=2), 1)
    n_sub, n_full = centred(sub_mask), centred(mask)
    print(f"| DIPY 1.12 mppca (patch radius 2), {n_sub} patches of a "
          f"{'x'.join(map(str, sub_mask.shape))} crop, extrapolated | {n_full} "
          f"| {wall * n_full / n_sub:.0f} (crop: {wall:.1f}) | {cpu * n_full / n_sub:.0f} | - |")


def psnr_table(clean, args, shape, snrs):
    from perfmap.core.denoise import denoise

    mask = clean.masks["brain"]
    denoisers = _denoisers(args)
    print("| SNR | true noise SD | noisy PSNR (dB) | " + " | ".join(
        f"{label}: PSNR (gain) | est. SD" for label in denoisers) + " |")
    print("|---|---|---|" + "---|---|" * len(denoisers))
    for snr in snrs:
        noisy = _phantom(shape, args.frames, snr)
        base = _psnr(clean.signal, noisy.signal, mask)
        cells = []
        for method, params in denoisers.values():
            res = denoise(noisy.signal, method, mask=mask, **params)
            p = _psnr(clean.signal, res.data, mask)
            cells.append(f"{p:.1f} ({p - base:+.1f}) | {res.info['noise_sigma']:.1f}")
        print(f"| {snr:g} | {noisy.params['noise_sd']:.1f} | {base:.1f} | "
              + " | ".join(cells) + " |", flush=True)


def rules_table(n_patches=3000, N=125, T=60, seed=3):
    """Rank recovery of the paper's and DIPY's rules on simulated patches (public functions)."""
    from perfmap.core.denoise.marchenko_pastur import mp_classify, mp_upper_edge

    rng = np.random.default_rng(seed)
    print("| signal singular values / sqrt(N) | rule | true rank | too many | too few "
          "| noise SD (true 1) | error / sigma^2 |")
    print("|---|---|---|---|---|---|---|")
    for strengths in ([], [5, 4, 3], [5, 4, 3, 1.2], [5, 4, 3, 2.0]):
        k = len(strengths)
        signal = np.zeros((n_patches, N, T))
        if k:
            u = np.linalg.qr(rng.standard_normal((n_patches, N, k)))[0]
            v = np.linalg.qr(rng.standard_normal((n_patches, T, k)))[0]
            signal = np.einsum("bnk,k,btk->bnt", u, np.sqrt(N) * np.array(strengths, float), v)
        a = signal + rng.standard_normal(signal.shape)
        mu = a.mean(axis=1, keepdims=True)
        lam, vec = np.linalg.eigh(np.matmul((a - mu).transpose(0, 2, 1), a - mu))
        lam, vec = lam[:, ::-1], vec[:, :, ::-1]
        for rule in ("veraart2016", "dipy"):
            if rule == "veraart2016":
                s2, kept = mp_classify(lam / (N - 1), N - 1)
            else:
                s2, _ = mp_classify(lam / N, N)
                kept = np.count_nonzero(lam / N >= mp_upper_edge(s2, T / N)[:, None], axis=1)
            basis = vec * (np.arange(T) < kept[:, None])[:, None, :]
            est = np.matmul(np.matmul(a - mu, basis), basis.transpose(0, 2, 1)) + mu
            err = np.mean((est - signal) ** 2)
            print(f"| {strengths or 'none'} | {rule} | {np.mean(kept == k):.1%} | "
                  f"{np.mean(kept > k):.1%} | {np.mean(kept < k):.1%} | "
                  f"{np.mean(np.sqrt(s2)):.4f} | {err:.4f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128x128x20")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--snr", default="50,20,10")
    parser.add_argument("--no-dipy", action="store_true", help="skip the DIPY timing")
    parser.add_argument("--no-step1", action="store_true", help="skip mppca with step=1")
    parser.add_argument("--rules-only", action="store_true",
                        help="only the table of component-selection rules")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x"))
    snrs = [float(s) for s in args.snr.split(",")]
    sys.path.insert(0, str(REPO))
    if args.rules_only:
        rules_table()
        return

    clean = _phantom(shape, args.frames, None)
    noisy = _phantom(shape, args.frames, snrs[-1])
    print(f"phantom {args.shape} x {args.frames} frames, {int(clean.masks['brain'].sum())} brain "
          f"voxels; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}\n")
    print(f"Speed and memory at SNR {snrs[-1]:g}:\n")
    with tempfile.TemporaryDirectory() as tmp:
        speed_table(noisy, args, tmp)
    print("\nPSNR inside the brain against the noise-free phantom:\n")
    psnr_table(clean, args, shape, snrs)
    print("\nComponent selection on simulated 125 x 60 patches (3000 per row):\n")
    rules_table()
    print(f"\nmax RSS of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
