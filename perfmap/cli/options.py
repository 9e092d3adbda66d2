"""Options shared by the commands: one decorator per option, so the same option means
the same thing in every command (rasterio's ``rio/options.py`` pattern).

Method and kind choices come from the registries; ``--param`` keys are checked
against the chosen methods' parameters. Verbosity (``-v``/``-q``) may be given
on the group or on a command; :func:`verbosity` adds both up.
"""

from __future__ import annotations

import logging

import click

#: Key of the summed verbosity in the root context's ``meta``.
_VERBOSITY = "perfmap.verbosity"


# ------------------------------------------------------------------ verbosity

def _add_verbosity(ctx, param, value):
    if value:
        root = ctx.find_root()
        sign = 1 if param.name == "verbose" else -1
        root.meta[_VERBOSITY] = root.meta.get(_VERBOSITY, 0) + sign * value
        _configure_logging(root.meta[_VERBOSITY])
    return value


def _configure_logging(level: int) -> None:
    """Library warnings go to logging and are shown only with ``-v`` (never spilled)."""
    logging.captureWarnings(True)
    logging.basicConfig(format="perfmap: %(levelname)s: %(message)s", force=True,
                        level=logging.DEBUG if level >= 2 else
                        logging.INFO if level == 1 else logging.ERROR)


def verbosity(ctx=None) -> int:
    """``-v`` count minus ``-q`` count, over the group and the command."""
    ctx = ctx or click.get_current_context()
    return ctx.find_root().meta.get(_VERBOSITY, 0)


def verbosity_option(func):
    """``-v/--verbose`` and ``-q/--quiet`` (repeatable), summed by :func:`verbosity`."""
    func = click.option("-q", "--quiet", count=True, expose_value=False,
                        callback=_add_verbosity, help="Print less (repeatable).")(func)
    func = click.option("-v", "--verbose", count=True, expose_value=False,
                        callback=_add_verbosity, help="Print more (repeatable).")(func)
    return func


def setup_logging() -> None:
    """Logging for the verbosity given so far (warnings captured; errors only by default)."""
    _configure_logging(verbosity())


# ------------------------------------------------------------------ kinds and methods

def _kinds() -> list:
    from ..pipeline.kinds import available_kinds

    return available_kinds()


def kind_option(func):
    """``--kind``: the acquisition kind (its registry gives the methods)."""
    return click.option("--kind", type=click.Choice(_kinds()), default="dsc", show_default=True,
                        is_eager=True, help="Acquisition kind.")(func)


def _methods_of(ctx) -> tuple:
    from ..pipeline.kinds import get_kind

    kind = get_kind(ctx.params.get("kind") or "dsc")
    return kind, kind.methods()


def _one_method(ctx, param, value):
    kind, valid = _methods_of(ctx)
    value = value or kind.default_method
    if value not in valid:
        raise click.BadParameter(f"{value!r} is not a {kind.name} method; choose from: "
                                 f"{', '.join(valid)}", ctx=ctx, param=param)
    return value


def parse_method_list(ctx, param, value):
    """``osvd,tikhonov`` -> ``("osvd", "tikhonov")``, checked against the kind's registry."""
    kind, valid = _methods_of(ctx)
    names = tuple(dict.fromkeys(m.strip() for m in (value or kind.default_method).split(",")
                                if m.strip()))
    if not names:
        raise click.BadParameter("give at least one method", ctx=ctx, param=param)
    unknown = [m for m in names if m not in valid]
    if unknown:
        raise click.BadParameter(f"unknown {kind.name} method(s) {', '.join(unknown)}; choose "
                                 f"from: {', '.join(valid)}", ctx=ctx, param=param)
    return names


def method_option(func):
    """``--method NAME``: one method of the kind (``perfmap methods`` lists them)."""
    return click.option("--method", callback=_one_method, metavar="NAME",
                        help="Method (default: the kind's default, osvd for DSC); "
                             "'perfmap methods' lists them with their parameters.")(func)


def methods_option(func):
    """``--method A,B``: one or more methods of the kind, comma-separated."""
    return click.option("--method", "methods", callback=parse_method_list, metavar="A,B",
                        help="Method(s), comma-separated (default: the kind's default); "
                             "'perfmap methods' lists them.")(func)


# ------------------------------------------------------------------ method parameters

def parse_key_values(ctx, param, values):
    """``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}`` (numbers where they parse)."""
    params = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        params[key.strip()] = _number_or_text(raw.strip())
    return params


def _number_or_text(raw: str):
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            continue
    return raw


def device_option(func):
    """``--device auto|cpu|cuda``: where neural networks run."""
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                        show_default=True, help="Device of a neural method "
                        "(auto: a CUDA GPU when one is available).")(func)


