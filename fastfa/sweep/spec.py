"""A sweep spec: a dataset, a base configuration and axes to cross.

The spec is a TOML file::

    dataset = "digits.h5"          # relative to the spec's folder, or absolute
    threads_per_run = 1            # optional; --threads-per-run overrides it

    [base]                         # any TrainConfig field (fastfa train's options)
    hidden = [64]
    epochs = 10
    lr = 0.05

    [axes]                         # each a list of values; the grid is their product
    rule = ["bp", "fa"]
    seed = [0, 1, 2]
    hidden = [[64], [128, 64]]

Every point of the grid is one run, named by its axis values in the order the
axes are written (``rule-fa_seed-0_hidden-128x64``) and written to ``DIR/NAME.h5``.
A name is a safe file name whatever the values: characters other than letters, digits and
``.+=-_`` become ``_`` (so no value or option key can reach outside ``DIR``), and a name longer
than :data:`NAME_CHARS` keeps its start and ends with a hash of the whole. Points whose names
coincide -- also when only letter case tells them apart -- are refused.
Keys are checked when the spec is read; values are checked by each run, so one
bad value fails only the runs that use it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from fastfa.config import TrainConfig
from fastfa.files import FileSafetyError, check_regular
from fastfa.limits import MAX_GRID_POINTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_KEYS = tuple(f.name for f in fields(TrainConfig))
#: Longest run name (file names stop at 255 bytes; a run's files and their temporary files add to it).
NAME_CHARS = 120
TOP_KEYS = ("dataset", "threads_per_run", "in_memory", "base", "axes")


class SpecError(ValueError):
    """The spec file is missing, not TOML, or names something fastfa does not know."""


@dataclass(frozen=True)
class RunTask:
    """One run of a sweep: what a worker needs to train it, picklable.

    ``settings`` are the TrainConfig fields (base merged with this point's axis
    values); ``point`` the axis values alone, in axis order.
    """

    name: str
    settings: dict
    point: dict
    dataset: str
    out: str
    threads: int = 1
    in_memory: bool = False
    record_start: bool = False


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec (see the module docstring)."""

    path: str
    dataset: str
    base: dict
    axes: dict
    threads_per_run: int = 1
    in_memory: bool = False

    def points(self):
        """The grid: one dict of axis values per run, in the order the axes are written."""
        names = list(self.axes)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.axes.values())]

    def tasks(self, out_dir, threads=None):
        """The :class:`RunTask` of every grid point, writing to ``out_dir``."""
        out_dir = Path(out_dir)
        threads = threads or self.threads_per_run
        tasks, seen = [], {}
        for point in self.points():
            name = run_name(point)
            key = name.casefold()  # one file on case-insensitive file systems
            if key in seen:
                raise SpecError(
                    f"{self.path}: grid points {_short(seen[key])} and {_short(point)} share the name "
                    f"{_short(name)!r} as file names; make them differ in more than case or punctuation"
                )
            seen[key] = point
            settings = {**self.base, **point}
            out = str(out_dir / f"{name}.h5")
            tasks.append(RunTask(name, settings, point, self.dataset, out, threads, self.in_memory))
        return tasks


def load_spec(path):
    """Read and check the spec at ``path``; raises :class:`SpecError` naming the problem."""
    path = Path(path)
    try:
        check_regular(path)
        data = tomllib.loads(path.read_text())
    except FileSafetyError as exc:
        raise SpecError(str(exc)) from None
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {', '.join(unknown)}; a spec has {', '.join(TOP_KEYS)}")
    dataset = data.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise SpecError(f'{path}: needs dataset = "PATH" (an HDF5 dataset the workers can read)')
    dataset_path = Path(dataset).expanduser()
    if not dataset_path.is_absolute():
        dataset_path = path.resolve().parent / dataset_path
    base = _table(path, data, "base")
    axes = _table(path, data, "axes")
    for section, table in (("base", base), ("axes", axes)):
        bad = sorted(set(table) - set(CONFIG_KEYS))
        if bad:
            raise SpecError(
                f"{path}: unknown setting(s) {', '.join(bad)} in [{section}]; "
                f"settings are TrainConfig fields: {', '.join(CONFIG_KEYS)}"
            )
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}: axis {key!r} must be a non-empty list of values, got {values!r}")
    both = sorted(set(base) & set(axes))
    if both:
        raise SpecError(f"{path}: {', '.join(both)} set both in [base] and in [axes]; keep one")
    threads = data.get("threads_per_run", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SpecError(f"{path}: threads_per_run must be a positive integer, got {threads!r}")
    in_memory = data.get("in_memory", False)
    if not isinstance(in_memory, bool):
        raise SpecError(f"{path}: in_memory must be true or false, got {in_memory!r}")
    points = math.prod(len(values) for values in axes.values())
    if points > MAX_GRID_POINTS:
        shape = " x ".join(str(len(values)) for values in axes.values())
        raise SpecError(
            f"{path}: the grid has {points:,} points ({shape}), each a training run; at most "
            f"{MAX_GRID_POINTS:,}"
        )
    return SweepSpec(str(path), str(dataset_path), base, axes, threads, in_memory)


def _table(path, data, key):
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise SpecError(f"{path}: [{key}] must be a table of settings")
    return table


def run_name(point):
    """File-safe name of a grid point: ``key-value`` pairs joined by ``_``, in axis order.

    Only letters, digits and ``.+=-_`` remain (others become ``_``); a name longer than
    :data:`NAME_CHARS` is cut and ends with 12 hex digits of a hash of the whole point.
    """
    text = "_".join(f"{key}-{_value_name(value)}" for key, value in point.items()) or "run"
    name = re.sub(r"[^A-Za-z0-9.+=_-]", "_", text)
    if len(name) > NAME_CHARS:
        digest = hashlib.sha256(repr(list(point.items())).encode("utf-8", "backslashreplace")).hexdigest()
        name = f"{name[: NAME_CHARS - 13]}-{digest[:12]}"
    return name


def _short(value, limit=80):
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value_name(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "x".join(_value_name(v) for v in value) or "none"
    if isinstance(value, dict):
        return "+".join(f"{k}={_value_name(v)}" for k, v in sorted(value.items()))
    return re.sub(r"[^A-Za-z0-9.+=-]", "_", str(value))
