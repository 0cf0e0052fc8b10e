"""Face detection + 68-point landmark backends, chosen by name.

- ``dlib`` (default): HOG detector on a resized copy of the frame, boxes mapped back, the 68-point
  shape predictor on the full frame. Offline, CPU; models come from face-recognition-models.
- ``yunet``: YuNet (the ``yuface`` package, the CNN compiled in) finds faces down to about 20 px
  and turned ones, on a copy of the frame at ``detect_size``; its boxes are mapped onto the boxes
  dlib's 68-point predictor was trained on (offsets fitted by ``bench/yunet_box.py``), so every face
  still gets the same 68 points. Offline, CPU.
- ``fan``: face-alignment's S3FD or BlazeFace detector and 2D/3D FAN landmarks, batched on the GPU
  when there is one. Its weights are downloaded on first use into torch's hub cache; offline it
  fails within seconds, naming that folder.

Every backend offers ``detect`` (boxes + scores) and ``landmarks`` (for given boxes), so a caller
can skip detection and reuse a tracked box, and ``faces`` for both at once.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import cv2
import numpy as np

from swapscope.device import cpu_cores
from swapscope.errors import InputError
from swapscope.faces.records import Face


class BackendUnavailable(InputError):
    """A backend cannot run here (missing weights offline, missing package)."""


class FaceBackend(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB -> boxes (N, 4) float32 frame px, scores (N,) float32."""

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) frame px -> landmarks (N, 68, 2) float32 frame px."""

    def faces(self, image: np.ndarray, frame_index: int = 0) -> list[Face]:
        """Detect every face of one frame, with landmarks."""


def _faces_from(backend, image: np.ndarray, frame_index: int) -> list[Face]:
    boxes, scores = backend.detect(image)
    if len(boxes) == 0:
        return []
    points = backend.landmarks(image, boxes)
    return [
        Face(frame_index=frame_index, box=box, landmarks=lms, score=float(score),
             backend=backend.name)
        for box, lms, score in zip(boxes, points, scores)
    ]


def model_file(name: str) -> Path:
    """Path of one of face-recognition-models' files, found without importing the package
    (its __init__ imports pkg_resources, which new setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "face-recognition-models is not installed: pip install face-recognition-models"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise BackendUnavailable(f"face-recognition-models has no {name} (looked in {path.parent})")
    return path


@dataclass
class DlibBackend:
    """dlib HOG detection at ``detect_size`` px (long side) and 68-point landmarks at full size.

    ``detect_size`` 0 runs HOG on the frame as it is (the paper's protocol). Otherwise frames are
    resized so their long side is ``detect_size`` (up to 4x up for small photos, so that 80 px
    faces reach HOG's 80 px window), which also makes detection cost independent of the input
    resolution.
    """

    detect_size: int = 480
    upsample: int = 0
    threshold: float = 0.0  # HOG SVM margin a detection must exceed
    name: str = "dlib"

    def __post_init__(self) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(
            str(model_file("shape_predictor_68_face_landmarks.dat"))
        )

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        scale = min(self.detect_size / max(height, width), 4.0) if self.detect_size else 1.0
        small = image
        if abs(scale - 1.0) > 1e-3:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            small = cv2.resize(
                image, (round(width * scale), round(height * scale)), interpolation=interp
            )
        rects, scores = self._detect(small)
        if not rects:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32)
        boxes /= scale
        return boxes, np.asarray(scores, np.float32)

    def _detect(self, image: np.ndarray) -> tuple[list, list[float]]:
        rects, scores, _ = self._detector.run(image, self.upsample, self.threshold)
        return list(rects), list(scores)

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import dlib

        image = np.ascontiguousarray(image)
        out = np.empty((len(boxes), 68, 2), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            rect = dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            shape = self._predictor(image, rect)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def faces(self, image: np.ndarray, frame_index: int = 0) -> list[Face]:
        return _faces_from(self, image, frame_index)


@dataclass
class FanBackend:
    """face-alignment (Bulat & Tzimiropoulos 2017): S3FD/BlazeFace + 2D or 3D FAN."""

    detector: str = "sfd"  # "sfd" or "blazeface"
    landmarks_type: str = "2d"  # "2d" or "3d"
    device: str = "cpu"
    batch_size: int = 8
    connect_timeout: float = 3.0
    name: str = "fan"

    def __post_init__(self) -> None:
        if importlib.util.find_spec("face_alignment") is None:
            raise BackendUnavailable(
                "the fan backend needs face-alignment: pip install face-alignment"
            )
        if self.detector not in ("sfd", "blazeface"):
            raise ValueError(
                f"unknown fan detector {self.detector!r}; choose from ['blazeface', 'sfd']"
            )
        if self.landmarks_type not in ("2d", "3d"):
            raise ValueError(
                f"unknown landmarks type {self.landmarks_type!r}; choose from ['2d', '3d']"
            )
        self._ensure_weights_reachable()
        import face_alignment
        import torch

        kind = (face_alignment.LandmarksType.TWO_D if self.landmarks_type == "2d"
                else face_alignment.LandmarksType.THREE_D)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self._fa = face_alignment.FaceAlignment(
            kind, device=self.device, dtype=dtype, face_detector=self.detector, compile=False,
            max_batch_size=self.batch_size, flip_input=False,
        )

    def weight_files(self) -> dict[str, str]:
        """{file name in the hub cache: its download URL} for this configuration."""
        from face_alignment import api
        from face_alignment.detection.blazeface import blazeface_detector
        from face_alignment.detection.sfd import sfd_detector

        urls = [api.models_urls["2DFAN-4" if self.landmarks_type == "2d" else "3DFAN-4"]]
        if self.landmarks_type == "3d":
            urls.append(api.models_urls["depth"])
        if self.detector == "sfd":
            urls.append(sfd_detector.models_urls["s3fd"])
        else:
            urls += [blazeface_detector.models_urls["blazeface_weights"],
                     blazeface_detector.models_urls["blazeface_anchors"]]
        return {os.path.basename(urlparse(u).path): u for u in urls}

    def _ensure_weights_reachable(self) -> None:
        import torch.hub

        cache = Path(torch.hub.get_dir()) / "checkpoints"
        missing = {n: u for n, u in self.weight_files().items() if not (cache / n).is_file()}
        if not missing:
            return
        offline = (
            os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("SWAPSCOPE_OFFLINE") == "1"
        )
        host = urlparse(next(iter(missing.values()))).hostname
        if not offline:
            try:
                socket.create_connection((host, 443), timeout=self.connect_timeout).close()
                return  # face-alignment downloads them on construction
            except OSError:
                pass
        raise BackendUnavailable(
            f"the fan backend needs {', '.join(sorted(missing))} in {cache} and cannot download "
            f"them (offline); use --backend dlib, or copy the files there"
        )

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self._fa.face_detector.detect_from_image(image.copy())  # RGB, as its API passes it
        if len(found) == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        found = np.asarray(found, np.float32)
        return found[:, :4], found[:, 4]

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, 68, 2), np.float32)
        points = self._fa.get_landmarks_from_image(image, detected_faces=_as_fa_boxes(boxes))
        return np.stack([p[:, :2] for p in points]).astype(np.float32)

    def faces(self, image: np.ndarray, frame_index: int = 0) -> list[Face]:
        boxes, scores = self.detect(image)
        if len(boxes) == 0:
            return []
        points = self._fa.get_landmarks_from_image(image, detected_faces=_as_fa_boxes(boxes))
        return _fa_faces(points, boxes, scores, frame_index, self.name)

    def faces_batch(self, images: list[np.ndarray], frame_indices: list[int]) -> list[list[Face]]:
        """Faces of several same-size frames: one batched detector pass (the GPU's strength),
        then each frame's faces through FAN in batches of ``batch_size``."""
        import torch

        if not images:
            return []
        batch = (
            torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(self.device, torch.float32)
        )
        # per frame: (N, 5) x1 y1 x2 y2 score
        detections = self._fa.face_detector.detect_from_batch(batch)
        out = []
        for image, index, found in zip(images, frame_indices, detections):
            found = np.asarray(found, np.float32).reshape(-1, 5)
            if len(found) == 0:
                out.append([])
                continue
            points = self._fa.get_landmarks_from_image(
                image, detected_faces=_as_fa_boxes(found[:, :4])
            )
            out.append(_fa_faces(points, found[:, :4], found[:, 4], index, self.name))
        return out


