"""``detect scan``: score videos and images with a face-swap artifact detector.

The paper's rules: a face scores the mean of the top ``top_k`` fake probabilities over ``rois``
random ROIs; a frame scores the max over its faces; a video scores the mean of the highest
``top_fraction`` of its frame scores. Two presets fill the knobs a user leaves open:

- ``paper``: every frame, dlib detection on every frame at full resolution, 10 ROIs, top 5;
- ``fast`` (default): every 5th frame, detection every 6th scored frame with boxes following
  the faces between (``swapscope.faces.pipeline``), one ROI per face, and ROIs of many frames
  batched into one network call.

Videos are decoded once: faces are found, cropped and scored in the same pass. Results are
``swapscope.formats.scan`` records. ``bench/scan.py`` measures what the fast preset gains in
speed and costs in AUC.

This module is the work, whichever engine runs it; ``detect.scan_driver`` picks the engine (this
process, or ``detect.ray_scan``) and keeps the results table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from detect.artifacts import crop_roi, random_roi
from detect.checkpoint import Ensemble, combine, load_checkpoint
from detect.heatmap import HeatmapWriter
from swapscope.errors import InputError, require_at_least_one
from swapscope.faces.backends import DEFAULT_BACKEND, DEFAULT_DETECT_SIZE
from swapscope.faces.pipeline import FacePipeline, PipelineConfig
from swapscope.faces.records import Face
from swapscope.files import sha256_file
from swapscope.formats.scan import (
    ERROR,
    FAKE,
    NO_ARTIFACT,
    NO_FACE,
    TOP_FRACTION,
    FaceScore,
    FrameScore,
    InputScan,
    ProvenanceReport,
    face_score,
    video_score,
)
from swapscope.labels.provenance import ProvenanceReader, read_provenance
from swapscope.media.images import is_image, load_image
from swapscope.timing import StageTimer

DEFAULT_DETECTOR = Path(__file__).resolve().parent / "weights" / "genuine_fwa_sbi_lite0"

# knobs a preset fills when the user leaves them unset; detect_size 0 = the frame's full size.
# fast finds faces with YuNet at 640 px (from 40-48 px: bench/face_backends.py; dlib at 480 where
# yuface has no wheel), the paper's protocol with dlib's HOG on every full-size frame
MODES: dict[str, dict] = {
    "fast": {"rois": 1, "top_k": 1, "every": 5, "detect_every": 6, "backend": DEFAULT_BACKEND,
             "detect_size": DEFAULT_DETECT_SIZE[DEFAULT_BACKEND]},
    "paper": {"rois": 10, "top_k": 5, "every": 1, "detect_every": 1, "backend": "dlib",
              "detect_size": 0},
}


@dataclass
class ScanConfig:
    models: tuple[str, ...] = ()  # detector or ensemble checkpoints (several: their mean);
    # () = the shipped one
    mode: str = "fast"  # preset for the knobs left at None: fast | paper
    rois: int | None = None  # random ROIs per face
    top_k: int | None = None  # a face scores the mean of its top-k ROI probabilities
    every: int | None = None  # score every N-th frame
    detect_every: int | None = None  # run the face detector every N scored frames; track between
    detect_size: int | None = None  # long side the detector sees; 0 = full frame
    backend: str | None = None  # face backend (swapscope.faces.backends)
    top_fraction: float = TOP_FRACTION  # a video scores the mean of its highest frame scores
    threshold: float | None = None  # verdict "fake" at or above it; None = the detector's own
    batch_size: int = 16  # ROIs per network call (16: fastest on a 2-core CPU, bench/scan.py)
    # read swapscope's watermark in every frame of the first N (0: none); the scored frames
    # among them and the frames between, whose faces are followed from the scored ones
    label_frames: int = 150
    heatmap: str | None = None  # write the scored frames with scores and Grad-CAM maps here
    max_frames: int | None = None  # stop each video after this many decoded frames
    seed: int = 0

    def resolved(self) -> ScanConfig:
        """The config with the preset's values in every knob left at None, checked."""
        if self.mode not in MODES:
            raise InputError(f"unknown --mode {self.mode!r}; choose from {sorted(MODES)}")
        preset = {k: v for k, v in MODES[self.mode].items() if getattr(self, k) is None}
        config = replace(self, models=tuple(self.models) or (str(DEFAULT_DETECTOR),), **preset)
        require_at_least_one(config, "rois", "top_k", "every", "detect_every", "batch_size")
        if config.label_frames < 0:
            raise InputError("--label-frames must not be negative")
        if config.top_k > config.rois:
            raise InputError("--top-k must not exceed --rois")
        if not 0 < config.top_fraction <= 1:
            raise InputError("--top-fraction must be in (0, 1]")
        if config.detect_size < 0:
            raise InputError("--detect-size must not be negative")
        return config


