"""The face set on disk (DESIGN.md section 4).

```
FACESET/
  faceset.json    kind, version, crop size, padding, backend, the resolved extract config
  sources.jsonl   one row per finished input: source id (sha256), path, label, counts
  faces.jsonl     one row per face: source id, frame index, time, track id, identity label,
                  box, 68 landmarks (frame px), frame->crop affine, crop size, padding,
                  detector score, backend, crop path
  crops/<source id[:16]>/<frame:06d>_t<track>.png   aligned RGB crops
```
A row holds enough to re-create its crop from the source and to synthesise FWA artifacts on
the original frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forge.errors import InputError

FACESET_KIND = "swapscope.faceset"
FACESET_VERSION = 1


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


@dataclass
class FaceSet:
    root: Path
    meta: dict
    rows: list[dict]
    sources: list[dict]

    @classmethod
    def open(cls, path: str | Path) -> FaceSet:
        root = Path(path)
        meta_path = root / "faceset.json"
        if not meta_path.is_file():
            raise InputError(f"{root}: not a face set (no faceset.json)")
        try:
            meta = json.loads(meta_path.read_text())
            rows = read_jsonl(root / "faces.jsonl")
            sources = read_jsonl(root / "sources.jsonl")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{root}: face set files do not parse ({exc})") from None
        if meta.get("kind") != FACESET_KIND:
            raise InputError(f"{root}: not a face set (kind is {meta.get('kind')!r})")
        if meta.get("version", 0) > FACESET_VERSION:
            raise InputError(f"{root}: face set version {meta['version']} is newer than this swapscope")
        if not rows:
            raise InputError(f"{root}: face set has no faces")
        return cls(root=root, meta=meta, rows=rows, sources=sources)

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

        path = self.root / self.rows[index]["crop"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{path}: face set crop is missing or unreadable")
        return image[..., ::-1].copy()

    def landmarks(self, index: int) -> np.ndarray:
        """(68, 2) float32 landmarks of row ``index`` in frame px."""
        return np.asarray(self.rows[index]["landmarks"], np.float32)

    def affine(self, index: int) -> np.ndarray:
        """(2, 3) float32 frame px -> crop px."""
        return np.asarray(self.rows[index]["affine"], np.float32)

    def crop_landmarks(self, index: int) -> np.ndarray:
        """(68, 2) float32 landmarks of row ``index`` in crop px."""
        from forge.faces.align import landmarks_to_crop

        return landmarks_to_crop(self.landmarks(index), self.affine(index))

    def sample_embeddings(self, embedder, limit: int = 32, seed: int = 0) -> list[np.ndarray]:
        """Embeddings of up to ``limit`` faces spread evenly over the set."""
        picks = np.linspace(0, len(self.rows) - 1, num=min(limit, len(self.rows))).round().astype(int)
        out = []
        for i in np.unique(picks):
            out.append(embedder.embed(self.crop(int(i)), self.crop_landmarks(int(i))[None])[0])
        return out

    def labels(self) -> list[str]:
        return sorted({r.get("identity") or "" for r in self.rows})
