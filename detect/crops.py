"""Labelled face-crop collections: genuine fakes and reals to train on (``detect train --crops``).

A collection is a folder with a ``labels.csv`` (columns ``file``, ``label``, ``group``; the
group may also be named ``original``, as in DFDC-style collections) and the images it lists:
one face crop per row, ``label`` real or fake, ``group`` what ties crops together that must
never sit on both sides of a split (the original video a fake was made from and its real). An
optional ``split`` column keeps rows that are not ``train`` out of training altogether, so a
collection's own validation part is never learnt.

Each crop goes through the same face pipeline ``detect scan`` runs on an image (the largest
face, its 68 landmarks), so the ROI a detector trains on is cut from the crop exactly as scan
cuts it. Crops are often cut tight around the face, which hides the chin and brow that dlib's
detector wants to see; the detector therefore looks at the crop with a replicated border
(``DETECT_BORDER`` of its side), and the landmarks are mapped back onto the crop itself. Crops
where no face is found are counted, listed in the cache and reported; none is dropped
silently. Landmarks are cached per collection (keyed by the labels file and these settings), so
a collection is read once, and a cache can travel with a collection to a machine without dlib.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from detect.data import FaceItem
from swapscope.errors import InputError
from swapscope.faces.pipeline import FacePipeline, PipelineConfig
from swapscope.faces.records import largest_face
from swapscope.files import read_jsonl, write_jsonl_atomic, write_text_atomic
from swapscope.progress import NoProgress, Progress
from swapscope.timing import StageTimer

LABELS = {"real": 0, "fake": 1}
DETECT_BORDER = 0.25  # replicated border around a crop, of its side, while its face is sought
MIN_FACE = 32  # px, as detect scan's pipeline
CACHE_VERSION = 1  # bump when what the cache holds, or how it is found, changes


@dataclass(frozen=True, slots=True)
class CropRow:
    """One row of a collection's labels.csv, checked."""

    file: str  # relative to the collection folder
    label: int  # 0 real, 1 fake
    group: str


@dataclass(frozen=True, slots=True)
class Collection:
    root: Path
    rows: tuple[CropRow, ...]  # the rows to train on
    held_out: int  # rows of another split (e.g. ``val``) left out
    key: str  # names its landmark cache


def read_collection(folder: str | Path) -> Collection:
    """Read and check a collection's labels.csv (untrusted: typed columns, known labels, files
    confined to the folder); rows whose ``split`` is not ``train`` are left out."""
    root = Path(folder)
    path = root / "labels.csv"
    if not path.is_file():
        raise InputError(f"{root}: not a crop collection (no labels.csv with file, label, group)")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc.__class__.__name__})") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns, table = set(reader.fieldnames or []), list(reader)
    except csv.Error as exc:
        raise InputError(f"{path}: not a CSV table ({exc})") from None
    return _collection(root, path, raw, columns, table)


def _collection(root: Path, path: Path, raw: bytes, columns: set[str], table: list[dict]
                ) -> Collection:
    """The checked rows of a parsed labels.csv."""
    group_column = "group" if "group" in columns else "original"
    missing = {"file", "label", group_column} - columns
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}; need file, label, group")
    rows, held_out, resolved = [], 0, root.resolve()
    for line, row in enumerate(table, start=2):
        if "split" in columns and (row.get("split") or "").strip() not in ("", "train"):
            held_out += 1
            continue
        rows.append(_checked(row, group_column, resolved, f"{path}:{line}"))
    if not rows:
        raise InputError(f"{path}: no rows to train on")
    digest = hashlib.sha256(raw)
    digest.update(f"/v{CACHE_VERSION}/{DETECT_BORDER}/{MIN_FACE}".encode())
    return Collection(root=root, rows=tuple(rows), held_out=held_out,
                      key="c" + digest.hexdigest()[:15])


