"""The forgery set's manifest (DESIGN.md section 4): ``manifest.jsonl``, one ``ManifestRow`` per
output (a fake or its real counterpart), and per-frame labels of each fake in
``labels/<id>.jsonl``, one ``SwapFrame`` per swapped frame.

Rows are read through ``read_manifest``, which checks every key and type: a manifest is a file
someone may have edited by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from swapscope import __version__
from swapscope.errors import InputError
from swapscope.faults import kill_point
from swapscope.files import (
    WriteLock,
    pid_alive,
    read_jsonl,
    sha256_file,
    write_jsonl_atomic,
    write_text_atomic,
)

LABELS = ("fake", "real")


def new_manifest_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class SwappedFace:
    """One swapped face in one frame."""

    track: int
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame px: the area the swap wrote
    mask: list  # polygons of [x, y] frame px covering every pixel the blend could change
    # the 68 points (x, y frame px, 2 decimals) the forge aligned and blended the swap on; None
    # in labels written before they were kept, whose readers find the face again instead
    landmarks: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def new(cls, track: int, box, mask: list, landmarks: np.ndarray) -> SwappedFace:
        points = tuple((round(float(x), 2), round(float(y), 2)) for x, y in landmarks)
        return cls(track=track, box=tuple(box), mask=mask, landmarks=points)

    def points(self) -> np.ndarray | None:
        """The landmarks as a (68, 2) float array, or None where the label has none."""
        return None if self.landmarks is None else np.asarray(self.landmarks, dtype=np.float64)

    def to_json(self) -> dict:
        raw = {"track": self.track, "box": list(self.box), "mask": self.mask}
        if self.landmarks is not None:
            raw["landmarks"] = [list(p) for p in self.landmarks]
        return raw


@dataclass(frozen=True, slots=True)
class SwapFrame:
    """The swapped faces of one frame of a fake."""

    frame: int  # index of the decoded frame
    time: float  # seconds
    faces: tuple[SwappedFace, ...]

    def to_json(self) -> dict:
        return {
            "frame": self.frame,
            "time": self.time,
            "faces": [f.to_json() for f in self.faces],
        }

    @classmethod
    def from_json(cls, raw: Any, where: str) -> SwapFrame:
        try:
            faces = tuple(_face_label(f) for f in _listed(raw["faces"]))
            frame, time = _coordinate(raw["frame"]), float(raw["time"])
            if frame < 0 or not math.isfinite(time):
                raise ValueError
            return cls(frame=frame, time=time, faces=faces)
        except (KeyError, TypeError, ValueError, OverflowError):
            raise InputError(
                f"{where}: not a frame label (frame, time, faces with track, box, mask and "
                "optional 68 landmarks)"
            ) from None


_MAX_PX = 1 << 16  # no frame is wider or taller; a coordinate past it is damage, not a picture


def _listed(value: Any) -> list:
    if not isinstance(value, list):
        raise TypeError
    return value


def _coordinate(value: Any) -> int:
    """An integer pixel coordinate or index (JSON 12 or 12.0), within ``_MAX_PX`` of 0."""
    return int(_position(value))


def _face_label(raw: Any) -> SwappedFace:
    box = tuple(_coordinate(v) for v in _listed(raw["box"]))
    if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
        raise ValueError
    mask = [[[_coordinate(x), _coordinate(y)] for x, y in _listed(poly)]
            for poly in _listed(raw["mask"])]
    if any(not poly for poly in mask):
        raise ValueError
    landmarks = raw.get("landmarks")
    if landmarks is not None:
        landmarks = tuple((_position(x), _position(y)) for x, y in _listed(landmarks))
        if len(landmarks) != 68:
            raise ValueError
    return SwappedFace(track=_coordinate(raw["track"]), box=box, mask=mask, landmarks=landmarks)


def _position(value: Any) -> float:
    """A sub-pixel coordinate (JSON number), finite and within ``_MAX_PX`` of 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    number = float(value)  # OverflowError for an integer past any float
    if not math.isfinite(number) or abs(number) > _MAX_PX:
        raise ValueError
    return number


@dataclass(frozen=True, slots=True)
class PendingOutput:
    """One output of the forge on its way into a forgery set: its manifest id, where it goes,
    and the hidden file it is written to until its manifest row is down (``commit``)."""

    folder: Path  # the set's folder (its manifest.jsonl)
    path: Path  # where the output goes, inside ``folder``
    id: str = field(default_factory=new_manifest_id)

    @property
    def pending(self) -> Path:
        return pending_path(self.path)

    @property
    def rel(self) -> str:
        """Its path in the set, as its manifest row records it."""
        return str(self.path.resolve().relative_to(self.folder.resolve()))


