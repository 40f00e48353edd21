"""One writer per run directory: an exclusive lock that the OS releases when its holder dies, kill -9 included.

`annotate` holds it on its --out while it sends requests and writes, `edgedistill run` on the run directory for
the whole pipeline. A second process that asks for a held lock is refused at once, with the holder's pid and
command; two processes never pay for one request twice, and a --max-cost cap is counted against one spend.
Within one process the lock is re-entrant for the thread that holds it (`run` calls annotate in-process), and
refused to any other thread.

The lock is `fcntl.flock` on RUN/.edgedistill.lock, which holds the holder's pid and command as text (a lock file
left by a killed process is free again: the lock, not the file, is what is held).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

LOCK_FILE = ".edgedistill.lock"

_guard = threading.Lock()
_held: dict[Path, dict] = {}  # resolved run dir -> {"file", "thread", "depth"}


@contextmanager
def run_dir_lock(folder, command: str):
    """Hold `folder`'s lock for the block (creating `folder`); refuse at once if another process holds it."""
    path = _folder(folder)
    _enter(path, command)
    try:
        yield path
    finally:
        _exit(path)


def _folder(folder) -> Path:
    path = Path(folder).resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a run directory; give a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"{path}: cannot create the run directory ({e.strerror}); give a folder that can be written"
        ) from None
    return path


def _enter(path: Path, command: str) -> None:
    with _guard:
        held = _held.get(path)
        if held is not None:
            if held["thread"] != threading.get_ident():
                raise UserError(
                    f"{path}: in use by another thread of this process ({held['command']}); "
                    "one run directory takes one writer"
                )
            held["depth"] += 1
            return
        _held[path] = {"file": _acquire(path, command), "thread": threading.get_ident(), "depth": 1, "command": command}


def _exit(path: Path) -> None:
    with _guard:
        held = _held[path]
        held["depth"] -= 1
        if held["depth"] == 0:
            del _held[path]
            held["file"].close()  # closing the descriptor releases the lock


def _acquire(path: Path, command: str):
    f = open(path / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open for as long as the lock)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "a process that has not written its pid yet"
        f.close()
        raise UserError(
            f"{path}: in use by {holder}; one run directory takes one writer. Wait for that process to "
            "finish (or stop it), or give another run directory"
        ) from None
    except OSError as e:
        f.close()
        raise UserError(
            f"{path / LOCK_FILE}: cannot lock the run directory ({e.strerror}); use a run directory on a local disk"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} ({command}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    f.flush()
    return f
