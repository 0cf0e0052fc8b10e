"""Face-warping-artifact synthesis (Li & Lyu, CVPRW 2019), as the authors' code does it.

A face swap renders the face at a small fixed size and affine-warps it into the frame; the
warped region then has a resolution and blur the rest of the frame does not. A negative is made
from a real face by doing exactly that to the face itself: align it to a random square size in
[64, 127] px, blur it (5x5 Gaussian), warp it back with the inverse transform and overwrite only
the warped region -- with probability 0.5 cut to the hull of the eyebrows and the lower lip.

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


def training_sample(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    fake_prob: float = 0.5,
    config: FwaConfig = FwaConfig(),
) -> tuple[np.ndarray, int]:
    """One training example from a real face: (ROI (S, S, 3) uint8, label 1 = warped, 0 = real)."""
    label = int(rng.random() < fake_prob)
    if label:
        image, _ = warp_artifact(image, landmarks, rng, config)
    roi = crop_roi(image, random_roi(landmarks, image.shape, rng), config.roi_size)
    return colour_jitter(roi, rng, *config.jitter), label
