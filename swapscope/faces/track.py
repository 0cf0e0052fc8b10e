"""Link faces across frames into tracks, and smooth landmarks along a track.

Linking: faces of consecutive frames are matched to live tracks by box overlap (IoU, Hungarian
assignment), a track survives ``max_missed`` frames without a face, and a face whose identity
embedding is far from its track's starts a new track even in the same place (a cut, or a second
person stepping in).

Smoothing: a One-Euro filter (Casiez et al., CHI 2012) per landmark coordinate. Its cutoff
frequency rises with speed, so a still face loses its jitter while a fast turn is followed
without the lag a fixed low-pass filter would add.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from swapscope.faces.records import Face, FaceTrack


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between (N, 4) and (M, 4) x1y1x2y2 boxes -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


# a face found again in a frame is the one a swap record names when their boxes overlap more
SWAPPED_IOU = 0.2


def swapped_faces(found: np.ndarray, boxes) -> list[int]:
    """Indices, in detection order, of the detected faces (N, 4) that the swap records' boxes
    (M, 4) name: those whose largest overlap with one of them is over ``SWAPPED_IOU``."""
    if not len(found) or not len(boxes):
        return []
    return [int(i) for i in np.flatnonzero(box_iou(found, boxes).max(1) > SWAPPED_IOU)]


def best_swapped_face(found: np.ndarray, box) -> int | None:
    """The detected face (of N, 4) that one swap record's box names, the one overlapping it
    most; None if none overlaps it over ``SWAPPED_IOU``."""
    if not len(found):
        return None
    overlap = box_iou(found, [box])[:, 0]
    return int(overlap.argmax()) if overlap.max() > SWAPPED_IOU else None


# how far a tracked face may change shape (``face_shape``) before it is embedded again: about
# 10 degrees of head turn
RESHAPED = 0.08


def same_shot(before: np.ndarray, after: np.ndarray) -> bool:
    """True if two (H, W, 3) uint8 frames are of one shot (no cut between them): their 32 x 32
    grey thumbnails differ by less than ``CUT_DIFFERENCE`` grey levels on average. A head that
    turns changes a small part of the picture; a cut changes all of it."""
    small = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
             for f in (before, after)]
    return before.shape == after.shape and float(
        np.mean(np.abs(small[0].astype(np.float32) - small[1]))) < CUT_DIFFERENCE


# grey levels: consecutive frames of the sample clips differ by < 3 mostly, two clips by > 9
CUT_DIFFERENCE = 8.0


def face_shape(landmarks: np.ndarray) -> np.ndarray:
    """(48, 2): the jaw, brows, nose and eyes of the 68 points (not the mouth, which talks),
    centred and scaled to unit norm; a head turning changes it, a head moving does not."""
    points = np.asarray(landmarks, np.float64)[:48]
    points = points - points.mean(0)
    return points / max(float(np.linalg.norm(points)), 1e-9)


@dataclass
class _LiveTrack:
    track_id: int
    faces: list[Face] = field(default_factory=list)
    missed: int = 0
    embeddings: list[np.ndarray] = field(default_factory=list)
    embedded_shape: np.ndarray | None = None  # face_shape of the face last embedded

    @property
    def last_box(self) -> np.ndarray:
        return self.faces[-1].box

    def mean_embedding(self) -> np.ndarray | None:
        return np.mean(self.embeddings[-16:], axis=0) if self.embeddings else None


@dataclass
class Tracker:
    """Online tracker: call ``update`` once per processed frame, in order."""

    iou_threshold: float = 0.3
    max_missed: int = 2  # processed frames a track may go without a face before it ends
    split_distance: float = 0.6  # embedding distance beyond which a face is another person
    _live: list[_LiveTrack] = field(default_factory=list)
    _done: list[_LiveTrack] = field(default_factory=list)
    _next_id: int = 0
    _same_shot: bool = False

    def update(self, faces: list[Face], hints: list[int | None] | None = None,
               same_shot: bool = False) -> list[int]:
        """Assign each face of the current frame to a track; returns their track ids. A face
        found by following a track (``hints``: that track's id, else None) stays on it.
        ``same_shot``: the frame continues the previous one's shot (``same_shot``), no cut."""
        self._same_shot = same_shot
        ids = [-1] * len(faces)
        live = {t.track_id: t for t in self._live}
        for i, hint in enumerate(hints or []):
            if hint in live and hint not in ids and not self._is_other_person(live[hint], faces[i]):
                ids[i] = hint
                self._extend(live[hint], faces[i])
        open_faces = [i for i in range(len(faces)) if ids[i] == -1]
        open_tracks = [t for t in self._live if t.track_id not in ids]
        if open_tracks and open_faces:
            iou = box_iou(
                np.stack([faces[i].box for i in open_faces]),
                np.stack([t.last_box for t in open_tracks]),
            )
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                track, face = open_tracks[c], faces[open_faces[r]]
                if iou[r, c] < self.iou_threshold or self._is_other_person(track, face):
                    continue
                ids[open_faces[r]] = track.track_id
                self._extend(track, face)
        matched = set(ids)
        for track in list(self._live):
            if track.track_id not in matched:
                track.missed += 1
                if track.missed > self.max_missed:
                    self._live.remove(track)
                    self._done.append(track)
        for i, face in enumerate(faces):
            if ids[i] == -1:
                track = _LiveTrack(track_id=self._next_id)
                self._next_id += 1
                self._extend(track, face)
                self._live.append(track)
                ids[i] = track.track_id
        return ids

    def _is_other_person(self, track: _LiveTrack, face: Face) -> bool:
        """Another person has taken the track's place: the face embeds far from both the track's
        recent faces and its last one -- unless, within one shot, the face has turned since its
        last embedding (``RESHAPED``): an identity embedding is not the same for a face seen
        from the front and from the side (dlib's: more than ``split_distance`` apart from about
        35 degrees of yaw), so a head turning away must not end its track, while a cut to
        someone else in the same place still does."""
        ref = track.mean_embedding()
        if ref is None or face.embedding is None:
            return False
        if self._same_shot and track.embedded_shape is not None and float(
                np.linalg.norm(face_shape(face.landmarks) - track.embedded_shape)) > RESHAPED:
            return False
        return min(float(np.linalg.norm(face.embedding - ref)),
                   float(np.linalg.norm(face.embedding - track.embeddings[-1]))
                   ) > self.split_distance

    @staticmethod
    def _extend(track: _LiveTrack, face: Face) -> None:
        track.faces.append(face)
        track.missed = 0
        if face.embedding is not None:
            track.embeddings.append(face.embedding)
            track.embedded_shape = face_shape(face.landmarks)

    def live_boxes(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(track id, last box, last landmarks) of tracks seen in the previous processed frame."""
        return [
            (t.track_id, t.last_box, t.faces[-1].landmarks) for t in self._live if t.missed == 0
        ]

    def needs_embedding(self, track_id: int, landmarks: np.ndarray) -> bool:
        """True while a track has no embedding yet, and when its face (``landmarks``, the 68
        points) has changed shape since its last one: a head turning is embedded every
        ``RESHAPED`` of the way, so the track follows its drift (``_is_other_person``)."""
        for t in self._live:
            if t.track_id == track_id:
                return not t.embeddings or t.embedded_shape is None or float(
                    np.linalg.norm(face_shape(landmarks) - t.embedded_shape)) > RESHAPED
        return True

    def continued_track(self, box: np.ndarray) -> int | None:
        """The track seen in the previous processed frame whose face sat where ``box`` is (box
        overlap of 0.5 or more), or None: a new face."""
        for track_id, last, _ in self.live_boxes():
            if box_iou(box, last)[0, 0] >= 0.5:
                return track_id
        return None

    def tracks(self) -> list[FaceTrack]:
        """Every track so far, live and ended, ordered by id."""
        all_tracks = sorted(self._done + self._live, key=lambda t: t.track_id)
        return [FaceTrack(track_id=t.track_id, faces=tuple(t.faces)) for t in all_tracks]


@dataclass(frozen=True, slots=True)
class OneEuro:
    """One-Euro filter parameters. ``min_cutoff`` (Hz) sets smoothing at rest, ``beta`` how fast
    the cutoff rises with speed (speed measured in face-size units per second)."""

    min_cutoff: float = 1.0
    beta: float = 1.0
    d_cutoff: float = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(
    signal: np.ndarray,
    times: np.ndarray,
    params: OneEuro = OneEuro(),
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Filter a (T, ...) signal sampled at (T,) times (seconds), elementwise along axis 0.

    ``scale`` (T,) normalises speed (e.g. the face size in px per frame), so one set of
    parameters works for small and large faces alike.
    """
    x = np.asarray(signal, np.float64)
    t = np.asarray(times, np.float64)
    out = np.empty_like(x)
    out[0] = x[0]
    dx_prev = np.zeros_like(x[0])
    for i in range(1, len(x)):
        dt = max(t[i] - t[i - 1], 1e-6)
        norm = float(scale[i]) if scale is not None else 1.0
        dx = (x[i] - out[i - 1]) / dt / max(norm, 1e-9)
        a_d = _alpha(params.d_cutoff, dt)
        dx_hat = a_d * dx + (1 - a_d) * dx_prev
        cutoff = params.min_cutoff + params.beta * np.abs(dx_hat)
        a = _alpha(cutoff, dt)
        out[i] = a * x[i] + (1 - a) * out[i - 1]
        dx_prev = dx_hat
    return out.astype(
        signal.dtype if np.issubdtype(np.asarray(signal).dtype, np.floating) else np.float32
    )


def smooth_track(track: FaceTrack, times: np.ndarray, params: OneEuro = OneEuro()) -> FaceTrack:
    """A copy of ``track`` whose landmarks are One-Euro filtered along time.

    times: (N,) seconds of each face's frame. A gap in the track (missed frames) restarts the
    filter, so a face never slides in from where it was seconds ago.
    """
    if len(track.faces) < 2:
        return track
    points = np.stack([f.landmarks for f in track.faces])  # (N, 68, 2)
    sizes = np.array([f.size for f in track.faces])
    frames = track.frame_indices
    gaps = np.flatnonzero(np.diff(frames) > 1 + 3) + 1  # a run of >3 missing frames: restart
    smoothed = np.empty_like(points)
    for seg in np.split(np.arange(len(points)), gaps):
        smoothed[seg] = one_euro(points[seg], times[seg], params, scale=sizes[seg])
    faces = tuple(
        replace(f, landmarks=smoothed[i].astype(np.float32)) for i, f in enumerate(track.faces)
    )
    return replace(track, faces=faces)


def landmark_jitter(points: np.ndarray) -> float:
    """Mean second-difference magnitude of (T, 68, 2) landmarks, in units of the inter-ocular
    distance: how much each point shakes around a locally straight path."""
    pts = np.asarray(points, np.float64)
    if len(pts) < 3:
        return 0.0
    iod = np.linalg.norm(pts[:, 36:42].mean(1) - pts[:, 42:48].mean(1), axis=-1)  # (T,)
    accel = pts[2:] - 2 * pts[1:-1] + pts[:-2]  # (T-2, 68, 2)
    return float(np.mean(np.linalg.norm(accel, axis=-1).mean(-1) / iod[1:-1]))