def scoring_rules(config: ScanConfig) -> dict:
    """The resolved knobs that decide a frame's and a video's score (not which checkpoints,
    which are hashed apart, nor where a heatmap goes): what a cached or tabled score is keyed
    by (``detect.results.rules_key``), so a changed preset never returns a stale score."""
    resolved = config.resolved()
    return {f.name: getattr(resolved, f.name) for f in fields(ScanConfig)
            if f.name not in ("models", "heatmap")}


@dataclass(slots=True)
class _FaceWork:
    """A face while its ROIs wait for their batched network call."""

    box: list[float]
    rois: list[np.ndarray]  # (4,) int boxes, frame px
    score: float | None = None


@dataclass
class Gathered:
    """One input decoded, its faces found and their ROIs cut: what the network has not scored
    yet (``pending`` faces, their ``crops``), with every scored frame's faces in ``frames``."""

    path: Path
    sha256: str
    frames: list[tuple[int, float, list[_FaceWork]]]
    pending: list[_FaceWork]
    crops: dict[int, list[np.ndarray]]
    provenance: ProvenanceReport
    damage: str | None  # a decode error part-way, reported after the labels of what was read
    timer: StageTimer


class Gatherer:
    """The CPU half of a scan: decode an input, find its faces, cut their ROIs, read its labels.
    ``detect.ray_scan`` runs it in Ray tasks; ``Scanner`` runs it in its own process."""

    def __init__(self, config: ScanConfig, sizes: tuple[int, ...]) -> None:
        self.config, self.sizes = config.resolved(), sizes
        self.pipeline = FacePipeline(PipelineConfig(
            every=self.config.every, detect_every=self.config.detect_every,
            backend=self.config.backend, detect_size=self.config.detect_size, min_size=32,
            embed=False,
            max_frames=self.config.max_frames, dense_frames=self.config.label_frames))

    def gather(self, path: Path, timer: StageTimer | None = None,
               score: Callable[[list[_FaceWork], dict], None] | None = None,
               writer=None) -> Gathered:
        """Every scored frame's faces and ROIs; ``score`` (if given) is handed each full batch
        of ROIs as it is cut (and each frame's, with a heatmap ``writer``), so memory stays one
        batch; without it every ROI waits in the result."""
        cfg, sizes = self.config, self.sizes
        timer = timer or StageTimer()
        rng = np.random.default_rng(cfg.seed)
        pending: list[_FaceWork] = []  # faces whose ROIs are not scored yet
        crops: dict[int, list[np.ndarray]] = {size: [] for size in sizes}  # their ROIs, in order
        frames: list[tuple[int, float, list[_FaceWork]]] = []
        reader = ProvenanceReader()
        for index, time_s, image, faces in self._read(path, timer):
            if faces and index < cfg.label_frames:
                with timer("labels"):
                    reader.add(image, [face.landmarks for face in faces])
            if not faces or index % cfg.every:  # a frame read for its label only
                continue
            with timer("roi"):
                work = [_FaceWork(box=[round(float(v), 1) for v in face.box],
                                  rois=[random_roi(face.landmarks, image.shape, rng)
                                        for _ in range(cfg.rois)]) for face in faces]
                for face, size in itertools.product(work, sizes):
                    crops[size] += [crop_roi(image, b, size) for b in face.rois]
            frames.append((index, time_s, work))
            pending += work
            if writer is not None:
                with timer("heatmap"):
                    writer.write(image, time_s, [[int(v) for v in f.rois[0]] for f in work])
            if score is not None and (writer is not None
                                      or len(crops[sizes[0]]) >= cfg.batch_size):
                score(pending, crops)
                pending, crops = [], {size: [] for size in sizes}
        damage = self._damage
        with timer("labels"):
            provenance = read_provenance(path, reader).report()
        with timer("hash"):
            sha256 = sha256_file(path)
        return Gathered(path=path, sha256=sha256, frames=frames, pending=pending, crops=crops,
                        provenance=provenance, damage=damage, timer=timer)

    def _read(self, path: Path, timer: StageTimer):
        """``_frames``, ending quietly at a decode error part-way and keeping it in ``_damage``
        (a file that does not open at all still raises)."""
        self._damage = None
        produced = False
        try:
            for item in self._frames(path, timer):
                produced = True
                yield item
        except InputError as exc:
            if not produced:
                raise
            self._damage = str(exc)

    def _frames(
        self, path: Path, timer: StageTimer
    ) -> Iterator[tuple[int, float, np.ndarray, list[Face]]]:
        """(frame index, time s, image, faces) per frame read (the scored ones and, in the
        label window, those between), from one decode pass."""
        if is_image(path):
            with timer("decode"):
                image = load_image(path)
            found = self.pipeline.faces_in_image(image, timer)
            yield 0, 0.0, image, [f.face for f in found.faces]
            return
        for item in self.pipeline.track_frames(path, timer):
            yield item.frame.index, item.frame.time, item.frame.image, [f.face for f in item.faces]


