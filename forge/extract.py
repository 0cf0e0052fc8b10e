"""Videos and images -> a face set (aligned crops + faces.jsonl), resumable and atomic.

Per video: decode -> detect (every ``detect_every``-th processed frame, on a downscaled copy) or
reuse each track's box from its previous landmarks -> 68 landmarks -> identity embedding (on
detection frames and for new tracks) -> track -> align -> write the crop. With ``identity``,
whole tracks are kept or dropped by their median distance to the reference.

Atomicity: a new face set is built in ``OUT.partial`` and renamed to ``OUT`` when the run ends;
each input is finished as a unit (its crops are moved in and its rows appended, then the input
is marked done in sources.jsonl). A killed run resumes from ``OUT.partial`` (or ``OUT``),
skipping inputs already marked done and discarding half-written ones.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from forge import __version__
from forge.atomic import write_text_atomic
from forge.errors import InputError, require_at_least_one
from forge.faces.align import face_affine, warp_face
from forge.faces.backends import create_backend
from forge.faces.identity import DEFAULT_THRESHOLD, Embedder, Reference, enrol, match_track
from forge.faces.track import Tracker, box_iou
from forge.faces.types import Face
from forge.faceset import FACESET_KIND, FACESET_VERSION, read_jsonl
from forge.media import collect_media, is_image, load_image, sha256_file
from forge.timing import StageTimer
from forge.video import probe, read_frames


@dataclass
class ExtractConfig:
    backend: str = "dlib"
    device: str = "cpu"  # where the fan backend runs (resolved from --device auto at the CLI)
    batch_size: int = 8  # frames per detector call for backends that batch (fan)
    detect_size: int = 480  # long side of the frame copy the detector sees (dlib); 0 = the frame as it is
    detect_every: int = 5  # full detection every N processed frames; boxes are tracked between
    embed_every: int = 15  # identity embedding every N processed frames (and for new tracks)
    embed: bool = True  # False: no identity embeddings at all (tracks link by box overlap only)
    crop_size: int = 256
    padding: float = 0.25  # fraction of the crop on each side around the template's unit square
    every: int = 1  # process every N-th frame of a video
    min_size: int = 64  # faces smaller than this (box side, frame px) are dropped
    identity: list[str] = field(default_factory=list)  # reference photos/folders/face sets/json
    identity_threshold: float = DEFAULT_THRESHOLD
    label: str | None = None  # identity label for the rows; default: reference name or folder
    max_frames: int | None = None  # stop each video after this many decoded frames

    def check(self) -> None:
        require_at_least_one(self, "batch_size", "detect_every", "embed_every", "crop_size", "every")
        if not 0.0 <= self.padding < 0.5:
            raise InputError("--padding must be in [0, 0.5)")
        if self.detect_size < 0:
            raise InputError("--detect-size must not be negative")
        if self.min_size < 0:
            raise InputError("--min-size must not be negative")
        if self.identity and not self.embed:
            raise InputError("--identity needs identity embeddings; do not turn them off")


@dataclass
class SourceResult:
    path: str
    source_id: str = ""
    status: str = "done"  # done | skipped | failed
    frames: int = 0  # processed frames
    frames_with_face: int = 0
    faces: int = 0  # rows written
    tracks: int = 0
    kept_tracks: int = 0
    label: str = ""
    error: str = ""


@dataclass
class ExtractSummary:
    out: str
    sources: list[SourceResult]
    timings: dict[str, float]
    faces_total: int

    @property
    def failed(self) -> list[SourceResult]:
        return [s for s in self.sources if s.status == "failed"]

    def to_json(self) -> dict:
        return {"out": self.out, "faces_total": self.faces_total, "timings": self.timings,
                "sources": [asdict(s) for s in self.sources]}


class _TrackBoxes:
    """How each track's detector box sits on its landmarks, so the box can follow them."""

    def __init__(self) -> None:
        self.relative: dict[int, np.ndarray] = {}  # track id -> (4,) box offsets / landmark extent
        self.scores: dict[int, float] = {}

    def remember(self, track_id: int, face: Face) -> None:
        centre, extent = _centre_extent(face.landmarks)
        self.relative[track_id] = ((face.box - np.tile(centre, 2)) / max(extent, 1e-6)).astype(np.float32)
        self.scores[track_id] = face.score

    def around(self, track_id: int, landmarks: np.ndarray) -> np.ndarray:
        """(4,) float32 frame px: the track's box placed on these landmarks."""
        centre, extent = _centre_extent(landmarks)
        return (np.tile(centre, 2) + self.relative[track_id] * extent).astype(np.float32)


