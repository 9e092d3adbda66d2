"""The PHAE model configuration: the architecture and input conventions weights must match.

A configuration is a plain dictionary (ints, floats, strings, lists) stored in
every weights file; :func:`check_config` validates it before a network is built
from it. Imports nothing but :mod:`perfmap.errors`.
"""

from __future__ import annotations

from ..errors import ModelError

#: The architecture and input conventions of the shipped model (see
#: :mod:`perfmap.neural.model` and :func:`perfmap.neural.data.to_model_grid`).
DEFAULT_CONFIG = {
    "architecture": "phae-fcn1d",
    "in_channels": 2,                 # (tissue, AIF)
    "widths": [32, 64, 128, 256],     # feature maps of the 4 conv blocks
    "kernel_size": 3,
    "negative_slope": 0.02,           # LeakyReLU
    "mtt_min": 0.5,                   # s, output range of the scaled sigmoid
    "mtt_max": 30.0,                  # s
    "residue": "lorentzian",          # decoder residue
    "dt": 1.5,                        # s, model time grid
    "n_frames": 64,                   # model window (96 s)
    "peak_frame": 12,                 # AIF peak placed at this frame of the window
    "input_norm": "aif-max/integral-ratio",
    "delay_min": -3.0,                # s, candidate tissue delays of the decoder
    "delay_max": 12.0,
    "delay_step": 0.5,
}

CONFIG_TYPES = {
    "architecture": str, "in_channels": int, "widths": list, "kernel_size": int,
    "negative_slope": float, "mtt_min": float, "mtt_max": float, "residue": str,
    "dt": float, "n_frames": int, "peak_frame": int, "input_norm": str,
    "delay_min": float, "delay_max": float, "delay_step": float,
}
FIXED_KEYS = {"architecture": "phae-fcn1d", "in_channels": 2,
          "input_norm": "aif-max/integral-ratio"}
RESIDUES = ("lorentzian", "exponential")


def check_config(config, source: str = "model configuration") -> dict:
    """Validate a model configuration and return a normalised copy.

    Raises
    ------
    ModelError
        Missing or unknown keys, wrong types, or values this code cannot run.
    """
    if not isinstance(config, dict):
        raise ModelError(f"{source}: the configuration is not a dictionary")
    missing = sorted(set(CONFIG_TYPES) - set(config))
    unknown = sorted(set(config) - set(CONFIG_TYPES))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise ModelError(f"{source}: configuration does not match the PHAE architecture "
                         f"({'; '.join(parts)})")
    out = {}
    for key, kind in CONFIG_TYPES.items():
        value = config[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            if kind is float else isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise ModelError(f"{source}: configuration key {key!r} must be "
                             f"{kind.__name__}, got {value!r}")
        out[key] = float(value) if kind is float else (list(value) if kind is list else value)
    for key, value in FIXED_KEYS.items():
        if out[key] != value:
            raise ModelError(f"{source}: {key} is {out[key]!r}; this perfmap runs {value!r}")
    if not out["widths"] or not all(isinstance(w, int) and w > 0 for w in out["widths"]):
        raise ModelError(f"{source}: widths must be positive integers, got {out['widths']!r}")
    if out["kernel_size"] < 1 or out["kernel_size"] % 2 == 0:
        raise ModelError(f"{source}: kernel_size must be odd, got {out['kernel_size']}")
    if out["residue"] not in RESIDUES:
        raise ModelError(f"{source}: residue must be one of {', '.join(RESIDUES)}")
    if not 0 < out["mtt_min"] < out["mtt_max"]:
        raise ModelError(f"{source}: need 0 < mtt_min < mtt_max")
    if not (out["dt"] > 0 and out["n_frames"] >= 8 and 0 <= out["peak_frame"] < out["n_frames"]):
        raise ModelError(f"{source}: invalid time grid (dt, n_frames, peak_frame)")
    if not (out["delay_step"] > 0 and out["delay_min"] <= 0 <= out["delay_max"]):
        raise ModelError(f"{source}: invalid delay grid")
    return out
