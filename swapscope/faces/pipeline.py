"""The per-frame face pipeline of a video or an image, shared by forge extract, forge video and
detect scan.

Per video, in one decode pass: detect (every ``detect_every``-th processed frame, on a downscaled
copy) or follow each track: its last face, shrunk, is found again in the new frame by template
matching and its box placed on its last landmarks moved by that much (a head that turns or sways
moves far between processed frames: on a sample clip, reusing the box where it was left the
landmarks 12% of the face off on average, following it 0.6%) -> 68 landmarks -> identity
embedding (on detection frames and for new tracks) -> track. Backends that batch (fan) detect on
every frame, several frames per call. Faces below ``min_size`` are dropped; with ``identity`` a
reference person is enrolled once, for callers that keep only that person's tracks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from swapscope.errors import InputError, require_at_least_one
from swapscope.faces.backends import DEFAULT_BACKEND, create_backend
from swapscope.faces.identity import DEFAULT_THRESHOLD, Embedder, FaceStore, Reference, enrol
from swapscope.faces.records import Face, FaceTrack
from swapscope.faces.track import Tracker, box_iou, same_shot
from swapscope.media.video import Frame, read_frames
from swapscope.progress import NoProgress, Progress
from swapscope.timing import StageTimer


@dataclass
class PipelineConfig:
    # yunet where yuface installs (bench/face_backends.py: faces from 40-48 px, every sample
    # clip), else dlib
    backend: str = DEFAULT_BACKEND
    device: str = "cpu"  # where the fan backend runs (resolved from --device auto at the CLI)
    batch_size: int = 8  # frames per detector call for backends that batch (fan)
    # long side of the frame copy the detector sees; 0 = the frame as it is (yunet: at most
    # 960 px); None = the backend's own (yunet 640, dlib 480)
    detect_size: int | None = None
    detect_every: int = 5  # full detection every N processed frames; boxes are tracked between
    embed_every: int = 15  # identity embedding every N processed frames (and for new tracks)
    embed: bool = True  # False: no identity embeddings at all (tracks link by box overlap only)
    every: int = 1  # process every N-th frame of a video
    dense_frames: int = 0  # ... and each of its first N frames (faces followed between detections)
    min_size: int = 64  # faces smaller than this (box side, frame px) are dropped
    identity: list[str] = field(default_factory=list)  # reference photos/folders/face sets/json
    identity_threshold: float = DEFAULT_THRESHOLD
    max_frames: int | None = None  # stop each video after this many decoded frames

    def check(self) -> None:
        require_at_least_one(self, "batch_size", "detect_every", "embed_every", "every")
        if self.detect_size is not None and self.detect_size < 0:
            raise InputError("--detect-size must not be negative")
        if self.min_size < 0:
            raise InputError("--min-size must not be negative")
        if self.dense_frames < 0:
            raise InputError("dense_frames must not be negative")
        if self.identity and not self.embed:
            raise InputError("--identity needs identity embeddings; do not turn them off")


@dataclass(frozen=True, slots=True, eq=False)
class TrackedFace:
    """A face with the track it belongs to."""

    face: Face
    track_id: int
    time: float  # seconds into the video (0 for an image)


@dataclass(frozen=True, slots=True, eq=False)
class FrameFaces:
    """One processed frame and its faces."""

    frame: Frame
    faces: tuple[TrackedFace, ...]


@dataclass(frozen=True, slots=True, eq=False)
class MediaFaces:
    """Every face of one video or image."""

    faces: list[TrackedFace]
    frames: int  # processed frames
    tracks: list[FaceTrack]


class _TrackBoxes:
    """How each track's detector box sits on its landmarks, so the box can follow them."""

    def __init__(self) -> None:
        self.relative: dict[int, np.ndarray] = {}  # track id -> (4,) box offsets / landmark extent
        self.scores: dict[int, float] = {}

    def remember(self, track_id: int, face: Face) -> None:
        centre, extent = _centre_extent(face.landmarks)
        self.relative[track_id] = ((face.box - np.tile(centre, 2)) / max(extent, 1e-6)).astype(
            np.float32
        )
        self.scores[track_id] = face.score

    def around(self, track_id: int, landmarks: np.ndarray) -> np.ndarray:
        """(4,) float32 frame px: the track's box placed on these landmarks."""
        centre, extent = _centre_extent(landmarks)
        return (np.tile(centre, 2) + self.relative[track_id] * extent).astype(np.float32)


