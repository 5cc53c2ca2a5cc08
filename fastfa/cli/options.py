"""Reusable click options and error handling for the ``fastfa`` commands."""

from __future__ import annotations

import functools
import json

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


MODEL_OPTION = click.option(
    "--model",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="best: the best-validation epoch's parameters (the last epoch's when the run has no "
    "validation data); last: the last epoch's.",
)


PLUGIN_OPTION = click.option(
    "--plugin",
    "plugins",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A one-file rule plugin (a .py defining a Rule) to load first, for a run trained with it; "
    "repeatable.",
)


def load_plugins(paths):
    """Load one-file rule plugins (``--plugin``), refusing FIFOs and devices first."""
    from fastfa.rules import load_plugin_file

    check_inputs(paths)
    for path in paths:
        load_plugin_file(path)


def fail(message):
    """Stop the command with a one-line error (exit status 1)."""
    raise click.ClickException(" ".join(str(message).split()))


def user_errors(func):
    """Turn the library's ValueError/OSError (bad input) into a one-line click error."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (click.ClickException, BrokenPipeError):
            raise
        except (ValueError, OSError, KeyError) as exc:
            fail(exc.args[0] if exc.args and isinstance(exc.args[0], str) else exc)

    return wrapper


def check_inputs(paths):
    """Refuse input files that exist but are not regular files: a FIFO would block the reader and
    a device never end (:func:`fastfa.files.check_regular`). Missing ones are left to the reader."""
    from fastfa.files import check_regular

    for path in paths:
        if path is not None:
            check_regular(path)


def parse_shape(ctx, param, value):
    """``"1x28x28"`` (or ``"28x28"``) -> ``(1, 28, 28)``; ``None`` stays ``None``."""
    from fastfa.layers import LayerError, parse_image_shape

    if value is None:
        return None
    try:
        return parse_image_shape(value)
    except LayerError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_sizes(ctx, param, value):
    """``"800,800"`` -> ``(800, 800)``; ``""`` -> ``()``."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return ()
    try:
        sizes = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 1000 or 800,800, got {value!r}"
        ) from None
    if any(s < 1 for s in sizes):
        raise click.BadParameter(f"layer sizes must be positive, got {value!r}")
    return sizes


def parse_rates(ctx, param, value):
    """``"0.2,0.5"`` -> ``(0.2, 0.5)``; ``""`` -> ``()`` (each in [0, 1): dropout rates)."""
    if value is None:
        return None
    try:
        rates = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated rates such as 0.5 or 0.2,0.5, got {value!r}"
        ) from None
    if any(not 0.0 <= r < 1.0 for r in rates):
        raise click.BadParameter(f"a dropout rate must lie in [0, 1), got {value!r}")
    return rates


def parse_key_values(ctx, param, values):
    """``("a=1", "b=x")`` -> ``{"a": "1", "b": "x"}``."""
    out = {}
    for item in values or ():
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = val.strip()
    return out


def echo_json(data):
    """Print ``data`` as one JSON document on stdout (NaN becomes null)."""
    click.echo(json.dumps(_json_safe(data), sort_keys=True))


def _json_safe(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value
