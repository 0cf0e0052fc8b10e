"""Files: atomic writes (a reader, or a killed run, sees the old file or the new one, never half
of one: write beside it under a temporary name, then rename), JSON lines, sha256."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from swapscope.errors import InputError

# the names of temporary files and folders: ``<name>.tmp-<pid>[.suffix]``, the pid of the writer
_LEFTOVER = re.compile(r"\.tmp-(\d+)(\.[^.]*)?$")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write failed (a full disk)
    return path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete the temporary files and folders in ``folder`` (not below it) whose writer is dead:
    what a killed run left. Only swapscope's own temporary names are touched, and never those
    of a run that is still going."""
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        match = _LEFTOVER.search(path.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def writable_folder(folder: str | Path) -> Path:
    """Make ``folder`` (and its parents) and check that files can be written in it, before any
    work is done: a read-only or impossible output is one InputError, not a traceback at the
    end of a long run."""
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".swapscope-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
    return folder


def output_file(path: str | Path, suffixes: tuple[str, ...], new: bool = False,
                what: str = "the output") -> Path:
    """Check an output file's path before any work: a suffix its writer supports (``suffixes``,
    lower case with the dot), not an existing folder, in a folder that can be written, and with
    ``new`` no file there yet (a command that keeps no record of what it made never writes over
    a file). One InputError otherwise, never the writer's own exception at the end."""

    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: {what} must be a {' or '.join(suffixes)} file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; name the file to write")
    if new and (path.exists() or path.is_symlink()):
        raise InputError(f"{path}: already exists; choose another name ({what} replaces no file)")
    writable_folder(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_image_atomic(path: str | Path, image: np.ndarray) -> Path:
    """(H, W, 3) uint8 RGB to PNG or JPEG, by the path's suffix."""
    import cv2

    ok, buffer = cv2.imencode(Path(path).suffix or ".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f"{path}: cannot encode an image of this type")
    return write_bytes_atomic(path, buffer.tobytes())


def write_figure_atomic(path: str | Path, fig, dpi: int = 90) -> Path:
    """A matplotlib figure as PNG."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_bytes_atomic(path, buffer.getvalue())


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file ([] if there is none). A line that does not parse is an
    InputError naming the file and line, unless it is the last line and has no newline: that is
    an append a killed run tore, and it is left out."""
    import json

    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a JSON-lines file is)") from None
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: a torn final append
                continue
            raise InputError(f"{path}:{number}: line does not parse as JSON") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: a row is a JSON object, not {type(row).__name__}")
        rows.append(row)
    return rows


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Append rows to a JSON-lines file and flush them to disk."""
    import json

    with open(path, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_jsonl_atomic(path: str | Path, rows: list[dict]) -> Path:
    import json

    return write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class WriteLock:
    """An advisory lock for an output that a command writes over time (a face set, a forgery
    set), held on the file ``path``: a second writer is refused at once instead of corrupting the
    first's work. The (empty) lock file stays; the lock dies with the process, so a killed run
    never leaves it held."""

    def __init__(self, path: str | Path, output: str | Path, what: str, wait: bool = False) -> None:
        """``wait``: queue behind the holder (for short critical sections) instead of refusing."""
        self.path, self.output, self.what, self.wait = Path(path), Path(output), what, wait
        self._handle = None

    def __enter__(self) -> WriteLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            self._handle.close()
            self._handle = None
            raise InputError(f"{self.output}: another {self.what} is writing it; wait for it to "
                             "finish") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None
