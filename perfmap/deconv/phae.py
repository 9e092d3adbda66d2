"""PHAE: the physics-informed autoencoder's encoder as a deconvolution backend.

``--method phae`` runs the trained encoder of the PHAE paper on every voxel's
(tissue curve, AIF) pair and returns its mean transit time; CBV comes from the
integral ratio and CBF from the central volume theorem ``CBF = CBV / MTT``
(paper Eqs. 2-3), which :func:`perfmap.core.maps.perfusion_maps` applies when
a fit carries ``mtt``. The network, its inputs and the weights file are
described in :mod:`perfmap.neural.model`, :mod:`perfmap.neural.data` and
:mod:`perfmap.neural.weights`.

What the fit holds
------------------
``mtt``
    The encoder output (s), inside the model's range (0.5-30 s).
``flow``
    ``F = CBV_fraction / MTT`` in 1/s, with ``CBV_fraction`` the integral
    ratio of the whole tissue and arterial curves (the one the maps use), so
    ``(kH/rho) 100 60 F`` equals the CBF map.
``tmax``
    The Lorentzian residue peaks at ``t = 0``, so ``argmax k`` alone carries
    no timing. Tmax is the tissue bolus delay ``d`` relative to the AIF at
    which the decoded curve ``C_a (x) k`` shifted by ``d`` best matches the
    measured one (smallest mean absolute error over a grid of candidate delays,
    -3 to 12 s in 0.5 s steps); ``k(t - d)`` then peaks at ``t = d``. This is
    a fit of the physics decoder to the data, not a prior.
``failed``
    Curves whose tissue integral is not positive (no measurable bolus): they
    cannot be normalised, and their maps are NaN. An all-zero curve is not a
    failure (as for the other backends): flow 0, Tmax 0, MTT NaN.

Limitations (measured with the shipped weights on noise-free curves, 60
frames of 1.5 s, gamma-variate AIF):

* Tracer delay. As in the paper, the decoder has no delay term, so the
  encoder explains a late tissue bolus with a longer MTT (true MTT 3 s: a 1,
  2 and 3 s delay gave 4.2, 6.0 and 7.8 s), which lowers CBF; Tmax then
  recovers only about half of the delay (0.5, 1.0 and 1.5 s). Unlike oSVD,
  PHAE is not delay-insensitive; use it where the AIF is measured close to
  the tissue.
* Residue shape. The decoder assumes a Lorentzian residue. Estimated/true MTT
  for MTT 2-12 s: Lorentzian 0.89-0.94, exponential 0.89-1.12, but a gamma
  residue (shape 2) 0.63-0.93 and a linear one 0.55-0.95 (shortest MTTs
  worst).

The time grid of the model is fixed (64 frames of 1.5 s for the shipped
weights); curves of any frame count and TR are linearly interpolated onto it
around the AIF peak, and the fit's ``info`` says whether that happened.
Inference is batched under ``torch.inference_mode()`` with the network in
eval mode (BatchNorm folded into the convolutions), so results are
deterministic on a given device.

This module imports torch only when a backend is constructed, so listing the
methods never imports it.

References
----------
PHAE paper: "Physics-informed autoencoder for DSC-MRI perfusion
    post-processing: application to glioma grading" (shared/seeds/002_*.txt).
Calamante F, Gadian DG, Connelly A. MRM 2003;50:1237-1247 (Lorentzian residue).
Ostergaard L et al. MRM 1996;36:715-725 (indicator-dilution convolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ParameterError
from .base import Backend, DeconvFit, positive_int
from .registry import register


@dataclass
class _State:
    plan: Any                 # perfmap.neural.data.GridPlan
    aif: np.ndarray           # acquisition-grid AIF
    aif_integral: float       # trapezoid integral of the AIF (acquisition grid, dx = 1)
    dt: float
    n_frames: int


#: Arithmetic of the encoder's convolutions (``precision``): float32 (default,
#: reproducible everywhere) or bfloat16 autocast.
PRECISIONS = ("float32", "bfloat16")


def _fused_encoder(encoder, precision: str = "float32", device_type: str = "cpu"):
    """An inference copy of the encoder with each BatchNorm folded into its convolution.

    With ``precision="bfloat16"`` the convolutions run under
    ``torch.autocast`` (bfloat16 inputs and weights, float32 accumulation);
    the pooling, the linear head and the output activation stay in float32 so
    MTT is not quantised to bfloat16's 8-bit mantissa.
    """
    import contextlib

    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    layers = list(encoder.features)
    fused = []
    for i in range(0, len(layers), 3):
        conv, bn, act = layers[i:i + 3]
        fused += [fuse_conv_bn_eval(conv, bn), nn.LeakyReLU(act.negative_slope, inplace=True)]
    lo, span = encoder.mtt_min, encoder.mtt_max - encoder.mtt_min
    features = nn.Sequential(*fused).eval()
    head = encoder.head

    def autocast():
        if precision == "bfloat16":
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(x):
        with autocast():
            maps = features(x)
        pooled = maps.mean(dim=-1, dtype=torch.float32)   # float32 accumulation, no copy
        return lo + span * torch.sigmoid(head(pooled).squeeze(-1))

    return forward


@register("phae")
class PHAE(Backend):
    """Physics-informed autoencoder (PHAE paper): encoder MTT, CBF = CBV / MTT.

    Parameters
    ----------
    model : path, optional
        Weights file (:mod:`perfmap.neural.weights`); default the shipped
        ``models/phae_dsc.pt``.
    device : {"auto", "cpu", "cuda"}
        ``auto`` uses a CUDA GPU when one is available.
    batch_size : int
        Curves per forward pass. Every pass has this size (the last one is
        padded), so results do not depend on ``chunk_size``; they are
        bitwise reproducible for a given batch size and device.
    threads : int, optional
        CPU threads for torch (default: torch's own setting).
    precision : {"float32", "bfloat16"}
        Arithmetic of the convolutions. ``bfloat16`` (autocast) was 1.4-3.4x
        faster on a 2-core CPU with native bfloat16 instructions (AVX512-BF16;
        the spread is the shared machine's) and changed MTT by 0.14 % in the
        median and at most 2 % (shipped weights, noisy closed-form curves,
        ``benchmarks/bench_phae.py``); on CPUs without such instructions it is
        emulated and slower. The default ``float32`` gives the same result on
        every CPU.
    chunk_size, keep_residue
        See :class:`perfmap.deconv.Backend`; the kept residue is the decoded
        ``k(t) = F R(t - Tmax)`` on the acquisition grid.

    Raises
    ------
    perfmap.errors.ModelError
        Missing, unreadable, unsafe (pickled code) or mismatching weights,
        raised when the backend is constructed, before any work.
    """

    needs_torch = True

    def __init__(self, model: Optional[str] = None, device: str = "auto",
                 batch_size: int = 512, threads: Optional[int] = None,
                 precision: str = "float32", chunk_size: int = 16384,
                 keep_residue: bool = False):
        super().__init__(chunk_size=chunk_size, keep_residue=keep_residue)
        import torch

        from ..neural import weights as wmod
        from ..neural.model import PhysicsDecoder

        self.batch_size = positive_int("batch_size", batch_size)
        if precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, "
                                 f"got {precision!r}")
        self.precision = str(precision)
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.threads = threads
        self.model_path = Path(model) if model not in (None, "", "default") \
            else wmod.default_model_path()
        self.device = wmod.resolve_device(device)
        self.device_request = str(device)
        encoder, self.config, self.meta = wmod.load_encoder(self.model_path, "cpu")
        self.sha256 = wmod.sha256(self.model_path)
        self._encoder = _fused_encoder(encoder.to(self.device), self.precision,
                                       self.device.type)
        self._decoder = PhysicsDecoder(self.config).to(self.device)

    def params(self) -> dict:
        return {"model": str(self.model_path), "model_sha256": self.sha256,
                "device": str(self.device), "device_requested": self.device_request,
                "batch_size": self.batch_size, "precision": self.precision,
                "model_dt_s": self.config["dt"],
                "model_frames": self.config["n_frames"], "mtt_range_s":
                [self.config["mtt_min"], self.config["mtt_max"]],
                "decoder_residue": self.config["residue"]}

    def prepare(self, aif: np.ndarray, dt: float, n_frames: int) -> _State:
        from ..neural.data import grid_plan

        plan = grid_plan(aif, dt, self.config)
        return _State(plan=plan, aif=aif, aif_integral=float(np.trapezoid(aif)), dt=dt,
                      n_frames=n_frames)

    def _fit_chunk(self, conc: np.ndarray, state: _State) -> DeconvFit:
        import torch

        from ..neural.data import apply_plan

        x, _, failed = apply_plan(conc, state.plan)
        n, bs = len(conc), self.batch_size
        mtt = np.full(n, np.nan, np.float64)
        delay = np.full(n, np.nan, np.float64)
        dec = self._decoder
        valid = torch.from_numpy(state.plan.valid).to(self.device)[None, :].expand(bs, -1)
        with torch.inference_mode():
            for s in range(0, n, bs):
                part = x[s:s + bs]
                m = len(part)
                if m < bs:
                    # Every batch has the same size, so a curve's result does not depend
                    # on how many curves are processed with it (chunk size).
                    part = np.concatenate([part, np.repeat(x[:1] * 0, bs - m, axis=0)])
                    part[m:, 1] = state.plan.aif
                xb = torch.from_numpy(part).to(self.device)
                est = self._encoder(xb)
                recon = dec(est, xb[:, 0], xb[:, 1], valid)
                best = dec.delay_errors(recon, xb[:, 0], valid).argmin(dim=-1)
                mtt[s:s + m] = est[:m].double().cpu().numpy()
                delay[s:s + m] = dec.delays[best[:m]].double().cpu().numpy()
        # Flow from the whole-series integral ratio, as the CBV map uses.
        cbv_frac = np.trapezoid(conc, axis=-1) / state.aif_integral
        # An all-zero curve is no failure (as for the other backends): k = 0, so the flow
        # is 0 and argmax k is t = 0; its MTT is undefined (NaN).
        zero = ~np.any(conc != 0, axis=1)
        failed = (failed & ~zero) | ~np.isfinite(mtt)
        mtt[zero] = np.nan
        flow = np.where(failed, np.nan, np.where(zero, 0.0, cbv_frac / mtt))
        tmax = np.where(failed, np.nan, np.where(zero, 0.0, delay))
        residue = None
        if self.keep_residue:
            from ..core.curves import residue_function

            lag = np.arange(state.n_frames) * state.dt - np.nan_to_num(tmax)[:, None]
            r = residue_function(np.clip(lag, 0.0, None), np.nan_to_num(mtt, nan=1.0),
                                 self.config["residue"])
            residue = (np.nan_to_num(flow)[:, None] * np.where(lag >= 0, r, 0.0)) \
                .astype(np.float32)
        lo, hi = self.config["mtt_min"], self.config["mtt_max"]
        ok = ~failed
        info = {"time_grid": state.plan.info,
                "failed_no_bolus": int(np.count_nonzero(failed)),
                "mtt_at_lower_bound": int(np.count_nonzero(ok & (mtt < lo * 1.01))),
                "mtt_at_upper_bound": int(np.count_nonzero(ok & (mtt > hi * 0.99))),
                "tmax": "best-fitting tissue delay of the decoded Lorentzian residue "
                        f"(candidates {self.config['delay_min']:g} to "
                        f"{self.config['delay_max']:g} s, step {self.config['delay_step']:g} s)",
                "model": str(self.model_path), "model_sha256": self.sha256}
        return DeconvFit(flow=flow.astype(np.float32), tmax=tmax.astype(np.float32),
                         failed=failed, mtt=mtt.astype(np.float32), residue=residue, info=info)

    def merge_info(self, infos):
        """Sum the per-chunk counts; keep the rest from the first chunk."""
        if not infos:
            return {}
        merged = dict(infos[0][1])
        for key in ("failed_no_bolus", "mtt_at_lower_bound", "mtt_at_upper_bound"):
            merged[key] = int(sum(info.get(key, 0) for _, info in infos))
        return merged
