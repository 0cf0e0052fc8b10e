"""Face records shared by forge, detect and eval.

Coordinates are always stated: "frame px" is the decoded frame (after rotation metadata has been
applied), x to the right and y down, origin at the top-left pixel's corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_size(boxes: np.ndarray) -> np.ndarray:
    """The larger side of each (..., 4) x1, y1, x2, y2 box, px: how a face's size is measured
    and ranked, everywhere."""
    b = np.asarray(boxes, np.float64)
    return np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])


def largest_box(boxes: np.ndarray) -> int:
    """Index of the largest of (N, 4) boxes: the person of a photo or a crop."""
    return int(np.argmax(box_size(boxes)))


def largest_face(faces: list[Face]) -> Face:
    """The largest of ``faces`` (at least one)."""
    return max(faces, key=lambda f: f.size)


@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """One detected face in one frame."""

    frame_index: int
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 in frame px
    landmarks: np.ndarray  # (68, 2) float32 in frame px, dlib/iBUG 68-point order
    score: float  # detector confidence; backend-specific scale, higher is surer
    backend: str
    embedding: np.ndarray | None = None  # (128,) float32 dlib identity embedding (Euclidean space)

    @property
    def size(self) -> float:
        """Face size in frame px: the larger side of the box."""
        return float(box_size(self.box))


@dataclass(frozen=True, slots=True, eq=False)
class FaceTrack:
    """The same person's faces across consecutive frames of one video."""

    track_id: int
    faces: tuple[Face, ...]  # ordered by frame_index, at most one face per frame

    @property
    def frame_indices(self) -> np.ndarray:
        """(N,) int64 frame indices of the faces in this track."""
        return np.array([f.frame_index for f in self.faces], dtype=np.int64)