@dataclass
class DlibCnnBackend(DlibBackend):
    """dlib's CNN (MMOD) face detector, from face-recognition-models, with the same landmarks:
    it finds turned and partly hidden faces that HOG misses, at several times HOG's cost on a
    CPU. Offline; for the clips the default cannot do."""

    name: str = "dlib-cnn"

    def __post_init__(self) -> None:
        import dlib

        super().__post_init__()
        weights = model_file("mmod_human_face_detector.dat")
        self._cnn = dlib.cnn_face_detection_model_v1(str(weights))

    def _detect(self, image: np.ndarray) -> tuple[list, list[float]]:
        found = [d for d in self._cnn(image, self.upsample) if d.confidence > self.threshold]
        return [d.rect for d in found], [float(d.confidence) for d in found]


# How a YuNet box (x, y, w, h) sits against the box dlib's HOG detector gives the same face, as
# medians over the sample clips' frames where both find one face (bench/yunet_box.py prints them):
# dlib's centre = YuNet's centre + (dx * w, dy * h); dlib's side = side * sqrt(w * h).
YUNET_TO_DLIB = {"dx": -0.002, "dy": 0.067, "side": 0.946}


def load_yunet() -> Callable:
    """yuface's detector. Its bundled OpenMP spins at full load (about 15x slower per frame)
    unless told to wait passively on at most 2 threads; libgomp reads that from the environment
    once, as it loads, so the settings are set for the import alone and then put back."""
    names = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update(OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(min(2, cpu_cores())))
    try:
        from yuface import yuface as compiled
    except ImportError:
        raise BackendUnavailable("the yunet backend needs yuface (wheels for Python 3.10 and "
                                 "3.11): pip install yuface, or use --backend dlib") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return compiled.detect


