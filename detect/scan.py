"""``detect scan``: score videos and images with an FWA detector.

The paper's rules: a face scores the mean of the top ``top_k`` fake probabilities over ``rois``
random ROIs; a frame scores the max over its faces; a video scores the mean of the highest
``top_fraction`` of its frame scores. Two presets fill the knobs a user leaves open:

- ``paper``: every frame, dlib detection on every frame at full resolution, 10 ROIs, top 5;
- ``fast`` (default): every 5th frame, detection every 6th scored frame with boxes tracked
  between, one ROI per face, and ROIs of many frames batched into one network call.

Videos are decoded once: faces are found, cropped and scored in the same pass.
``bench/scan.py`` measures what the fast preset gains in speed and costs in AUC.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from detect.artifacts import crop_roi, random_roi
from detect.checkpoint import load_detector, read_detector_config
from detect.data import to_tensor
from forge.atomic import write_image_atomic
from forge.errors import InputError, require_at_least_one
from forge.extract import ExtractConfig, Extractor
from forge.label import read_provenance
from forge.media import collect_media, is_image, load_image, sha256_file
from forge.timing import StageTimer
from forge.video import VideoWriter, probe

DEFAULT_DETECTOR = Path(__file__).resolve().parent / "weights" / "fwa_lite0"

# knobs a preset fills when the user leaves them unset; detect_size 0 = the frame's full size
MODES: dict[str, dict] = {
    "fast": {"rois": 1, "top_k": 1, "every": 5, "detect_every": 6, "detect_size": 480},
    "paper": {"rois": 10, "top_k": 5, "every": 1, "detect_every": 1, "detect_size": 0},
}


@dataclass
class ScanConfig:
    model: str = ""  # detector checkpoint folder; "" = the detector that ships with swapscope
    mode: str = "fast"  # preset for the knobs left at None: fast | paper
    rois: int | None = None  # random ROIs per face
    top_k: int | None = None  # a face scores the mean of its top-k ROI probabilities
    every: int | None = None  # score every N-th frame
    detect_every: int | None = None  # run the face detector every N scored frames; track between
    detect_size: int | None = None  # long side the detector sees; 0 = full frame
    top_fraction: float = 1 / 3  # a video scores the mean of its highest third of frame scores
    threshold: float = 0.5  # verdict "fake" at or above this score
    batch_size: int = 32  # ROIs per network call
    label_frames: int = 8  # check this many scored frames for swapscope's watermark (0: none)
    heatmap: str | None = None  # write the scored frames with scores and Grad-CAM maps here
    max_frames: int | None = None  # stop each video after this many decoded frames
    seed: int = 0

    def resolved(self) -> ScanConfig:
        """The config with the preset's values in every knob left at None, checked."""
        if self.mode not in MODES:
            raise InputError(f"unknown --mode {self.mode!r}; choose from {sorted(MODES)}")
        preset = {k: v for k, v in MODES[self.mode].items() if getattr(self, k) is None}
        config = replace(self, model=self.model or str(DEFAULT_DETECTOR), **preset)
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


@dataclass
class InputScan:
    path: str
    sha256: str
    score: float | None  # video (or image) score; None if no face was found
    verdict: str  # fake | real | no face | error
    frames: list[dict] = field(default_factory=list)  # {frame, time, score, faces: [{box, roi, score}]}
    timings: dict = field(default_factory=dict)
    error: str = ""
    provenance: dict = field(default_factory=dict)  # swapscope's own labels, read before scoring


def video_score(frame_scores: np.ndarray, top_fraction: float) -> float:
    """Mean of the highest ``top_fraction`` of frame scores (at least one frame)."""
    ranked = np.sort(np.asarray(frame_scores, np.float64))[::-1]
    return float(ranked[: max(1, int(np.ceil(top_fraction * len(ranked))))].mean())


def face_score(roi_probs: np.ndarray, top_k: int) -> float:
    """Mean of the ``top_k`` highest ROI fake probabilities of one face."""
    return float(np.sort(roi_probs)[::-1][:top_k].mean())


