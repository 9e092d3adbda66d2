"""PHAE2: a physics-informed encoder that fits the whole tissue curve (torch).

Goes beyond the PHAE paper (:mod:`perfmap.neural.model`, ``--method phae``),
whose encoder gives only MTT while CBV comes from the integral of the noisy
curve and ``CBF = CBV / MTT``. Here the encoder estimates every parameter the
physics decoder needs from the (tissue, AIF) pair:

* the tissue amplitude, ``v = CBV / s`` (s the tissue scale of the input,
  :func:`perfmap.neural.phae2_data.prepare`; ``amplitude="cbv"``), so
  ``CBV = v s`` and ``F = CBV / MTT`` (1/s); or directly ``F / s``
  (``amplitude="flow"``), then ``CBV = F MTT``;
* ``MTT`` (s), ``mtt_min + (mtt_max - mtt_min) sigmoid``;
* ``d``   the tissue delay relative to the AIF (s), ``delay_min..delay_max``;
* ``p``   the shape of the residue (``residue="stretched"`` only).

Physics decoder (no weights): the flow-scaled residue ``k(t) = F R(t - d)``
(0 for t < d) convolved with the AIF (Ostergaard 1996)::

    C_t(t) = integral_0^t C_a(tau) k(t - tau) dtau

Residue family (``residue``):

* ``stretched``: ``R(t) = exp(-(t / tau)^p)`` with ``tau = MTT / Gamma(1 + 1/p)``
  so that ``integral R = MTT``; ``p = 1`` is the exponential, ``p ~ 2`` the
  flat-topped gamma and linear residues, large ``p`` the boxcar (plug flow);
  p in ``[p_min, p_max]``.
* ``lorentzian``: ``1 / (1 + (pi t / (2 MTT))^2)`` (the paper's, no shape
  parameter), ``exponential``: ``exp(-t / MTT)``.

The convolution is exact for an AIF that is linear between its samples:
sample ``i`` is ``sum_m a_(i-m) w_m`` with
``w_m = (K2(m dt - d + dt) - 2 K2(m dt - d) + K2(m dt - d - dt)) / dt`` and
``K2`` the second antiderivative of ``R`` (0 for negative arguments). ``K2``
is integrated numerically on a fine grid (``dt / fine``; trapezoid rule for
``K1`` and ``K2``) and read between its nodes with its second-order Taylor
expansion, so the delay enters smoothly and gradients flow to ``d``. Done in
float64 (the second difference cancels digits).

Training is self-supervised: the loss is the mean absolute error between the
normalised input tissue curve and its reconstruction over the valid frames;
no reference map enters it (:mod:`perfmap.neural.phae2_train`).

Weights files hold plain data only (format ``perfmap-phae2``): a format tag,
the configuration, the encoder's tensors and a JSON-able summary; read with
``torch.load(weights_only=True)`` (:func:`load_weights`).

References
----------
PHAE paper (shared/seeds/002_*.txt).
Ostergaard L et al. MRM 1996;36:715-725 (indicator-dilution convolution).
Calamante F et al. MRM 2003;50:1237-1247 (residue shapes).
Mouridsen K et al. NeuroImage 2006;33:570-579 (gamma transit-time model).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ModelError

FORMAT = "perfmap-phae2"
FORMAT_VERSION = 1
MODEL_NAME = "phae2_dsc.pt"
RESIDUES = ("stretched", "lorentzian", "exponential")
#: Number of encoder outputs: log-amplitude, MTT, delay, residue shape.
N_OUT = 4

DEFAULT_CONFIG = {
    "architecture": "phae2-conv1d",
    "in_channels": 2,                 # (tissue, AIF)
    "widths": [16, 32, 32],           # stride-2 conv blocks (empty: an MLP on the curves)
    "kernel_size": 5,
    "hidden": [64],                   # fully connected layers after flattening
    "negative_slope": 0.02,
    "mtt_min": 0.3, "mtt_max": 40.0,  # s
    "delay_min": -3.0, "delay_max": 12.0,  # s
    "p_min": 0.6, "p_max": 4.0,
    "amplitude": "flow",              # what the first output is: "flow" (F / s, then
                                      # CBV = F MTT) or "cbv" (v = CBV / s, F = CBV / MTT)
    "amp_init": 2.0,                  # initial value of that output
    "residue": "stretched",
    "dt": 1.5, "n_frames": 64, "peak_frame": 12,
    "fine": 8,                        # decoder sub-steps per frame
    "input_norm": "aif-max/tissue-smoothed-max",
}

_TYPES = {"architecture": str, "in_channels": int, "widths": list, "kernel_size": int,
          "hidden": list, "negative_slope": float, "mtt_min": float, "mtt_max": float,
          "delay_min": float, "delay_max": float, "p_min": float, "p_max": float,
          "amplitude": str, "amp_init": float, "residue": str, "dt": float, "n_frames": int,
          "peak_frame": int, "fine": int, "input_norm": str}


def check_config(config, source: str = "PHAE2 configuration") -> dict:
    """Validate a configuration (types, ranges) and return a normalised copy."""
    if not isinstance(config, dict):
        raise ModelError(f"{source}: the configuration is not a dictionary")
    config = {"amplitude": "cbv", **config}     # files written before the key existed
    missing = sorted(set(_TYPES) - set(config))
    unknown = sorted(set(config) - set(_TYPES))
    if missing or unknown:
        raise ModelError(f"{source}: configuration does not match the PHAE2 architecture "
                         f"(missing {missing}, unknown {unknown})")
    out = {}
    for key, kind in _TYPES.items():
        v = config[key]
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) if kind is float \
            else isinstance(v, kind) and not isinstance(v, bool)
        if not ok:
            raise ModelError(f"{source}: {key!r} must be {kind.__name__}, got {v!r}")
        out[key] = float(v) if kind is float else (list(v) if kind is list else v)
    if out["architecture"] != DEFAULT_CONFIG["architecture"] or out["in_channels"] != 2 \
            or out["input_norm"] != DEFAULT_CONFIG["input_norm"]:
        raise ModelError(f"{source}: not a {DEFAULT_CONFIG['architecture']} configuration")
    for key in ("widths", "hidden"):
        if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in out[key]):
            raise ModelError(f"{source}: {key} must be positive integers, got {out[key]!r}")
    if out["kernel_size"] < 1 or out["kernel_size"] % 2 == 0:
        raise ModelError(f"{source}: kernel_size must be odd")
    if out["amplitude"] not in ("cbv", "flow"):
        raise ModelError(f"{source}: amplitude must be cbv or flow")
    if out["residue"] not in RESIDUES:
        raise ModelError(f"{source}: residue must be one of {', '.join(RESIDUES)}")
    if not (0 < out["mtt_min"] < out["mtt_max"] and out["delay_min"] <= 0 < out["delay_max"]
            and 0 < out["p_min"] < out["p_max"] and out["amp_init"] > 0):
        raise ModelError(f"{source}: invalid parameter ranges")
    if not (out["dt"] > 0 and out["n_frames"] >= 8 and 0 <= out["peak_frame"] < out["n_frames"]
            and out["fine"] >= 2):
        raise ModelError(f"{source}: invalid time grid")
    return out


class Encoder(nn.Module):
    """(tissue, AIF) on the model grid -> raw outputs ``z`` (B, 4).

    ``len(widths)`` blocks ``Conv1d(kernel, stride 2) + LeakyReLU``, flattened
    (the positions are kept: the delay needs them), then ``hidden`` fully
    connected layers with LeakyReLU and a linear layer to 4 outputs.
    """

    def __init__(self, config=None):
        super().__init__()
        cfg = check_config(config or DEFAULT_CONFIG)
        k, slope = cfg["kernel_size"], cfg["negative_slope"]
        layers, c, n = [], 2, cfg["n_frames"]
        for w in cfg["widths"]:
            layers += [nn.Conv1d(c, w, k, stride=2, padding=k // 2), nn.LeakyReLU(slope)]
            c, n = w, (n + 2 * (k // 2) - k) // 2 + 1
        self.features = nn.Sequential(*layers)
        head, f = [], c * n
        for h in cfg["hidden"]:
            head += [nn.Linear(f, h), nn.LeakyReLU(slope)]
            f = h
        head.append(nn.Linear(f, N_OUT))
        self.head = nn.Sequential(*head)
        with torch.no_grad():
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def flops_per_curve(config) -> int:
    """Multiply-accumulates of one encoder pass (convolutions and linear layers)."""
    cfg = check_config(config)
    k, c, n, macs = cfg["kernel_size"], 2, cfg["n_frames"], 0
    for w in cfg["widths"]:
        n = (n + 2 * (k // 2) - k) // 2 + 1
        macs += n * w * c * k
        c = w
    f = c * n
    for h in cfg["hidden"] + [N_OUT]:
        macs += f * h
        f = h
    return int(macs)


def parameters_from_z(z: torch.Tensor, cfg: dict) -> dict:
    """Map raw encoder outputs to physical parameters (see the module docstring)."""
    sig = torch.sigmoid
    amp = cfg["amp_init"] * torch.exp(4.0 * torch.tanh(z[:, 0] / 4.0))
    mtt = cfg["mtt_min"] + (cfg["mtt_max"] - cfg["mtt_min"]) * sig(z[:, 1] + _logit(cfg, "mtt"))
    delay = cfg["delay_min"] + (cfg["delay_max"] - cfg["delay_min"]) * sig(
        z[:, 2] + _logit(cfg, "delay"))
    p = cfg["p_min"] + (cfg["p_max"] - cfg["p_min"]) * sig(z[:, 3] + _logit(cfg, "p"))
    return {"amp": amp, "mtt": mtt, "delay": delay, "p": p}


_START = {"mtt": 4.0, "delay": 0.5, "p": 1.0}


def _logit(cfg, name):
    lo, hi = cfg[f"{name}_min"], cfg[f"{name}_max"]
    q = (_START[name] - lo) / (hi - lo)
    return math.log(q / (1.0 - q))


def residue(t: torch.Tensor, mtt: torch.Tensor, p: torch.Tensor, kind: str) -> torch.Tensor:
    """``R(t)`` for t (L,) or (B, L) >= 0, MTT and shape p (B,) -> (B, L); integral MTT."""
    t = t if t.dim() == 2 else t[None, :]
    m = mtt[:, None]
    if kind == "stretched":
        pp = p[:, None]
        tau = m / torch.exp(torch.lgamma(1.0 + 1.0 / pp))
        # exp(p log(t / tau)), with t / tau kept > 0 so the gradient in p exists at t = 0
        return torch.exp(-torch.exp(pp * torch.log(torch.clamp(t / tau, min=1e-30))))
    if kind == "lorentzian":
        return 1.0 / (1.0 + (math.pi * t / (2.0 * m)) ** 2)
    if kind == "exponential":
        return torch.exp(-t / m)
    raise ValueError(f"unknown residue {kind!r}")


def convolution_weights(mtt, p, delay, dt: float, n: int, kind: str, fine: int = 8):
    """Weights ``w_m`` (B, n) of the exact convolution of a piecewise-linear AIF with
    ``R(t - d)`` (float64 inside, returned in the dtype of ``mtt``)."""
    dtype = mtt.dtype
    mtt, p, delay = (v.to(torch.float64) for v in (mtt, p, delay))
    h = dt / fine
    lowest = float(delay.detach().min()) if delay.numel() else 0.0
    s_max = (n + 1) * dt - min(0.0, lowest)
    nf = int(math.ceil(s_max / h)) + 3
    s = torch.arange(nf, dtype=torch.float64, device=mtt.device) * h
    r = residue(s, mtt, p, kind)                                   # (B, nf)
    k1 = torch.cumsum(r, -1) * h - 0.5 * h * (r[:, :1] + r)        # trapezoid, K1(0) = 0
    k2 = torch.cumsum(k1, -1) * h - 0.5 * h * (k1[:, :1] + k1)
    m = torch.arange(-1, n + 1, dtype=torch.float64, device=mtt.device)
    u = torch.clamp(m[None, :] * dt - delay[:, None], min=0.0)      # (B, n + 2)
    pos = u / h
    i0 = torch.clamp(torch.floor(pos).long(), max=nf - 1)
    e = u - i0.to(torch.float64) * h
    val = (torch.gather(k2, 1, i0) + torch.gather(k1, 1, i0) * e
           + 0.5 * torch.gather(r, 1, i0) * e * e)
    w = (val[:, 2:] - 2.0 * val[:, 1:-1] + val[:, :-2]) / dt
    return w.to(dtype)


def causal_convolve(aif: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``out_i = sum_(m <= i) aif_(i-m) w_m`` along the last axis (zero-padded FFT)."""
    n = aif.shape[-1]
    size = 1 << int(math.ceil(math.log2(2 * n)))
    return torch.fft.irfft(torch.fft.rfft(aif, size) * torch.fft.rfft(w, size), size)[..., :n]


