"""Safe saving and loading of PHAE weights, and the architecture they must match.

A weights file is written with ``torch.save`` and holds only plain data::

    {"format": "perfmap-phae", "format_version": 1,
     "config": {...},            # DEFAULT_CONFIG's keys: ints, floats, strings, lists
     "state_dict": {name: Tensor},
     "meta": {...},              # JSON-able training summary
     "tensor_sha256": "...",     # integrity: the tensors (tensor_sha256())
     "header_sha256": "..."}     # integrity: format, version, config, meta (header_sha256())

It is read back with ``torch.load(..., weights_only=True)``, which refuses any
pickled Python object other than tensors and primitive containers, so loading
a file never executes code from it (DESIGN section 5). The configuration is
validated against :data:`DEFAULT_CONFIG`'s schema and the tensors against the
encoder that configuration describes (names and shapes, strict); every problem
raises :class:`perfmap.errors.ModelError` naming the file.

Integrity. ``torch.load`` does not notice flipped bytes in tensor data: a
damaged file loads and silently gives other maps. So every file written by
:func:`save_weights` or :func:`save_object` carries SHA-256 digests of its
content, checked on every load (:func:`verify_integrity`); a model card
``<name>.json`` next to the file (``perfmap train`` writes one), when it
records a ``sha256``, is checked against the whole file too. A file with
neither digest nor card is refused.

This module imports torch only inside its functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import sysconfig
from pathlib import Path

from ..errors import ModelError
from .config import check_config

FORMAT = "perfmap-phae"
CHECKPOINT_FORMAT = "perfmap-phae-checkpoint"
#: Weights of the learned denoisers (:mod:`perfmap.neural.denoise_nets`).
DENOISE_FORMAT = "perfmap-denoise"
FORMAT_VERSION = 1
MODEL_NAME = "phae_dsc.pt"
#: Keys of the integrity digests inside a weights or checkpoint file.
TENSOR_HASH_KEY = "tensor_sha256"
HEADER_HASH_KEY = "header_sha256"
#: Entries covered by the header digest (those present), by format.
_HEADER_KEYS = {FORMAT: ("format", "format_version", "config", "meta"),
                CHECKPOINT_FORMAT: ("format", "format_version", "config"),
                DENOISE_FORMAT: ("format", "format_version", "config", "meta")}
#: Where the tensors are, by format.
_TENSOR_KEY = {FORMAT: "state_dict", CHECKPOINT_FORMAT: "model", DENOISE_FORMAT: "state_dict"}


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


def default_model_path(name: str = MODEL_NAME) -> Path:
    """The shipped weights ``name`` (default ``phae_dsc.pt``): the first of these that exists.

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
    candidates = [pkg / "models" / name, pkg.parent / "models" / name]
    prefixes = [sysconfig.get_path("data"), sys.prefix]
    try:
        prefixes.append(sysconfig.get_path("data", f"{os.name}_user"))
    except KeyError:  # no user scheme on this platform
        pass
    candidates += [Path(p) / "share" / "perfmap" / "models" / name for p in prefixes if p]
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