def _centre_extent(points: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, float(max(hi - lo))


class Extractor:
    """Runs one face set's worth of extraction; holds the models so they load once."""

    def __init__(self, config: ExtractConfig) -> None:
        config.check()
        self.config = config
        options = ({"detect_size": config.detect_size} if config.backend == "dlib"
                   else {"device": config.device, "batch_size": config.batch_size} if config.backend == "fan"
                   else {})
        try:
            self.backend = create_backend(config.backend, **options)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.embedder = Embedder() if config.embed else None
        self.reference: Reference | None = None
        self.largest_dropped = 0.0  # size of the largest face below min_size in the current input
        if config.identity:
            self.reference = enrol(config.identity, self.backend, self.embedder)

    def faces_in_video(
        self, path: Path, timer: StageTimer, progress: Callable[[int], None] | None = None
    ) -> tuple[list[tuple[Face, int, float]], int, list]:
        """All faces of a video with their track ids and frame times.

        Returns (faces as (face, track id, time), processed frame count, tracks).
        """
        tracker = Tracker()
        found: list[tuple[Face, int, float]] = []
        processed = 0
        for frame, faces in self.track_frames(path, timer, tracker):
            found += [(face, tid, frame.time) for face, tid in faces]
            processed += 1
            if progress:
                progress(1)
        return found, processed, tracker.tracks()

    def track_frames(self, path: Path, timer: StageTimer, tracker: Tracker | None = None):
        """Per processed frame, in one decode pass: (frame, [(face, track id)]).

        Backends with ``faces_batch`` (fan) detect on every frame, several frames per call (one
        GPU pass); the others detect every ``detect_every`` frames and reuse tracked boxes
        between. Faces below ``min_size`` are dropped.
        """
        cfg = self.config
        tracker = tracker if tracker is not None else Tracker()
        boxes = _TrackBoxes()
        frames = timer.iterate("decode", read_frames(path, every=cfg.every, limit=cfg.max_frames))
        if hasattr(self.backend, "faces_batch"):
            per_frame = self._batched_faces(frames, timer)
        else:
            per_frame = self._tracked_faces(frames, tracker, boxes, timer)
        for processed, (frame, candidates) in enumerate(per_frame):
            faces = []
            for face, hint in candidates:
                if face.size >= cfg.min_size:
                    faces.append((face, hint))
                else:
                    self.largest_dropped = max(self.largest_dropped, face.size)
            live = tracker.live_boxes()
            embed_now = processed % cfg.embed_every == 0
            need = [i for i, (f, hint) in enumerate(faces) if cfg.embed and (
                    embed_now or hint is None and not _continues_track(f, live)
                    or hint is not None and tracker.needs_embedding(hint))]
            if need:
                with timer("embed"):
                    embs = self.embedder.embed(frame.image, np.stack([faces[i][0].landmarks for i in need]))
                for i, emb in zip(need, embs):
                    faces[i] = (_with_embedding(faces[i][0], emb), faces[i][1])
            plain = [f for f, _ in faces]
            ids = tracker.update(plain)
            for face, tid, hint in zip(plain, ids, [h for _, h in faces]):
                if hint is None:  # detector box: remember how it sits on the landmarks
                    boxes.remember(tid, face)
            yield frame, list(zip(plain, ids))

    def _tracked_faces(self, frames, tracker: Tracker, boxes: _TrackBoxes, timer: StageTimer):
        """Per frame: (frame, [(face, track id whose box was reused, or None)]).

        Lazy on purpose: the caller updates ``tracker`` and ``boxes`` before the next frame.
        """
        cfg = self.config
        force_detect = True
        for processed, frame in enumerate(frames):
            image = frame.image
            live = tracker.live_boxes()
            if force_detect or not live or processed % cfg.detect_every == 0:
                with timer("detect"):
                    found, found_scores = self.backend.detect(image)
                hints = [None] * len(found)
            else:
                # every live track began with a detection, which recorded how its box sits
                found = np.stack([boxes.around(tid, lms) for tid, _, lms in live])
                found_scores = np.array([boxes.scores.get(tid, 0.0) for tid, _, _ in live], np.float32)
                hints = [tid for tid, _, _ in live]
            force_detect = False
            with timer("landmarks"):
                points = self.backend.landmarks(image, found) if len(found) else np.zeros((0, 68, 2))
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

    def _batched_faces(self, frames, timer: StageTimer):
        """Per frame: (frame, [(face, None)]), detected ``batch_size`` frames per backend call."""
        size = max(1, int(getattr(self.backend, "batch_size", 8)))
        batch = []
        for frame in itertools.chain(frames, [None]):
            if frame is not None:
                batch.append(frame)
            if batch and (frame is None or len(batch) == size):
                with timer("detect+landmarks"):
                    per_frame = self.backend.faces_batch([f.image for f in batch], [f.index for f in batch])
                for item, faces in zip(batch, per_frame):
                    yield item, [(face, None) for face in faces]
                batch = []

    def faces_in_image(self, path: Path, timer: StageTimer) -> tuple[list[tuple[Face, int, float]], list]:
        with timer("decode"):
            image = load_image(path)
        with timer("detect"):
            boxes, box_scores = self.backend.detect(image)
        with timer("landmarks"):
            points = self.backend.landmarks(image, boxes) if len(boxes) else np.zeros((0, 68, 2))
        faces = [Face(frame_index=0, box=b, landmarks=p.astype(np.float32), score=float(s),
                      backend=self.backend.name) for b, p, s in zip(boxes, points, box_scores)]
        self.largest_dropped = max([f.size for f in faces if f.size < self.config.min_size], default=0.0)
        faces = [f for f in faces if f.size >= self.config.min_size]
        if faces and self.config.embed:
            with timer("embed"):
                embs = self.embedder.embed_faces(image, faces)
            faces = [_with_embedding(f, e) for f, e in zip(faces, embs)]
        from forge.faces.types import FaceTrack

        tracks = [FaceTrack(track_id=i, faces=(f,)) for i, f in enumerate(faces)]
        return [(f, i, 0.0) for i, f in enumerate(faces)], tracks


def _continues_track(face: Face, live: list) -> bool:
    """True if a detected face sits where a live track's face was (no new person to embed)."""
    return any(box_iou(face.box, box)[0, 0] >= 0.5 for _, box, _ in live)


def _with_embedding(face: Face, emb: np.ndarray) -> Face:
    from dataclasses import replace

    return replace(face, embedding=emb.astype(np.float32))


def _default_label(path: Path, config: ExtractConfig, reference: Reference | None) -> str:
    if config.label:
        return config.label
    if reference is not None:
        return reference.name
    return path.parent.name or path.stem


def _prepare_root(out: Path, config: ExtractConfig) -> Path:
    """The folder to build in: ``out`` if it is already a face set, else ``out.partial``."""
    resolved = asdict(config)
    if out.exists():
        meta_path = out / "faceset.json"
        if not meta_path.is_file():
            raise InputError(f"{out}: exists and is not a face set; choose another --out")
        root = out
    else:
        root = out.with_name(out.name + ".partial")
        root.mkdir(parents=True, exist_ok=True)
        meta_path = root / "faceset.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        for key in ("crop_size", "padding", "backend"):
            if meta.get(key) != resolved[key]:
                raise InputError(
                    f"{out}: was made with {key}={meta.get(key)!r}, not {resolved[key]!r}; use another --out"
                )
    else:
        write_text_atomic(meta_path, json.dumps({
            "kind": FACESET_KIND, "version": FACESET_VERSION, "crop_size": config.crop_size,
            "padding": config.padding, "backend": config.backend, "code_version": __version__,
            "config": resolved,
        }, indent=2))
    _discard_unfinished(root)
    return root


def _discard_unfinished(root: Path) -> None:
    """Drop whatever a killed run left of inputs it had not finished."""
    shutil.rmtree(root / ".work", ignore_errors=True)
    done = {row["source_id"] for row in read_jsonl(root / "sources.jsonl")}
    crops = root / "crops"
    if crops.is_dir():
        for folder in crops.iterdir():
            if folder.name not in {sid[:16] for sid in done}:
                shutil.rmtree(folder, ignore_errors=True)
    faces_path = root / "faces.jsonl"
    rows = read_jsonl(faces_path)
    kept = [r for r in rows if r["source_id"] in done]
    if len(kept) != len(rows):
        write_text_atomic(faces_path, "".join(json.dumps(r) + "\n" for r in kept))


def _append_lines(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def extract(
    inputs: list[str | Path],
    out: str | Path,
    config: ExtractConfig,
    progress=None,
) -> ExtractSummary:
    """Extract faces of every input into the face set at ``out``.

    ``progress``, if given, is an object with ``start(path, total)``, ``advance(n)`` and
    ``finish(result)`` (the CLI's rich progress bar). Raises InputError when the inputs cannot
    be used at all; per-input failures are reported in the summary.
    """
    out = Path(out)
    media = collect_media(inputs)
    extractor = Extractor(config)
    root = _prepare_root(out, config)
    done = {row["source_id"] for row in read_jsonl(root / "sources.jsonl")}
    timer = StageTimer()
    results: list[SourceResult] = []
    for path in media:
        result = SourceResult(path=str(path))
        results.append(result)
        try:
            with timer("hash"):
                result.source_id = sha256_file(path)
            if result.source_id in done:
                result.status = "skipped"
                if progress:
                    progress.finish(result)
                continue
            _extract_one(extractor, path, root, result, timer, progress)
            done.add(result.source_id)
        except InputError as exc:
            result.status = "failed"
            result.error = str(exc)
            shutil.rmtree(root / ".work", ignore_errors=True)
        if progress:
            progress.finish(result)
    faces_total = len(read_jsonl(root / "faces.jsonl"))
    shutil.rmtree(root / ".work", ignore_errors=True)
    if root != out:
        if faces_total:
            os.replace(root, out)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return ExtractSummary(out=str(out), sources=results, timings=timer.as_dict(), faces_total=faces_total)


def _extract_one(extractor: Extractor, path: Path, root: Path, result: SourceResult,
                 timer: StageTimer, progress) -> None:
    cfg = extractor.config
    extractor.largest_dropped = 0.0
    if is_image(path):
        if progress:
            progress.start(path, 1)
        found, tracks = extractor.faces_in_image(path, timer)
        result.frames = 1
        if progress:
            progress.advance(1)
    else:
        info = probe(path)
        total = info.frame_count // cfg.every if info.frame_count else None
        if cfg.max_frames:
            total = min(total or cfg.max_frames, -(-cfg.max_frames // cfg.every))
        if progress:
            progress.start(path, total)
        found, result.frames, tracks = extractor.faces_in_video(
            path, timer, progress.advance if progress else None
        )
    result.tracks = len(tracks)
    if not found:
        raise InputError(_no_face_message(path, extractor))
    keep_tracks = {t.track_id for t in tracks}
    if extractor.reference is not None:
        keep_tracks = {t.track_id for t in tracks
                       if match_track(t, extractor.reference, cfg.identity_threshold)[0]}
        if not keep_tracks:
            raise InputError(f"{path}: no face matches the identity {extractor.reference.name!r}")
    result.kept_tracks = len(keep_tracks)
    result.label = _default_label(path, cfg, extractor.reference)
    short = result.source_id[:16]
    work = root / ".work" / short
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    frames_with_face = set()
    for face, track_id, time in found:
        if track_id not in keep_tracks:
            continue
        with timer("align"):
            affine = face_affine(face.landmarks, cfg.crop_size, cfg.padding)
        rows.append((face, track_id, time, affine))
        frames_with_face.add(face.frame_index)
    _write_crops(path, rows, work, cfg, timer, is_image(path))
    table = []
    for face, track_id, time, affine in rows:
        table.append({
            "source_id": result.source_id, "source_path": str(path), "frame_index": face.frame_index,
            "time": round(float(time), 4), "track_id": int(track_id), "identity": result.label,
            "box": [round(float(v), 2) for v in face.box],
            "landmarks": np.round(face.landmarks.astype(float), 2).tolist(),
            "affine": np.round(affine.astype(float), 6).tolist(), "crop_size": cfg.crop_size,
            "padding": cfg.padding, "score": round(float(face.score), 4), "backend": face.backend,
            "crop": f"crops/{short}/{face.frame_index:06d}_t{track_id}.png",
        })
    result.faces = len(table)
    result.frames_with_face = len(frames_with_face)
    with timer("write"):
        crops = root / "crops"
        crops.mkdir(exist_ok=True)
        shutil.rmtree(crops / short, ignore_errors=True)
        os.replace(work, crops / short)
        _append_lines(root / "faces.jsonl", table)
        _append_lines(root / "sources.jsonl", [{
            "source_id": result.source_id, "path": str(path), "label": result.label,
            "frames": result.frames, "frames_with_face": result.frames_with_face,
            "faces": result.faces, "tracks": result.tracks, "kept_tracks": result.kept_tracks,
        }])


def _write_crops(path: Path, rows, work: Path, cfg: ExtractConfig, timer: StageTimer, image_input: bool) -> None:
    """Second pass over the source: cut and save the crops of the kept faces.

    Decoding twice is cheaper than holding every frame of a video in memory while tracks are
    still being decided, and decode is the cheapest stage (see BENCHMARKS.md).
    """
    by_frame: dict[int, list] = {}
    for face, track_id, _, affine in rows:
        by_frame.setdefault(face.frame_index, []).append((track_id, affine))
    if image_input:
        with timer("decode"):
            frames = [(0, load_image(path))]
    else:
        frames = ((f.index, f.image) for f in timer.iterate(
            "decode", read_frames(path, every=cfg.every, limit=cfg.max_frames)))
    for index, image in frames:
        for track_id, affine in by_frame.get(index, []):
            with timer("align"):
                crop = warp_face(image, affine, cfg.crop_size)
            with timer("write"):
                cv2.imwrite(str(work / f"{index:06d}_t{track_id}.png"), crop[..., ::-1],
                            [cv2.IMWRITE_PNG_COMPRESSION, 1])


def _no_face_message(path: Path, extractor: Extractor) -> str:
    min_size = extractor.config.min_size
    if extractor.largest_dropped > 0:
        return (f"{path}: faces are too small: the largest is {extractor.largest_dropped:.0f} px, "
                f"below --min-size {min_size}")
    return f"{path}: no face found"
