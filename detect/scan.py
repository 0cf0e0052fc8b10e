"""``detect scan``: score videos and images with an FWA detector, by the paper's rules.

A face scores the mean of the top ``top_k`` fake probabilities over ``rois`` random ROIs; a
frame scores the max over its faces; a video scores the mean of the highest ``top_fraction`` of
its frame scores. Each rule is a knob, and ``every`` samples frames for speed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from detect.artifacts import crop_roi, random_roi
from detect.checkpoint import load_detector
from detect.data import to_tensor
from forge.errors import InputError, require_at_least_one
from forge.extract import ExtractConfig, Extractor
from forge.media import collect_media, is_image, load_image, sha256_file
from forge.timing import StageTimer
from forge.video import read_frames


@dataclass
class ScanConfig:
    model: str = ""
    rois: int = 10  # random ROIs per face
    top_k: int = 5  # a face scores the mean of its top-k ROI probabilities
    top_fraction: float = 1 / 3  # a video scores the mean of its highest third of frame scores
    every: int = 1  # score every N-th frame
    threshold: float = 0.5  # verdict "fake" at or above this video score
    detect_every: int = 5
    seed: int = 0

    def check(self) -> None:
        require_at_least_one(self, "rois", "top_k", "every")
        if self.top_k > self.rois:
            raise InputError("--top-k must not exceed --rois")
        if not 0 < self.top_fraction <= 1:
            raise InputError("--top-fraction must be in (0, 1]")


@dataclass
class InputScan:
    path: str
    sha256: str
    score: float | None  # video (or image) score; None if no face was found
    verdict: str  # fake | real | no face
    frames: list[dict] = field(default_factory=list)  # {frame, time, score, faces: [{box, score}]}
    timings: dict = field(default_factory=dict)


def video_score(frame_scores: np.ndarray, top_fraction: float) -> float:
    """Mean of the highest ``top_fraction`` of frame scores (at least one frame)."""
    ranked = np.sort(np.asarray(frame_scores, np.float64))[::-1]
    return float(ranked[: max(1, int(np.ceil(top_fraction * len(ranked))))].mean())


class Scanner:
    def __init__(self, config: ScanConfig, device: str) -> None:
        config.check()
        if not config.model:
            raise InputError("no detector given: pass --model CHECKPOINT (from detect train)")
        self.config, self.device = config, device
        self.model, self.data_cfg, self.meta = load_detector(config.model, device)
        self.extractor = Extractor(ExtractConfig(every=config.every, detect_every=config.detect_every,
                                                 min_size=32, embed_every=10**9))

    @torch.no_grad()
    def face_score(self, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> float:
        size = self.data_cfg.input_size
        batch = torch.stack([
            to_tensor(crop_roi(image, random_roi(landmarks, image.shape, rng), size),
                      self.data_cfg.mean, self.data_cfg.std)
            for _ in range(self.config.rois)
        ]).to(self.device)  # (R, 3, S, S)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
            probs = self.model(batch).float().softmax(-1)[:, 1].cpu().numpy()
        return float(np.sort(probs)[::-1][: self.config.top_k].mean())

    def scan(self, path: Path) -> InputScan:
        timer = StageTimer()
        rng = np.random.default_rng(self.config.seed)
        if is_image(path):
            found, _ = self.extractor.faces_in_image(path, timer)
            frames = [(0, 0.0, load_image(path))]
        else:
            found, _, _ = self.extractor.faces_in_video(path, timer)
            decoded = timer.iterate("decode", read_frames(path, every=self.config.every))
            frames = ((f.index, f.time, f.image) for f in decoded)
        by_frame: dict[int, list] = {}
        for face, _, _ in found:
            by_frame.setdefault(face.frame_index, []).append(face)
        records = []
        for index, time_s, image in frames:
            faces = by_frame.get(index)
            if not faces:
                continue
            with timer("classify"):
                scores = [self.face_score(image, f.landmarks, rng) for f in faces]
            records.append({"frame": index, "time": round(time_s, 4), "score": max(scores),
                            "faces": [{"box": [round(float(v), 1) for v in f.box], "score": s}
                                      for f, s in zip(faces, scores)]})
        result = InputScan(path=str(path), sha256=sha256_file(path), score=None, verdict="no face",
                           frames=records, timings=timer.as_dict())
        if records:
            result.score = video_score(np.array([r["score"] for r in records]), self.config.top_fraction)
            result.verdict = "fake" if result.score >= self.config.threshold else "real"
        return result


def scan(inputs: list[str | Path], config: ScanConfig, device: str, progress=None) -> dict:
    """Scan every input; returns the scan result (DESIGN.md section 4)."""
    media = collect_media(inputs)
    scanner = Scanner(config, device)
    from detect.checkpoint import read_detector_config

    folder, _ = read_detector_config(config.model)
    results = []
    for path in media:
        started = time.perf_counter()
        try:
            item = scanner.scan(path)
        except InputError as exc:
            item = InputScan(path=str(path), sha256="", score=None, verdict="error", timings={"error": str(exc)})
        item.timings["total"] = round(time.perf_counter() - started, 3)
        results.append(item)
        if progress:
            progress(item)
    return {"detector": {"path": str(folder), "sha256": sha256_file(folder / "weights.safetensors"),
                         "arch": scanner.meta["arch"], "val_auc": scanner.meta.get("val_auc")},
            "rules": asdict(config), "inputs": [asdict(r) for r in results]}