def tensor_sha256(state_dict) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict's tensors.

    Tensors are taken in name order, so the digest does not depend on the
    dict's order; it is the same on every platform (little-endian bytes of
    the contiguous CPU tensor).

    Examples
    --------
    >>> import torch
    >>> a = tensor_sha256({"w": torch.zeros(2), "b": torch.ones(1)})
    >>> a == tensor_sha256({"b": torch.ones(1), "w": torch.zeros(2)})
    True
    >>> a == tensor_sha256({"w": torch.tensor([0.0, 1e-45]), "b": torch.ones(1)})
    False
    """
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode("utf-8"))
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def header_sha256(obj: dict) -> str:
    """SHA-256 of the non-tensor entries that define a file (format, version, config, meta).

    Computed over their canonical JSON (sorted keys), so it covers every
    configuration number exactly.
    """
    keys = _HEADER_KEYS.get(obj.get("format"), ("format", "format_version", "config"))
    header = {k: obj.get(k) for k in keys if k in obj}
    text = json.dumps(header, sort_keys=True, allow_nan=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_integrity(obj: dict) -> dict:
    """A shallow copy of a weights or checkpoint dict with its integrity digests added."""
    out = dict(obj)
    key = _TENSOR_KEY.get(obj.get("format"))
    if key is not None and isinstance(obj.get(key), dict):
        out[TENSOR_HASH_KEY] = tensor_sha256(obj[key])
    out[HEADER_HASH_KEY] = header_sha256(out)
    return out


def card_path(path) -> Path:
    """The model card next to a weights file: ``<name>.json`` (``phae_dsc.pt`` -> ``phae_dsc.json``)."""
    path = Path(path)
    return path.with_name(path.stem + ".json")


def _card_sha256(path: Path):
    """The ``sha256`` a model card next to ``path`` records, or None when there is none."""
    card = card_path(path)
    if not card.is_file():
        return None
    try:
        data = json.loads(card.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{card}: the model card of {path.name} cannot be read "
                         f"({type(exc).__name__}); fix or remove it") from None
    value = data.get("sha256") if isinstance(data, dict) else None
    return value.lower() if isinstance(value, str) and value else None


def verify_integrity(obj: dict, path, what: str = "model weights") -> None:
    """Check a loaded weights or checkpoint dict against its digests and model card.

    Parameters
    ----------
    obj : dict
        What :func:`safe_load` returned.
    path : path
        The file it came from (the card is looked up next to it).
    what : str
        How the message names the file's role.

    Raises
    ------
    ModelError
        A digest inside the file, or the card's ``sha256`` of the whole file,
        does not match (damaged or edited file); or the file carries no digest
        and no card records its SHA-256, so damage could not be detected.
    """
    path = Path(path)
    key = _TENSOR_KEY.get(obj.get("format"))
    tensors = obj.get(key) if key else None
    checked = False
    if TENSOR_HASH_KEY in obj:
        if not isinstance(tensors, dict) or obj[TENSOR_HASH_KEY] != tensor_sha256(tensors):
            raise ModelError(f"{path}: the tensors of these {what} do not match the SHA-256 "
                             "recorded inside the file: it is damaged or was edited; restore "
                             "it from a good copy")
        checked = True
    if HEADER_HASH_KEY in obj:
        if obj[HEADER_HASH_KEY] != header_sha256(obj):
            raise ModelError(f"{path}: the configuration of these {what} does not match the "
                             "SHA-256 recorded inside the file: it is damaged or was edited; "
                             "restore it from a good copy")
    recorded = _card_sha256(path)
    if recorded is not None:
        if recorded != sha256(path):
            raise ModelError(f"{path}: the file's SHA-256 differs from the one recorded in its "
                             f"model card {card_path(path).name}: it is damaged or was replaced")
        checked = True
    if not checked:
        raise ModelError(f"{path}: refused: these {what} carry no integrity digest "
                         f"({TENSOR_HASH_KEY}) and no model card {card_path(path).name} next "
                         "to them records their SHA-256, so damage cannot be detected; "
                         "re-save them with perfmap.neural.weights.save_weights")


def save_object(obj, path) -> None:
    """``torch.save`` of plain data (tensors and containers) to ``path``.

    A weights or checkpoint dict (``format`` :data:`FORMAT` or
    :data:`CHECKPOINT_FORMAT`) gets its integrity digests
    (:func:`with_integrity`). Not atomic by itself: callers that must never
    leave a partial file pass this to :func:`perfmap.io.outputs.write_atomic`
    (``perfmap train`` does).
    """
    import torch

    if isinstance(obj, dict) and obj.get("format") in _TENSOR_KEY:
        obj = with_integrity(obj)
    torch.save(obj, path)


def save_weights(path, state_dict, config, meta=None) -> Path:
    """Write encoder weights (tensors only) with their configuration and digests.

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

    Returns
    -------
    Path
        ``path``; the file carries ``tensor_sha256`` and ``header_sha256``
        (:func:`verify_integrity` checks them on every load).
    """
    cfg = check_config(config)
    tensors = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    save_object({"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg,
                 "state_dict": tensors, "meta": dict(meta or {})}, path)
    return Path(path)


def _check_tensor_dict(state_dict, source) -> None:
    """Raise ModelError unless ``state_dict`` maps names (str) to tensors."""
    import torch

    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise ModelError(f"{source}: state_dict must map parameter names to tensors")


def check_tensors(state_dict, net, source, name: str) -> None:
    """Raise ModelError unless ``state_dict`` has exactly ``net``'s names and shapes, all finite.

    Parameters
    ----------
    state_dict : dict
        Tensors read from a weights file.
    net : torch.nn.Module
        The architecture they claim (built from their configuration).
    source : str
        The file, for the message.
    name : str
        The architecture's name in the message (``PHAE``, ``PHAE2``, ...).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> check_tensors(net.state_dict(), net, "w.pt", "toy")
    >>> check_tensors({"weight": torch.zeros(1, 3)}, net, "w.pt", "toy")
    Traceback (most recent call last):
    ...
    perfmap.errors.ModelError: w.pt: the weights do not match the toy architecture (missing bias; weight has shape [1, 3], the architecture needs [1, 2])
    """
    import torch

    _check_tensor_dict(state_dict, source)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
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
        raise ModelError(f"{source}: the weights do not match the {name} architecture "
                         f"({'; '.join(parts)})")
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and
           not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{source}: the weights contain NaN or Inf ({', '.join(bad[:4])})")


def check_state_dict(state_dict, config, source) -> None:
    """Raise ModelError unless ``state_dict`` fits the PHAE encoder of ``config``
    (:func:`check_tensors`)."""
    from .model import Encoder

    check_tensors(state_dict, Encoder(config), source, "PHAE")


def load_weights(path) -> tuple[dict, dict, dict]:
    """Read and validate a weights file: ``(state_dict, config, meta)``.

    Raises
    ------
    ModelError
        See :func:`safe_load`, plus a wrong format tag or version, a failed
        integrity check (:func:`verify_integrity`), an invalid configuration,
        or tensors that do not match the architecture.
    """
    obj = safe_load(path)
    source = str(path)
    fmt = obj.get("format")
    if fmt in _TENSOR_KEY:
        _check_tensor_dict(obj.get(_TENSOR_KEY[fmt]), source)
        verify_integrity(obj, path)
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