class PHAE2(nn.Module):
    """Encoder + physics decoder.

    ``forward(x, valid)`` with ``x`` (B, 2, L) (normalised tissue, normalised
    AIF; :func:`perfmap.neural.phae2_data.prepare`) and ``valid`` (B, L)
    returns ``(params, recon, loss)``: the physical parameters (dict of (B,)
    tensors; ``flow_rel = amp / MTT`` is ``F / s``), the reconstructed
    normalised tissue curve and the per-curve mean absolute error.
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = check_config(config or DEFAULT_CONFIG)
        self.encoder = Encoder(self.config)

    def params(self, x):
        par = parameters_from_z(self.encoder(x), self.config)
        if self.config["amplitude"] == "flow":
            par["flow_rel"] = par["amp"]
            par["amp"] = par["amp"] * par["mtt"]
        else:
            par["flow_rel"] = par["amp"] / par["mtt"]
        return par

    def decode(self, par, aif):
        c = self.config
        w = convolution_weights(par["mtt"], par["p"], par["delay"], c["dt"], aif.shape[-1],
                                c["residue"], c["fine"])
        return par["flow_rel"][:, None] * causal_convolve(aif, w)

    def forward(self, x, valid):
        par = self.params(x)
        recon = self.decode(par, x[:, 1])
        loss = ((recon - x[:, 0]).abs() * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)
        return par, recon, loss


# -- weights (plain data only) ------------------------------------------------------------

def tensor_digest(state_dict) -> str:
    """SHA-256 over the tensors (sorted names, dtypes, shapes and bytes)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_weights(path, state_dict, config, meta=None):
    """``torch.save`` of ``{format, format_version, config, state_dict, meta}`` (tensors and
    primitive containers only); ``meta["tensor_sha256"]`` is :func:`tensor_digest`."""
    cfg = check_config(config)
    state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    meta = dict(meta or {}, tensor_sha256=tensor_digest(state))
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg,
                "state_dict": state, "meta": meta}, path)