def _centre_extent(points: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, float(max(hi - lo))


class FacePipeline:
    """Finds, tracks and embeds faces; holds the models so they load once."""

    def __init__(self, config: PipelineConfig, stores: tuple[FaceStore, ...] = ()) -> None:
        """``stores``: the readers of stored faces (face sets) that ``config.identity`` may
        name besides photos and saved references."""
        config.check()
        self.config = config
        options = (
            {"detect_size": config.detect_size}
            if config.backend in ("dlib", "dlib-cnn", "yunet") and config.detect_size is not None
            else {"device": config.device, "batch_size": config.batch_size}
            if config.backend == "fan"
            else {}
        )
        try:
            self.backend = create_backend(config.backend, **options)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.embedder = Embedder() if config.embed else None
        self.reference: Reference | None = None
        self.largest_dropped = 0.0  # size of the largest face below min_size in the current input
        if config.identity:
            self.reference = enrol(config.identity, self.backend, self.embedder, stores=stores)

    def faces_in_video(
        self, path: Path, timer: StageTimer, progress: Progress | None = None
    ) -> MediaFaces:
        """All faces of a video with their track ids and frame times; ``progress`` advances per
        frame."""
        progress = progress or NoProgress()
        tracker = Tracker()
        found: list[TrackedFace] = []
        processed = 0
        for item in self.track_frames(path, timer, tracker):
            found += item.faces
            processed += 1
            progress.advance(1)
        return MediaFaces(faces=found, frames=processed, tracks=tracker.tracks())

    def track_frames(
        self, path: Path, timer: StageTimer, tracker: Tracker | None = None
    ) -> Iterator[FrameFaces]:
        """Per processed frame, in one decode pass, its faces with their track ids."""
        cfg = self.config
        tracker = tracker if tracker is not None else Tracker()
        boxes = _TrackBoxes()
        self.largest_dropped = 0.0
        frames = timer.iterate("decode", read_frames(path, every=cfg.every, limit=cfg.max_frames,
                                                      dense=cfg.dense_frames))
        if hasattr(self.backend, "faces_batch"):
            per_frame = self._batched_faces(frames, timer)
        else:
            per_frame = self._tracked_faces(frames, tracker, boxes, timer)
        last = None  # the previous processed frame's picture
        for processed, (frame, candidates) in enumerate(per_frame):
            faces = [(face, hint) for face, hint in candidates if self._big_enough(face)]
            faces = self._embed_where_needed(frame.image, faces, tracker, processed, timer)
            plain = [f for f, _ in faces]
            shot = last is not None and same_shot(last, frame.image)
            ids = tracker.update(plain, [hint for _, hint in faces], same_shot=shot)
            last = frame.image
            for face, tid, (_, hint) in zip(plain, ids, faces):
                if hint != tid:  # a detector box, or a new track split off a followed one
                    boxes.remember(tid, face)  # how its box sits on its landmarks
            yield FrameFaces(frame=frame, faces=tuple(TrackedFace(face, tid, frame.time)
                                                      for face, tid in zip(plain, ids)))

    def faces_in_image(self, image: np.ndarray, timer: StageTimer) -> MediaFaces:
        """The faces of one (H, W, 3) uint8 RGB image, each its own track."""
        self.largest_dropped = 0.0
        with timer("detect"):
            boxes, box_scores = self.backend.detect(image)
        with timer("landmarks"):
            points = self.backend.landmarks(image, boxes) if len(boxes) else np.zeros((0, 68, 2))
        faces = [Face(frame_index=0, box=b, landmarks=p.astype(np.float32), score=float(s),
                      backend=self.backend.name) for b, p, s in zip(boxes, points, box_scores)]
        faces = [f for f in faces if self._big_enough(f)]
        if faces and self.config.embed:
            with timer("embed"):
                embs = self.embedder.embed_faces(image, faces)
            faces = [_with_embedding(f, e) for f, e in zip(faces, embs)]
        tracks = [FaceTrack(track_id=i, faces=(f,)) for i, f in enumerate(faces)]
        return MediaFaces(
            faces=[TrackedFace(f, i, 0.0) for i, f in enumerate(faces)], frames=1, tracks=tracks
        )

    def no_face_message(self, path: Path) -> str:
        """Why an input gave no face: none at all, or only faces below ``min_size``."""
        if self.largest_dropped > 0:
            return (f"{path}: faces are too small: the largest is {self.largest_dropped:.0f} px, "
                    f"below --min-size {self.config.min_size}")
        return f"{path}: no face found"

    def _big_enough(self, face: Face) -> bool:
        if face.size >= self.config.min_size:
            return True
        self.largest_dropped = max(self.largest_dropped, face.size)
        return False

    def _embed_where_needed(self, image: np.ndarray, faces: list, tracker: Tracker, processed: int,
                            timer: StageTimer) -> list:
        """Embed the faces that need it: every ``embed_every`` frames, a face that starts a new
        track, and a tracked face whose track asks for a fresh embedding (none yet, or the face
        has turned since)."""
        cfg = self.config
        if not cfg.embed:
            return faces
        embed_now = processed % cfg.embed_every == 0
        tracks = [hint if hint is not None else tracker.continued_track(f.box) for f, hint in faces]
        need = [i for i, ((f, _), track) in enumerate(zip(faces, tracks)) if
                embed_now or track is None or tracker.needs_embedding(track, f.landmarks)]
        if not need:
            return faces
        with timer("embed"):
            embs = self.embedder.embed(image, np.stack([faces[i][0].landmarks for i in need]))
        faces = list(faces)
        for i, emb in zip(need, embs):
            faces[i] = (_with_embedding(faces[i][0], emb), faces[i][1])
        return faces

    def _tracked_faces(
        self, frames: Iterable[Frame], tracker: Tracker, boxes: _TrackBoxes, timer: StageTimer
    ):
        """Per frame: (frame, [(face, track id whose box was reused, or None)]).

        Lazy on purpose: the caller updates ``tracker`` and ``boxes`` before the next frame.
        """
        cfg = self.config
        force_detect = True
        previous = None
        for frame in frames:
            image = frame.image
            live = tracker.live_boxes()
            # the detector's cadence counts every-th frames only: the first frames read
            # between them (``dense_frames``) are followed, never detected in; one with nothing
            # to follow into it is skipped (not even yielded, so no track counts it as missed)
            step, off_grid = divmod(frame.index, cfg.every)
            if off_grid and (force_detect or not live):
                continue
            if force_detect or not live or not off_grid and step % cfg.detect_every == 0:
                with timer("detect"):
                    found, found_scores = self.backend.detect(image)
                hints = [None] * len(found)
            else:
                # every live track began with a detection, which recorded how its box sits
                found = np.stack([boxes.around(tid, lms + _moved(previous, image, box))
                                  for tid, box, lms in live])
                found_scores = np.array(
                    [boxes.scores.get(tid, 0.0) for tid, _, _ in live], np.float32
                )
                hints = [tid for tid, _, _ in live]
            force_detect = False
            previous = image
            with timer("landmarks"):
                points = (
                    self.backend.landmarks(image, found) if len(found) else np.zeros((0, 68, 2))
                )
            faces = []
            for box, lms, score, hint in zip(found, points, found_scores, hints):
                # a reused box is trusted only while the landmarks still fill it
                if hint is not None and box_iou(box, boxes.around(hint, lms))[0, 0] < 0.5:
                    force_detect = True
                    continue
                faces.append((Face(frame_index=frame.index, box=np.asarray(box, np.float32),
                                   landmarks=lms.astype(np.float32), score=float(score),
                                   backend=self.backend.name), hint))
            yield frame, faces

    def _batched_faces(self, frames: Iterable[Frame], timer: StageTimer):
        """Per frame: (frame, [(face, None)]): the every-th frames detected ``batch_size`` per
        backend call; a frame read between them (``dense_frames``) gets its faces followed from
        the frame before (each box moved as the tracked path moves it, the landmarks found again
        in it), never a detection, and is skipped when there is no face to follow."""
        size = max(1, int(getattr(self.backend, "batch_size", 8)))
        every = self.config.every
        pending: list[Frame] = []
        last: list[Face] = []  # the faces of the frame before
        previous = None
        for frame in itertools.chain(frames, [None]):
            if frame is not None:
                pending.append(frame)
            grid = [f for f in pending if f.index % every == 0]
            if not pending or frame is not None and len(grid) < size:
                continue
            with timer("detect+landmarks"):
                found = dict(zip((f.index for f in grid), self.backend.faces_batch(
                    [f.image for f in grid], [f.index for f in grid]) if grid else []))
            for item in pending:
                if item.index in found:
                    last = found[item.index]
                elif last:
                    last = self._follow(previous, item, last, timer)
                else:
                    continue
                previous = item.image
                yield item, [(face, None) for face in last]
            pending = []

    def _follow(self, previous: np.ndarray, frame: Frame, faces: list[Face],
                timer: StageTimer) -> list[Face]:
        """``faces`` of the frame before (``previous``) in ``frame``: each box moved by how far
        its face moved, the landmarks found again in it."""
        boxes = np.stack([f.box + np.tile(_moved(previous, frame.image, f.box), 2)
                          for f in faces]).astype(np.float32)
        with timer("landmarks"):
            points = self.backend.landmarks(frame.image, boxes)
        return [Face(frame_index=frame.index, box=b, landmarks=p.astype(np.float32),
                     score=f.score, backend=self.backend.name)
                for f, b, p in zip(faces, boxes, points)]


TRACK_SIDE = 40  # px: the face's width when its last frame is searched for in this one


def _moved(previous: np.ndarray, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(2,) frame px: how far the face in ``box`` of ``previous`` moved in ``image``, found by
    matching it, shrunk to ``TRACK_SIDE`` px wide, within 1.5 face widths of where it was."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1, 1.0)
    scale = TRACK_SIDE / side
    h, w = image.shape[:2]
    margin = 1.5 * side
    sx1, sy1 = int(max(0, x1 - margin)), int(max(0, y1 - margin))
    sx2, sy2 = int(min(w, x2 + margin)), int(min(h, y2 + margin))
    tx1, ty1, tx2, ty2 = (int(max(0, x1)), int(max(0, y1)), int(min(w, x2)), int(min(h, y2)))
    if tx2 - tx1 < 8 or ty2 - ty1 < 8:
        return np.zeros(2, np.float32)

    skip = max(1, int(0.5 / scale))  # every skip-th pixel first: the area filter then has less

    def small(img, a, b, c, d):
        patch = cv2.cvtColor(np.ascontiguousarray(img[b:d:skip, a:c:skip]), cv2.COLOR_RGB2GRAY)
        size = (max(1, round((c - a) * scale)), max(1, round((d - b) * scale)))
        return cv2.resize(patch, size, interpolation=cv2.INTER_AREA)

    template, search = small(previous, tx1, ty1, tx2, ty2), small(image, sx1, sy1, sx2, sy2)
    if (template.shape[0] > search.shape[0] or template.shape[1] > search.shape[1]
            or min(template.shape) < 4):
        return np.zeros(2, np.float32)
    result = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(result)
    if best < 0.3:
        return np.zeros(2, np.float32)
    return np.array([sx1 + bx / scale - tx1, sy1 + by / scale - ty1], np.float32)


def _with_embedding(face: Face, emb: np.ndarray) -> Face:
    return replace(face, embedding=emb.astype(np.float32))
