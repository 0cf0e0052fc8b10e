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
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from detect.artifacts import crop_roi, random_roi
from detect.checkpoint import Ensemble, combine, load_checkpoint
from swapscope.errors import InputError, require_at_least_one
from swapscope.faces.pipeline import FacePipeline, PipelineConfig
from swapscope.faces.records import Face
from swapscope.files import sha256_file
from swapscope.formats.provenance import LabelReader, read_provenance
from swapscope.formats.scan import FaceScore, FrameScore, InputScan, ScanResult
from swapscope.media.images import collect_media, is_image, load_image
from swapscope.timing import StageTimer

DEFAULT_DETECTOR = Path(__file__).resolve().parent / "weights" / "fwa_sbi_lite0"

# knobs a preset fills when the user leaves them unset; detect_size 0 = the frame's full size
MODES: dict[str, dict] = {
    "fast": {"rois": 1, "top_k": 1, "every": 5, "detect_every": 6, "detect_size": 480},
    "paper": {"rois": 10, "top_k": 5, "every": 1, "detect_every": 1, "detect_size": 0},
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
    top_fraction: float = 1 / 3  # a video scores the mean of its highest third of frame scores
    threshold: float | None = None  # verdict "fake" at or above it; None = the detector's own
    batch_size: int = 32  # ROIs per network call
    label_frames: int = 100  # read swapscope's watermark in this many scored frames (0: none)
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


def video_score(frame_scores: np.ndarray, top_fraction: float) -> float:
    """Mean of the highest ``top_fraction`` of frame scores (at least one frame)."""
    ranked = np.sort(np.asarray(frame_scores, np.float64))[::-1]
    return float(ranked[: max(1, int(np.ceil(top_fraction * len(ranked))))].mean())


def face_score(roi_probs: np.ndarray, top_k: int) -> float:
    """Mean of the ``top_k`` highest ROI fake probabilities of one face."""
    return float(np.sort(roi_probs)[::-1][:top_k].mean())


VERDICTS = ("fake", "no artifact found")  # an artifact detector never proves a face real


@dataclass(slots=True)
class _FaceWork:
    """A face while its ROIs wait for their batched network call."""

    box: list[float]
    rois: list[np.ndarray]  # (4,) int boxes, frame px
    score: float | None = None


class Scanner:
    """Holds the detectors and the face pipeline; ``scan`` one input at a time."""

    def __init__(self, config: ScanConfig, device: str, detector: Ensemble | None = None) -> None:
        self.config = config = config.resolved()
        self.detector = detector or combine([load_checkpoint(m, device) for m in config.models])
        self.threshold, self.threshold_source = (
            (config.threshold, "--threshold") if config.threshold is not None
            else self.detector.threshold)
        self.pipeline = FacePipeline(PipelineConfig(
            every=config.every, detect_every=config.detect_every, detect_size=config.detect_size,
            min_size=32, embed=False, max_frames=config.max_frames))

    def scan(self, path: Path) -> InputScan:
        cfg = self.config
        timer = StageTimer()
        rng = np.random.default_rng(cfg.seed)
        sizes = self.detector.input_sizes
        pending: list[_FaceWork] = []  # faces whose ROIs are not scored yet
        crops: dict[int, list[np.ndarray]] = {size: [] for size in sizes}  # their ROIs, in order
        frames: list[tuple[int, float, list[_FaceWork]]] = []
        labels = LabelReader()
        writer = None
        if cfg.heatmap:
            from detect.heatmap import HeatmapWriter

            writer = HeatmapWriter(cfg.heatmap, path, self.detector.members[0])
        damage = None  # a decode error part-way: reported after the labels of what was read
        try:
            for index, time_s, image, faces in self._read(path, timer):
                if not faces:
                    continue
                if labels.frames < cfg.label_frames:
                    with timer("labels"):
                        labels.add(image, [face.landmarks for face in faces])
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
                if writer is not None or len(crops[sizes[0]]) >= cfg.batch_size:
                    with timer("classify"):
                        self._score(pending, crops)
                    pending, crops = [], {size: [] for size in sizes}
            damage = self._damage
            with timer("classify"):
                self._score(pending, crops)
            if writer is not None and damage is None:
                with timer("heatmap"):
                    writer.close()
        finally:
            if writer is not None:
                writer.abort()
        with timer("labels"):
            provenance = read_provenance(path, labels)
        result = self._result(path, frames, timer, provenance.to_json())
        if damage is not None:
            result.score, result.verdict, result.error = None, "error", damage
        return result

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

    def _score(self, faces: list[_FaceWork], crops: dict[int, list[np.ndarray]]) -> None:
        if not faces:
            return
        probs = self.detector.probabilities(crops, self.config.batch_size)
        start = 0
        for face in faces:
            face.score = face_score(probs[start:start + len(face.rois)], self.config.top_k)
            start += len(face.rois)

    def _result(self, path: Path, frames: list, timer: StageTimer, provenance: dict) -> InputScan:
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
            for index, time_s, work in frames
        ]
        result = InputScan(path=str(path), sha256=sha256_file(path), score=None, verdict="no face",
                           frames=scored, timings=timer.as_dict(), provenance=provenance,
                           error="" if scored else f"{path}: no face found to score")
        if scored:
            result.score = video_score(np.array(result.frame_scores), self.config.top_fraction)
            result.verdict = VERDICTS[0] if result.score >= self.threshold else VERDICTS[1]
        return result

    def _frames(
        self, path: Path, timer: StageTimer
    ) -> Iterator[tuple[int, float, np.ndarray, list[Face]]]:
        """(frame index, time s, image, faces) per scored frame, from one decode pass."""
        if is_image(path):
            with timer("decode"):
                image = load_image(path)
            found = self.pipeline.faces_in_image(image, timer)
            yield 0, 0.0, image, [f.face for f in found.faces]
            return
        for item in self.pipeline.track_frames(path, timer):
            yield item.frame.index, item.frame.time, item.frame.image, [f.face for f in item.faces]


