"""Safe saving and loading of PHAE weights, and the architecture they must match.

A weights file is written with ``torch.save`` and holds only plain data::

    {"format": "perfmap-phae", "format_version": 1,
     "config": {...},            # DEFAULT_CONFIG's keys: ints, floats, strings, lists
     "state_dict": {name: Tensor},
     "meta": {...}}              # JSON-able training summary

It is read back with ``torch.load(..., weights_only=True)``, which refuses any
pickled Python object other than tensors and primitive containers, so loading
a file never executes code from it (DESIGN section 5). The configuration is
validated against :data:`DEFAULT_CONFIG`'s schema and the tensors against the
encoder that configuration describes (names and shapes, strict); every problem
raises :class:`perfmap.errors.ModelError` naming the file.

This module imports torch only inside its functions.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import sysconfig
from pathlib import Path

from ..errors import ModelError

FORMAT = "perfmap-phae"
CHECKPOINT_FORMAT = "perfmap-phae-checkpoint"
FORMAT_VERSION = 1
MODEL_NAME = "phae_dsc.pt"

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

_TYPES = {
    "architecture": str, "in_channels": int, "widths": list, "kernel_size": int,
    "negative_slope": float, "mtt_min": float, "mtt_max": float, "residue": str,
    "dt": float, "n_frames": int, "peak_frame": int, "input_norm": str,
    "delay_min": float, "delay_max": float, "delay_step": float,
}
_FIXED = {"architecture": "phae-fcn1d", "in_channels": 2,
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
    missing = sorted(set(_TYPES) - set(config))
    unknown = sorted(set(config) - set(_TYPES))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise ModelError(f"{source}: configuration does not match the PHAE architecture "
                         f"({'; '.join(parts)})")
    out = {}
    for key, kind in _TYPES.items():
        value = config[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            if kind is float else isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise ModelError(f"{source}: configuration key {key!r} must be "
                             f"{kind.__name__}, got {value!r}")
        out[key] = float(value) if kind is float else (list(value) if kind is list else value)
    for key, value in _FIXED.items():
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


def resolve_device(device: str = "auto"):
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    from ..errors import ParameterError

    device = str(device or "auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device 'cuda' was requested but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ParameterError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def default_model_path() -> Path:
    """The shipped weights, ``phae_dsc.pt``: the first of these that exists.

    1. ``perfmap/models/`` inside the package;
    2. ``<repo>/models/`` next to the package: a source checkout or an
       editable install;
    3. ``<prefix>/share/perfmap/models/``: where a wheel installs them
       (``[tool.setuptools.data-files]`` in ``pyproject.toml``), for the
       environment's prefix and the user scheme.

    If none exists the repository path is returned, and loading it gives a
    ModelError that names it.
    """
    pkg = Path(__file__).resolve().parents[1]
    candidates = [pkg / "models" / MODEL_NAME, pkg.parent / "models" / MODEL_NAME]
    prefixes = [sysconfig.get_path("data"), sys.prefix]
    try:
        prefixes.append(sysconfig.get_path("data", f"{os.name}_user"))
    except KeyError:  # no user scheme on this platform
        pass
    candidates += [Path(p) / "share" / "perfmap" / "models" / MODEL_NAME for p in prefixes if p]
    for path in candidates:
        if path.is_file():
            return path
    return candidates[1]


def sha256(path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_load(path, what: str = "model weights") -> dict:
    """``torch.load(path, weights_only=True)`` with every failure as a ModelError.

    Raises
    ------
    ModelError
        Missing file; a file holding pickled code or objects other than
        tensors and primitive containers (refused, nothing executed); a
        corrupt, truncated or non-torch file; a top level that is not a dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: {what} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).splitlines()
        found = next((ln for ln in lines if "GLOBAL" in ln), None)
        if found is None:       # not a pickle the safe loader understands at all
            raise ModelError(f"{path}: unreadable or corrupt {what} (not a torch weights "
                             "file)") from None
        name = found.split("GLOBAL", 1)[1].split()[0] if found.split("GLOBAL", 1)[1].split() \
            else "?"
        raise ModelError(f"{path}: refused to load {what}: the file contains pickled Python "
                         f"objects or code ({name}), not only tensors; nothing from it was "
                         "executed. Re-export it with `perfmap train` or "
                         "perfmap.neural.weights.save_weights") from None
    except Exception as exc:  # zip, EOF, I/O and format errors of torch.load
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ModelError(f"{path}: unreadable or corrupt {what} "
                         f"({type(exc).__name__}{': ' + msg if msg else ''})") from None
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: {what} must hold a dictionary, found {type(obj).__name__}")
    return obj


