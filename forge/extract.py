"""Videos and images -> a face set (aligned crops + faces.jsonl), resumable and atomic.

Per input: the face pipeline (``swapscope.faces.pipeline``: detect, landmarks, embed, track)
finds the faces; with ``identity``, whole tracks are kept or dropped by their median distance to
the reference; each kept face is aligned and its crop written. The face set's writer
(``swapscope.formats.faceset``) commits each input as a unit, so a killed run resumes where it
stopped.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from swapscope.errors import InputError, require_at_least_one
from swapscope.faces.align import face_affine, warp_face
from swapscope.faces.identity import match_track
from swapscope.faces.mesh import Mesher, head_pose
from swapscope.faces.pipeline import FacePipeline, MediaFaces, PipelineConfig, TrackedFace
from swapscope.files import WriteLock, sha256_file, writable_folder
from swapscope.formats.faceset import FaceRow, FaceSetWriter, faceset_embeddings
from swapscope.media.images import collect_media, is_image, load_image
from swapscope.media.video import probe, read_frames
from swapscope.progress import NoProgress, Progress
from swapscope.timing import StageTimer

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig(PipelineConfig):
    crop_size: int = 256
    padding: float = 0.25  # fraction of the crop on each side around the template's unit square
    label: str | None = None  # the person of the rows (the --label option; named as it is);
    # default: the reference's name, else the folder
    mesh: bool = False  # also record each face's 468-point 3D mesh and head pose (mesh extra)

    def check(self) -> None:
        super().check()
        require_at_least_one(self, "crop_size")
        if not 0.0 <= self.padding < 0.5:
            raise InputError("--padding must be in [0, 0.5)")


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
    label: str = ""  # the person its faces were recorded as (the JSON key: "label")
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


def extract(inputs: list[str | Path], out: str | Path, config: ExtractConfig,
            progress: Progress | None = None) -> ExtractSummary:
    """Extract faces of every input into the face set at ``out``.

    ``progress`` advances over the frames of each input; a line per finished input is logged.
    Raises InputError when the inputs cannot be used at all; per-input failures are reported
    in the summary.
    """
    progress = progress or NoProgress()
    out = Path(out)
    media = [m for m in collect_media(inputs) if not _inside(m, out)]  # never its own crops
    if not media:
        raise InputError(f"{out}: the inputs hold no media outside the face set being written")
    writable_folder(out.parent)
    pipeline = FacePipeline(config, stores=(faceset_embeddings,))
    mesher = Mesher() if config.mesh else None  # without the extra: one line, before any work
    with WriteLock(out.with_name(f".{out.name}.lock"), out, "forge extract"):
        writer = FaceSetWriter(out, config.crop_size, config.padding, config.backend,
                               asdict(config))
        return _extract_all(media, pipeline, writer, progress, mesher)


def _inside(path: Path, out: Path) -> bool:
    """Whether ``path`` lies in the face set ``out`` (or its unfinished ``out.partial``)."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder.resolve())
               for folder in (out, out.with_name(out.name + ".partial")))


def _extract_all(media: list[Path], pipeline: FacePipeline, writer: FaceSetWriter,
                 progress: Progress, mesher: Mesher | None = None) -> ExtractSummary:
    """Each input in turn, skipping those already in the face set; a failed input is one
    reported row."""
    done = writer.done()
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
            else:
                _extract_one(pipeline, path, writer, result, timer, progress, mesher)
                done.add(result.source_id)
        except InputError as exc:
            result.status, result.error = "failed", str(exc)
            writer.discard_work()
        progress.stop()
        _log_result(result)
    faces_total = writer.close()
    return ExtractSummary(out=str(writer.out), sources=results, timings=timer.as_dict(),
                          faces_total=faces_total)


def _log_result(result: SourceResult) -> None:
    if result.status == "skipped":
        log.info("[dim]skipped[/] %s (already in the face set)", result.path)
    elif result.status == "done":
        log.info(
            "[green]done[/] %s: %d faces in %d/%d frames, %d/%d tracks, label %r", result.path,
            result.faces, result.frames_with_face, result.frames, result.kept_tracks, result.tracks,
            result.label,
        )
    # a failed input is reported once, in the command's closing error line


