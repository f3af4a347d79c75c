"""File output: atomic writes, output locks, and file-system errors in words.

- Atomic writes: a result is either complete on disk or absent, never half-written (written beside
  its target, flushed to disk, renamed over it). A failure (disk full, read-only file system) leaves
  the previous file intact.
- Output locks (:func:`output_lock`): one writer per output directory (or output file), with a
  ``filelock`` OS lock that the kernel releases when its process dies, so a killed run never leaves a
  stale lock; the holder's pid, command line and start time are written beside it for the message
  the next writer sees.
- :func:`file_system_error` turns an ``OSError`` into a one-line :class:`FileSystemError`.
"""

from __future__ import annotations

import datetime as _dt
import errno as _errno
import json
import os
import re
import shlex
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import FileSystemError, OutputExistsError, OutputLockedError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise FileSystemError(f"{path} is a directory, not a file: choose a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    except OSError as exc:
        raise _retarget(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        try:
            yield tmp_path
        except Exception as exc:  # a writer library (safetensors) may wrap an OS error in its own type
            converted = _as_os_error(exc, path)
            if converted is exc:
                raise
            raise converted from exc
        _fsync(tmp_path)  # ENOSPC can surface only here (delayed allocation): before the rename, not after
        os.replace(tmp_path, path)
    except OSError as exc:
        raise _retarget(exc, path) from exc.__cause__
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    plt.close(fig)
    return path


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def prepare_output_dir(out: str | os.PathLike, marker: str, force: bool = False) -> Path:
    """Create ``out``; refuse if it already holds ``marker`` (a finished result) unless ``force``."""
    out = Path(out)
    if (out / marker).exists() and not force:
        raise OutputExistsError(
            f"{out / marker} already exists: refusing to overwrite earlier results (pass --force, or choose another --out)"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _retarget(exc: OSError, path: Path) -> OSError:
    """The same OS error, naming the file the user asked for rather than its temporary sibling."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)")


def _as_os_error(exc: BaseException, path: Path) -> BaseException:
    """An ``OSError`` for a foreign exception that reports one only in its text (e.g. SafetensorError)."""
    if isinstance(exc, OSError):
        return exc
    match = _OS_ERROR_IN_TEXT.search(str(exc))
    if not match:
        return exc
    code = int(match.group(1))
    return OSError(code, os.strerror(code), str(path))


# -- file-system errors in words -------------------------------------------------------------------

_FIXES = {
    _errno.EROFS: "the file system is read-only: choose an --out on a writable disk",
    _errno.ENOSPC: "the disk is full: free some space or choose an --out on another disk; earlier results are intact",
    _errno.EDQUOT: "the disk quota is exhausted: free some space or choose an --out elsewhere",
    _errno.EACCES: "permission denied: choose an --out you can write to, or fix the permissions",
    _errno.EPERM: "operation not permitted (immutable file or directory?): choose another --out",
    _errno.ENOTDIR: "a part of this path is a file, not a directory: choose another --out",
    _errno.EISDIR: "this is a directory, not a file: choose a file path",
    _errno.EEXIST: "a file of that name already exists: remove it or choose another --out",
    _errno.ENOENT: "no such file or directory: check the path",
    _errno.ENAMETOOLONG: "the file name is too long: choose a shorter --out",
    _errno.EMFILE: "too many open files: raise `ulimit -n` or use fewer workers",
    _errno.ELOOP: "too many symbolic links in the path: choose another --out",
}


def file_system_error(exc: OSError) -> FileSystemError:
    """One line for an OS error: the path, what the error number means, and how to proceed."""
    code = exc.errno
    if code is None and exc.filename is None:  # not about a file (e.g. a TimeoutError): say what it is
        return FileSystemError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    name = _errno.errorcode.get(code, "") if code is not None else ""
    meaning = exc.strerror or (os.strerror(code) if code is not None else str(exc))
    where = exc.filename if exc.filename is not None else "(no path)"
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    fix = _FIXES.get(code, "check the path and the disk")
    label = f"{meaning} ({name})" if name else meaning
    return FileSystemError(f"{where}: {label}; {fix}", errno=code)


# -- output locks ------------------------------------------------------------------------------------

#: Lock file inside a locked output directory (the file stays; its OS lock is what counts).
LOCK_NAME = ".mtc-analog.lock"
#: Holder description written next to the lock while it is held (pid, command line, start time).
LOCK_INFO_SUFFIX = ".owner.json"


def lock_paths(out: str | os.PathLike, kind: str = "dir") -> tuple[Path, Path]:
    """(lock file, owner-info file) guarding an output directory (``kind="dir"``) or a single file."""
    out = Path(out)
    lock = out / LOCK_NAME if kind == "dir" else out.parent / f".{out.name}{LOCK_NAME}"
    return lock, lock.with_name(lock.name + LOCK_INFO_SUFFIX)


def lock_owner(out: str | os.PathLike, kind: str = "dir") -> dict[str, Any] | None:
    """What the holder of ``out``'s lock wrote about itself, or None (no info, or unreadable)."""
    try:
        data = json.loads(lock_paths(out, kind)[1].read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def output_lock(out: str | os.PathLike, command: str | None = None, kind: str = "dir") -> Iterator[Path]:
    """Hold the one-writer lock of an output directory (or, ``kind="file"``, an output file).

    Fails at once with :class:`OutputLockedError` (who holds it, since when, what to do) when another
    process holds it. Re-entrant inside one process (``demo`` calls ``train`` on a sub-folder: fine).
    A directory this call creates is removed again if the block leaves nothing but the lock in it.
    The OS lock (``flock``) dies with its process: a killed run leaves no stale lock. A directory's
    lock file stays after release (a waiter that opened it must lock the same inode); a single
    file's lock file is removed while still held (writers fail fast, and the output is atomic anyway).
    """
    from filelock import FileLock, Timeout

    out = Path(out)
    if kind not in ("dir", "file"):
        raise ValueError(f"kind must be 'dir' or 'file', got {kind!r}")
    created = _prepare_lock_target(out, kind)
    lock_file, info_file = lock_paths(out, kind)
    lock = FileLock(lock_file, timeout=0, is_singleton=True, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise OutputLockedError(_locked_message(out, kind, lock_file)) from None
    except OSError as exc:
        _remove_created(created, lock_file)
        raise _retarget(exc, lock_file) from None
    outermost = lock.lock_counter == 1
    try:
        if outermost:
            write_json(info_file, {"pid": os.getpid(), "command": command or _command_line(),
                                   "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                                   "host": os.uname().nodename})
        yield out
    finally:
        if outermost:
            stale = [info_file] + ([lock_file] if kind == "file" else [])
            for path in stale:  # a single file's lock goes too (no litter beside figures); a directory's stays
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass
            _remove_created(created, lock_file)
        lock.release()


def _prepare_lock_target(out: Path, kind: str) -> Path | None:
    """Check and create what the lock lives in; return the top-most directory created (or None)."""
    flag = "--out"
    if kind == "dir":
        if out.exists() and not out.is_dir():
            raise FileSystemError(f"{flag} {out} is an existing file, not a directory: choose a directory path "
                                  f"(or remove the file)", errno=_errno.ENOTDIR)
        directory = out
    else:
        if out.is_dir():
            raise FileSystemError(f"{flag} {out} is an existing directory: give a file path", errno=_errno.EISDIR)
        directory = out.parent
    top = None
    for parent in [directory, *directory.parents]:
        if parent.exists():
            break
        top = parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next((p for p in [directory, *directory.parents] if p.exists() and not p.is_dir()), directory)
        raise FileSystemError(f"{flag} {out}: {blocker} is a file, not a directory: choose another path",
                              errno=_errno.ENOTDIR) from None
    except OSError as exc:
        raise _retarget(exc, directory) from None
    return top


def _remove_created(top: Path | None, lock_file: Path) -> None:
    """Remove directories this process created for a lock if nothing but the lock file is in them."""
    if top is None:
        return
    try:
        directory = lock_file.parent
        if {p.name for p in directory.iterdir()} <= {lock_file.name}:
            lock_file.unlink(missing_ok=True)
            while True:
                directory.rmdir()
                if directory == top:
                    break
                directory = directory.parent
    except OSError:  # not empty (results were written) or already gone: keep it
        pass


def _locked_message(out: Path, kind: str, lock_file: Path) -> str:
    owner = lock_owner(out, kind)
    what = "output directory" if kind == "dir" else "output file"
    if owner is None:
        holder = "another process (it left no owner information)"
    else:
        pid = owner.get("pid")
        holder = f"pid {pid} (`{owner.get('command', '?')}`, started {owner.get('started', '?')})"
        if isinstance(pid, int) and not process_alive(pid) and owner.get("host") == os.uname().nodename:
            holder += f"; pid {pid} has exited, a process it started still holds the lock"
    return (f"{what} {out} is in use by {holder}: wait for it to finish or stop it, or choose another --out "
            f"(lock: {lock_file}, released automatically when that process ends)")


    return True


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "mtc-analog")):
        argv[0] = "mtc-analog"
    return " ".join(shlex.quote(a) for a in argv)


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead). Used by locks and by the ngspice workers' watchdog."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not os.path.isdir("/proc")  # /proc exists but has no entry: gone
    return True
