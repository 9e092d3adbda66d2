"""Choose the PHAE2 encoder by measurement: accuracy vs MACs per voxel and CPU time.

Every candidate is trained the same short way (same simulated curves, same
seed, ``--curves`` curves, ``--epochs`` epochs, self-supervised loss only) and
scored on the held-out simulated curves (all residue shapes, SNR 5-200) by
the median relative error of the flow F and of MTT against the simulation
truth, per SNR band, and on noise-free curves. CPU time is the encoder alone
on 100,000 curves (float32, inference mode) with 1 and 2 threads.

Run::

    python benchmarks/phae2_arch.py [--curves 30000] [--epochs 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from perfmap.neural import phae2
from perfmap.neural.phae2_train import TrainOptions2, make_data, train

CANDIDATES = {
    "mlp-64x2": {"widths": [], "hidden": [64, 64]},
    "conv-8-16-16": {"widths": [8, 16, 16], "hidden": [32]},
    "conv-16-32-32": {"widths": [16, 32, 32], "hidden": [64]},
    "conv-32-64-64": {"widths": [32, 64, 64], "hidden": [64]},
    "conv-16-32-32-64": {"widths": [16, 32, 32, 64], "hidden": [64]},
    "conv-16-32-32 lorentzian": {"widths": [16, 32, 32], "hidden": [64],
                                 "residue": "lorentzian"},
    "conv-16-32-32 cbv-output": {"widths": [16, 32, 32], "hidden": [64], "amplitude": "cbv",
                                 "amp_init": 8.0},
}


def cpu_time(config, n=100_000, threads=1) -> float:
    torch.set_num_threads(threads)
    enc = phae2.Encoder(config).eval()
    x = torch.rand(n, 2, config["n_frames"])
    with torch.inference_mode():
        enc(x[:4096])
        t = time.perf_counter()
        for s in range(0, n, 4096):
            enc(x[s:s + 4096])
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--curves", type=int, default=30000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = TrainOptions2(n_curves=args.curves, epochs=args.epochs, seed=args.seed,
                         out="/tmp/phae2_arch/x.pt")
    data = make_data(base)
    rows = []
    for name, change in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        cfg = dict(phae2.DEFAULT_CONFIG, **change)
        opts = TrainOptions2(**{**base.__dict__, "config": cfg,
                                "out": f"/tmp/phae2_arch/{name.replace(' ', '_')}.pt"})
        torch.set_num_threads(1)
        t = time.perf_counter()
        card = train(opts, data=data, log=lambda m: print(f"[{name}] {m}", flush=True))
        train_s = time.perf_counter() - t
        v = card["validation"]
        row = {"name": name, "macs": phae2.flops_per_curve(cfg),
               "params": card["architecture"]["parameters"], "train_s": round(train_s, 1),
               "cpu_s_100k_1t": round(cpu_time(cfg, threads=1), 3),
               "cpu_s_100k_2t": round(cpu_time(cfg, threads=2), 3), **v}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"args": vars(args), "rows": rows}, fh, indent=2)
    print(table(rows))


def table(rows) -> str:
    lines = ["| encoder | MACs/voxel | params | CPU s / 100k voxels (1 / 2 threads) | "
             "flow err SNR 5-10 / 10-20 / 20-50 / 50-200 | MTT err same bands | "
             "noise-free flow / MTT | delay MAE s | train s |",
             "|---|---:|---:|---:|---|---|---|---:|---:|"]
    for r in rows:
        bands = ("5_10", "10_20", "20_50", "50_201")
        lines.append(
            f"| {r['name']} | {r['macs']:,} | {r['params']:,} | {r['cpu_s_100k_1t']:.2f} / "
            f"{r['cpu_s_100k_2t']:.2f} | "
            + " / ".join(f"{r.get('flow_err_snr' + b, float('nan')):.3f}" for b in bands) + " | "
            + " / ".join(f"{r.get('mtt_err_snr' + b, float('nan')):.3f}" for b in bands)
            + f" | {r['clean_flow_err']:.3f} / {r['clean_mtt_err']:.3f} | "
            f"{r['delay_mae_s']:.2f} | {r['train_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
