"""The scan result (DESIGN.md section 4; ``detect scan --json``): per face, per frame and per
input scores, the aggregation rules, the detector's checkpoint hash, timings, and the labels the
input carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

VERDICTS = ("fake", "no artifact found", "no face", "error")


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
    provenance: dict = field(default_factory=dict)  # swapscope's own labels, read before scoring

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