def scan(inputs: list[str | Path], config: ScanConfig, device: str,
         on_result: Callable[[InputScan], None] | None = None,
         results: str | Path | None = None) -> ScanResult:
    """Scan every input; ``on_result`` sees each input's result as soon as it is made. One bad
    input is one result with verdict "error", not a failed scan. With ``results`` (a Parquet
    table, ``detect.results``) each result is also a row there, and inputs the table already
    holds for this detector and these rules are skipped."""
    from contextlib import nullcontext

    from detect.results import ResultsTable

    media = collect_media(inputs)
    if config.heatmap and len(media) != 1:
        raise InputError(f"--heatmap draws one input; got {len(media)}")
    scanner = Scanner(config, device)
    rules = {f.name: getattr(scanner.config, f.name) for f in fields(ScanConfig)
             if f.name != "models"}
    rules.update(threshold=scanner.threshold, threshold_source=scanner.threshold_source)
    info = scanner.detector.info
    keyed = {k: v for k, v in rules.items() if k != "heatmap"}  # what changes a score
    table = (ResultsTable(results, info.path, info.sha256, keyed) if results is not None
             else nullcontext())
    done, skipped = [], []
    with table:
        for path in media:
            if results is not None and table.done(path):
                skipped.append(str(path))
                continue
            started = time.perf_counter()
            try:
                item = scanner.scan(path)
            except InputError as exc:
                item = InputScan(path=str(path), sha256="", score=None, verdict="error",
                                 error=str(exc), provenance=_labels_only(path))
            item.timings["total"] = round(time.perf_counter() - started, 3)
            done.append(item)
            if results is not None:
                table.add(item, scanner.threshold)
            if on_result:
                on_result(item)
    return ScanResult(detector=info, rules=rules, inputs=done, skipped=skipped)


def _labels_only(path: Path) -> dict:
    """The labels of a file whose frames do not decode: metadata and Content Credentials."""
    try:
        return read_provenance(path).to_json()
    except (InputError, OSError, ValueError):
        return {}
