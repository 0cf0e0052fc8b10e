"""Calibrated verdicts: the score at which a detector says "fake", chosen on real footage.

A detector's raw probability is no verdict: real faces that were compressed, rescaled or
beauty-filtered score high on artifact detectors. ``calibrate`` scans the real clips of the
identities the detector never trained on (its validation identities, found in the face sets it
trained on), each re-encoded the ways footage arrives (``VARIANTS``), and sets the threshold so
that at most ``fpr`` of those real clips would be called fake. The threshold and how it was chosen
go into the checkpoint's ``config.json``; ``detect scan`` reads them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from detect.checkpoint import load_checkpoint
from detect.scan import ScanConfig, Scanner
from swapscope.errors import InputError
from swapscope.files import write_text_atomic
from swapscope.formats.faceset import FaceSet
from swapscope.media.images import is_image
from swapscope.media.video import VideoWriter, probe, read_frames
from swapscope.progress import NoProgress, Progress

log = logging.getLogger(__name__)


def _as_is(image: np.ndarray) -> np.ndarray:
    return image


def _half(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(2, w // 2), max(2, h // 2)), interpolation=cv2.INTER_AREA)


def _smoothed(image: np.ndarray) -> np.ndarray:
    return cv2.bilateralFilter(image, 9, 50, 7)  # what a beauty filter does to skin


@dataclass(frozen=True, slots=True)
class Variant:
    """One way real footage arrives: a change to each frame, then H.264 at ``crf``."""

    name: str
    crf: int
    change: Callable[[np.ndarray], np.ndarray] = _as_is


VARIANTS = (Variant("crf23", 23), Variant("crf30", 30), Variant("crf35", 35), Variant("crf40", 40),
            Variant("half", 23, _half), Variant("smoothed", 23, _smoothed))


def degraded_clip(source: Path, variant: Variant, out: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``source``, changed and re-encoded as ``variant`` says."""
    changed = ((variant.change(f.image), f.time) for f in read_frames(source, limit=frames))
    first = next(changed, None)
    if first is None:
        raise InputError(f"{source}: no frames to re-encode")
    height, width = first[0].shape[:2]
    with VideoWriter(out, width, height, probe(source).fps, crf=variant.crf) as writer:
        writer.write(*first)
        for image, time in changed:
            writer.write(image, time)
    return out


def validation_clips(identities: dict, facesets: list[str | Path]) -> list[tuple[str, Path]]:
    """(identity, video) of every real video in ``facesets`` of a person the detector never
    trained on (``identities``: its ``train_identities`` and ``val_identities``): its validation
    people, and any other (all of them, for a detector trained on crop collections alone)."""
    if "train_identities" not in identities and "val_identities" not in identities:
        raise InputError("the checkpoint records no identities to tell held-out people by")
    trained = set(identities.get("train_identities") or [])
    clips = {}
    for path in facesets:
        for source in FaceSet.open(path).sources:
            video = Path(source["path"])
            if source.get("label") not in trained and not is_image(video) and video.is_file():
                clips[str(video)] = (source["label"], video)
    if not clips:
        raise InputError("none of the validation identities' real videos are in these face sets")
    return sorted(clips.values(), key=lambda c: str(c[1]))


def threshold_for(scores: list[float], fpr: float) -> float:
    """The lowest threshold at which at most ``fpr`` of these real scores reach it (a verdict
    is "fake" at or above the threshold)."""
    ranked = np.sort(np.asarray(scores, np.float64))[::-1]
    allowed = int(np.floor(fpr * len(ranked)))  # real clips that may score at or above it
    if allowed >= len(ranked):
        return 0.0
    return float(np.nextafter(ranked[allowed], np.inf))


@dataclass(frozen=True, slots=True)
class ClipScore:
    """One degraded validation clip's video score."""

    identity: str
    clip: str
    variant: str
    score: float


@dataclass(frozen=True, slots=True)
class Calibrated:
    """What detect calibrate chose: the threshold record it stored in the checkpoint's
    config.json (value, FPR target and measured, clips, identities, variants, how), and the
    scores it was chosen on."""

    checkpoint: str
    threshold: dict
    rows: list[ClipScore]

    @property
    def value(self) -> float:
        return self.threshold["value"]

    def to_json(self) -> dict:
        """detect calibrate --json: the threshold record's keys, the checkpoint, the rows."""
        return {**self.threshold, "checkpoint": self.checkpoint,
                "rows": [asdict(r) for r in self.rows]}


def calibrate(checkpoint: str | Path, facesets: list[str | Path], work: Path | None, device: str,
              fpr: float = 0.05, frames: int = 60, progress: Progress | None = None
              ) -> Calibrated:
    """Scan the degraded validation clips, choose the threshold, write it into the checkpoint
    (a detector's or an ensemble's). The clips are made in ``work`` (default: calibration/ beside
    the checkpoint). Returns the calibration record."""

    if not 0 < fpr < 1:
        raise InputError("--fpr must be between 0 and 1")
    detector = load_checkpoint(checkpoint, device)
    folder = detector.checkpoint
    work = Path(work) if work else folder.parent / "calibration"
    clips = validation_clips(detector.identities, facesets)
    scanner = Scanner(ScanConfig(), device, detector)  # scores only: its verdicts are unused
    progress = progress or NoProgress()
    progress.start("calibrating", len(clips) * len(VARIANTS))
    rows = []
    for identity, video in clips:
        for variant in VARIANTS:
            made = work / identity / f"{video.stem}.{variant.name}.mp4"
            if not made.is_file():
                degraded_clip(video, variant, made, frames)
            result = scanner.scan(made)
            if result.score is not None:
                rows.append(ClipScore(identity, video.name, variant.name, result.score))
            progress.advance(1)
    progress.stop()
    if not rows:
        raise InputError("no face was found in any validation clip")
    scores = [r.score for r in rows]
    threshold = threshold_for(scores, fpr)
    record = {"value": threshold, "fpr_target": fpr,
              "fpr_measured": float(np.mean(np.asarray(scores) >= threshold)), "clips": len(rows),
              "identities": sorted({r.identity for r in rows}),
              "variants": [v.name for v in VARIANTS], "frames_per_clip": frames,
              "rules": "detect scan --mode fast",
              "how": f"the lowest score at which at most {fpr:.0%} of {len(rows)} real clips of "
                     "validation identities (re-encoded at CRF 23-40, at half size, smoothed) "
                     "are called fake"}
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    write_text_atomic(config_path, json.dumps({**config, "threshold": record}, indent=2))
    log.info("threshold %.4f: %d of %d real clips at or above it", threshold,
             int(np.sum(np.asarray(scores) >= threshold)), len(rows))
    return Calibrated(checkpoint=str(folder), threshold=record, rows=rows)
