"""File safety: the checks and writes every fastfa command that reads or writes files goes through.

- **Inputs are regular files** (:func:`check_regular`): a FIFO would block the reader forever and a
  device such as ``/dev/zero`` would never end, so nothing else is opened.
- **Outputs** (:func:`check_output`) are absent or regular files, and never one of the command's
  inputs -- the same file, however it is named: through ``..``, a symbolic link or a hard link.
- **One writer per output** (:func:`hold`): whoever writes a run file or a sweep folder holds an
  advisory lock, ``.NAME.lock`` beside the file (``fcntl.flock``, released by the kernel when the
  process ends, however it ends); a second writer fails at once with one line naming the file and
  the holder's process id. Readers take no lock: writes are atomic, so they never see a broken file.
- **Atomic writes** (:func:`atomic_path`, :func:`atomic_text`): a temporary file
  ``.NAME.PID@HOST.RANDOM<suffix>`` in the output's folder, then :func:`os.replace`. A writer killed
  mid-write leaves its temporary file behind; the next write of the same output removes those
  whose writer is dead (and, when it holds the output's lock, those of older fastfa versions).
- **Permissions**: new files follow the umask (``0o666 & ~umask``), like any file a program creates.

On platforms without :mod:`fcntl` the lock is a no-op; everything else works the same.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import stat
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

#: Longest part of an output's name kept in its temporary file's name (file names stop at 255 bytes).
TEMP_NAME_CHARS = 120
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:16]
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}
_held = {}  # lock file path -> [fd, depth]: the locks this process holds


class FileSafetyError(ValueError):
    """A path cannot be read or written safely; the message is one line naming it."""


class OutputBusyError(FileSafetyError):
    """Another process holds the output's lock (:func:`hold`)."""


def _kind(mode):
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _mode(path, verb):
    """``path``'s ``st_mode`` (symbolic links followed), None when it does not exist;
    :class:`FileSafetyError` ("cannot be VERB") when it cannot be looked at."""
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise FileSafetyError(f"{path}: cannot be {verb} ({exc.strerror or exc})") from None


def check_regular(path, directories=False):
    """Raise :class:`FileSafetyError` when ``path`` exists and is not a regular file.

    Symbolic links are followed. A missing path passes (the caller says "no such file" its own
    way), and so does a folder when ``directories`` is true.
    """
    mode = _mode(path, "read")
    if mode is None or stat.S_ISREG(mode) or (directories and stat.S_ISDIR(mode)):
        return
    raise FileSafetyError(f"{path}: not a regular file ({_kind(mode)})")