def load_weights(path):
    """Read and check a PHAE2 weights file: ``(state_dict, config, meta)``.

    Uses :func:`perfmap.neural.weights.safe_load` (``weights_only=True``: no
    pickled code runs), then checks the format, the configuration, every
    tensor's name, shape and finiteness against the architecture, and the
    tensors' SHA-256 against the one stored with them (:func:`tensor_digest`).

    Raises
    ------
    ModelError
    """
    from .weights import check_tensors, safe_load

    obj = safe_load(path, "PHAE2 weights")
    src = str(path)
    if obj.get("format") != FORMAT:
        raise ModelError(f"{src}: not a perfmap PHAE2 weights file (format "
                         f"{obj.get('format')!r})")
    if obj.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{src}: PHAE2 weights format version {obj.get('format_version')!r} "
                         f"is not supported")
    cfg = check_config(obj.get("config"), src)
    state = obj.get("state_dict")
    check_tensors(state, Encoder(cfg), src, "PHAE2")
    meta = obj.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    # torch.load does not notice changed tensor bytes; the digest written with them does.
    if meta.get("tensor_sha256") != tensor_digest(state):
        raise ModelError(f"{src}: the weights are corrupt (their tensors do not match the "
                         "integrity hash stored with them)" if "tensor_sha256" in meta else
                         f"{src}: the weights carry no integrity hash (tensor_sha256); "
                         "re-save them with perfmap.neural.phae2.save_weights")
    return state, cfg, meta


def load_model(path, device="cpu"):
    """A :class:`PHAE2` from a weights file, in eval mode: ``(model, config, meta)``."""
    state, cfg, meta = load_weights(path)
    model = PHAE2(cfg)
    model.encoder.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg, meta


def default_model_path():
    """The shipped ``phae2_dsc.pt``, looked up as the PHAE weights are
    (:func:`perfmap.neural.weights.default_model_path`)."""
    from .weights import default_model_path as shipped

    return shipped(MODEL_NAME)