@dataclass(frozen=True, slots=True)
class Encoded:
    """What an output's video holds: frames written, how many of them swapped, rate and size."""

    frames: int
    swapped_frames: int
    fps: float
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One output of the forge: a fake, or the real counterpart encoded alike."""

    id: str  # manifest id (hex uuid); the watermark and container metadata carry it
    label: str  # fake | real
    method: str  # model | fwa-sim | real
    split: str  # train | val | test, or "" outside a dataset
    source: str  # absolute path of the real source video
    source_sha256: str
    output: str  # the output video, relative to the manifest's folder
    output_sha256: str
    checkpoint: str | None  # the swap model (method model)
    checkpoint_sha256: str | None
    source_identity: str | None  # who is in the source
    target_identity: str | None  # who the swapped face became (None: fwa-sim keeps the person)
    knobs: dict  # the method and every realism knob it was made with
    frames: int
    swapped_frames: int
    fps: float
    width: int
    height: int
    watermark: bool  # its faces carry the watermark (a fake's swapped faces, a real's every face)
    labels: str | None  # per-frame labels file, relative to the folder (None for reals)
    code_version: str
    created: str  # UTC, ISO 8601

    @classmethod
    def new(cls, *, output: PendingOutput, label: str, method: str, source: Path,
            encoded: Encoded, knobs: dict, watermark: bool, labels: str | None,
            source_identity: str | None, target_identity: str | None, split: str = "",
            checkpoint: str | None = None, checkpoint_sha256: str | None = None,
            source_sha256: str | None = None) -> ManifestRow:
        """The one constructor of fake and real rows: hashes the source and the output (still
        at its pending name: its row goes down first, see ``commit``; ``source_sha256`` if the
        caller hashed it already), and stamps the code version and time."""

        return cls(
            id=output.id, label=label, method=method, split=split,
            source=str(Path(source).resolve()),
            source_sha256=source_sha256 or sha256_file(source), output=output.rel,
            output_sha256=sha256_file(output.pending), checkpoint=checkpoint,
            checkpoint_sha256=checkpoint_sha256, source_identity=source_identity,
            target_identity=target_identity, knobs=knobs, frames=encoded.frames,
            swapped_frames=encoded.swapped_frames, fps=float(encoded.fps), width=encoded.width,
            height=encoded.height, watermark=watermark, labels=labels, code_version=__version__,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )

    @property
    def identity(self) -> str:
        """The person of the source video: the recorded one, else the source's folder name."""
        return self.source_identity or Path(self.source).parent.name

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any, where: str) -> ManifestRow:
        """A row from JSON, every key and type checked; InputError naming ``where`` otherwise."""
        if not isinstance(raw, dict):
            raise InputError(f"{where}: a manifest row is a JSON object")
        names = {f.name for f in fields(cls)}
        missing, unknown = names - set(raw) - {"created"}, set(raw) - names
        if missing or unknown:
            raise InputError(f"{where}: manifest row has missing keys {sorted(missing)} "
                             f"or unknown keys {sorted(unknown)}")
        values = {"created": "", **raw}
        for name, kinds in _ROW_TYPES.items():
            if (
                not isinstance(values[name], kinds)
                or isinstance(values[name], bool)
                and bool not in kinds
            ):
                raise InputError(f"{where}: manifest row key {name!r} has the wrong type")
        if values["label"] not in LABELS:
            raise InputError(f"{where}: manifest row label must be one of {list(LABELS)}")
        for key in ("output", "labels"):
            if values[key] is not None and not _inside_folder(values[key]):
                raise InputError(f"{where}: manifest row's {key} {values[key]!r} lies outside the "
                                 "manifest's folder")
        return cls(**values)


def _inside_folder(relative: str) -> bool:
    """Whether a path written in a manifest stays inside the manifest's folder: relative, and
    never stepping up."""
    path = Path(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts


_STR, _OPT = (str,), (str, type(None))
_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "id": _STR, "label": _STR, "method": _STR, "split": _STR, "source": _STR, "source_sha256": _STR,
    "output": _STR, "output_sha256": _STR, "checkpoint": _OPT, "checkpoint_sha256": _OPT,
    "source_identity": _OPT, "target_identity": _OPT, "knobs": (dict,), "frames": (int,),
    "swapped_frames": (int,), "fps": (float, int), "width": (int,), "height": (int,),
    "watermark": (bool,), "labels": _OPT, "code_version": _STR, "created": _STR,
}


