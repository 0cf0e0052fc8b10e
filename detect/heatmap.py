"""Where a detector looks: Grad-CAM maps of its "fake" logit, drawn over the scored frames
(``detect scan --heatmap``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from detect.artifacts import crop_roi
from detect.checkpoint import Detector
from detect.models import to_tensor
from swapscope.files import write_image_atomic
from swapscope.media.images import is_image
from swapscope.media.video import VideoWriter, probe


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
    cam = torch.nn.functional.interpolate(
        cam, size=batch.shape[-2:], mode="bilinear", align_corners=False
    )[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-8)[:, None, None]
    probs = logits.detach().float().softmax(-1)[:, 1]
    return (cam / peak).detach().cpu().numpy().astype(np.float32), probs.cpu().numpy()


class HeatmapWriter:
    """The scored frames with each face's ROI, score, and Grad-CAM map, at their own times:
    a PNG/JPEG for an image input, an MP4 for a video."""

    def __init__(self, out: str | Path, source: Path, detector: Detector) -> None:
        self.out, self.detector = Path(out), detector
        self.image_input = is_image(source)  # its suffix was checked before the scan
        self.fps = 25.0 if self.image_input else probe(source).fps
        self._video: VideoWriter | None = None

    def write(self, image: np.ndarray, time_s: float, rois: list[list[int]]) -> None:
        """Draw one scored frame: ``rois`` are the faces' first ROIs, x1, y1, x2, y2 frame px."""
        cfg = self.detector.data_config
        canvas = image.copy()
        crops = [crop_roi(image, np.array(roi), cfg.input_size) for roi in rois]
        batch = torch.stack([to_tensor(c, cfg.mean, cfg.std) for c in crops])
        maps, probs = grad_cam(self.detector.module, batch.to(self.detector.device))
        for (x1, y1, x2, y2), cam, prob in zip(rois, maps, probs):
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
