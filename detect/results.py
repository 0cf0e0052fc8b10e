"""A scan's results as a Parquet table (``detect scan --results scans.parquet``): one row per
input, kept across runs, so a scan of a large corpus resumes where a killed one stopped.

A row is what ``detect scan --json`` says of one input, flattened: where the file is and what it
was (path, sha256, size, modification time, duration), which detector and rules scored it (the
detector's hash, the resolved rules as JSON and their hash), what they found (score, verdict,
threshold, faces, frames scored, the per-frame scores as a list column), the labels read, any
error, and timings. An input is skipped when the table already holds a row for the same file
(path, size and modification time) scored by the same detector under the same rules; a changed
file, detector or rule scans it again and adds a row.

The table is rewritten whole, to a temporary file then renamed, at most every ``FLUSH_SECONDS``
and when the scan ends or is interrupted, so a reader or a killed run sees a whole table; a
second scan writing the same table is refused while the first holds its lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from swapscope import __version__
from swapscope.errors import InputError, first_line
from swapscope.files import WriteLock, output_file, remove_leftovers
from swapscope.formats.scan import ERROR, InputScan
from swapscope.media.images import is_image
from swapscope.media.video import probe

FLUSH_SECONDS = 30.0


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("sha256", pa.string()), ("size", pa.int64()),
        ("mtime_ns", pa.int64()), ("duration_s", pa.float64()),
        ("detector", pa.string()), ("detector_sha256", pa.string()),
        ("rules", pa.string()), ("rules_sha256", pa.string()),
        ("score", pa.float64()), ("verdict", pa.string()), ("threshold", pa.float64()),
        ("faces", pa.int32()), ("frames_scored", pa.int32()),
        ("frame_scores", pa.list_(pa.float64())),
        ("label_status", pa.string()), ("provenance", pa.string()),
        ("error", pa.string()), ("timings", pa.string()),
        ("scanned_at", pa.timestamp("s", tz="UTC")), ("code_version", pa.string()),
    ])


def rules_key(rules: dict) -> str:
    """The hash of the resolved rules an input was scored under."""
    return hashlib.sha256(json.dumps(rules, sort_keys=True, default=str).encode()).hexdigest()


def _file_key(path: str | Path) -> tuple[str, int, int] | None:
    """(absolute path, size, modification time ns), or None for a file that is not there."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


class ResultsTable:
    """The table at ``path`` for one detector and one set of rules; use it as a context manager
    (it locks the table, and writes what it holds when the block ends, however it ends)."""

    def __init__(self, path: str | Path, detector: str, detector_sha256: str, rules: dict) -> None:
        self.path = Path(path)
        self.detector, self.detector_sha256 = detector, detector_sha256
        self.rules = json.dumps(rules, sort_keys=True, default=str)
        self.rules_sha256 = rules_key(rules)
        self._rows: list[dict] = []  # the table as it was read, then the rows added
        self._done: set[tuple] = set()
        self._unsaved = 0
        self._saved_at = time.monotonic()
        self._lock = WriteLock(self.path.with_name(f".{self.path.name}.lock"), self.path,
                               "detect scan")

    def __enter__(self) -> ResultsTable:
        output_file(self.path, (".parquet",))  # --results takes a .parquet file, not a folder
        self._lock.__enter__()
        try:
            remove_leftovers(self.path.parent)  # temporary tables of killed scans
            self._rows = read_results(self.path) if self.path.exists() else []
        except BaseException:
            self._lock.__exit__()
            raise
        self._done = {self._key(r["path"], r["size"], r["mtime_ns"], r["detector_sha256"],
                                r["rules_sha256"]) for r in self._rows}
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._unsaved:
                self.save()
        finally:
            self._lock.__exit__()

    @staticmethod
    def _key(path, size, mtime_ns, detector_sha256, rules_sha256) -> tuple:
        return (path, size, mtime_ns, detector_sha256, rules_sha256)

    def done(self, path: str | Path) -> bool:
        """Whether this file, as it is now, was scored by this detector under these rules."""
        found = _file_key(path)
        return found is not None and self._key(*found, self.detector_sha256,
                                               self.rules_sha256) in self._done

    def add(self, item: InputScan, threshold: float) -> None:
        """One input's result; the table is written when ``FLUSH_SECONDS`` have passed."""

        found = _file_key(item.path) or (str(Path(item.path).resolve()), None, None)
        duration = None
        if item.verdict != ERROR and not is_image(item.path):
            try:
                duration = probe(item.path).duration
            except (InputError, OSError):
                duration = None
        row = {
            "path": found[0], "sha256": item.sha256 or None, "size": found[1],
            "mtime_ns": found[2], "duration_s": duration,
            "detector": self.detector, "detector_sha256": self.detector_sha256,
            "rules": self.rules, "rules_sha256": self.rules_sha256,
            "score": item.score, "verdict": item.verdict, "threshold": threshold,
            "faces": sum(len(f.faces) for f in item.frames), "frames_scored": len(item.frames),
            "frame_scores": item.frame_scores,
            "label_status": item.provenance.status,
            "provenance": json.dumps(item.provenance.to_json(), sort_keys=True, default=str),
            "error": item.error or None,
            "timings": json.dumps(item.timings, sort_keys=True),
            "scanned_at": datetime.now(timezone.utc).replace(microsecond=0),
            "code_version": __version__,
        }
        self._rows.append(row)
        if found[1] is not None:
            self._done.add(self._key(*found, self.detector_sha256, self.rules_sha256))
        self._unsaved += 1
        if time.monotonic() - self._saved_at >= FLUSH_SECONDS:
            self.save()

    def save(self) -> None:
        """Write the whole table beside itself, then rename it into place."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._rows, schema=_schema())
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._unsaved, self._saved_at = 0, time.monotonic()


def read_results(path: str | Path) -> list[dict]:
    """The rows of a results table, checked: a file that is not a swapscope results table is
    one InputError (and is never written over)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
        names = set(table.schema.names)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # a damaged column name too
        raise InputError(f"{path}: not a Parquet table ({first_line(exc)}); "
                         "choose another --results") from None
    expected = _schema()
    if not set(expected.names) <= names:
        missing = sorted(set(expected.names) - names)
        raise InputError(f"{path}: not a detect scan results table (no {missing}); choose "
                         "another --results")
    try:
        return table.select(expected.names).cast(expected).to_pylist()
    except (pa.ArrowException, ValueError) as exc:  # UnicodeDecodeError too: damaged text
        raise InputError(f"{path}: a results column has the wrong type or damaged values "
                         f"({first_line(exc)})") from None