def _atomic_save(obj, path) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_weights(path, state_dict, config, meta=None) -> Path:
    """Write encoder weights (tensors only) with their configuration, atomically.

    Parameters
    ----------
    path : path
        Output ``.pt`` file.
    state_dict : dict of str -> Tensor
        The encoder's ``state_dict()``.
    config : dict
        Model configuration (validated with :func:`check_config`).
    meta : dict, optional
        JSON-able summary (training data, epochs, losses).
    """
    cfg = check_config(config)
    tensors = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    _atomic_save({"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg,
                  "state_dict": tensors, "meta": dict(meta or {})}, path)
    return Path(path)


def check_state_dict(state_dict, config, source) -> None:
    """Raise ModelError unless ``state_dict`` has exactly the encoder's names and shapes."""
    import torch

    from .model import Encoder

    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise ModelError(f"{source}: state_dict must map parameter names to tensors")
    expected = {k: tuple(v.shape) for k, v in Encoder(config).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}" + (" ..." if len(missing) > 4 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}"
                         + (" ..." if len(unexpected) > 4 else ""))
        for k in wrong[:4]:
            parts.append(f"{k} has shape {list(found[k])}, the architecture needs "
                         f"{list(expected[k])}")
        raise ModelError(f"{source}: the weights do not match the PHAE architecture "
                         f"({'; '.join(parts)})")
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and
           not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{source}: the weights contain NaN or Inf ({', '.join(bad[:4])})")


def load_weights(path) -> tuple[dict, dict, dict]:
    """Read and validate a weights file: ``(state_dict, config, meta)``.

    Raises
    ------
    ModelError
        See :func:`safe_load`, plus a wrong format tag or version, an invalid
        configuration, or tensors that do not match the architecture.
    """
    obj = safe_load(path)
    source = str(path)
    fmt = obj.get("format")
    if fmt == CHECKPOINT_FORMAT:
        obj = {"format": FORMAT, "format_version": obj.get("format_version"),
               "config": obj.get("config"), "state_dict": obj.get("model"),
               "meta": {"from_checkpoint_epoch": obj.get("epoch")}}
    elif fmt != FORMAT:
        raise ModelError(f"{source}: not a perfmap PHAE weights file (format {fmt!r})")
    if obj.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{source}: weights format version {obj.get('format_version')!r} is "
                         f"not supported (this perfmap reads version {FORMAT_VERSION})")
    config = check_config(obj.get("config"), source)
    check_state_dict(obj.get("state_dict"), config, source)
    meta = obj.get("meta") or {}
    return obj["state_dict"], config, meta if isinstance(meta, dict) else {}


def load_encoder(path, device: str = "cpu"):
    """The encoder of a weights file, in eval mode on ``device``: ``(encoder, config, meta)``."""
    from .model import Encoder

    state, config, meta = load_weights(path)
    enc = Encoder(config)
    try:
        enc.load_state_dict(state, strict=True)
    except RuntimeError as exc:     # defensive: check_state_dict should have caught it
        raise ModelError(f"{path}: the weights do not match the PHAE architecture "
                         f"({str(exc).splitlines()[0]})") from None
    return enc.to(device).eval(), config, meta
