"""The scan result (DESIGN.md section 4; ``detect scan --json``): per face, per frame and per
input scores, the aggregation rules, the detector's checkpoint hash, timings, and the labels the
input carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

# an artifact detector never proves a face real: it finds an artifact or it does not
FAKE, NO_ARTIFACT, NO_FACE, ERROR = "fake", "no artifact found", "no face", "error"
VERDICTS = (FAKE, NO_ARTIFACT, NO_FACE, ERROR)
UNSCORED = (NO_FACE, ERROR)  # verdicts of inputs with no score
TOP_FRACTION = 1 / 3  # a video scores the mean of its highest third of frame scores


def face_score(roi_probs: np.ndarray, top_k: int) -> float:
    """A face's score: the mean of its ``top_k`` highest ROI fake probabilities."""
    return float(np.sort(roi_probs)[::-1][:top_k].mean())


def video_score(frame_scores: np.ndarray, top_fraction: float = TOP_FRACTION) -> float:
    """A video's score: the mean of the highest ``top_fraction`` of its frame scores (at least
    one frame). The one rule, for detect scan and eval's metrics alike."""
    ranked = np.sort(np.asarray(frame_scores, np.float64))[::-1]
    return float(ranked[: max(1, int(np.ceil(top_fraction * len(ranked))))].mean())


@dataclass(frozen=True, slots=True)
class FaceScore:
    box: list[float]  # x1, y1, x2, y2 of the detected face, frame px
    roi: list[int]  # x1, y1, x2, y2 of the first region of interest scored, frame px
    score: float  # the face's fake probability (mean of its top-k ROIs)


@dataclass(frozen=True, slots=True)
class FrameScore:
    frame: int  # decoded frame index
    time: float  # seconds
    score: float  # the frame's score: the max over its faces
    faces: list[FaceScore]


@dataclass(frozen=True, slots=True)
class ProvenanceReport:
    """What an input says about its own making, as ``swapscope.labels.provenance`` read it:
    whether it carries swapscope's labelling, how far that can be believed (``status``:
    verified | disputed | claimed | none), a line for a reader, and each label's evidence."""

    labelled: bool = False
    status: str = "none"
    summary: str = "no swapscope label"
    metadata: dict | None = None  # the container's swapscope tags
    credential: dict | None = None  # Content Credentials: present, valid, swapscope's assertion
    watermark: dict | None = None  # the face mark: id, mirrored, agreement, frames, faces
    legacy_watermark: dict | None = None  # the frame mark: id, frames, ids

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class InputScan:
    """One scanned input."""

    path: str
    sha256: str
    score: float | None  # video (or image) score; None if no face was found
    verdict: str  # fake | no artifact found | no face | error (never "real": see detect.scan)
    frames: list[FrameScore] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    # swapscope's own labelling, read before scoring
    provenance: ProvenanceReport = field(default_factory=ProvenanceReport)

    @property
    def frame_scores(self) -> list[float]:
        return [f.score for f in self.frames]


@dataclass(frozen=True, slots=True)
class DetectorInfo:
    path: str  # the checkpoint folder
    sha256: str  # of its weights
    arch: str
    val_auc: float | None


@dataclass(frozen=True, slots=True)
class ScanResult:
    detector: DetectorInfo
    rules: dict  # the resolved scan config: how faces, frames and inputs were scored
    inputs: list[InputScan]
    skipped: list[str] = field(default_factory=list)  # already in the results table, as they are

    def to_json(self) -> dict:
        return asdict(self)
