"""Choose the sizes of the learned denoisers by measurement: PSNR gain against CPU time.

Every candidate of an architecture is trained the same short way
(:func:`perfmap.neural.denoise_train.train_network`: same noise-free
training phantoms, same seed, ``--epochs`` x ``--steps`` optimiser steps,
one torch thread) and scored on the held-out validation phantoms
(:data:`perfmap.neural.denoise_train.VALIDATION_SEEDS`, Gaussian noise at SNR
10, 20 and 50) by the PSNR gain inside the brain against the noise-free
phantom, through the same code path as ``perfmap denoise``. MP-PCA
(``mppca``, default parameters) is scored on the same phantoms for
reference. Inference time is the whole denoiser (normalisation, network,
chunking) on a 128x128x20x60 DSC phantom at SNR 20 inside its brain mask,
with ``--threads`` torch threads (one run: the machines are shared, compare
within one run).

Run (the two architectures can run side by side, one core each)::

    python benchmarks/denoise_arch.py --arch dae [--epochs 6] [--steps 100] [--json out.json]
    python benchmarks/denoise_arch.py --arch cae ...
    python benchmarks/denoise_arch.py --arch mppca      # the reference row
    python benchmarks/denoise_arch.py --arch shipped    # shipped weights, 1 and 2 threads
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from perfmap.core.denoise import get_denoiser
from perfmap.core.phantom import make_phantom
from perfmap.neural import denoise_nets
from perfmap.neural.denoise_train import (DenoiseTrainOptions, make_groups, train_network,
                                          validate, validation_phantoms, wrap)

CANDIDATES = {
    "dae": {
        "dae w16 d2": {"width": 16, "depth": 2},
        "dae w24 d3": {"width": 24, "depth": 3},
        "dae w24 d3, no noise channel": {"width": 24, "depth": 3, "noise_channel": False},
        "dae w32 d4": {"width": 32, "depth": 4},
    },
    "cae": {
        "cae w8 L2": {"width": 8, "levels": 2},
        "cae w16 L2": {"width": 16, "levels": 2},
        "cae w16 L2, 3 frames": {"width": 16, "levels": 2, "frames": 3},
        "cae w16 L2, 5 frames": {"width": 16, "levels": 2, "frames": 5},
        "cae w8 L2, 3 frames": {"width": 8, "levels": 2, "frames": 3},
        "cae w8 L2, 5 frames": {"width": 8, "levels": 2, "frames": 5},
    },
}


def inference_seconds(denoiser, phantom, threads: int) -> float:
    """Wall time of one denoising of ``phantom`` inside its brain mask."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    denoiser.denoise(phantom.signal, phantom.masks["brain"])
    return time.perf_counter() - t0


def run(arch: str, epochs: int, steps: int, threads: int, names=None) -> list:
    torch.set_num_threads(1)
    val = validation_phantoms()
    big = make_phantom(shape=(128, 128, 20), n_frames=60, snr=20.0, seed=990_100)
    base = DenoiseTrainOptions(arch=arch, epochs=epochs, steps_per_epoch=steps)
    groups = make_groups(base, log=lambda m: None)
    rows = []
    for name, change in CANDIDATES[arch].items():
        if names and name not in names:
            continue
        opts = DenoiseTrainOptions(arch=arch, epochs=epochs, steps_per_epoch=steps,
                                   config=dict(denoise_nets.DEFAULTS[arch], **change))
        t0 = time.perf_counter()
        net, hist = train_network(opts, groups, log=lambda m: None)
        train_s = time.perf_counter() - t0
        den = wrap(net, opts.config)
        gains = validate(den, val)
        sec = inference_seconds(den, big, threads)
        torch.set_num_threads(1)
        rows.append({"name": name, "config": opts.config,
                     "parameters": denoise_nets.n_parameters(net), "train_s": round(train_s, 1),
                     "final_loss": round(hist[-1]["train_loss"], 4),
                     **{k: v["gain_db"] for k, v in gains.items()},
                     "inference_s": round(sec, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def mppca_row(threads: int) -> dict:
    val = validation_phantoms()
    gains = validate(get_denoiser("mppca")(), val)
    big = make_phantom(shape=(128, 128, 20), n_frames=60, snr=20.0, seed=990_100)
    sec = inference_seconds(get_denoiser("mppca")(threads=threads), big, threads)
    return {"name": "mppca (reference)", "parameters": 0,
            **{k: v["gain_db"] for k, v in gains.items()}, "inference_s": round(sec, 1)}


def shipped_rows() -> list:
    """The shipped weights and mppca: validation gains and times with 1 and 2 threads."""
    val = validation_phantoms()
    big = make_phantom(shape=(128, 128, 20), n_frames=60, snr=20.0, seed=990_100)
    rows = []
    for name in ("dae", "cae", "mppca"):
        den = get_denoiser(name)()
        gains = validate(den, val)
        times = {}
        for threads in (1, 2):
            den = get_denoiser(name)(threads=threads)
            times[threads] = inference_seconds(den, big, threads)
        rows.append({"name": f"{name} (shipped)" if name != "mppca" else "mppca",
                     "parameters": denoise_nets.n_parameters(den.net) if name != "mppca" else 0,
                     **{k: v["gain_db"] for k, v in gains.items()},
                     "inference_s": round(times[1], 1), "inference_2threads_s": round(times[2], 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows) -> str:
    lines = ["| candidate | parameters | gain SNR 10 | gain SNR 20 | gain SNR 50 | "
             "128x128x20x60 |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['parameters']:,} | {r['snr10']:+.1f} dB | "
                     f"{r['snr20']:+.1f} dB | {r['snr50']:+.1f} dB | {r['inference_s']:.1f} s |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["dae", "cae", "mppca", "shipped"], required=True,
                    help="candidates of dae or cae; mppca alone; or the shipped weights")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the timing")
    ap.add_argument("--only", action="append", help="candidate name (repeatable)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    if args.arch == "shipped":
        rows = shipped_rows()
    elif args.arch == "mppca":
        rows = [mppca_row(args.threads)]
    else:
        rows = run(args.arch, args.epochs, args.steps, args.threads, args.only)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