class Scanner:
    """Holds the detector and the face pipeline; ``scan`` one input at a time."""

    def __init__(self, config: ScanConfig, device: str) -> None:
        self.config = config = config.resolved()
        self.device = device
        self.model, self.data_cfg, self.meta = load_detector(config.model, device)
        self.extractor = Extractor(ExtractConfig(
            every=config.every, detect_every=config.detect_every, detect_size=config.detect_size,
            min_size=32, embed=False, max_frames=config.max_frames))

    @torch.no_grad()
    def probabilities(self, rois: list[np.ndarray]) -> np.ndarray:
        """(N,) fake probabilities of (S, S, 3) uint8 ROI crops, ``batch_size`` per call."""
        out = []
        for start in range(0, len(rois), self.config.batch_size):
            batch = torch.stack([to_tensor(r, self.data_cfg.mean, self.data_cfg.std)
                                 for r in rois[start:start + self.config.batch_size]]).to(self.device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
                logits = self.model(batch)  # (B, 2)
            out.append(logits.float().softmax(-1)[:, 1].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def scan(self, path: Path) -> InputScan:
        cfg = self.config
        timer = StageTimer()
        rng = np.random.default_rng(cfg.seed)
        pending = _PendingRois()
        records: list[dict] = []
        marked_frames: list[np.ndarray] = []
        writer = _HeatmapWriter(cfg.heatmap, path, self) if cfg.heatmap else None
        try:
            for index, time_s, image, faces in self._frames(path, timer):
                if not faces:
                    continue
                record = {"frame": index, "time": round(time_s, 4), "score": None, "faces": []}
                records.append(record)
                if len(marked_frames) < cfg.label_frames:
                    marked_frames.append(image)
                with timer("roi"):
                    for face in faces:
                        boxes = [random_roi(face.landmarks, image.shape, rng) for _ in range(cfg.rois)]
                        record["faces"].append({"box": [round(float(v), 1) for v in face.box],
                                                "roi": [int(v) for v in boxes[0]], "score": None})
                        pending.add(record["faces"][-1], [crop_roi(image, b, self.data_cfg.input_size)
                                                          for b in boxes])
                if writer is not None:
                    with timer("heatmap"):
                        writer.write(image, time_s, faces, record)
                if writer is not None or pending.count >= cfg.batch_size:
                    with timer("classify"):
                        pending.flush(self)
            with timer("classify"):
                pending.flush(self)
            if writer is not None:
                with timer("heatmap"):
                    writer.close()
        finally:
            if writer is not None:
                writer.abort()
        for record in records:
            record["score"] = max(f["score"] for f in record["faces"])
        with timer("labels"):
            provenance = read_provenance(path, marked_frames)
        result = InputScan(path=str(path), sha256=sha256_file(path), score=None, verdict="no face",
                           frames=records, timings=timer.as_dict(), provenance=provenance.to_json())
        if records:
            result.score = video_score(np.array([r["score"] for r in records]), cfg.top_fraction)
            result.verdict = "fake" if result.score >= cfg.threshold else "real"
        return result

    def _frames(self, path: Path, timer: StageTimer):
        """(frame index, time s, image, faces) per scored frame, from one decode pass."""
        if is_image(path):
            found, _ = self.extractor.faces_in_image(path, timer)
            yield 0, 0.0, load_image(path), [face for face, _, _ in found]
            return
        for frame, faces in self.extractor.track_frames(path, timer):
            yield frame.index, frame.time, frame.image, [face for face, _ in faces]


class _PendingRois:
    """ROI crops waiting for a batched network call, and the face records their scores go to."""

    def __init__(self) -> None:
        self.faces: list[tuple[dict, int]] = []  # (face record, number of ROIs)
        self.crops: list[np.ndarray] = []

    @property
    def count(self) -> int:
        return len(self.crops)

    def add(self, face_record: dict, crops: list[np.ndarray]) -> None:
        self.faces.append((face_record, len(crops)))
        self.crops += crops

    def flush(self, scanner: Scanner) -> None:
        if not self.crops:
            return
        probs = scanner.probabilities(self.crops)
        start = 0
        for record, n in self.faces:
            record["score"] = face_score(probs[start:start + n], scanner.config.top_k)
            start += n
        self.faces, self.crops = [], []


def grad_cam(model: torch.nn.Module, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM (Selvaraju et al. 2017) of the "fake" logit on the backbone's last feature map.

    batch (N, 3, S, S) normalised -> (maps (N, S, S) float32 in [0, 1], fake probabilities (N,)).
    Uses timm's ``forward_features`` / ``forward_head`` split, which every timm model has.
    """
    with torch.enable_grad():
        features = model.forward_features(batch).detach().requires_grad_(True)  # (N, C, h, w)
        logits = model.forward_head(features)  # (N, 2)
        logits[:, 1].sum().backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    cam = torch.relu((weights * features).sum(1, keepdim=True))  # (N, 1, h, w)
    cam = torch.nn.functional.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-8)[:, None, None]
    probs = logits.detach().float().softmax(-1)[:, 1]
    return (cam / peak).detach().cpu().numpy().astype(np.float32), probs.cpu().numpy()


class _HeatmapWriter:
    """The scored frames with each face's ROI, score, and Grad-CAM map, at their own times."""

    def __init__(self, out: str, source: Path, scanner: Scanner) -> None:
        self.out, self.scanner = Path(out), scanner
        self.image_input = is_image(source)
        expected = {".png", ".jpg", ".jpeg"} if self.image_input else {".mp4"}
        if self.out.suffix.lower() not in expected:
            raise InputError(f"--heatmap {out}: for {'an image' if self.image_input else 'a video'} "
                             f"input, write {' or '.join(sorted(expected))}")
        self.fps = 25.0 if self.image_input else probe(source).fps
        self._video: VideoWriter | None = None

    def write(self, image: np.ndarray, time_s: float, faces, record: dict) -> None:
        scanner = self.scanner
        canvas = image.copy()
        rois = [crop_roi(image, np.array(f["roi"]), scanner.data_cfg.input_size) for f in record["faces"]]
        batch = torch.stack([to_tensor(r, scanner.data_cfg.mean, scanner.data_cfg.std) for r in rois])
        maps, probs = grad_cam(scanner.model, batch.to(scanner.device))
        for face, cam, prob in zip(record["faces"], maps, probs):
            x1, y1, x2, y2 = face["roi"]
            if x2 <= x1 or y2 <= y1:
                continue
            heat = cv2.applyColorMap((cv2.resize(cam, (x2 - x1, y2 - y1)) * 255).astype(np.uint8),
                                     cv2.COLORMAP_JET)[..., ::-1]
            canvas[y1:y2, x1:x2] = cv2.addWeighted(canvas[y1:y2, x1:x2], 0.6, heat, 0.4, 0)
            colour = (int(255 * prob), int(255 * (1 - prob)), 0)  # green (real) to red (fake)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(canvas, f"{prob:.2f}", (x1, max(y1 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.5, (x2 - x1) / 250), colour, 2, cv2.LINE_AA)
        if self.image_input:
            write_image_atomic(self.out, canvas)
            return
        if self._video is None:
            self._video = VideoWriter(self.out, canvas.shape[1], canvas.shape[0], fps=self.fps)
        self._video.write(canvas, time_s)

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None

    def abort(self) -> None:
        if self._video is not None:
            self._video.abort()
            self._video = None


def scan(inputs: list[str | Path], config: ScanConfig, device: str, progress=None) -> dict:
    """Scan every input; returns the scan result (DESIGN.md section 4)."""
    media = collect_media(inputs)
    if config.heatmap and len(media) != 1:
        raise InputError(f"--heatmap draws one input; got {len(media)}")
    scanner = Scanner(config, device)
    folder, _ = read_detector_config(scanner.config.model)
    results = []
    for path in media:
        started = time.perf_counter()
        try:
            item = scanner.scan(path)
        except InputError as exc:
            item = InputScan(path=str(path), sha256="", score=None, verdict="error", error=str(exc))
        item.timings["total"] = round(time.perf_counter() - started, 3)
        results.append(item)
        if progress:
            progress(item)
    rules = {f.name: getattr(scanner.config, f.name) for f in fields(ScanConfig) if f.name != "model"}
    return {"detector": {"path": str(folder), "sha256": sha256_file(folder / "weights.safetensors"),
                         "arch": scanner.meta["arch"], "val_auc": scanner.meta.get("val_auc")},
            "rules": rules, "inputs": [asdict(r) for r in results]}