def mask_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """Outer contours of the pixels a blend mask can change, (H, W) float in [0, 1] -> polygons
    of [x, y] px, grown by a pixel so that the filled polygons cover every such pixel.

    Below 0.5/255 a blend weight cannot move an 8-bit value by a level, so those feather
    tails are left out.
    """
    binary = cv2.dilate((mask >= 0.5 / 255).astype(np.uint8), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        hull = cv2.convexHull(contour) if len(contour) > 64 else contour
        polygons.append(hull.reshape(-1, 2).astype(int).tolist())
    return polygons


def fill_polygons(polygons: list, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool raster of mask polygons from a manifest."""
    out = np.zeros(shape[:2], np.uint8)
    for polygon in polygons:
        cv2.fillPoly(out, [np.asarray(polygon, np.int32).reshape(-1, 1, 2)], 1)
    return out.astype(bool)


def manifest_file(path: str | Path) -> Path:
    """A manifest given as its file or its folder -> the file."""
    path = Path(path)
    return path / "manifest.jsonl" if path.is_dir() else path


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """The rows of a manifest (its file, or the folder holding ``manifest.jsonl``)."""
    path = manifest_file(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest")
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}:{number}: manifest line does not parse") from None
        rows.append(ManifestRow.from_json(raw, f"{path}:{number}"))
    _check_distinct(path, rows, resolve=False)  # by name here: every append reads the file
    return rows


def verified_outputs(path: str | Path) -> list[tuple[ManifestRow, Path]]:
    """The rows of a manifest with their outputs, for a command that reads those files: each
    output (and labels file) its own file and inside the folder even through symlinks, there,
    and the very file the forge made (its recorded sha256). One InputError otherwise."""
    path = manifest_file(path)
    rows = read_manifest(path)
    _check_distinct(path, rows, resolve=True)
    found = []
    for row in rows:
        video = path.parent / row.output
        if not video.is_file():
            raise InputError(f"{video}: output listed in {path} is missing")
        if sha256_file(video) != row.output_sha256:
            raise InputError(f"{video}: does not match the sha256 its manifest row {row.id[:8]} "
                             "recorded (changed since the forge wrote it)")
        found.append((row, video))
    return found


def check_files(path: str | Path) -> None:
    """``verified_outputs``' checks that cost no hashing: a command refuses a manifest whose rows
    share a file, or lead out of the folder through a symlink, before it starts any work."""
    path = manifest_file(path)
    _check_distinct(path, read_manifest(path), resolve=True)


def _check_distinct(path: Path, rows: list[ManifestRow], resolve: bool) -> None:
    """Each row names its own output and labels, and its own id. With ``resolve``, through
    symlinks too, and never out of the folder: a real counterpart that is another row's file (or
    a link to one) would pair a fake with itself."""
    folder = path.parent.resolve()
    seen: dict[Path, str] = {}
    ids: set[str] = set()
    for row in rows:
        if row.id in ids:
            raise InputError(f"{path}: manifest row id {row.id[:8]} is listed twice")
        ids.add(row.id)
        for name in (row.output, row.labels):
            if name is None:
                continue
            target = (folder / name).resolve() if resolve else Path(os.path.normpath(name))
            if resolve and not target.is_relative_to(folder):
                raise InputError(f"{path}: manifest row {row.id[:8]}'s {name!r} leads outside "
                                 "the manifest's folder (a symlink)")
            if target in seen:
                raise InputError(f"{path}: manifest rows {seen[target][:8]} and {row.id[:8]} name "
                                 f"the same file ({name!r}); each output is its own file")
            seen[target] = row.id


def write_manifest(path: Path, rows: list[ManifestRow]) -> Path:
    """Write rows as a manifest file, atomically."""
    return write_jsonl_atomic(path, [row.to_json() for row in rows])


def append_manifest(folder: Path, row: ManifestRow) -> Path:
    """Add one output's row to ``folder/manifest.jsonl`` (rewritten atomically), replacing a row
    with the same id or the same output (the file it described is gone, and so goes its labels
    file)."""
    path = folder / "manifest.jsonl"
    with WriteLock(folder / ".manifest.lock", path, "writer of this manifest", wait=True):
        rows = read_manifest(path) if path.is_file() else []
        kept = [r for r in rows if r.id != row.id and r.output != row.output]
        written = write_manifest(path, kept + [row])
        still_used = {r.labels for r in kept} | {row.labels}
        for gone in rows:
            if gone not in kept and gone.labels and gone.labels not in still_used:
                (folder / gone.labels).unlink(missing_ok=True)  # confined: from_json saw to it
        return written


# --- an output and its row land together --------------------------------------------------
# An output is written under a pending name (``pending_path``), its row appended, and only then
# renamed into place (``commit``). A kill before the row leaves a pending file no row names; a
# kill after it leaves one whose row is down. ``settle_pending`` (run by the next writer of the set)
# deletes the first and moves the second into place, so no output is ever without its row.

_PENDING = re.compile(r"^\.(?P<stem>.+)\.pending-(?P<pid>\d+)(?P<suffix>(\.[^.]+)?)$")


def pending_path(final: Path) -> Path:
    """Where ``final`` is written until its row is down (hidden, the same suffix)."""
    return final.with_name(f".{final.stem}.pending-{os.getpid()}{final.suffix}")


def commit(folder: Path, row: ManifestRow, moves: list[tuple[Path, Path]]) -> None:
    """Append ``row``, then move each (pending, final) file into place."""
    kill_point("before-manifest-row")
    append_manifest(folder, row)
    kill_point("after-manifest-row")
    for pending, final in moves:
        os.replace(pending, final)


def settle_pending(folder: Path, also: tuple[Path, ...] = ()) -> list[Path]:
    """Finish or undo the pending files that dead writers of ``folder``'s set left beside its
    outputs (and in the folders ``also``); returns the files moved into place."""

    folder = Path(folder)
    rows = read_manifest(folder) if (folder / "manifest.jsonl").is_file() else []
    committed: dict[Path, str | None] = {}
    for row in rows:
        committed[(folder / row.output).resolve()] = row.output_sha256
        if row.labels:
            committed[(folder / row.labels).resolve()] = None  # labels carry no hash of their own
    moved = []
    parents = {p.parent for p in committed}
    parents |= {Path(p).resolve() for p in (*also, folder / "labels")}
    for parent in parents:
        for path in parent.glob(".*.pending-*") if parent.is_dir() else ():
            match = _PENDING.match(path.name)
            if match is None or pid_alive(int(match["pid"])):
                continue
            final = parent / (match["stem"] + match["suffix"])
            try:
                if final in committed and committed[final] in (None, sha256_file(path)):
                    os.replace(path, final)
                    moved.append(final)
                else:
                    path.unlink()
            except FileNotFoundError:  # another writer settled it first
                pass
    return moved


def write_swap_frames(path: Path, labels: list[SwapFrame]) -> Path:
    return write_jsonl_atomic(path, [label.to_json() for label in labels])


def read_swap_frames(folder: Path, row: ManifestRow) -> list[SwapFrame]:
    """The per-frame labels of one manifest row ([] for a real counterpart)."""
    if row.labels is None:
        return []
    path = Path(folder) / row.labels
    if not path.is_file():
        raise InputError(f"{path}: labels of manifest row {row.id[:8]} are missing")
    return [SwapFrame.from_json(raw, f"{path}") for raw in read_jsonl(path)]


def data_card(rows: list[ManifestRow]) -> str:
    """``data_card.md`` for a forgery set: what it is, how each output was made, and its labels."""
    fakes = [r for r in rows if r.label == "fake"]
    reals = [r for r in rows if r.label == "real"]
    methods = sorted({r.method for r in fakes})
    lines = [
        "# swapscope forgery set",
        "",
        "**Every video marked `fake` here is a synthetic face swap made by swapscope's forge** "
        f"(IPTC digital source type `compositeWithTrainedAlgorithmicMedia`). {len(fakes)} fakes, "
        f"{len(reals)} real counterparts; methods: {', '.join(methods) or '-'}.",
        "",
        "Labels: `manifest.jsonl` (one row per output: hashes of source, output and checkpoint, "
        "identities, method and every realism knob, split) with per-frame labels in `labels/` "
        "(swapped face boxes, mask polygons and landmarks); container metadata naming the source "
        "type and the manifest id; signed Content Credentials (C2PA); an invisible watermark "
        "carrying the manifest id's first 8 hex digits in every swapped face (and every face of "
        "a real counterpart) where the row says `watermark: true`.",
        "",
        "Made for detector research. Do not publish swaps of real people, and do not remove the "
        "labels.",
        "",
        "| id | label | split | method | source | output | watermark |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.id[:8]} | {r.label} | {r.split} | {r.method} "
                     f"| {Path(r.source).name} | {r.output} | {r.watermark} |")
    return "\n".join(lines) + "\n"


def write_data_card(folder: Path) -> Path:
    return write_text_atomic(folder / "data_card.md", data_card(read_manifest(folder)))