def _checked(row: dict, group_column: str, root: Path, where: str) -> CropRow:
    file, label, group = (row.get(k) for k in ("file", "label", group_column))
    if not file or not group or label not in LABELS:
        raise InputError(f"{where}: need a file, a label (real or fake) and a group, got "
                         f"{file!r}, {label!r}, {group!r}")
    if "\0" in file:
        raise InputError(f"{where}: {file!r} is not a file name (a NUL byte)")
    target = (root / file).resolve()
    if not target.is_relative_to(root):
        raise InputError(f"{where}: {file!r} lies outside the collection folder")
    return CropRow(file=file, label=LABELS[label], group=group)


def find_landmarks(collection: Collection, cache: Path, progress: Progress | None = None
                   ) -> tuple[list[dict], list[dict]]:
    """(found, not found): per crop, its largest face's (68, 2) landmarks in crop px, as JSON
    rows; the crops without a face with the reason. Read from ``cache`` when it holds them."""
    found_path, missing_path = cache / "items.jsonl", cache / "no_face.jsonl"
    if found_path.is_file() and missing_path.is_file():
        return read_jsonl(found_path), read_jsonl(missing_path)

    # dlib, as the crop caches (and the shipped detectors' training) were made with
    pipeline = FacePipeline(PipelineConfig(backend="dlib", detect_size=0, min_size=MIN_FACE,
                                           embed=False))
    found, missing = [], []
    progress = progress or NoProgress()
    progress.start(f"finding faces in {collection.root.name}", len(collection.rows))
    for row in collection.rows:
        points, why = _landmarks(pipeline, collection.root / row.file, StageTimer())
        entry = {"file": row.file, "label": row.label, "group": row.group}
        if points is None:
            missing.append({**entry, "why": why})
        else:
            found.append({**entry, "landmarks": np.round(points, 2).tolist()})
        progress.advance(1)
    progress.stop()
    cache.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(missing_path, missing)
    write_jsonl_atomic(found_path, found)  # last: its presence says the cache is whole
    write_text_atomic(cache / "source.txt", f"{collection.root.resolve()}\n")
    return found, missing


def _landmarks(pipeline, path: Path, timer) -> tuple[np.ndarray | None, str]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None, "unreadable image"
    side = max(image.shape[:2])
    pad = round(DETECT_BORDER * side)
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    faces = pipeline.faces_in_image(np.ascontiguousarray(padded[..., ::-1]), timer).faces
    if not faces:
        return None, "no face found"
    largest = largest_face([f.face for f in faces])
    return largest.landmarks - pad, ""


@dataclass(frozen=True, slots=True)
class CropReport:
    """What reading a collection came to: faces to train on and crops without one."""

    collection: str
    key: str  # names the collection's landmark cache
    faces: dict[str, int]  # label -> crops with a face
    no_face: dict[str, int]  # label -> crops without one (listed in the cache's no_face.jsonl)
    held_out: int  # rows of another split, never trained on

    def to_json(self) -> dict:
        return asdict(self)


def collection_items(folder: Collection | str | Path, cache_root: Path,
                     progress: Progress | None = None
                     ) -> tuple[list[FaceItem], CropReport]:
    """The crops of a collection as training faces: a real crop is a real face (which a recipe
    may make an artifact negative of), a fake one a genuine fake with a fixed label. Identity
    and source are the crop's group, so a group never lands on both sides of a split."""
    collection = folder if isinstance(folder, Collection) else read_collection(folder)
    found, missing = find_landmarks(collection, cache_root / collection.key, progress)
    items = [FaceItem(context=str(collection.root / row["file"]),
                      landmarks=np.asarray(row["landmarks"], np.float32),
                      identity=f"{collection.root.name}:{row['group']}",
                      source_id=f"{collection.root.name}:{row['group']}", frame_index=0,
                      label=1 if row["label"] else None, kind="genuine")
             for row in found]
    report = CropReport(collection=str(collection.root), key=collection.key,
                        faces=_per_label(found),
                        no_face=_per_label(missing), held_out=collection.held_out)
    return items, report


def _per_label(rows: list[dict]) -> dict[str, int]:
    return {name: sum(r["label"] == value for r in rows) for name, value in LABELS.items()}