def param_options(func):
    """``--param KEY=VALUE`` (repeatable), ``--device`` and ``--model``: method parameters."""
    func = click.option("--model", type=click.Path(dir_okay=False),
                        help="Model weights for a neural method (default: the shipped "
                             "weights).")(func)
    func = device_option(func)
    func = click.option("--param", "params", multiple=True, callback=parse_key_values,
                        metavar="KEY=VALUE", help="Method parameter (repeatable), e.g. "
                        "--param oi_limit=0.1; 'perfmap methods' lists the keys.")(func)
    return func


def method_params(methods, params: dict, device: str, model, kind: str = "dsc") -> dict:
    """``method -> parameters`` for each method: the ``--param`` keys it takes, plus
    ``--device``/``--model`` for neural methods.

    A key that none of ``methods`` takes is a usage error listing the valid keys.
    """
    from ..pipeline.kinds import get_kind, needs_torch

    parameters = get_kind(kind).parameters
    out, taken = {}, set()
    for m in methods:
        valid = parameters(m)
        mine = {k: v for k, v in params.items() if k in valid}
        taken.update(mine)
        if needs_torch(m):
            mine.setdefault("device", device)
            if model is not None:
                mine.setdefault("model", model)
        out[m] = mine
    if model is not None and not any(needs_torch(m) for m in methods):
        raise click.BadParameter(f"--model gives the weights of a neural method; "
                                 f"{', '.join(methods)} take(s) none", param_hint="--model")
    unknown = [k for k in params if k not in taken]
    if unknown:
        valid = sorted({k for m in methods for k in parameters(m)})
        raise click.BadParameter(f"unknown parameter {unknown[0]!r} for "
                                 f"{', '.join(methods)}; valid: {', '.join(valid)}",
                                 param_hint="--param")
    return out


def _denoisers() -> list:
    from ..core.denoise import available

    return available()


def denoise_method_option(func):
    """``--method NAME``: a denoiser (``perfmap denoise``)."""
    return click.option("--method", type=click.Choice(_denoisers()), default="mppca",
                        show_default=True, help="Denoising method.")(func)


def denoise_option(func):
    """``--denoise none|NAME``: denoise the signal before conversion (compute, batch, ...)."""
    return click.option("--denoise", type=click.Choice(["none", *_denoisers()]),
                        default="none", show_default=True,
                        help="Denoise the brain's signal first (mppca: Marchenko-Pastur PCA, "
                             "Veraart 2016, the best on white noise; gaussian: spatial "
                             "smoothing; dae, cae: learned curve / slice autoencoders).")(func)


def model_options(func):
    """``--denoise``, ``--leakage`` (DSC) and ``--t10`` (DCE): model options for every
    subject of a cohort."""
    func = denoise_option(func)
    func = click.option("--t10", type=float,
                        help="DCE: one pre-contrast T1 (s) for subjects whose manifest row "
                             "names no t1 map or vfa series.")(func)
    func = click.option("--leakage", type=click.Choice(["bsw", "bidirectional", "none"]),
                        help="DSC leakage correction (default bsw; see perfmap compute).")(func)
    return func


def cohort_model_options(kind: str, leakage, t10, denoise: str = "none") -> dict:
    """The model options of :func:`model_options` that apply to ``kind`` (a usage error
    names an option given for the other kind)."""
    given = {"leakage": (leakage, "dsc"), "t10": (t10, "dce")}
    out = {} if denoise in (None, "none") else {"denoise": denoise}
    for name, (value, owner) in given.items():
        if value is None:
            continue
        if owner != kind:
            raise click.BadParameter(f"--{name} is a {owner.upper()} option, not one of "
                                     f"--kind {kind}", param_hint=f"--{name}")
        out[name] = value
    return out


# ------------------------------------------------------------------ the rest

def overwrite_option(func):
    """``--overwrite``: replace existing outputs (refused by default)."""
    return click.option("--overwrite", is_flag=True,
                        help="Replace existing output files (refused by default).")(func)


def seed_option(help_text: str):
    """``--seed N`` (a non-negative integer) with a command-specific help text."""
    return click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                        help=help_text)


def scheduler_options(func):
    """``--jobs`` and ``--scheduler`` (where batch-like commands run their tasks)."""
    func = click.option(
        "--scheduler", metavar="ADDRESS|local",
        help="Run on a Dask distributed cluster: a scheduler address (tcp://host:8786), or "
             "'local' for a local cluster of --jobs worker processes. Needs "
             "perfmap[distributed]; workers must see the same files.")(func)
    func = click.option("--jobs", type=click.IntRange(min=1),
                        help="Worker processes (default: all cores; 1 runs in this process).")(
        func)
    return func
