"""Hostile and careless inputs to the ``fastfa`` command line (issue 16): a corpus of cases.

Each case runs one ``fastfa`` command in its own process, in a fresh folder holding copies of a
few valid files (a dataset, a run, CSVs, an .npz archive, a sweep spec, a plugin), under a time
limit and an address-space limit (``RLIMIT_AS``), so that an unchecked size fails the case
instead of the machine. Every case checks:

- the exit status: the expected non-zero one, or 0 where the input is valid;
- stderr: exactly one line ``Error: ...`` on failure (naming the problem), and never a traceback;
- nothing left behind: on failure no new file or folder at all; on success only the outputs the
  case names; no temporary or lock file either way;
- nothing pre-existing changed (every file hashed before and after; links, FIFOs and device
  nodes must still be what they were), except what the case says it replaces or removes.

The cases are grouped by the classes of the issue: ``data-loss`` (an output that is one of the
command's inputs), ``writers`` (two writers of one run file or sweep folder; readers go on),
``special`` (FIFOs, devices and folders where a regular file is expected), ``leftovers``
(temporary files of dead writers, empty folders of failed sweeps), ``permissions`` (outputs follow
the umask) and ``names`` (values that become file names). Add a case by adding a row to
:data:`CASES`.

Processes are forked from a multiprocessing fork server that has imported ``fastfa.cli`` once, so
a case costs a fork rather than a fresh interpreter (about a second each); the command then runs
exactly as ``python -m fastfa`` would (``FASTFA_HOSTILE_SUBPROCESS=1`` runs real
``python -m fastfa`` subprocesses instead, for checking). ``FASTFA_HOSTILE_TIMEOUT`` overrides
the per-case time limit (60 s).
"""

from __future__ import annotations

import dataclasses
import fcntl
import fnmatch
import gzip
import hashlib
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TIMEOUT = float(os.environ.get("FASTFA_HOSTILE_TIMEOUT", "60"))
MEMORY = 4 << 30  # RLIMIT_AS of every case
SUBPROCESS = os.environ.get("FASTFA_HOSTILE_SUBPROCESS") == "1"
#: a process id no process can have (above Linux's PID_MAX_LIMIT, 2**22, and macOS's 99999)
DEAD_PID = 4_194_999
HOST = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname().split(".")[0])[:16]
REPO = Path(__file__).resolve().parents[1]
TRAIN = ("--epochs", "1", "--hidden", "4", "-q")

if sys.platform.startswith("linux"):
    _CONTEXT = multiprocessing.get_context("forkserver")
    _CONTEXT.set_forkserver_preload(["fastfa.cli", "h5py", "tests.test_hostile"])
else:  # pragma: no cover
    _CONTEXT = None
    SUBPROCESS = True


# ----------------------------------------------------------------------------- running a command


@dataclasses.dataclass
class Result:
    status: int | str  # the exit status, or "timeout"
    out: str
    err: str
    seconds: float


def _limit(umask):
    """In the child, before fastfa runs: own process group, address-space limit, umask."""
    os.setpgid(0, 0)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    os.umask(umask)