def _extract_one(pipeline: FacePipeline, path: Path, writer: FaceSetWriter, result: SourceResult,
                 timer: StageTimer, progress: Progress, mesher: Mesher | None = None) -> None:
    """Find, keep, align and write one input's faces, and commit them to the face set."""
    cfg: ExtractConfig = pipeline.config
    image = None
    if is_image(path):
        progress.start(path.name, 1)
        with timer("decode"):
            image = load_image(path)
        found = pipeline.faces_in_image(image, timer)
        progress.advance(1)
    else:
        progress.start(path.name, _frames_to_process(path, cfg))
        found = pipeline.faces_in_video(path, timer, progress)
    result.frames, result.tracks = found.frames, len(found.tracks)
    if not found.faces:
        raise InputError(pipeline.no_face_message(path))
    kept = _kept_faces(pipeline, found, path)
    result.kept_tracks = len({f.track_id for f in kept})
    result.label = _person_of(path, cfg, pipeline)
    with timer("align"):
        affines = [face_affine(f.face.landmarks, cfg.crop_size, cfg.padding) for f in kept]
    rows = [
        FaceRow(
            source_id=result.source_id, source_path=str(path), frame_index=f.face.frame_index,
            time=f.time, track_id=int(f.track_id), identity=result.label, box=f.face.box,
            landmarks=f.face.landmarks, affine=affine, crop_size=cfg.crop_size, padding=cfg.padding,
            score=f.face.score, backend=f.face.backend,
            crop=writer.crop_path(result.source_id, f.face.frame_index, f.track_id),
        )
        for f, affine in zip(kept, affines)
    ]
    rows = _write_crops(path, image, rows, writer, cfg, timer, mesher)
    result.faces = len(rows)
    result.frames_with_face = len({r.frame_index for r in rows})
    with timer("write"):
        writer.commit(
            {
                "source_id": result.source_id, "path": str(path), "label": result.label,
                "frames": result.frames, "frames_with_face": result.frames_with_face,
                "faces": result.faces, "tracks": result.tracks, "kept_tracks": result.kept_tracks,
            },
            rows,
        )


def _frames_to_process(path: Path, cfg: ExtractConfig) -> int | None:
    info = probe(path)
    total = info.frame_count // cfg.every if info.frame_count else None
    if cfg.max_frames:
        total = min(total or cfg.max_frames, -(-cfg.max_frames // cfg.every))
    return total


def _kept_faces(pipeline: FacePipeline, found: MediaFaces, path: Path) -> list[TrackedFace]:
    """Every face, or with ``identity`` only the faces of the tracks that match the reference."""
    if pipeline.reference is None:
        return found.faces
    keep = {t.track_id for t in found.tracks
            if match_track(t, pipeline.reference, pipeline.config.identity_threshold)[0]}
    if not keep:
        raise InputError(f"{path}: no face matches the identity {pipeline.reference.name!r}")
    return [f for f in found.faces if f.track_id in keep]


def _person_of(path: Path, config: ExtractConfig, pipeline: FacePipeline) -> str:
    if config.label:
        return config.label
    if pipeline.reference is not None:
        return pipeline.reference.name
    return path.parent.name or path.stem


def _write_crops(path: Path, image: np.ndarray | None, rows: list[FaceRow], writer: FaceSetWriter,
                 cfg: ExtractConfig, timer: StageTimer, mesher: Mesher | None = None
                 ) -> list[FaceRow]:
    """Cut and save the crops of the kept faces: from ``image`` (an image input), else from a
    second pass over the video; with ``mesher``, the rows come back with each face's mesh and
    head pose (a face the mesh does not find keeps none).

    Decoding twice is cheaper than holding every frame of a video in memory while tracks are
    still being decided, and decode is the cheapest stage (see BENCHMARKS.md).
    """
    work = writer.work_folder(rows[0].source_id)
    by_frame: dict[int, list[FaceRow]] = {}
    for row in rows:
        by_frame.setdefault(row.frame_index, []).append(row)
    if image is not None:
        frames = [(0, image)]
    else:
        frames = ((f.index, f.image) for f in timer.iterate(
            "decode", read_frames(path, every=cfg.every, limit=cfg.max_frames)))
    meshed: dict[int, FaceRow] = {}  # id(row) -> the row with its mesh
    for index, frame in frames:
        for row in by_frame.get(index, []):
            with timer("align"):
                crop = warp_face(frame, row.affine, cfg.crop_size)
            with timer("write"):
                cv2.imwrite(
                    str(work / Path(row.crop).name),
                    crop[..., ::-1],
                    [cv2.IMWRITE_PNG_COMPRESSION, 1],
                )
            if mesher is not None:
                with timer("mesh"):
                    points = mesher.points(frame, row.box)
                if points is not None:
                    pose = head_pose(points)
                    meshed[id(row)] = replace(row, mesh=points,
                                              pose=(pose.yaw, pose.pitch, pose.roll))
    return [meshed.get(id(row), row) for row in rows]