def yunet_raw(detect: Callable, image: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (N, 15) float32: confidence (0-1), box x y w h, 5 points x y."""
    found = np.asarray(detect(np.ascontiguousarray(image[..., ::-1])), np.float32)
    found = found.reshape(-1, found.shape[-1] if found.size else 16)[:, :15]
    found[:, 0] /= 100.0
    return found[found[:, 0] > threshold]


@dataclass
class YuNetBackend(DlibBackend):
    """YuNet detection on a copy of the frame at ``detect_size`` (at most 960 px, YuNet's own
    limit; 0: the frame as it is, if it fits) and dlib's 68 points on the full frame, on boxes
    mapped to the ones its predictor was trained on."""

    detect_size: int = 640
    threshold: float = 0.6  # YuNet's confidence (0-1) a detection must exceed
    name: str = "yunet"

    def __post_init__(self) -> None:
        import dlib

        self._yunet = load_yunet()
        self._predictor = dlib.shape_predictor(
            str(model_file("shape_predictor_68_face_landmarks.dat"))
        )

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = image.shape[:2]
        limit = min(self.detect_size or max(height, width), YUNET_MAX_SIZE)
        scale = min(limit / max(height, width), 4.0)
        small = image
        if abs(scale - 1.0) > 1e-3:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            small = cv2.resize(
                image, (round(width * scale), round(height * scale)), interpolation=interp
            )
        found = yunet_raw(self._yunet, small, self.threshold)
        return yunet_to_dlib_boxes(found[:, 1:5]) / scale, found[:, 0].copy()


YUNET_MAX_SIZE = 960


def yunet_to_dlib_boxes(xywh: np.ndarray) -> np.ndarray:
    """YuNet boxes (N, 4) x y w h -> the boxes (N, 4) x1 y1 x2 y2 dlib would draw there."""
    x, y, w, h = np.asarray(xywh, np.float32).reshape(-1, 4).T
    cx = x + w / 2 + YUNET_TO_DLIB["dx"] * w
    cy = y + h / 2 + YUNET_TO_DLIB["dy"] * h
    half = YUNET_TO_DLIB["side"] * np.sqrt(w * h) / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], 1).astype(np.float32)


def _as_fa_boxes(boxes: np.ndarray) -> list[np.ndarray]:
    # face-alignment assigns box coordinates into torch tensors, which take float64 (a Python
    # float subclass) but not numpy float32
    return [np.asarray(b, np.float64) for b in boxes]


def _fa_faces(points: list[np.ndarray], boxes: np.ndarray, scores: np.ndarray, frame_index: int,
              name: str) -> list[Face]:
    return [
        Face(
            frame_index=frame_index, box=box, landmarks=p[:, :2].astype(np.float32),
            score=float(score), backend=name,
        )
        for box, p, score in zip(boxes, points, scores)
    ]


_BACKENDS: dict[str, Callable[..., FaceBackend]] = {
    "dlib": DlibBackend, "dlib-cnn": DlibCnnBackend, "fan": FanBackend, "yunet": YuNetBackend}


def default_backend() -> str:
    """``yunet`` where yuface is installed (its wheels cover Python 3.10 and 3.11), else ``dlib``:
    the finder forge extract, forge video and detect scan's fast preset use by default."""
    return "yunet" if importlib.util.find_spec("yuface") is not None else "dlib"


DEFAULT_BACKEND = default_backend()
DEFAULT_DETECT_SIZE = {"yunet": 640, "dlib": 480}


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def create_backend(name: str, **options) -> FaceBackend:
    """Build a backend by name; options go to its dataclass (unknown ones are an error)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {backend_names()}")
    return _BACKENDS[name](**options)
