"""Face records shared by forge, detect and eval.

Coordinates are always stated: "frame px" is the decoded frame (after rotation metadata has been
applied), x to the right and y down, origin at the top-left pixel's corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """One detected face in one frame."""

    frame_index: int
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in frame px
    landmarks: np.ndarray  # (68, 2) float32 in frame px, dlib/iBUG 68-point order
    score: float  # detector confidence; backend-specific scale, higher is surer
    backend: str
    landmarks_3d: np.ndarray | None = None  # (68, 3) float32, x/y in frame px, z relative depth
    embedding: np.ndarray | None = None  # (128,) float32 identity embedding, unit length

    @property
    def size(self) -> float:
        """Face size in frame px: the larger side of the box."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    def to_json(self) -> dict:
        return {
            "frame_index": self.frame_index,
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": np.round(self.landmarks.astype(float), 2).tolist(),
            "score": round(float(self.score), 4),
            "backend": self.backend,
        }


@dataclass(frozen=True, slots=True, eq=False)
class FaceTrack:
    """The same person's faces across consecutive frames of one video."""

    track_id: int
    faces: tuple[Face, ...]  # ordered by frame_index, at most one face per frame
    identity: str | None = None  # label of the enrolled reference this track matched, if any
    similarity: float | None = None  # cosine similarity of the track's mean embedding to it
    meta: dict = field(default_factory=dict)

    @property
    def frame_indices(self) -> np.ndarray:
        """(N,) int64 frame indices of the faces in this track."""
        return np.array([f.frame_index for f in self.faces], dtype=np.int64)

    def mean_embedding(self) -> np.ndarray | None:
        """(128,) float32 unit-length mean of the faces' embeddings, or None if none has one."""
        embs = [f.embedding for f in self.faces if f.embedding is not None]
        if not embs:
            return None
        mean = np.mean(np.stack(embs), axis=0)
        return (mean / max(np.linalg.norm(mean), 1e-8)).astype(np.float32)