def is_regular(path):
    """Whether ``path`` is a regular file (symbolic links followed)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def same_file(a, b):
    """Whether paths ``a`` and ``b`` both exist and are one file (same device and inode)."""
    try:
        first, second = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def check_output(out, inputs=()):
    """Refuse an output that exists and is not a regular file, or that is one of ``inputs``.

    A folder is left to the caller (each command says what to give instead). ``inputs`` are
    paths (``None`` entries are skipped); one that is the same file as ``out`` -- through any
    name -- is refused, since writing ``out`` would destroy it.
    """
    mode = _mode(out, "checked")
    if mode is None:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise FileSafetyError(f"{out}: not a regular file ({_kind(mode)}); refusing to replace it")
    for source in inputs:
        if source is not None and same_file(out, source):
            named = "" if os.path.abspath(source) == os.path.abspath(out) else f" ({source})"
            raise FileSafetyError(f"{out}: is an input of this command{named}; write elsewhere")


# ------------------------------------------------------------------------------------ the lock


def lock_path(path):
    """The lock file of output ``path``: ``.NAME.lock`` in its folder."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _holder(fd):
    """``" (pid N)"`` or ``" (pid N on HOST)"`` from a lock file's content, or ``""``."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        return ""
    if not text or not text[0].isdigit():
        return ""
    host = f" on {text[1]}" if len(text) > 1 and text[1] != _HOST else ""
    return f" (pid {text[0]}{host})"


@contextlib.contextmanager
def hold(path, what="output", label=None):
    """Hold the advisory lock of output ``path`` (a run file; a sweep folder's ``sweep.json``).

    Fails at once with :class:`OutputBusyError` -- one line naming ``path`` and the holder's
    process id (``label``, default ``path``, names it; ``what`` says what it is) -- when another
    process holds it. Reentrant within a process. The lock file is
    removed when the block ends; one left by a killed writer is taken over (the kernel released
    its lock). Without :mod:`fcntl` this does nothing.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock = lock_path(path)
    key = os.path.join(os.path.realpath(lock.parent), lock.name)
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(lock, path if label is None else label, what)
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still locked, so no other writer can hold an unlinked file
        os.close(fd)


def _acquire(lock, path, what):
    while True:
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(lock, flags, 0o666)
        except OSError as exc:
            raise FileSafetyError(
                f"{path}: folder {lock.parent} is not writable ({exc.strerror or exc})"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileSafetyError(f"{lock}: not a regular file; remove it to write {path}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputBusyError(
                    f"{path}: another fastfa process{holder} is writing this {what}; "
                    "wait for it to end or write elsewhere"
                ) from None
            raise FileSafetyError(f"{path}: cannot lock {lock.name} ({exc.strerror or exc})") from None
        try:  # the holder may have removed the file between our open and flock: lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {_HOST}\n".encode())
    return fd


def holds(path):
    """Whether this process holds the lock of output ``path`` (:func:`hold`)."""
    lock = lock_path(path)
    return os.path.join(os.path.realpath(lock.parent), lock.name) in _held


# ------------------------------------------------------------------------------ atomic writes


def _temp_prefix(path):
    return f".{Path(path).name[:TEMP_NAME_CHARS]}."


_NEW_TEMP = re.compile(r"(\d+)@([A-Za-z0-9-]*)\.[0-9a-f]{8}(\.[A-Za-z0-9.]*)?")
_OLD_TEMP = re.compile(r"[A-Za-z0-9_]{8}(\.[A-Za-z0-9.]*)?|[0-9a-f]{12}\.tmp")


def _alive(pid):
    """Whether process ``pid`` (of this host) exists; ``True`` where that cannot be asked."""
    if os.name == "nt":  # pragma: no cover (os.kill there would end the process)
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number no process can have
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_temps(path):
    """Remove the temporary files of output ``path`` that dead writers left (:func:`atomic_path`).

    A temporary file names its writer (``.NAME.PID@HOST.RANDOM...``); one of this host whose
    process is gone is removed. When this process holds the output's lock (:func:`hold`) no other
    writer can be at work, and temporary files of older fastfa versions (``.NAME.RANDOM.tmp``)
    go as well. Returns the names removed.
    """
    path = Path(path)
    folder, prefix = path.parent if str(path.parent) else Path("."), _temp_prefix(path)
    locked = holds(path) and len(path.name) <= TEMP_NAME_CHARS
    removed = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        rest = name[len(prefix) :]
        match = _NEW_TEMP.fullmatch(rest)
        if match:
            stale = match[2] == _HOST and not _alive(int(match[1]))
        else:
            stale = locked and _OLD_TEMP.fullmatch(rest) is not None
        if stale and not os.path.islink(folder / name) and is_regular(folder / name):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
                removed.append(name)
    return removed


def _create_temp(path, suffix):
    """Create an empty temporary file for ``path`` (mode ``0o666 & ~umask``); return its path."""
    folder = path.parent if str(path.parent) else Path(".")
    while True:
        name = f"{_temp_prefix(path)}{os.getpid()}@{_HOST}.{secrets.token_hex(4)}{suffix}"
        tmp = folder / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path in ``path``'s folder; when the block ends without error, move it to
    ``path`` (:func:`os.replace`).

    The temporary file exists (empty) when the block starts, with mode ``0o666 & ~umask``;
    writers that open it for writing keep that mode. If the block raises it is removed and
    ``path`` is untouched. Stale temporary files of ``path`` are removed first
    (:func:`clean_temps`); an existing ``path`` that is not a regular file is refused.
    """
    path = Path(path)
    check_output(path)
    if path.is_dir():
        raise FileSafetyError(f"{path}: is a directory")
    clean_temps(path)
    tmp = _create_temp(path, suffix)
    try:
        yield str(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_space(path, nbytes):
    """Refuse to write about ``nbytes`` to ``path`` when its file system has less room than that
    (one line, before anything is written; for writers that stream, such as predictions)."""
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder if str(folder) else ".").free
    except OSError:
        return
    if nbytes > free:
        from fastfa.limits import format_bytes

        raise FileSafetyError(
            f"{path}: needs about {format_bytes(nbytes)} but its device has {format_bytes(free)} free; "
            "nothing was written"
        )


def write_problem(exc):
    """A short reason for a failed write (``OSError`` ``exc``): no space, over quota, or the
    system's words."""
    text = " ".join(str(exc).split())
    if exc.errno == errno.ENOSPC or "errno = 28" in text or "No space left" in text:
        return "no space left on the device"
    if exc.errno == errno.EDQUOT or "errno = 122" in text:
        return "disk quota exceeded"
    return exc.strerror or text


@contextlib.contextmanager
def hdf5_in_memory(tmp):
    """Yield an HDF5 file built in memory; when the block ends without error, write its bytes
    to ``tmp`` (a temporary path from :func:`atomic_path`) with one plain ``write``.

    HDF5 meets a full disk badly: its writes fail inside destructors (tracebacks printed as
    "Exception ignored"), then closing the file can crash the process. Built in memory, the file
    reaches the disk through Python, which raises ``OSError`` (``ENOSPC``) cleanly, so the caller
    reports one line and :func:`atomic_path` removes the temporary file. Costs the file's size in
    memory while it is written.
    """
    import h5py

    f = h5py.File(f"{tmp}.image", "w", driver="core", backing_store=False)
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    with open(tmp, "wb") as out:
        out.write(image)
        out.flush()
        os.fsync(out.fileno())


def atomic_text(path, text):
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


# -------------------------------------------------------------------------------- folders


@contextlib.contextmanager
def output_folder(folder, lock_name):
    """Create ``folder`` if needed and hold the lock of ``folder / lock_name`` (:func:`hold`) for
    the block; a folder this call created is removed again if the block fails and leaves it
    empty. Refuses an existing ``folder`` that is not a directory.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        mode = os.stat(folder).st_mode
        kind = "a file" if stat.S_ISREG(mode) else _kind(mode)
        raise FileSafetyError(f"{folder}: not a folder ({kind}); give a folder for the outputs")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileSafetyError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        with hold(folder / lock_name, "folder", label=folder):
            yield folder
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise
