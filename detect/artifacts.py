"""Artifacts that face swaps leave, synthesised on real faces: the negatives a detector learns
from without ever seeing a deepfake.

- ``warp_artifact`` (FWA; Li & Lyu, CVPRW 2019, as the authors' code does it): a face swap
  renders the face at a small fixed size and affine-warps it into the frame, so the warped region
  has a resolution and blur the rest of the frame does not. Align the face to a random square
  size in [64, 127] px, blur it (5x5 Gaussian), warp it back with the inverse transform and
  overwrite only the warped region -- with probability 0.5 cut to the hull of the eyebrows and
  the lower lip.
- ``self_blend`` (SBI; Shiohara & Yamasaki, CVPR 2022): a copy of the face with its colour and
  frequency content changed and slightly shifted, blended back into the original through a
  deformed, eroded and blurred landmark-hull mask -- the blending boundary and the statistics
  mismatch of a swap, without its identity change.

Every function is pure: an image (H, W, 3) uint8 RGB in frame px, its (68, 2) landmarks in frame
px, and a ``numpy.random.Generator`` that makes the result deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from swapscope.faces.align import face_affine, unwarp_face, warp_face

HULL_POINTS = np.r_[np.arange(17, 27), [48, 59, 58, 57, 56, 55, 54]]  # brows + lower lip arc


@dataclass(frozen=True, slots=True)
class FwaConfig:
    min_size: int = 64  # aligned square size, drawn uniformly from [min_size, max_size]
    max_size: int = 127
    blur: int = 5  # Gaussian kernel side
    hull_prob: float = 0.5  # chance the warped area is cut to the brows + lower lip hull
    padding: float = 0.0  # aligned crop = the template's unit square (brows to lower lip)
    roi_size: int = 224
    jitter: tuple[float, float] = (0.8, 1.2)  # brightness / contrast / colour / sharpness factors


def warp_artifact(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                  config: FwaConfig = FwaConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the warp artifact on a real face.

    Returns (negative (H, W, 3) uint8, region (H, W) bool): the pixels that were overwritten.
    Every pixel outside ``region`` equals the input.
    """
    size = int(rng.integers(config.min_size, config.max_size + 1))
    affine = face_affine(landmarks, size, config.padding)
    small = warp_face(image, affine, size)
    small = cv2.GaussianBlur(small, (config.blur, config.blur), 0)
    back, coverage = unwarp_face(small, affine, image.shape)
    region = coverage >= 0.999  # whole warped pixels only: the edge stays the original
    if rng.random() < config.hull_prob:
        hull = cv2.convexHull(np.round(landmarks[HULL_POINTS]).astype(np.int32))
        polygon = np.zeros(image.shape[:2], np.uint8)
        cv2.fillConvexPoly(polygon, hull, 1)
        region &= polygon.astype(bool)
    out = image.copy()
    out[region] = back[region]
    return out, region


@dataclass(frozen=True, slots=True)
class SbiConfig:
    rgb_shift: int = 20  # per-channel offset, drawn from [-rgb_shift, rgb_shift]
    hue_shift: int = 6  # OpenCV hue units (180 = a full turn)
    saturation: tuple[float, float] = (0.85, 1.15)
    brightness: float = 0.1  # brightness and contrast offsets, fractions
    downscale: tuple[int, ...] = (2, 4)  # the frequency change: down-and-up by one of these ...
    sharpen_prob: float = 0.5  # ... or, this often, a sharpen instead
    shift: tuple[float, float] = (0.03, 0.015)  # translation, fraction of the face's width / height
    scale: tuple[float, float] = (0.95, 1.05)
    kernels: tuple[int, int] = (5, 25)  # odd blur kernel sides of the mask, drawn twice
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # blend ratios


def self_blend(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
               config: SbiConfig = SbiConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Blend a changed copy of the face back into itself.

    Returns (negative (H, W, 3) uint8, mask (H, W) float32 in [0, 1]): the blend weight of the
    changed copy. Every pixel where the mask is 0 equals the input.
    """
    x1, y1, x2, y2 = _work_box(landmarks, image.shape)
    crop = image[y1:y2, x1:x2]
    points = landmarks - np.array([x1, y1], np.float32)
    source = _frequency_change(_colour_change(crop, rng, config), rng, config)
    source = _small_shift(source, points, rng, config)
    mask = _blend_mask(crop.shape, points, rng, config)
    ratio = float(config.ratios[int(rng.integers(len(config.ratios)))])
    weight = (mask * ratio)[..., None]
    blended = crop.astype(np.float32) * (1 - weight) + source.astype(np.float32) * weight
    out = image.copy()
    out[y1:y2, x1:x2] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    full = np.zeros(image.shape[:2], np.float32)
    full[y1:y2, x1:x2] = weight[..., 0]
    return out, full


def _work_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The face's box widened by a third on each side: room for the shift and the mask's blur."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    margin = (hi - lo) / 3
    x1, y1 = np.floor(lo - margin).astype(int)
    x2, y2 = np.ceil(hi + margin).astype(int)
    return max(x1, 0), max(y1, 0), min(x2, shape[1]), min(y2, shape[0])


def _colour_change(crop: np.ndarray, rng: np.random.Generator, cfg: SbiConfig) -> np.ndarray:
    """RGB shift, hue/saturation, brightness/contrast."""
    out = crop.astype(np.float32) + rng.integers(-cfg.rgb_shift, cfg.rgb_shift + 1, 3)
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.integers(-cfg.hue_shift, cfg.hue_shift + 1)) % 180
    hsv[..., 1] *= rng.uniform(*cfg.saturation)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast = 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    brightness = 255 * rng.uniform(-cfg.brightness, cfg.brightness)
    out = (out - out.mean()) * contrast + out.mean() + brightness
    return np.clip(out, 0, 255).astype(np.uint8)


def _frequency_change(crop: np.ndarray, rng: np.random.Generator, cfg: SbiConfig) -> np.ndarray:
    """A x2 or x4 down-and-up-scale, or a sharpen."""
    if rng.random() < cfg.sharpen_prob:
        blurred = cv2.GaussianBlur(crop, (0, 0), 1.0)
        amount = rng.uniform(0.5, 1.0)
        return cv2.addWeighted(crop, 1.0 + amount, blurred, -amount, 0)
    factor = int(cfg.downscale[int(rng.integers(len(cfg.downscale)))])
    h, w = crop.shape[:2]
    small = cv2.resize(crop, (max(1, w // factor), max(1, h // factor)),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _small_shift(crop: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                 cfg: SbiConfig) -> np.ndarray:
    """Translate by up to ``shift`` of the face's size and scale about its centre."""
    size = points.max(0) - points.min(0)
    centre = (points.max(0) + points.min(0)) / 2
    scale = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-1, 1, 2) * np.array(cfg.shift) * size
    matrix = np.array([[scale, 0, (1 - scale) * centre[0] + tx],
                       [0, scale, (1 - scale) * centre[1] + ty]], np.float32)
    return cv2.warpAffine(crop, matrix, (crop.shape[1], crop.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)


def _odd_kernel(rng: np.random.Generator, cfg: SbiConfig) -> int:
    low, high = cfg.kernels
    return int(rng.integers(low // 2, high // 2 + 1)) * 2 + 1


def _blend_mask(shape: tuple[int, ...], points: np.ndarray, rng: np.random.Generator,
                cfg: SbiConfig) -> np.ndarray:
    """(h, w) float32 in [0, 1]: the landmarks' convex hull, elastically deformed, eroded, then
    blurred twice with odd kernels."""
    h, w = shape[:2]
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 255)
    face = float(max(points.max(0) - points.min(0)))
    offsets = rng.normal(0.0, 0.03 * face, (4, 4, 2)).astype(np.float32)
    field = cv2.resize(offsets, (w, h), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mask = cv2.remap(hull, xs + field[..., 0], ys + field[..., 1], cv2.INTER_LINEAR)
    erode = int(rng.integers(1, max(2, round(0.05 * face))))
    mask = cv2.erode(mask, np.ones((erode, erode), np.uint8)).astype(np.float32) / 255
    for _ in range(2):
        k = _odd_kernel(rng, cfg)
        mask = cv2.GaussianBlur(mask, (k, k), 0)
    mask[mask < 1 / 255] = 0.0  # blur tails too faint to move a pixel stay exactly the original
    return np.clip(mask, 0.0, 1.0)


def random_roi(landmarks: np.ndarray, image_shape: tuple[int, ...], rng: np.random.Generator
               ) -> np.ndarray:
    """(4,) int box x1, y1, x2, y2: the landmarks' tight box widened by random margins -- up to
    w/8 on the left and right, up to h/5 above and half that below -- clipped to the image."""
    x1, y1 = landmarks.min(0)
    x2, y2 = landmarks.max(0)
    w, h = x2 - x1, y2 - y1
    left, right = rng.uniform(0, w / 8, 2)
    top = rng.uniform(0, h / 5)
    bottom = rng.uniform(0, h / 10)
    height, width = image_shape[:2]
    box = np.array(
        [np.floor(x1 - left), np.floor(y1 - top), np.ceil(x2 + right), np.ceil(y2 + bottom)]
    )
    box = np.clip(box, 0, [width, height, width, height]).astype(np.int64)
    return box


def crop_roi(image: np.ndarray, box: np.ndarray, size: int = 224) -> np.ndarray:
    """(size, size, 3) uint8 resize of the box's pixels (aspect ratio not kept, as in the paper)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    patch = image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, low: float = 0.8, high: float = 1.2
                  ) -> np.ndarray:
    """Brightness, contrast, colour and sharpness each scaled by a factor in [low, high]."""
    from PIL import Image, ImageEnhance

    pil = Image.fromarray(image)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color,
                     ImageEnhance.Sharpness):
        pil = enhancer(pil).enhance(float(rng.uniform(low, high)))
    return np.asarray(pil)


ARTIFACTS = ("fwa", "sbi", "mix")  # mix: each negative draws one of the two


def synthesise(kind: str, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
               fwa: FwaConfig = FwaConfig(), sbi: SbiConfig = SbiConfig()) -> np.ndarray:
    """A negative of one artifact kind ("fwa" or "sbi")."""
    if kind == "fwa":
        return warp_artifact(image, landmarks, rng, fwa)[0]
    if kind == "sbi":
        return self_blend(image, landmarks, rng, sbi)[0]
    raise ValueError(f"unknown artifact {kind!r}; choose from {list(ARTIFACTS)}")


def training_sample(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    fake_prob: float = 0.5,
    config: FwaConfig = FwaConfig(),
    artifact: str = "fwa",
    degrade=None,
) -> tuple[np.ndarray, int]:
    """One training example from a real face: (ROI (S, S, 3) uint8, label 1 = artifact, 0 = real).

    ``degrade`` (``detect.data.Degrade``) acts on the frame region at its own size after the
    artifact and before the ROI is cut, then may mirror the ROI. It draws from a generator of
    its own, seeded before anything else, so a real and a fake example of the same draw are
    degraded exactly alike.
    """
    degrade_rng = np.random.default_rng(int(rng.integers(1 << 62)))
    label = int(rng.random() < fake_prob)
    kind = artifact if artifact != "mix" else ("fwa", "sbi")[int(rng.integers(2))]
    if label:
        image = synthesise(kind, image, landmarks, rng, config)
    if degrade is not None:
        image = degrade(image, degrade_rng)
    roi = crop_roi(image, random_roi(landmarks, image.shape, rng), config.roi_size)
    if degrade is not None and degrade_rng.random() < degrade.flip:
        roi = np.ascontiguousarray(roi[:, ::-1])
    return colour_jitter(roi, rng, *config.jitter), label