def _pause_at(target, call):
    """Make the ``call``-th call of ``target`` ("module:Class.method") stop the process (SIGSTOP)."""
    import importlib

    module_name, _, qualname = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original, calls = getattr(owner, name), [0]

    def paused(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            os.kill(os.getpid(), signal.SIGSTOP)
        return original(*args, **kwargs)

    setattr(owner, name, paused)


def _child(args, cwd, umask, out_path, err_path, pause, env=None, stdout="file"):
    """A forked ``fastfa ARGS``: what ``python -m fastfa ARGS`` does, in ``cwd``."""
    _limit(umask)
    os.chdir(cwd)
    os.environ.update(env or {})
    for fd, path in ((1, out_path), (2, err_path)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    if stdout == "closed-pipe":  # a reader that went away, as `| head -1` does after one line
        read_end, write_end = os.pipe()
        os.close(read_end)
        os.dup2(write_end, 1)
        os.close(write_end)
    if pause:
        _pause_at(*pause)
    from fastfa.cli import main

    main(list(args), prog_name="fastfa")


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Command:
    """A started ``fastfa`` command; :meth:`wait` returns its :class:`Result`."""

    def __init__(self, args, cwd, io_dir, umask=0o022, pause=None, env=None, stdout="file"):
        self.args = [str(a) for a in args]
        self.started = time.perf_counter()
        io_dir = Path(io_dir)
        io_dir.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        self.out_path, self.err_path = io_dir / f"{tag}.out", io_dir / f"{tag}.err"
        if SUBPROCESS and not pause and stdout == "file":
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastfa", *self.args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=open(self.out_path, "w"),  # noqa: SIM115 (closed by the child's exit)
                stderr=open(self.err_path, "w"),  # noqa: SIM115
                preexec_fn=lambda: _limit(umask),
                env={**os.environ, **(env or {})},
            )
            self.pid = self.proc.pid
        else:
            self.proc = _CONTEXT.Process(
                target=_child,
                args=(self.args, str(cwd), umask, str(self.out_path), str(self.err_path), pause, env, stdout),
            )
            self.proc.start()
            self.pid = self.proc.pid

    def poll(self):
        """The exit status, or ``None`` while it runs."""
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.poll()
        return None if self.proc.is_alive() else self.proc.exitcode

    def wait(self, timeout=TIMEOUT):
        status = None
        if isinstance(self.proc, subprocess.Popen):
            try:
                status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        else:
            self.proc.join(timeout)
            status = None if self.proc.is_alive() else self.proc.exitcode
        _kill_group(self.pid)  # a timed-out command, or what it left running
        if status is None:
            if isinstance(self.proc, subprocess.Popen):
                self.proc.wait()
            else:
                self.proc.join()
            status = "timeout"
        seconds = time.perf_counter() - self.started
        out = self.out_path.read_text(errors="replace")
        err = self.err_path.read_text(errors="replace")
        return Result(status, out, err, seconds)


def fastfa(args, cwd, io_dir, umask=0o022, timeout=TIMEOUT, env=None, stdout="file"):
    """Run ``fastfa ARGS`` in ``cwd`` to its end."""
    return Command(args, cwd, io_dir, umask, env=env, stdout=stdout).wait(timeout)


# ---------------------------------------------------------------------------- the folder's state


def snapshot(root):
    """``{relative path: what it is}`` for everything under ``root``, links not followed."""
    state = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                state[rel] = ("file", digest, stat.S_IMODE(info.st_mode))
            elif stat.S_ISDIR(info.st_mode):
                state[rel] = ("dir",)
            else:
                state[rel] = ("special", stat.S_IFMT(info.st_mode), info.st_rdev)
    return state


def matches(rel, patterns):
    return any(fnmatch.fnmatchcase(rel, p) for p in patterns)


# ------------------------------------------------------------------------------- shared inputs


def _write_csv(path, rows, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = rng.integers(0, 3, rows)
    y[:3] = (0, 1, 2)
    lines = [",".join(f"{v:.4f}" for v in row) + f",{label}" for row, label in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


def _idx(path, magic, array):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _mnist_folder(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, rows in (("train", 20), ("t10k", 10)):
        _idx(folder / f"{prefix}-images-idx3-ubyte.gz", 0x803, rng.integers(0, 256, (rows, 28, 28)))
        _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 0x801, np.arange(rows) % 10)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The valid inputs every case folder starts with, made once."""
    from fastfa.datasets import default_dataset_path

    folder = tmp_path_factory.mktemp("shared")
    shutil.copyfile(default_dataset_path(), folder / "d.h5")
    _write_csv(folder / "in.csv", 40, 0)
    _write_csv(folder / "t.csv", 12, 1)
    rng = np.random.default_rng(2)
    np.savez(
        folder / "in.npz",
        x_train=rng.normal(size=(30, 4)),
        y_train=np.arange(30) % 3,
        x_test=rng.normal(size=(9, 4)),
        y_test=np.arange(9) % 3,
    )
    np.savetxt(folder / "rows.csv", rng.integers(0, 16, (5, 64)), delimiter=",", fmt="%d")
    (folder / "spec.toml").write_text(
        'dataset = "d.h5"\n[base]\nhidden = [4]\nepochs = 1\n[axes]\nseed = [0]\n'
    )
    shutil.copyfile(REPO / "examples" / "one_file_rule.py", folder / "plugin.py")
    io = tmp_path_factory.mktemp("io")
    args = ["train", "d.h5", "-o", "run.h5", *TRAIN]
    result = fastfa(args, folder, io, timeout=max(TIMEOUT, 600))  # the first run may compile kernels
    assert result.status == 0, result.err
    return folder


# ------------------------------------------------------------------------------ setup helpers


def fifo(*names):
    def setup(work):
        for name in names:
            os.mkfifo(work / name)

    return setup


def symlink(name, target):
    def setup(work):
        os.symlink(target, work / name)

    return setup


def hardlink(name, target):
    def setup(work):
        os.link(work / target, work / name)

    return setup


def folder(*names):
    def setup(work):
        for name in names:
            (work / name).mkdir(parents=True)

    return setup


def copy(name, source):
    def setup(work):
        shutil.copyfile(work / source, work / name)

    return setup


def text(name, content):
    def setup(work):
        path = work / name.format(pid=os.getpid(), dead=DEAD_PID, host=HOST)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content.format(pid=os.getpid(), dead=DEAD_PID, host=HOST))

    return setup


def device(name):
    """A character device like /dev/null (needs CAP_MKNOD; the case is skipped without it)."""

    def setup(work):
        try:
            os.mknod(work / name, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except (OSError, AttributeError):
            pytest.skip("cannot create a device node here")

    return setup


def held(lock):
    """Hold an advisory lock on ``lock`` (as a running writer would), with this process's pid in it."""

    def setup(work):
        path = work / lock
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 (closed by the returned cleanup)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle.close

    return setup


def sweep_folder(name="g"):
    """A finished one-run sweep folder: ``g/sweep.json`` and its run file."""

    def setup(work):
        (work / name).mkdir()
        shutil.copyfile(work / "run.h5", work / name / "seed-0.h5")
        (work / name / "sweep.json").write_text(
            '{"spec": "spec.toml", "dataset": "d.h5", "base": {}, "axes": {"seed": [0]}, '
            '"runs": [{"name": "seed-0", "point": {"seed": 0}}]}'
        )

    return setup


def mnist(name="mn", fifo_file=None):
    def setup(work):
        _mnist_folder(work / name)
        if fifo_file:
            (work / name / fifo_file).unlink()
            os.mkfifo(work / name / fifo_file)

    return setup


def gz(name, source):
    def setup(work):
        (work / name).write_bytes(gzip.compress((work / source).read_bytes()))

    return setup


def digits_csv(name):
    def setup(work):
        shutil.copyfile(REPO / "data" / "digits.csv.gz", work / name)

    return setup


def spec(name, dataset="d.h5", base="hidden = [4]\nepochs = 1", axes="seed = [0]"):
    def setup(work):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(f'dataset = "{dataset}"\n[base]\n{base}\n[axes]\n{axes}\n')

    return setup


def modes(expected):
    """Check the permission bits of outputs: ``{pattern: mode}``."""

    def check(work):
        for pattern, mode in expected.items():
            found = [p for p in work.glob(pattern)]
            assert found, f"no {pattern}"
            for path in found:
                got = stat.S_IMODE(path.stat().st_mode)
                assert got == mode, f"{path.name}: mode {oct(got)}, expected {oct(mode)}"

    return check


def no_name_longer_than(limit):
    def check(work):
        for path in work.rglob("*"):
            assert len(path.name) <= limit, f"{path.name[:40]}...: {len(path.name)} characters"

    return check


def h5copy(name, source, attrs=None, edit=None):
    """A copy of ``source`` (an HDF5 file) with root ``attrs`` replaced and ``edit(h5file)`` applied."""

    def setup(work):
        import h5py

        if name != source:
            shutil.copyfile(work / source, work / name)
        with h5py.File(work / name, "a") as f:
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            if edit is not None:
                edit(f)

    return setup


def run_config(name, **changes):
    """A copy of run.h5 whose configuration has ``changes``."""
    import json

    def edit(f):
        config = json.loads(f.attrs["config"])
        config.update(changes)
        f.attrs["config"] = json.dumps(config)
        if "rule" in changes:
            f["feedback"].attrs["rule"] = changes["rule"]

    return h5copy(name, "run.h5", edit=edit)


def made(name, write):
    """``write(path)`` makes file ``name``."""

    def setup(work):
        write(work / name)

    return setup


def gzip_bomb(unit, members):
    """A gzip stream of ``members`` copies of one member holding ``unit`` (cheap to make, huge to read)."""

    def write(path):
        path.write_bytes(gzip.compress(unit, 9) * members)

    return write


def _npy(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_with_x(x_train_bytes):
    """An .npz archive whose ``x_train.npy`` member is ``x_train_bytes`` (the other arrays valid)."""

    def write(path):
        import zipfile

        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("x_train.npy", x_train_bytes)
            for key, array in (
                ("y_train", np.arange(3)),
                ("x_test", np.zeros((3, 4))),
                ("y_test", np.arange(3)),
            ):
                archive.writestr(f"{key}.npy", _npy(array))

    return write


def npy_header(shape, descr="<f8"):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def npz_bomb(path):
    """An honest .npz whose x_train is 96 MiB of zeros (about 100 KB deflated)."""
    import zipfile

    rows = (96 << 20) // (64 * 8)  # x 64 float64 columns = 96 MiB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            member.write(npy_header((rows, 64)))
            block = bytes(1 << 20)
            for _ in range(96):
                member.write(block)
        for key, array in (
            ("y_train", np.zeros(rows, np.int64)),
            ("x_test", np.zeros((3, 64))),
            ("y_test", np.arange(3)),
        ):
            archive.writestr(f"{key}.npy", _npy(array))


def sparse_rows(path):
    """A dataset declaring 10**9 rows in a few KB: chunked, compressed, nothing written."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs.update({"format_version": 1, "name": "rows", "task": "classification", "n_classes": 10})
        f.attrs["x_scale"] = 1 / 16
        for split in ("train", "test"):
            f.create_dataset(f"{split}/x", (10**9, 64), "uint8", chunks=(4096, 64), compression="gzip")
            f.create_dataset(f"{split}/y", (10**9,), "int64", chunks=(4096,), compression="gzip")


def linked_out(kind):
    """A copy of d.h5 whose train split lives in another file: an external link, external raw
    storage, or a virtual dataset."""

    def write(path):
        import h5py

        work = path.parent
        with h5py.File(work / "d.h5") as source, h5py.File(path, "w") as f:
            f.attrs.update(dict(source.attrs))
            source.copy("test", f)
            x, y = source["train/x"][()], source["train/y"][()]
        with h5py.File(path, "a") as f:
            if kind == "link":
                f["train"] = h5py.ExternalLink("d.h5", "/train")
            elif kind == "raw":
                (work / "x.bin").write_bytes(x.tobytes())
                f.create_group("train").create_dataset(
                    "x", x.shape, x.dtype, external=[("x.bin", 0, x.nbytes)]
                )
                f["train/y"] = y
            else:
                layout = h5py.VirtualLayout(x.shape, x.dtype)
                layout[...] = h5py.VirtualSource("d.h5", "train/x", shape=x.shape)
                f.create_group("train").create_virtual_dataset("x", layout)
                f["train/y"] = y

    return write


def soft_linked(kind):
    """An edit of a copy of d.h5: its train split a soft link to test (``alias``), or train/x a soft
    link to itself (``loop``)."""

    def edit(f):
        import h5py

        if kind == "alias":
            del f["train"]
            f["train"] = h5py.SoftLink("/test")
        else:
            del f["train/x"]
            f["train/x"] = h5py.SoftLink("/train/x")

    return edit


def run_linked_out(kind):
    """An edit of a copy of run.h5 whose ``model`` group is an external link to src.h5 (``link``) or
    whose optimiser state is a virtual dataset reading src.h5 (``virtual``)."""

    def edit(f):
        import h5py

        if kind == "link":
            del f["model"]
            f["model"] = h5py.ExternalLink("src.h5", "/model")
        else:
            state = f["optimizer/state"]
            shape, dtype = state.shape, state.dtype
            del f["optimizer/state"]
            layout = h5py.VirtualLayout(shape, dtype)
            layout[...] = h5py.VirtualSource("src.h5", "optimizer/state", shape=shape)
            f.create_virtual_dataset("optimizer/state", layout)

    return edit


def idx_bomb(folder):
    """An MNIST folder whose train images declare 200,000 images, all present but zeros (156 MiB
    that gzip packs into about 150 KB)."""

    def setup(work):
        _mnist_folder(work / folder)
        header = struct.pack(">4i", 0x803, 200_000, 28, 28)
        with gzip.open(work / folder / "train-images-idx3-ubyte.gz", "wb") as f:
            f.write(header)
            block = bytes(28 * 28 * 1000)
            for _ in range(200):
                f.write(block)
        labels = struct.pack(">2i", 0x801, 200_000) + bytes(200_000)
        (work / folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))

    return setup


def grid_spec(name, axes, values):
    """A spec of ``axes`` axes with ``values`` values each (a grid of values**axes points)."""
    names = ["lr", "momentum", "weight_decay", "gamma", "beta1", "beta2", "epsilon", "lr_min", "seed"]
    lines = [f"{axis} = [{', '.join(str(0.001 * (i + 1)) for i in range(values))}]" for axis in names[:axes]]
    return text(
        name, 'dataset = "d.h5"\n[base]\nhidden = [4]\nepochs = 1\n[axes]\n' + "\n".join(lines) + "\n"
    )


def plugin_file(name, rule, init="random_feedback", hook=None, options="RANDOM_FEEDBACK_OPTIONS"):
    """A one-file plugin defining ``rule``, whose init_feedback or after_batch may raise."""
    body = (
        "from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback\n\n\n"
        "def broken_init(rng, shape, **kwargs):\n"
        "    raise ZeroDivisionError('the plugin divided by zero')\n\n\n"
        "def broken_hook(trainer):\n    raise RuntimeError('the plugin hook failed')\n\n\n"
        f"rule = Rule(name={rule!r}, summary='x', reference='x', signal='layerwise', init_feedback={init}, "
        f"options={options}, after_batch={hook})\n"
    )
    return text(name, body.replace("{", "{{").replace("}", "}}"))


# --------------------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
    """One hostile (or valid) command.

    ``args`` run in the case's folder (``{work}`` stands for its absolute path); ``setup`` callables
    prepare it (one may return a cleanup); ``status`` is the expected exit status and ``message``
    fragments the error line must hold (``{pid}``: this process's id); ``creates`` paths (globs)
    must be new after a success, ``may_create`` may be; ``changes`` pre-existing paths may change
    and ``removes`` must be gone; ``check(work)`` is any further check. ``absent`` fragments must
    not be in the error line (a library's words); ``env`` is added to the command's environment;
    ``stdout="closed-pipe"`` makes its stdout a pipe nobody reads (``fastfa info RUN | head -1``),
    and then the command must end quietly: nothing on stderr, whatever its status.
    """

    id: str
    kind: str
    args: tuple
    setup: tuple = ()
    status: int = 1
    message: tuple = ()
    creates: tuple = ()
    may_create: tuple = ()
    changes: tuple = ()
    removes: tuple = ()
    umask: int = 0o022
    check: object = None
    absent: tuple = ()
    env: dict = dataclasses.field(default_factory=dict)
    stdout: str = "file"


def C(id, kind, args, *setup, **kw):  # noqa: N802 (a table row)
    args = tuple(args.split()) if isinstance(args, str) else tuple(args)
    message = kw.pop("message", ())
    kw["message"] = (message,) if isinstance(message, str) else tuple(message)
    for key in ("creates", "may_create", "changes", "removes", "absent"):
        if isinstance(kw.get(key), str):
            kw[key] = (kw[key],)
    return Case(id, kind, args, tuple(setup), **kw)


T = " ".join(TRAIN)
RUN_OUT = ("run.h5",)
SWEEP = ("g", "g/*")

CASES = [
    # ------------------------------------------------------------------ data loss
    C("train-out-is-data", "data-loss", f"train d.h5 -o d.h5 --overwrite {T}", message=("d.h5", "input")),
    C(
        "train-out-is-data-respelled",
        "data-loss",
        f"train d.h5 -o sub/../d.h5 --overwrite {T}",
        folder("sub"),
        message="input",
    ),
    C(
        "train-out-is-data-absolute",
        "data-loss",
        f"train d.h5 -o {{work}}/d.h5 --overwrite {T}",
        message="input",
    ),
    C(
        "train-out-links-to-data",
        "data-loss",
        f"train d.h5 -o link.h5 --overwrite {T}",
        symlink("link.h5", "d.h5"),
        message="input",
    ),
    C(
        "train-data-links-to-out",
        "data-loss",
        f"train alias.h5 -o d.h5 --overwrite {T}",
        symlink("alias.h5", "d.h5"),
        message="input",
    ),
    C(
        "train-out-hardlinks-data",
        "data-loss",
        f"train d.h5 -o hard.h5 --overwrite {T}",
        hardlink("hard.h5", "d.h5"),
        message="input",
    ),
    C(
        "train-out-is-plugin",
        "data-loss",
        f"train d.h5 --plugin plugin.py -o plugin.py --overwrite {T}",
        message=("plugin.py", "input"),
    ),
    C(
        "train-out-links-to-default-data",
        "data-loss",
        f"train -o bundled.h5 --overwrite {T}",
        lambda work: os.symlink(_bundled(), work / "bundled.h5"),
        message="input",
    ),
    C("train-resume-data-is-run", "data-loss", "train run.h5 -o run.h5 --resume -q", message="run.h5"),
    C(
        "train-resume-data-links-to-run",
        "data-loss",
        "train r.h5 -o run.h5 --resume -q",
        symlink("r.h5", "run.h5"),
        message="r.h5",
    ),
    C("csv-out-is-input", "data-loss", "data csv in.csv -o in.csv --overwrite", message=("in.csv", "input")),
    C(
        "csv-out-links-to-input",
        "data-loss",
        "data csv in.csv -o l.h5 --overwrite",
        symlink("l.h5", "in.csv"),
        message="input",
    ),
    C(
        "csv-out-hardlinks-input",
        "data-loss",
        "data csv in.csv -o h.h5 --overwrite",
        hardlink("h.h5", "in.csv"),
        message="input",
    ),
    C(
        "csv-out-is-test-file",
        "data-loss",
        "data csv in.csv --test-file t.csv -o t.csv --overwrite",
        message=("t.csv", "input"),
    ),
    C(
        "csv-gz-out-is-input",
        "data-loss",
        "data csv in.csv.gz -o in.csv.gz --overwrite",
        gz("in.csv.gz", "in.csv"),
        message="input",
    ),
    C("npz-out-is-input", "data-loss", "data npz in.npz -o in.npz --overwrite", message=("in.npz", "input")),
    C(
        "npz-out-links-to-input",
        "data-loss",
        "data npz in.npz -o l.h5 --overwrite",
        symlink("l.h5", "in.npz"),
        message="input",
    ),
    C(
        "digits-out-is-csv",
        "data-loss",
        "data digits --csv dg.csv.gz -o dg.csv.gz --overwrite",
        digits_csv("dg.csv.gz"),
        message="input",
    ),
    C(
        "mnist-out-is-an-idx-file",
        "data-loss",
        "data mnist mn -o mn/t10k-labels-idx1-ubyte.gz --overwrite",
        mnist(),
        message="input",
    ),
    C(
        "info-csv-is-the-run",
        "data-loss",
        "info run.h5 --csv run.h5 --overwrite",
        message=("run.h5", "input"),
    ),
    C(
        "info-csv-links-to-run",
        "data-loss",
        "info run.h5 --csv h.csv --overwrite",
        symlink("h.csv", "run.h5"),
        message="input",
    ),
    C("plot-out-is-the-run", "data-loss", "plot run.h5 -o run.h5", message=("run.h5", "input")),
    C(
        "plot-out-is-another-run",
        "data-loss",
        "plot run.h5 r2.h5 -o r2.h5",
        copy("r2.h5", "run.h5"),
        message=("r2.h5", "input"),
    ),
    C("predict-out-is-data", "data-loss", "predict run.h5 d.h5 -o d.h5 --overwrite", message="input"),
    C(
        "predict-out-links-to-run",
        "data-loss",
        "predict run.h5 d.h5 -o p.h5 --overwrite",
        symlink("p.h5", "run.h5"),
        message="input",
    ),
    C(
        "predict-out-is-csv-input",
        "data-loss",
        "predict run.h5 rows.csv -o rows.csv --overwrite",
        message="input",
    ),
    C(
        "export-out-links-to-run",
        "data-loss",
        "export run.h5 -o m.npz --overwrite",
        symlink("m.npz", "run.h5"),
        message="input",
    ),
    C(
        "sweep-run-file-is-dataset",
        "data-loss",
        "sweep s.toml -o g -q",
        spec("s.toml", dataset="g/rule-fa.h5", axes='rule = ["fa"]'),
        folder("g"),
        copy("g/rule-fa.h5", "d.h5"),
        message=("rule-fa.h5", "input"),
    ),
    C(
        "sweep-summary-is-dataset",
        "data-loss",
        "sweep s.toml -o g -q -w 1",
        spec("s.toml", dataset="g/summary.h5"),
        folder("g"),
        copy("g/summary.h5", "d.h5"),
        message=("summary.h5", "input"),
    ),
    C(
        "sweep-grid-file-is-spec",
        "data-loss",
        "sweep g/sweep.json -o g -q -w 1",
        spec("g/sweep.json", dataset="../d.h5"),
        message=("sweep.json", "input"),
    ),
    C("valid-train", "data-loss", f"train d.h5 -o out.h5 {T}", status=0, creates="out.h5"),
    C(
        "valid-train-overwrites-other-file",
        "data-loss",
        f"train d.h5 -o run.h5 --overwrite {T}",
        status=0,
        changes=RUN_OUT,
    ),
    C("valid-csv", "data-loss", "data csv in.csv -o in.h5", status=0, creates="in.h5"),
    C(
        "valid-teacher-overwrites-dataset",
        "data-loss",
        "data teacher -o d.h5 --overwrite --n-train 50 --n-test 10",
        status=0,
        changes="d.h5",
    ),
    # ------------------------------------------------------------------ two writers
    C(
        "train-new-run-held",
        "writers",
        f"train d.h5 -o out.h5 {T}",
        held(".out.h5.lock"),
        message=("out.h5", "{pid}"),
    ),
    C(
        "train-overwrite-held",
        "writers",
        f"train d.h5 -o run.h5 --overwrite {T}",
        held(".run.h5.lock"),
        message=("run.h5", "{pid}"),
    ),
    C(
        "train-resume-held",
        "writers",
        "train -o run.h5 --resume --epochs 2 -q",
        held(".run.h5.lock"),
        message=("run.h5", "{pid}"),
    ),
    C(
        "train-respelled-held",
        "writers",
        f"train d.h5 -o sub/../run.h5 --overwrite {T}",
        folder("sub"),
        held(".run.h5.lock"),
        message="{pid}",
    ),
    C(
        "sweep-folder-held",
        "writers",
        "sweep spec.toml -o g -q",
        held("g/.sweep.json.lock"),
        message=("g", "{pid}"),
    ),
    C("info-while-held", "writers", "info run.h5", held(".run.h5.lock"), status=0),
    C("evaluate-while-held", "writers", "evaluate run.h5 d.h5", held(".run.h5.lock"), status=0),
    C("plot-while-held", "writers", "plot run.h5 -o p.png", held(".run.h5.lock"), status=0, creates="p.png"),
    C(
        "report-while-held",
        "writers",
        "sweep --report g",
        sweep_folder(),
        held("g/.sweep.json.lock"),
        status=0,
        creates=("g/summary.h5", "g/summary.md"),
    ),
    C(
        "train-takes-over-stale-lock",
        "writers",
        f"train d.h5 -o run.h5 --overwrite {T}",
        text(".run.h5.lock", "{dead}"),
        status=0,
        changes=RUN_OUT,
        removes=".run.h5.lock",
    ),
    # ------------------------------------------------------------------ not regular files
    C(
        "train-data-fifo",
        "special",
        "train ff -o out.h5 -q",
        fifo("ff"),
        message=("ff", "not a regular file"),
    ),
    C(
        "train-data-dev-zero",
        "special",
        "train z -o out.h5 -q",
        symlink("z", "/dev/zero"),
        message="not a regular file",
    ),
    C(
        "train-plugin-fifo",
        "special",
        f"train d.h5 --plugin ff.py {T}",
        fifo("ff.py"),
        message="not a regular file",
    ),
    C("train-resume-fifo", "special", "train -o ff --resume -q", fifo("ff"), message="not a regular file"),
    C("info-fifo", "special", "info ff", fifo("ff"), message=("ff", "not a regular file")),
    C("evaluate-run-fifo", "special", "evaluate ff d.h5", fifo("ff"), message="not a regular file"),
    C("evaluate-data-fifo", "special", "evaluate run.h5 ff", fifo("ff"), message="not a regular file"),
    C("predict-run-fifo", "special", "predict ff d.h5 -o p.csv", fifo("ff"), message="not a regular file"),
    C(
        "predict-csv-fifo",
        "special",
        "predict run.h5 ff.csv -o p.csv",
        fifo("ff.csv"),
        message="not a regular file",
    ),
    C(
        "predict-npy-fifo",
        "special",
        "predict run.h5 ff.npy -o p.csv",
        fifo("ff.npy"),
        message="not a regular file",
    ),
    C("export-fifo", "special", "export ff -o m.npz", fifo("ff"), message="not a regular file"),
    C("plot-fifo", "special", "plot ff -o p.png", fifo("ff"), message="not a regular file"),
    C("sweep-spec-fifo", "special", "sweep ff.toml", fifo("ff.toml"), message="not a regular file"),
    C(
        "sweep-dataset-fifo",
        "special",
        "sweep s.toml -o g -q",
        fifo("ff"),
        spec("s.toml", dataset="ff"),
        message="not a regular file",
    ),
    C(
        "report-grid-fifo",
        "special",
        "sweep --report g",
        folder("g"),
        fifo("g/sweep.json"),
        message="not a regular file",
    ),
    C("csv-fifo", "special", "data csv ff -o x.h5", fifo("ff"), message="not a regular file"),
    C(
        "csv-test-file-fifo",
        "special",
        "data csv in.csv --test-file ff -o x.h5",
        fifo("ff"),
        message="not a regular file",
    ),
    C(
        "csv-dev-zero",
        "special",
        "data csv z -o x.h5",
        symlink("z", "/dev/zero"),
        message="not a regular file",
    ),
    C("npz-fifo", "special", "data npz ff -o x.h5", fifo("ff"), message="not a regular file"),
    C("digits-csv-fifo", "special", "data digits --csv ff -o x.h5", fifo("ff"), message="not a regular file"),
    C(
        "mnist-idx-fifo",
        "special",
        "data mnist mn -o x.h5",
        mnist(fifo_file="train-images-idx3-ubyte.gz"),
        message="not a regular file",
    ),
    C(
        "train-out-fifo",
        "special",
        f"train d.h5 -o ff --overwrite {T}",
        fifo("ff"),
        message=("ff", "not a regular file"),
    ),
    C("train-out-fifo-no-overwrite", "special", f"train d.h5 -o ff {T}", fifo("ff")),
    C(
        "train-out-links-to-dev-null",
        "special",
        f"train d.h5 -o null --overwrite {T}",
        symlink("null", "/dev/null"),
        message="not a regular file",
    ),
    C(
        "train-out-device",
        "special",
        f"train d.h5 -o dev --overwrite {T}",
        device("dev"),
        message="not a regular file",
    ),
    C("train-out-folder", "special", f"train d.h5 -o sub {T}", folder("sub"), message="directory"),
    C(
        "csv-out-fifo",
        "special",
        "data csv in.csv -o ff --overwrite",
        fifo("ff"),
        message="not a regular file",
    ),
    C(
        "teacher-out-dev-null",
        "special",
        "data teacher -o null --overwrite",
        symlink("null", "/dev/null"),
        message="not a regular file",
    ),
    C(
        "digits-out-fifo",
        "special",
        "data digits -o ff --overwrite",
        fifo("ff"),
        message="not a regular file",
    ),
    C(
        "npz-out-device",
        "special",
        "data npz in.npz -o dev --overwrite",
        device("dev"),
        message="not a regular file",
    ),
    C(
        "predict-out-fifo",
        "special",
        "predict run.h5 d.h5 -o p.csv --overwrite",
        fifo("p.csv"),
        message="not a regular file",
    ),
    C(
        "export-out-fifo",
        "special",
        "export run.h5 -o m.npz --overwrite",
        fifo("m.npz"),
        message="not a regular file",
    ),
    C(
        "info-csv-out-fifo",
        "special",
        "info run.h5 --csv ff --overwrite",
        fifo("ff"),
        message="not a regular file",
    ),
    C("plot-out-fifo", "special", "plot run.h5 -o ff.png", fifo("ff.png"), message="not a regular file"),
    C(
        "plot-out-dev-null",
        "special",
        "plot run.h5 -o null.png",
        symlink("null.png", "/dev/null"),
        message="not a regular file",
    ),
    C("sweep-out-fifo", "special", "sweep spec.toml -o ff -q", fifo("ff"), message="ff"),
    C("sweep-out-file", "special", "sweep spec.toml -o d.h5 -q", status=2, message="d.h5"),
    C(
        "reproduce-out-file",
        "special",
        "reproduce lillicrap-linear --quick -q -o d.h5",
        status=2,
        message="d.h5",
    ),
    # ------------------------------------------------------------------ leftovers
    C(
        "train-cleans-old-temp",
        "leftovers",
        f"train d.h5 -o run.h5 --overwrite {T}",
        text(".run.h5.k3j4h5g6.tmp", "half a checkpoint"),
        status=0,
        changes=RUN_OUT,
        removes=".run.h5.k3j4h5g6.tmp",
    ),
    C(
        "train-cleans-dead-writers-temp",
        "leftovers",
        f"train d.h5 -o run.h5 --overwrite {T}",
        text(".run.h5.{dead}@{host}.a1b2c3d4.tmp", "x"),
        status=0,
        changes=RUN_OUT,
        removes=f".run.h5.{DEAD_PID}@{HOST}.a1b2c3d4.tmp",
    ),
    C(
        "resume-cleans-old-temp",
        "leftovers",
        "train -o run.h5 --resume --epochs 2 -q",
        text(".run.h5.zz99yy88.tmp", "x"),
        status=0,
        changes=RUN_OUT,
        removes=".run.h5.zz99yy88.tmp",
    ),
    C(
        "teacher-cleans-dead-writers-temp",
        "leftovers",
        "data teacher -o t.h5 --n-train 50 --n-test 10",
        text(".t.h5.{dead}@{host}.a1b2c3d4.tmp", "x"),
        status=0,
        creates="t.h5",
        removes=f".t.h5.{DEAD_PID}@{HOST}.a1b2c3d4.tmp",
    ),
    C(
        "teacher-keeps-live-writers-temp",
        "leftovers",
        "data teacher -o t.h5 --n-train 50 --n-test 10",
        text(".t.h5.{pid}@{host}.a1b2c3d4.tmp", "x"),
        status=0,
        creates="t.h5",
    ),
    C(
        "info-csv-cleans-dead-writers-temp",
        "leftovers",
        "info run.h5 --csv h.csv",
        text(".h.csv.{dead}@{host}.a1b2c3d4.csv.tmp", "x"),
        status=0,
        creates="h.csv",
        removes=f".h.csv.{DEAD_PID}@{HOST}.a1b2c3d4.csv.tmp",
    ),
    C(
        "export-cleans-dead-writers-temp",
        "leftovers",
        "export run.h5 -o m.npz",
        text(".m.npz.{dead}@{host}.a1b2c3d4.npz", "x"),
        status=0,
        creates="m.npz",
        removes=f".m.npz.{DEAD_PID}@{HOST}.a1b2c3d4.npz",
    ),
    C(
        "report-cleans-dead-writers-temp",
        "leftovers",
        "sweep --report g",
        sweep_folder(),
        text("g/.summary.md.{dead}@{host}.a1b2c3d4.tmp", "x"),
        status=0,
        creates=("g/summary.h5", "g/summary.md"),
        removes=f"g/.summary.md.{DEAD_PID}@{HOST}.a1b2c3d4.tmp",
    ),
    C(
        "sweep-missing-dataset-leaves-no-folder",
        "leftovers",
        "sweep s.toml -o g -q",
        spec("s.toml", dataset="no.h5"),
        message="no.h5",
    ),
    C(
        "sweep-name-clash-leaves-no-folder",
        "leftovers",
        "sweep s.toml -o g -q",
        spec("s.toml", axes='rule = ["fa/x", "fa_x"]'),
        message="name",
    ),
    C(
        "sweep-default-folder-not-left",
        "leftovers",
        "sweep s.toml -q",
        spec("s.toml", dataset="no.h5"),
        message="no.h5",
    ),
    C(
        "sweep-keeps-existing-empty-folder",
        "leftovers",
        "sweep s.toml -o g -q",
        folder("g"),
        spec("s.toml", dataset="no.h5"),
        message="no.h5",
    ),
    # ------------------------------------------------------------------ permissions
    C(
        "train-follows-umask-022",
        "permissions",
        f"train d.h5 -o out.h5 {T}",
        status=0,
        creates="out.h5",
        check=modes({"out.h5": 0o644}),
    ),
    C(
        "train-follows-umask-002",
        "permissions",
        f"train d.h5 -o out.h5 {T}",
        status=0,
        creates="out.h5",
        umask=0o002,
        check=modes({"out.h5": 0o664}),
    ),
    C(
        "train-follows-umask-077",
        "permissions",
        f"train d.h5 -o out.h5 {T}",
        status=0,
        creates="out.h5",
        umask=0o077,
        check=modes({"out.h5": 0o600}),
    ),
    C(
        "resume-follows-umask",
        "permissions",
        "train -o run.h5 --resume --epochs 2 -q",
        status=0,
        changes=RUN_OUT,
        check=modes({"run.h5": 0o644}),
    ),
    C(
        "sweep-follows-umask",
        "permissions",
        "sweep spec.toml -o g -q -w 1",
        status=0,
        creates=("g", "g/seed-0.h5", "g/sweep.json", "g/summary.h5", "g/summary.md"),
        check=modes({"g": 0o755, "g/*": 0o644}),
    ),
    C(
        "teacher-follows-umask",
        "permissions",
        "data teacher -o t.h5 --n-train 50 --n-test 10",
        status=0,
        creates="t.h5",
        umask=0o027,
        check=modes({"t.h5": 0o640}),
    ),
    C(
        "info-csv-follows-umask",
        "permissions",
        "info run.h5 --csv h.csv",
        status=0,
        creates="h.csv",
        check=modes({"h.csv": 0o644}),
    ),
    C(
        "export-follows-umask",
        "permissions",
        "export run.h5 -o m.npz",
        status=0,
        creates="m.npz",
        check=modes({"m.npz": 0o644}),
    ),
    C(
        "predict-follows-umask",
        "permissions",
        "predict run.h5 d.h5 -o p.csv",
        status=0,
        creates="p.csv",
        check=modes({"p.csv": 0o644}),
    ),
    C(
        "plot-follows-umask",
        "permissions",
        "plot run.h5 -o p.png",
        status=0,
        creates="p.png",
        check=modes({"p.png": 0o644}),
    ),
    # ------------------------------------------------------------------ names that become paths
    C(
        "sweep-option-keys-stay-inside",
        "names",
        "sweep s.toml -o g -q -w 1",
        spec("s.toml", axes='rule_options = [{"../../../../evil" = 1.0}, {"a/b" = 2.0}]'),
        message="2 of 2 runs failed",
        may_create=SWEEP,
        check=modes({"g/*.failed.json": 0o644}),
    ),
    C(
        "sweep-long-names-are-bounded",
        "names",
        "sweep s.toml -o g -q -w 1",
        spec("s.toml", axes=f'rule = ["{"r" * 300}", "{"r" * 299}"]'),
        message="2 of 2 runs failed",
        may_create=SWEEP,
        check=no_name_longer_than(160),
    ),
    C(
        "sweep-names-differing-in-case-clash",
        "names",
        "sweep s.toml -o g -q",
        spec("s.toml", axes='rule = ["FA", "fa"]'),
        message="name",
    ),
    C(
        "sweep-sanitised-names-clash",
        "names",
        "sweep s.toml -o g -q",
        spec("s.toml", axes='rule_options = [{"a/b" = 1.0}, {"a_b" = 1.0}]'),
        message="name",
    ),
    # ------------------------------------------------------------------ sizes taken on trust
    C(
        "dataset-declares-1e9-classes",
        "sizes",
        f"train nc.h5 -o out.h5 {T}",
        h5copy("nc.h5", "d.h5", {"n_classes": np.int64(10**9)}),
        message=("nc.h5", "n_classes", "memory"),
    ),
    C(
        "run-declares-huge-output-layer",
        "sizes",
        "info big.h5",
        h5copy("big.h5", "run.h5", {"sizes": np.array([64, 4, 10**9])}),
        message="big.h5",
    ),
    C(
        "run-declares-huge-hidden-layer",
        "sizes",
        "evaluate big.h5 d.h5",
        run_config("big.h5", hidden=[10**9]),
        h5copy("big.h5", "big.h5", {"sizes": np.array([64, 10**9, 10])}),
        message=("big.h5", "memory"),
    ),
    C(
        "batch-size-1e12",
        "sizes",
        "train d.h5 -o out.h5 --batch-size 1000000000000 --epochs 1 --hidden 4 -q",
        message=("batch", "memory"),
    ),
    C(
        "hidden-1e9",
        "sizes",
        "train d.h5 --hidden 1000000000 --epochs 1 -q",
        message=("1000000000", "memory"),
    ),
    C(
        "sweep-grid-1e9-points",
        "sizes",
        "sweep g9.toml -o g -q",
        grid_spec("g9.toml", 9, 10),
        message="g9.toml",
    ),
    C(
        "csv-gzip-bomb",
        "sizes",
        "data csv bomb.csv.gz -o x.h5",
        made("bomb.csv.gz", gzip_bomb(b"0,0,0,0,1\n" * 1_000_000, 40)),
        message=("bomb.csv.gz", "memory"),
        env={"FASTFA_MAX_MEMORY": "64M"},
    ),
    C(
        "csv-gzip-bomb-without-newline",
        "sizes",
        "data csv nl.csv.gz -o x.h5",
        made("nl.csv.gz", gzip_bomb(b"0," * 5_000_000, 40)),
        message=("nl.csv.gz", "memory"),
        env={"FASTFA_MAX_MEMORY": "64M"},
    ),
    C(
        "npz-member-declares-huge-shape",
        "sizes",
        "data npz huge.npz -o x.h5",
        made("huge.npz", npz_with_x(npy_header((10**9, 1000)) + bytes(800))),
        message=("huge.npz", "x_train"),
    ),
    C(
        "npz-bomb",
        "sizes",
        "data npz bomb.npz -o x.h5",
        made("bomb.npz", npz_bomb),
        message=("bomb.npz", "x_train", "memory"),
        env={"FASTFA_MAX_MEMORY": "64M"},
    ),
    C(
        "dataset-declares-1e9-rows",
        "sizes",
        f"train rows.h5 {T}",
        made("rows.h5", sparse_rows),
        message=("rows.h5", "1000000000"),
    ),
    C(
        "predict-csv-gzip-bomb",
        "sizes",
        "predict run.h5 bomb.csv.gz -o p.csv",
        made("bomb.csv.gz", gzip_bomb((b"0," * 63 + b"0\n") * 100_000, 4)),
        message=("bomb.csv.gz", "memory"),
        env={"FASTFA_MAX_MEMORY": "64M"},
    ),
    C(
        "predict-npy-declares-huge-shape",
        "sizes",
        "predict run.h5 huge.npy -o p.csv",
        made("huge.npy", lambda p: p.write_bytes(npy_header((10**9, 64)) + bytes(800))),
        message=("huge.npy", "declares", "1000000000"),
    ),
    C(
        "mnist-idx-gzip-bomb",
        "sizes",
        "data mnist mb -o m.h5",
        idx_bomb("mb"),
        message=("train-images-idx3-ubyte", "memory"),
        env={"FASTFA_MAX_MEMORY": "64M"},
    ),
    # ------------------------------------------------------------------ silent garbage
    C(
        "lr-1e30-blows-up",
        "garbage",
        "train d.h5 -o out.h5 --lr 1e30 --epochs 2 --hidden 4 -q",
        message=("diverged", "--lr"),
    ),
    C(
        "init-1e30-blows-up",
        "garbage",
        "train d.h5 -o out.h5 --init 1e30 --epochs 2 --hidden 4 -q",
        message=("diverged", "--init"),
    ),
    C(
        "high-but-sane-lr-trains",
        "garbage",
        "train d.h5 -o out.h5 --lr 0.5 --epochs 2 --hidden 4 -q",
        status=0,
        creates="out.h5",
    ),
    C(
        "evaluate-nan-weights",
        "garbage",
        "evaluate nan.h5 d.h5",
        h5copy("nan.h5", "run.h5", edit=lambda f: f["model/W0"].__setitem__(Ellipsis, np.nan)),
        message=("nan.h5", "W0"),
    ),
    C(
        "resume-negative-epoch",
        "garbage",
        "train -o neg.h5 --resume --epochs 2 -q",
        h5copy("neg.h5", "run.h5", {"epoch": np.int64(-5)}),
        message=("neg.h5", "epoch"),
    ),
    C(
        "info-epoch-beyond-history",
        "garbage",
        "info ep.h5",
        h5copy("ep.h5", "run.h5", {"epoch": np.int64(7)}),
        message=("ep.h5", "epoch"),
    ),
    C(
        "resume-negative-step",
        "garbage",
        "train -o st.h5 --resume --epochs 2 -q",
        h5copy("st.h5", "run.h5", {"step": np.int64(-1)}),
        message=("st.h5", "step"),
    ),
    C(
        "resume-bogus-progress",
        "garbage",
        "train -o pr.h5 --resume --epochs 2 -q",
        h5copy("pr.h5", "run.h5", {"progress": '{"rows_done": -40, "loss_sum": "x"}'}),
        message=("pr.h5", "progress"),
    ),
    C(
        "evaluate-bogus-rng-state",
        "garbage",
        "evaluate rng.h5 d.h5",
        h5copy("rng.h5", "run.h5", {"rng_state": '{"bit_generator": "MT19937", "state": 3}'}),
        message=("rng.h5", "rng_state"),
    ),
    # ------------------------------------------------------------------ plugins
    C(
        "plugin-init-feedback-raises",
        "plugins",
        f"train d.h5 --plugin bad.py --rule bad-fa -o out.h5 {T}",
        plugin_file("bad.py", "bad-fa", init="broken_init"),
        message=("bad-fa", "init_feedback", "divided by zero"),
    ),
    C(
        "plugin-after-batch-raises",
        "plugins",
        f"train d.h5 --plugin hook.py --rule hook-fa -o out.h5 {T}",
        plugin_file("hook.py", "hook-fa", hook="broken_hook"),
        message=("hook-fa", "after_batch", "hook failed"),
    ),
    C(
        "plugin-after-batch-raises-on-resume-keeps-checkpoint",
        "plugins",
        "train -o hr.h5 --plugin hook.py --resume --epochs 2 -q",
        plugin_file("hook.py", "hook-fa", hook="broken_hook"),
        run_config("hr.h5", rule="hook-fa"),
        message=("hook-fa", "after_batch", "hr.h5"),
    ),
    C(
        "info-run-of-missing-plugin",
        "plugins",
        "info pr.h5",
        run_config("pr.h5", rule="half-fa"),
        message=("pr.h5", "half-fa", "--plugin"),
        absent="corrupt",
    ),
    C(
        "info-run-with-its-plugin",
        "plugins",
        "info pr.h5 --plugin plugin.py",
        run_config("pr.h5", rule="half-fa"),
        status=0,
    ),
    C(
        "evaluate-run-of-missing-plugin",
        "plugins",
        "evaluate pr.h5 d.h5",
        run_config("pr.h5", rule="half-fa"),
        message=("pr.h5", "half-fa", "--plugin"),
        absent="corrupt",
    ),
    C(
        "evaluate-run-with-its-plugin",
        "plugins",
        "evaluate pr.h5 d.h5 --plugin plugin.py",
        run_config("pr.h5", rule="half-fa"),
        status=0,
    ),
    C(
        "resume-run-of-missing-plugin",
        "plugins",
        "train -o pr.h5 --resume --epochs 2 -q",
        run_config("pr.h5", rule="half-fa"),
        message=("pr.h5", "half-fa", "--plugin"),
        absent="corrupt",
    ),
    # ------------------------------------------------------------------ tracebacks and library text
    C("seed-2-to-the-63", "tracebacks", f"train d.h5 --seed 9223372036854775808 {T}", message="seed"),
    C("seed-1e20", "tracebacks", f"train d.h5 --seed 99999999999999999999 {T}", message="seed"),
    C(
        "plugin-option-with-list-default",
        "tracebacks",
        f"train d.h5 --plugin lp.py --rule list-fa --rule-opt widths=1,x {T}",
        plugin_file("lp.py", "list-fa", options="{'widths': [1, 2]}"),
        message=("widths", "list-fa"),
    ),
    C(
        "csv-gzip-corrupt",
        "tracebacks",
        "data csv bad.csv.gz -o x.h5",
        made("bad.csv.gz", lambda p: p.write_bytes(_corrupt_gzip())),
        message=("bad.csv.gz", "gzip"),
        absent=("zlib", "Error -3"),
    ),
    C(
        "csv-gzip-truncated",
        "tracebacks",
        "data csv cut.csv.gz -o x.h5",
        made("cut.csv.gz", lambda p: p.write_bytes(_csv_gzip()[:-600])),
        message=("cut.csv.gz", "truncated"),
        absent="end-of-stream",
    ),
    C(
        "hdf5-external-link",
        "tracebacks",
        f"train ext.h5 {T}",
        made("ext.h5", linked_out("link")),
        message="link",
    ),
    C(
        "hdf5-external-link-info",
        "tracebacks",
        "info ext.h5",
        made("ext.h5", linked_out("link")),
        message="link",
    ),
    C(
        "hdf5-external-raw-storage",
        "tracebacks",
        f"train raw.h5 {T}",
        made("raw.h5", linked_out("raw")),
        may_create="x.bin",
        message=("raw.h5", "train/x"),
    ),
    C(
        "hdf5-virtual-dataset",
        "tracebacks",
        f"train vds.h5 {T}",
        made("vds.h5", linked_out("virtual")),
        message=("vds.h5", "train/x"),
    ),
    C(
        "predict-csv-gzip-corrupt",
        "tracebacks",
        "predict run.h5 bad.csv.gz -o p.csv",
        made("bad.csv.gz", lambda p: p.write_bytes(_corrupt_gzip())),
        message=("bad.csv.gz", "gzip"),
        absent=("zlib", "Error -3"),
    ),
    C(
        "run-file-external-link",
        "tracebacks",
        "info ext.h5",
        h5copy("src.h5", "run.h5"),
        h5copy("ext.h5", "run.h5", edit=run_linked_out("link")),
        message=("ext.h5", "external link"),
    ),
    C(
        "run-file-virtual-dataset",
        "tracebacks",
        "evaluate vds.h5 d.h5",
        h5copy("src.h5", "run.h5"),
        h5copy("vds.h5", "run.h5", edit=run_linked_out("virtual")),
        message=("vds.h5", "optimizer/state", "virtual"),
    ),
    C(
        "hdf5-soft-link-to-another-split",
        "tracebacks",
        f"train alias.h5 {T}",
        h5copy("alias.h5", "d.h5", edit=soft_linked("alias")),
        message=("alias.h5", "'train'", "soft link"),
    ),
    C(
        "hdf5-soft-link-loop",
        "tracebacks",
        "info loop.h5",
        h5copy("loop.h5", "d.h5", edit=soft_linked("loop")),
        message=("loop.h5", "train/x", "soft link"),
    ),
    C("info-into-closed-pipe", "tracebacks", "info run.h5", status=1, stdout="closed-pipe"),
    C(
        "csv-5000-text-classes",
        "tracebacks",
        "data csv cls.csv -o c.h5",
        text("cls.csv", "".join(f"{i},{i % 7},class{i:05d}\n" for i in range(5000))),
        message=("cls.csv", "class"),
        absent="synchronously",
    ),
    C(
        "csv-ragged-quoted-line",
        "tracebacks",
        "data csv q.csv -o q.h5",
        text("q.csv", "1,2,a\n3,4,b\n" * 20 + '5,"6\n7",c\n'),
        message="q.csv",
        absent=("usecols", "dtype", "float64", "quotechar"),
    ),
]


def _csv_gzip():
    return gzip.compress(b"".join(b"%d,%d,%d,%d,%d\n" % (i, i + 1, i + 2, i + 3, i % 3) for i in range(2000)))


def _corrupt_gzip():
    data = bytearray(_csv_gzip())
    data[len(data) // 2 : len(data) // 2 + 20] = b"x" * 20
    return bytes(data)


def _bundled():
    from fastfa.datasets import default_dataset_path

    return str(default_dataset_path())


def _prepare(case, shared, root):
    work = root / "a" / "b" / "c" / "work"  # room for escapes: everything under root is watched
    work.mkdir(parents=True)
    for item in shared.iterdir():
        if item.is_file():
            shutil.copyfile(item, work / item.name)
    cleanups = [cleanup for setup in case.setup if callable(cleanup := setup(work))]
    return work, cleanups


def _expect(case, work, result, before, after):
    """Everything the case requires of ``result`` and the folder (``before`` / ``after`` snapshots)."""
    command = " ".join(case.args)
    where = f"[{case.id}] fastfa {command} -> {result.status}\nstdout: {result.out}\nstderr: {result.err}"
    assert result.status != "timeout", f"{where}\ntimed out after {TIMEOUT:.0f} s"
    assert "Traceback" not in result.err + result.out, where
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.status == case.status, where
    if case.stdout == "closed-pipe":
        assert result.err == "", f"{where}\nnot quiet"
    elif case.status:
        assert len(lines) == 1 and len(result.err.splitlines()) == 1, f"{where}\nnot one line on stderr"
        assert lines[0].startswith("Error: "), where
        for fragment in case.message:
            fragment = fragment.format(pid=os.getpid(), work=work)
            assert fragment.lower() in lines[0].lower(), f"{where}\nno {fragment!r} in the error"
        for fragment in case.absent:
            assert fragment.lower() not in lines[0].lower(), f"{where}\n{fragment!r} in the error"
    else:
        assert len(lines) <= 1, f"{where}\nmore than one line on stderr"
    relative = lambda rel: os.path.relpath(os.path.join(root_of(work), rel), work)  # noqa: E731
    new = sorted(relative(p) for p in set(after) - set(before))
    gone = sorted(relative(p) for p in set(before) - set(after))
    changed = sorted(relative(p) for p in set(before) & set(after) if before[p] != after[p])
    allowed = case.creates + case.may_create
    assert not [p for p in new if not matches(p, allowed)], f"{where}\nleft behind: {new}"
    for pattern in case.creates:
        assert any(matches(p, (pattern,)) for p in new), f"{where}\n{pattern} was not written"
    assert sorted(gone) == sorted(case.removes), f"{where}\nremoved: {gone}, expected {list(case.removes)}"
    assert not [p for p in changed if not matches(p, case.changes)], f"{where}\nchanged: {changed}"
    if case.check is not None:
        case.check(work)


def root_of(work):
    return work.parents[3]


def _substitute(args, work):
    return [a.replace("{work}", str(work)) for a in args]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}:{c.id}" for c in CASES])
def test_hostile_input(case, shared, tmp_path):
    work, cleanups = _prepare(case, shared, tmp_path / "root")
    try:
        before = snapshot(root_of(work))
        args = _substitute(case.args, work)
        result = fastfa(args, work, tmp_path / "io", umask=case.umask, env=case.env, stdout=case.stdout)
        after = snapshot(root_of(work))
    finally:
        for cleanup in cleanups:
            cleanup()
    _expect(case, work, result, before, after)


def test_corpus_is_large_and_names_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(CASES) >= 130
    kinds = {"data-loss", "writers", "special", "leftovers", "permissions", "names"}
    assert {c.kind for c in CASES} == kinds | {"sizes", "garbage", "plugins", "tracebacks"}


# ------------------------------------------------------------------------------------ concurrency


def _lock_and_temp_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith((".tmp", ".lock")))


def _wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.01)


def test_two_writers_of_one_run_file(shared, tmp_path):
    """A second writer of a run file fails at once, naming the file and the first writer; readers
    meanwhile read a valid file; the first writer's run is the one in the file."""
    from fastfa.runs import load_run

    work = tmp_path / "work"
    work.mkdir()
    shutil.copyfile(shared / "d.h5", work / "d.h5")
    io = tmp_path / "io"
    first = Command(["train", "d.h5", "-o", "run.h5", "--epochs", "100000", "--hidden", "16", "-q"], work, io)
    try:
        _wait_until(lambda: (work / "run.h5").exists() or first.poll() is not None, 60, "no first checkpoint")
        assert first.poll() is None, first.wait().err
        second = fastfa(["train", "d.h5", "-o", "run.h5", "--overwrite", *TRAIN], work, io, timeout=30)
        assert second.status == 1 and second.seconds < 20, second
        lines = second.err.splitlines()
        assert len(lines) == 1 and "run.h5" in lines[0] and str(first.pid) in lines[0], second.err
        for _ in range(20):  # every checkpoint written meanwhile is a whole run file
            trainer, _history, _meta = load_run(work / "run.h5")
            assert trainer.arch.sizes[1] == 16
        reader = fastfa(["info", "run.h5"], work, io)
        assert reader.status == 0 and "Traceback" not in reader.err, reader
        assert first.poll() is None, "the first writer stopped"
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGTERM)
    stopped = first.wait(60)
    assert stopped.status == 143, stopped
    assert load_run(work / "run.h5")[0].arch.sizes[1] == 16
    assert _lock_and_temp_files(work) == []


def test_two_sweeps_into_one_folder(shared, tmp_path):
    """A second sweep into a folder a sweep is writing fails at once; ``--report`` works meanwhile;
    the folder ends holding the first sweep only."""
    import json

    work = tmp_path / "work"
    work.mkdir()
    shutil.copyfile(shared / "d.h5", work / "d.h5")
    (work / "a.toml").write_text('dataset = "d.h5"\n[base]\nhidden = [4]\nepochs = 3\n[axes]\nseed = [0]\n')
    (work / "b.toml").write_text(
        'dataset = "d.h5"\n[base]\nhidden = [8]\nepochs = 1\n[axes]\nrule = ["bp"]\n'
    )
    io = tmp_path / "io"
    first = Command(["sweep", "a.toml", "-o", "g", "-q", "-w", "1"], work, io)
    _wait_until(lambda: (work / "g" / "sweep.json").exists() or first.poll() is not None, 60, "no sweep.json")
    second = fastfa(["sweep", "b.toml", "-o", "g", "-q"], work, io, timeout=30)
    report = fastfa(["sweep", "--report", "g"], work, io, timeout=60)
    done = first.wait(120)
    assert second.status == 1 and second.seconds < 20, second
    assert len(second.err.splitlines()) == 1 and "g" in second.err and str(first.pid) in second.err, (
        second.err
    )
    assert report.status == 0 and "Traceback" not in report.err, report
    assert done.status == 0, done
    grid = json.loads((work / "g" / "sweep.json").read_text())
    assert [run["name"] for run in grid["runs"]] == ["seed-0"]
    assert sorted(p.name for p in (work / "g").iterdir()) == [
        "seed-0.h5",
        "summary.h5",
        "summary.md",
        "sweep.json",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_during_checkpoint_write_then_rerun_leaves_no_temp_file(shared, tmp_path):
    """SIGKILL while the second checkpoint is half written; a reader still sees the first; the rerun
    (--resume) cleans the dead writer's temporary file and its lock."""
    from fastfa.runs import load_run

    work = tmp_path / "work"
    work.mkdir()
    shutil.copyfile(shared / "d.h5", work / "d.h5")
    io = tmp_path / "io"
    args = ["train", "d.h5", "-o", "run.h5", "--epochs", "3", "--hidden", "4", "-q"]
    writer = Command(args, work, io, pause=("fastfa.runs:Selection.write", 2))

    def stopped():
        try:
            return Path(f"/proc/{writer.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
        except FileNotFoundError:
            return True

    _wait_until(stopped, 60, "the writer did not reach its second checkpoint")
    assert writer.poll() is None, writer.wait().err
    temps = [p.name for p in work.iterdir() if p.name.startswith(".run.h5.") and p.name.endswith(".tmp")]
    assert len(temps) == 1, sorted(p.name for p in work.iterdir())
    assert load_run(work / "run.h5")[0].epoch == 1  # readers see the last whole checkpoint
    os.kill(writer.pid, signal.SIGKILL)
    assert writer.wait(30).status == -signal.SIGKILL
    assert (work / temps[0]).exists()
    rerun = fastfa(["train", "-o", "run.h5", "--resume", "-q"], work, io)
    assert rerun.status == 0 and rerun.err == "", rerun
    assert load_run(work / "run.h5")[0].epoch == 3
    assert _lock_and_temp_files(work) == []


# ------------------------------------------------------------------------------ file names (unit)


@pytest.mark.parametrize(
    "point",
    [
        {"rule_options": {"../../x": 1}},
        {"rule_options": {"a/b": 1, "/": 2}},
        {"rule": "/etc/passwd"},
        {"rule": ".."},
        {"rule": "x" * 1000},
        {"hidden": [1] * 500},
        {"rule": "a\x00b\nc"},
        {"rule_options": {"k" * 400: "v" * 400}},
    ],
)
def test_run_names_are_safe_file_names(point):
    from fastfa.sweep.spec import run_name

    name = run_name(point)
    assert "/" not in name and "\x00" not in name and name not in (".", "..") and not name.startswith(".")
    assert 0 < len(name) <= 160


def test_long_run_names_stay_distinct():
    from fastfa.sweep.spec import run_name

    assert run_name({"rule": "x" * 300 + "a"}) != run_name({"rule": "x" * 300 + "b"})
    assert run_name({"rule": "fa", "seed": 1}) == "rule-fa_seed-1"  # short names do not change


# ------------------------------------------------------------------------- in-process (unit)


def test_full_disk_while_writing_a_dataset_leaves_one_line_and_no_temp_file(tmp_path, monkeypatch):
    """ENOSPC in the middle of ``fastfa data``'s write: one line, nothing written, no temporary file."""
    import errno

    from click.testing import CliRunner

    import fastfa.datasets.writer as writer
    from fastfa.cli import main

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_write_split", full)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["data", "teacher", "-o", "t.h5", "--n-train", "50", "--n-test", "10"])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "Error: t.h5: cannot write (no space left on the device); nothing was written"
    ]
    assert list(tmp_path.iterdir()) == []


def test_memory_error_anywhere_is_one_line(monkeypatch):
    """The last resort: a MemoryError that gets past every size check ends as one line."""
    from click.testing import CliRunner

    import fastfa.rules
    from fastfa.cli import main

    def exhausted():
        raise MemoryError

    monkeypatch.setattr(fastfa.rules, "available_rules", exhausted)
    result = CliRunner().invoke(main, ["rules"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: out of memory (a smaller model, batch or dataset may help)"]


@pytest.mark.parametrize(
    "args",
    [
        ["data", "teacher", "-o", "out.h5", "--n-train", "20000", "--n-test", "100"],
        ["train", "--hidden", "300", "--epochs", "1", "-o", "run.h5"],
    ],
    ids=["dataset", "run-file"],
)
def test_a_write_the_disk_refuses_is_one_line_and_leaves_nothing(args, tmp_path):
    """A real failed write, not an injected one: a 100 KB file-size limit (RLIMIT_FSIZE) makes the
    kernel refuse the write as a full disk would. HDF5 meeting that inside its own writes used to
    print destructor tracebacks and then crash; the file is now built in memory and written by
    Python (files.hdf5_in_memory), so the command fails in one line and leaves no file."""
    import resource
    import subprocess

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    result = subprocess.run(
        [sys.executable, "-m", "fastfa", *args], cwd=tmp_path, capture_output=True, text=True,
        preexec_fn=limit, timeout=600,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and "cannot write" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_predictions_larger_than_the_free_space_are_refused_before_writing(tmp_path, monkeypatch):
    """Predictions stream through HDF5 or text (they may not fit in memory), so the free space is
    checked first (files.check_space)."""
    import shutil

    from fastfa import files

    usage = shutil._ntuple_diskusage(10**9, 10**9 - 5000, 5000)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage)
    with pytest.raises(files.FileSafetyError, match="needs about .* free; nothing was written"):
        files.check_space(tmp_path / "p.csv", 6000)
    files.check_space(tmp_path / "p.csv", 4000)
    assert list(tmp_path.iterdir()) == []
