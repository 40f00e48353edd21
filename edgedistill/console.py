"""What the terminal shows while a stage runs: the tool's own lines, one progress bar per long step, and
nothing else. Library chatter (transformers' and optimum's logging, Python warnings such as torch's
TracerWarnings, onnxruntime's native log lines, stray prints to stderr) goes to the stage's log file,
`RUN/logs/STAGE.log`; with `--verbose` it is printed too.

How: while `quiet(log)` is active, file descriptor 2 (stderr, where every library writes, native code
included) points at the log file, or at a pipe copied to both the log and the terminal with `verbose`.
The tool's progress bars write to a duplicate of the original stderr (`progress`), and its own lines go
to stdout, which is never redirected.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from tqdm.auto import tqdm

VERBOSE = "edgedistill.verbose"  # click's ctx.meta key of every command's --verbose
_terminal: io.TextIOBase | None = None  # the real stderr while quiet() routes fd 2 elsewhere


def terminal():
    """Where the tool's progress bars go: the user's stderr, even inside quiet()."""
    return _terminal or sys.stderr


def progress(total: int, desc: str, unit: str = "it", disable: bool = False) -> tqdm:
    """The one progress bar of a long step, on the user's terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=terminal(), disable=disable, dynamic_ncols=True)


def log_path(out, stage: str, *, is_run_dir: bool = False) -> Path:
    """A stage's log file: RUN/logs/STAGE.log, where RUN is `out` itself (annotate writes into the run
    directory) or the folder that holds `out` (RUN/student, RUN/bundle, ...)."""
    run = Path(out) if is_run_dir else Path(out).parent
    return run / "logs" / f"{stage}.log"


def _fd_backed(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


class _Forward(io.TextIOBase):
    """sys.stderr inside quiet() when stderr is not fd 2 (click's CliRunner in tests). A handler that bound
    itself to it (transformers' logging does, at import) writes to the caller's stream after the block."""

    def __init__(self, target):
        self.target = target

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


def _made_dirs(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; the ones this call created, deepest first."""
    missing = [d for d in (folder, *folder.parents) if not d.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _finish_log(log: Path, start: int, made: list[Path], verbose: bool) -> None:
    """After a stage: one line on the terminal where its libraries said something (how much, how many
    warnings, where); a log that got nothing is removed again, with the folders made for it."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = f.read().decode("utf-8", "replace").splitlines()[1:]  # after the header line
    if lines:
        if not verbose:
            warned = sum("warn" in line.lower() for line in lines)
            print(
                f"  (library output: {len(lines)} lines, {warned} with a warning, in {log}; --verbose prints it)",
                file=sys.stderr,
            )
        return
    os.truncate(log, start)
    if start == 0:
        log.unlink()
        for folder in made:
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()


def _pump(read_fd: int, sinks: list) -> None:
    """Copy what libraries write to fd 2 into every sink (the log and, with --verbose, the terminal)."""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        for chunk in iter(lambda: pipe.read(65536), b""):
            for sink in sinks:
                sink.write(chunk)
                sink.flush()


@contextmanager
def quiet(log: Path | str | None, verbose: bool = False):
    """Route everything written to stderr inside the block to `log` (and to the terminal with `verbose`).

    Nested calls keep the outer routing. With no log file and not verbose, the chatter is discarded: the
    caller decides that (e.g. a command with no output folder)."""
    global _terminal
    try:
        made = _made_dirs(Path(log).parent) if log is not None else []
    except OSError:  # e.g. --out under a file: the command itself names the bad path, so let it speak
        log, verbose = None, True
    if _terminal is not None or (log is None and verbose):
        yield
        return
    sys.stderr.flush()
    real_fd = _fd_backed(sys.stderr)
    saved_stream = sys.stderr
    log_file = open(log if log is not None else os.devnull, "ab", buffering=0)  # noqa: SIM115 (closed in finally)
    start = log_file.seek(0, os.SEEK_END)
    log_file.write(f"--- {datetime.now().isoformat(timespec='seconds')} {' '.join(sys.argv)}\n".encode())
    if real_fd:
        saved_fd = os.dup(2)
        _terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        pump = None
        if verbose:
            read_fd, write_fd = os.pipe()
            pump = threading.Thread(
                target=_pump, args=(read_fd, [log_file, os.fdopen(os.dup(saved_fd), "wb", 0)]), daemon=True
            )
            pump.start()
            os.dup2(write_fd, 2)
            os.close(write_fd)
        else:
            os.dup2(log_file.fileno(), 2)
    else:  # stderr is not the process's fd 2 (click's CliRunner in tests): route the Python stream only
        _terminal = saved_stream
        sys.stderr = _Forward(io.TextIOWrapper(log_file, encoding="utf-8", errors="replace", write_through=True))
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        if real_fd:
            os.dup2(saved_fd, 2)  # closes the pipe's last write end: the pump sees EOF
            os.close(saved_fd)
            if verbose and pump is not None:
                pump.join(timeout=5)
            _terminal.close()
        else:
            sys.stderr.target = saved_stream
            sys.stderr = saved_stream
        _terminal = None
        log_file.close()
        if log is not None:
            _finish_log(Path(log), start, made, verbose)