class Scanner:
    """Holds the detectors and the face pipeline; ``scan`` one input at a time."""

    def __init__(self, config: ScanConfig, device: str, detector: Ensemble | None = None,
                 gather: bool = True) -> None:
        """``gather=False``: only the network half (``finish``), for a Ray scoring actor."""
        self.config = config = config.resolved()
        self.detector = detector or combine([load_checkpoint(m, device) for m in config.models])
        self.threshold, self.threshold_source = (
            (config.threshold, "--threshold") if config.threshold is not None
            else self.detector.threshold)
        self.gatherer = Gatherer(config, self.detector.input_sizes) if gather else None

    def scan(self, path: Path) -> InputScan:
        timer = StageTimer()
        writer = None
        if self.config.heatmap:
            writer = HeatmapWriter(self.config.heatmap, path, self.detector.members[0])

        def score(faces, crops) -> None:
            with timer("classify"):
                self._score(faces, crops)

        try:
            got = self.gatherer.gather(path, timer, score, writer)
            if writer is not None and got.damage is None:  # (it scored every frame it drew)
                with timer("heatmap"):
                    writer.close()
        finally:
            if writer is not None:
                writer.abort()
        return self.finish(got)

    def finish(self, got: Gathered) -> InputScan:
        """Score what ``got`` still holds and make its result."""
        with got.timer("classify"):
            self._score(got.pending, got.crops)
        result = self._result(got)
        if got.damage is not None:
            result.score, result.verdict, result.error = None, ERROR, got.damage
        return result

    def _score(self, faces: list[_FaceWork], crops: dict[int, list[np.ndarray]]) -> None:
        if not faces:
            return
        probs = self.detector.probabilities(crops, self.config.batch_size)
        start = 0
        for face in faces:
            face.score = face_score(probs[start:start + len(face.rois)], self.config.top_k)
            start += len(face.rois)

    def _result(self, got: Gathered) -> InputScan:
        scored = [
            FrameScore(
                frame=index,
                time=round(time_s, 4),
                score=max(f.score for f in work),
                faces=[
                    FaceScore(box=f.box, roi=[int(v) for v in f.rois[0]], score=f.score)
                    for f in work
                ],
            )
            for index, time_s, work in got.frames
        ]
        path = got.path
        result = InputScan(path=str(path), sha256=got.sha256, score=None, verdict=NO_FACE,
                           frames=scored, timings=got.timer.as_dict(), provenance=got.provenance,
                           error="" if scored else f"{path}: no face found to score")
        if scored:
            result.score = video_score(np.array(result.frame_scores), self.config.top_fraction)
            result.verdict = FAKE if result.score >= self.threshold else NO_ARTIFACT
        return result


def error_result(path: Path, exc: InputError) -> InputScan:
    """The result of an input that cannot be scored: its error, and whatever labels its
    metadata and Content Credentials carry."""
    return InputScan(path=str(path), sha256="", score=None, verdict=ERROR, error=str(exc),
                     provenance=_labels_only(path))


def _labels_only(path: Path) -> ProvenanceReport:
    """The labels of a file whose frames do not decode: metadata and Content Credentials (none
    where even those cannot be read)."""
    try:
        return read_provenance(path).report()
    except (InputError, OSError, ValueError):
        return ProvenanceReport()
