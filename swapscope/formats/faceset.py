"""The face set on disk (DESIGN.md section 4).

```
FACESET/
  faceset.json    kind, version, crop size, padding, backend, the resolved extract config
  sources.jsonl   one row per finished input: source id (sha256), path, label, counts
  faces.jsonl     one FaceRow per face: source id, frame index, time, track id, person (identity),
                  box, 68 landmarks (frame px), frame->crop affine, crop size, padding,
                  detector score, backend, crop path; with ``forge extract --mesh`` also the
                  468-point 3D mesh (frame px, depth) and head pose (yaw, pitch, roll degrees)
  crops/<source id[:16]>/<frame:06d>_t<track>.png   aligned RGB crops
```
A row holds enough to re-create its crop from the source and to synthesise FWA artifacts on
the original frame.

``FaceSetWriter`` builds a new face set in ``OUT.partial`` and renames it to ``OUT`` at the end;
each input is committed as a unit (its crops moved in, its rows appended, then the input marked
done in sources.jsonl). A killed run resumes from ``OUT.partial`` (or ``OUT``), skipping inputs
already marked done and discarding half-written ones.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from swapscope import __version__
from swapscope.errors import InputError
from swapscope.faces.align import landmarks_to_crop
from swapscope.faults import kill_point
from swapscope.files import append_jsonl, read_jsonl, write_jsonl_atomic, write_text_atomic

FACESET_KIND = "swapscope.faceset"
FACESET_VERSION = 1


@dataclass(frozen=True, slots=True, eq=False)
class FaceRow:
    """One face of a face set."""

    source_id: str  # sha256 of the source file
    source_path: str
    frame_index: int
    time: float  # seconds into the source
    track_id: int
    identity: str  # the person ("" if none)
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in frame px
    landmarks: np.ndarray  # (68, 2) float32 in frame px
    affine: np.ndarray  # (2, 3) float32 frame px -> crop px
    crop_size: int
    padding: float
    score: float  # detector confidence
    backend: str
    crop: str  # crop PNG, relative to the face set
    mesh: np.ndarray | None = None  # (468, 3) float32 frame px: x, y, depth (swapscope.faces.mesh)
    pose: tuple[float, float, float] | None = None  # yaw, pitch, roll degrees, from the mesh

    def to_json(self) -> dict:
        extra = {} if self.mesh is None else {
            "mesh": np.round(self.mesh.astype(float), 2).tolist(),
            "pose": [round(float(v), 2) for v in self.pose or ()]}
        return {
            "source_id": self.source_id, "source_path": self.source_path,
            "frame_index": self.frame_index, "time": round(float(self.time), 4),
            "track_id": self.track_id, "identity": self.identity,
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": np.round(self.landmarks.astype(float), 2).tolist(),
            "affine": np.round(self.affine.astype(float), 6).tolist(), "crop_size": self.crop_size,
            "padding": self.padding, "score": round(float(self.score), 4), "backend": self.backend,
            "crop": self.crop, **extra,
        }

    @classmethod
    def from_json(cls, raw: Any, where: str) -> FaceRow:
        names = [f.name for f in fields(cls)]
        try:
            row = cls(
                source_id=str(raw["source_id"]), source_path=str(raw["source_path"]),
                frame_index=int(raw["frame_index"]), time=float(raw["time"]),
                track_id=int(raw["track_id"]), identity=str(raw.get("identity") or ""),
                box=np.asarray(raw["box"], np.float32),
                landmarks=np.asarray(raw["landmarks"], np.float32),
                affine=np.asarray(raw["affine"], np.float32), crop_size=int(raw["crop_size"]),
                padding=float(raw["padding"]), score=float(raw["score"]),
                backend=str(raw["backend"]), crop=str(raw["crop"]),
                mesh=None if raw.get("mesh") is None else np.asarray(raw["mesh"], np.float32),
                pose=None if raw.get("pose") is None else tuple(float(v) for v in raw["pose"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            raise InputError(f"{where}: not a face set row (needs {names[:-2]}; mesh and pose "
                             f"are optional)") from None
        numbers = [row.box, row.landmarks, row.affine, np.asarray(
            [row.time, row.padding, row.score, *(row.pose or ())], np.float64)]
        if row.mesh is not None:
            numbers.append(row.mesh)
        if not all(np.isfinite(a).all() for a in numbers) or min(
                row.frame_index, row.track_id, row.crop_size) < 0:
            raise InputError(f"{where}: face set row has a number that is negative, NaN or "
                             "infinite where it cannot be")
        if row.box.shape != (4,) or row.landmarks.shape != (68, 2) or row.affine.shape != (2, 3):
            raise InputError(f"{where}: face set row has arrays of the wrong shape")
        if (row.mesh is None) != (row.pose is None) or (
                row.mesh is not None and (row.mesh.shape != (468, 3) or len(row.pose) != 3)):
            raise InputError(f"{where}: face set row's mesh must be 468 x 3 points with a "
                             f"3-value pose")
        if Path(row.crop).is_absolute() or ".." in Path(row.crop).parts:
            raise InputError(f"{where}: face set row's crop lies outside the face set")
        return row


@dataclass
class FaceSet:
    root: Path
    meta: dict
    rows: list[FaceRow]
    sources: list[dict]

    @classmethod
    def open(cls, path: str | Path) -> FaceSet:
        root = Path(path)
        meta_path = root / "faceset.json"
        if not meta_path.is_file():
            raise InputError(f"{root}: not a face set (no faceset.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{root}: face set files do not parse ({exc})") from None
        if not isinstance(meta, dict) or meta.get("kind") != FACESET_KIND:
            kind = meta.get("kind") if isinstance(meta, dict) else None
            raise InputError(f"{root}: not a face set (kind is {kind!r})")
        version = meta.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise InputError(f"{root}: face set version {version!r:.40} is not a version number")
        if version > FACESET_VERSION:
            raise InputError(
                f"{root}: face set version {meta['version']} is newer than this swapscope"
            )
        rows = [
            FaceRow.from_json(raw, f"{root / 'faces.jsonl'}")
            for raw in read_jsonl(root / "faces.jsonl")
        ]
        if not rows:
            raise InputError(f"{root}: face set has no faces")
        return cls(root=root, meta=meta, rows=rows, sources=read_jsonl(root / "sources.jsonl"))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def crop_size(self) -> int:
        return int(self.meta["crop_size"])

    @property
    def padding(self) -> float:
        return float(self.meta["padding"])

    def crop(self, index: int) -> np.ndarray:
        """(S, S, 3) uint8 RGB aligned crop of row ``index``."""
        import cv2

        path = self.root / self.rows[index].crop
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{path}: face set crop is missing or unreadable")
        return image[..., ::-1].copy()

    def crop_landmarks(self, index: int) -> np.ndarray:
        """(68, 2) float32 landmarks of row ``index`` in crop px."""

        return landmarks_to_crop(self.rows[index].landmarks, self.rows[index].affine)

    def sample_embeddings(self, embedder, limit: int = 32) -> list[np.ndarray]:
        """Embeddings of up to ``limit`` faces spread evenly over the set."""
        picks = (
            np.linspace(0, len(self.rows) - 1, num=min(limit, len(self.rows))).round().astype(int)
        )
        return [
            embedder.embed(self.crop(int(i)), self.crop_landmarks(int(i))[None])[0]
            for i in np.unique(picks)
        ]

    def people(self) -> list[str]:
        """The people its faces are recorded as (each row's identity), sorted."""
        return sorted({r.identity for r in self.rows})


def faceset_embeddings(path: Path, embedder, limit: int = 32
                       ) -> tuple[list[np.ndarray], list[str], str] | None:
    """A face set's faces as an identity reference's embeddings (up to ``limit``, spread over
    the set), where each came from and its person; None if ``path`` holds no face set (a
    ``swapscope.faces.identity.FaceStore``)."""
    if not (path.is_dir() and (path / "faces.jsonl").is_file()):
        return None
    faceset = FaceSet.open(path)
    picked = faceset.sample_embeddings(embedder, limit=limit)
    return (picked, [f"{path}#{i}" for i in range(len(picked))],
            faceset.rows[0].identity or path.name)


class FaceSetWriter:
    """Builds or extends the face set at ``out``, one committed input at a time."""

    def __init__(
        self, out: Path, crop_size: int, padding: float, backend: str, config: dict
    ) -> None:
        self.out = out
        if out.exists():
            if not (out / "faceset.json").is_file():
                raise InputError(f"{out}: exists and is not a face set; choose another --out")
            self.root = out
        else:
            self.root = out.with_name(out.name + ".partial")
            self.root.mkdir(parents=True, exist_ok=True)
        meta_path = self.root / "faceset.json"
        wanted = {"crop_size": crop_size, "padding": padding, "backend": backend}
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            for key, value in wanted.items():
                if meta.get(key) != value:
                    raise InputError(
                        f"{out}: was made with {key}={meta.get(key)!r}, not {value!r}; use "
                        "another --out"
                    )
        else:
            write_text_atomic(
                meta_path,
                json.dumps(
                    {
                        "kind": FACESET_KIND, "version": FACESET_VERSION, **wanted,
                        "code_version": __version__, "config": config,
                    },
                    indent=2,
                ),
            )
        self._discard_unfinished()

    def done(self) -> set[str]:
        """Source ids of the inputs already committed."""
        return {row["source_id"] for row in read_jsonl(self.root / "sources.jsonl")}

    def work_folder(self, source_id: str) -> Path:
        """An empty folder to write one input's crops in before ``commit``."""
        work = self.root / ".work" / source_id[:16]
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return work

    @staticmethod
    def crop_path(source_id: str, frame_index: int, track_id: int) -> str:
        return f"crops/{source_id[:16]}/{frame_index:06d}_t{track_id}.png"

    def commit(self, source: dict, rows: list[FaceRow]) -> None:
        """Move one input's crops in, append its rows, then mark it done."""
        kill_point("faceset-commit")
        short = source["source_id"][:16]
        crops = self.root / "crops"
        crops.mkdir(exist_ok=True)
        shutil.rmtree(crops / short, ignore_errors=True)
        os.replace(self.root / ".work" / short, crops / short)
        append_jsonl(self.root / "faces.jsonl", [row.to_json() for row in rows])
        append_jsonl(self.root / "sources.jsonl", [source])

    def discard_work(self) -> None:
        shutil.rmtree(self.root / ".work", ignore_errors=True)

    def close(self) -> int:
        """Finish the run: a new face set with faces is renamed into place, one without is
        removed. Returns the number of faces."""
        total = len(read_jsonl(self.root / "faces.jsonl"))
        self.discard_work()
        if self.root != self.out:
            if total:
                os.replace(self.root, self.out)
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        return total

    def _discard_unfinished(self) -> None:
        """Drop whatever a killed run left of inputs it had not finished."""
        self.discard_work()
        done = self.done()
        crops = self.root / "crops"
        if crops.is_dir():
            for folder in crops.iterdir():
                if folder.name not in {sid[:16] for sid in done}:
                    shutil.rmtree(folder, ignore_errors=True)
        faces_path = self.root / "faces.jsonl"
        rows = read_jsonl(faces_path)
        kept = [r for r in rows if r.get("source_id") in done]
        torn = (
            faces_path.is_file()
            and not faces_path.read_text().endswith("\n")
            and faces_path.stat().st_size
        )
        if len(kept) != len(rows) or torn:
            write_jsonl_atomic(faces_path, kept)
