"""Face alignment: the mean-face template, Umeyama similarity, warp and unwarp.

All functions are pure. An *affine* here is a (2, 3) float32 matrix that maps frame px to aligned
crop px: ``crop_xy = affine[:, :2] @ frame_xy + affine[:, 2]``.

The crop geometry follows the deepfakes/faceswap convention that the FWA authors also used: the
template lives in [0, 1]^2, and a crop of ``size`` px with ``padding`` (a fraction of ``size`` on
every side) maps the template's unit square onto ``[padding*size, (1-padding)*size]``.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

# Mean face of the 68-point iBUG layout, points 17-67 (brows, nose, eyes, mouth; the jaw is
# excluded because it moves with the mouth and is unreliable at profile). Unit square coordinates,
# as used by the deepfakes/faceswap tools and by Li & Lyu's FWA code.
_MEAN_FACE_X = [
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
]  # fmt: skip
_MEAN_FACE_Y = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
]  # fmt: skip

TEMPLATE_INDICES = np.arange(17, 68)  # which of the 68 landmarks the template covers
TEMPLATE = np.stack([_MEAN_FACE_X, _MEAN_FACE_Y], axis=1).astype(np.float32)  # (51, 2) unit sq.
# Depth of the template's points in the same unit (negative towards the camera, 0 at their mean):
# MediaPipe's 3D mesh at dlib's points on frontal faces (|yaw| < 10 degrees, 90 px and more) of
# the sample clips (435 faces), median over faces; ``python bench/template_depth.py`` measures it.
TEMPLATE_DEPTH = np.array([
    0.1873, 0.0797, 0.0106, -0.0293, -0.0384, -0.0385, -0.0287, 0.0111, 0.0762, 0.1713, -0.0491,
    -0.111, -0.1923, -0.2312, -0.0593, -0.0833, -0.0936, -0.0927, -0.0649, 0.1207, 0.0763, 0.0677,
    0.0868, 0.0746, 0.089, 0.0896, 0.0671, 0.072, 0.117, 0.0863, 0.0757, 0.0686, -0.0364, -0.0858,
    -0.0927, -0.0874, -0.0387, 0.0624, -0.0041, -0.0297, -0.0338, -0.028, 0.004, 0.0442, -0.0463,
    -0.0564, -0.0505, 0.0393, -0.0289, -0.0377, -0.0277,
], np.float32)  # fmt: skip
ALIGNMENTS = ("frontal", "pose")  # the flat template, or the 3D template turned to the face's yaw
YAW_RANGE = 70.0  # degrees either way the pose-aware fit searches

DEFAULT_PADDING = 0.25  # face sets keep the jaw and forehead; models crop tighter from it


def _crop_scale(size: int, padding: float) -> float:
    if not 0.0 <= padding < 0.5:
        raise ValueError(f"padding must be in [0, 0.5), got {padding}")
    return size * (1.0 - 2.0 * padding)


def umeyama_to_template(landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) float32 similarity that maps frame px onto the unit-square template.

    landmarks: (68, 2) in frame px. Least squares over points 17-67 (Umeyama 1991), via
    scikit-image's estimator.
    """
    if landmarks.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {landmarks.shape}")
    tform = SimilarityTransform.from_estimate(
        landmarks[TEMPLATE_INDICES].astype(np.float64), TEMPLATE.astype(np.float64)
    )
    if not tform:
        raise ValueError("degenerate landmarks: no similarity transform fits them")
    return tform.params[:2].astype(np.float32)


def turned_template(yaw: float) -> np.ndarray:
    """(51, 2) float32: the 3D template turned by ``yaw`` degrees about the vertical axis through
    its centre and seen from the front (yaw > 0: the face turns to the image's right)."""
    angle = np.radians(yaw)
    centre = TEMPLATE[:, 0].mean()
    x = centre + (TEMPLATE[:, 0] - centre) * np.cos(angle) - TEMPLATE_DEPTH * np.sin(angle)
    return np.stack([x, TEMPLATE[:, 1]], 1).astype(np.float32)


def _fit(points: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, float]:
    """Similarity frame px -> template and its residual (template units, RMS)."""
    tform = SimilarityTransform.from_estimate(points.astype(np.float64),
                                              template.astype(np.float64))
    if not tform:
        raise ValueError("degenerate landmarks: no similarity transform fits them")
    return tform.params[:2].astype(np.float32), float(np.sqrt(np.mean(tform.residuals(
        points.astype(np.float64), template.astype(np.float64)) ** 2)))


def estimate_yaw(landmarks: np.ndarray, step: float = 2.0) -> float:
    """The yaw (degrees) whose turned template the face's 68 points fit best, to the nearest
    ``step`` within +-``YAW_RANGE``."""
    points = np.asarray(landmarks)[TEMPLATE_INDICES]
    yaws = np.arange(-YAW_RANGE, YAW_RANGE + step / 2, step)
    residuals = [_fit(points, turned_template(yaw))[1] for yaw in yaws]
    return float(yaws[int(np.argmin(residuals))])


def face_affine(landmarks: np.ndarray, size: int, padding: float = DEFAULT_PADDING,
                align: str = "frontal", yaw: float | None = None) -> np.ndarray:
    """(2, 3) float32 affine from frame px to a ``size`` px aligned crop with ``padding``.

    ``align="pose"`` fits the template turned to the face's yaw (``yaw``, or found from the
    points), so a turned face keeps its true size and its centre in the crop where the flat
    template would widen and shift it."""
    if align == "frontal":
        unit = umeyama_to_template(landmarks)
    elif align == "pose":
        if landmarks.shape != (68, 2):
            raise ValueError(f"expected (68, 2) landmarks, got {landmarks.shape}")
        turn = estimate_yaw(landmarks) if yaw is None else float(np.clip(yaw, -YAW_RANGE,
                                                                          YAW_RANGE))
        unit = _fit(landmarks[TEMPLATE_INDICES], turned_template(turn))[0]
    else:
        raise ValueError(f"unknown alignment {align!r}; choose from {list(ALIGNMENTS)}")
    return _unit_to_crop(unit, size, padding)


def _unit_to_crop(unit: np.ndarray, size: int, padding: float) -> np.ndarray:
    affine = unit * _crop_scale(size, padding)
    affine[:, 2] += padding * size
    return affine.astype(np.float32)


def recrop_affine(
    affine: np.ndarray, size: int, padding: float, new_size: int, new_padding: float
) -> np.ndarray:
    """Re-express an affine stored for (size, padding) for a crop of (new_size, new_padding).

    Lets a model take a tighter or smaller crop from a face set without re-running landmarks.
    """
    unit = affine.astype(np.float64).copy()
    unit[:, 2] -= padding * size
    unit /= _crop_scale(size, padding)
    return _unit_to_crop(unit, new_size, new_padding)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """(2, 3) float32 inverse: aligned crop px -> frame px."""
    return cv2.invertAffineTransform(affine.astype(np.float64)).astype(np.float32)


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points; returns (N, 2) float32."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ affine[:, :2].T.astype(np.float64) + affine[:, 2]).astype(np.float32)


def landmarks_to_crop(landmarks: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(68, 2) frame px -> (68, 2) crop px."""
    return transform_points(landmarks, affine)


def warp_face(
    image: np.ndarray, affine: np.ndarray, size: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Cut the aligned (size, size, C) crop out of an (H, W, C) frame; outside is black.

    When the crop is much smaller than the face, the frame is blurred first so that the
    downscale does not alias (warpAffine samples, it does not average).
    """
    scale = affine_scale(affine)
    if scale < 0.5:
        sigma = (1.0 / scale - 1.0) / 2.0  # scikit-image's anti-aliasing rule for rescale
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return cv2.warpAffine(
        image, affine.astype(np.float64), (size, size), flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
    )


def unwarp_face(
    crop: np.ndarray,
    affine: np.ndarray,
    frame_shape: tuple[int, ...],
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a (S, S, C) crop back into frame px.

    Returns (image, coverage): image is (H, W, C) of crop.dtype, zero outside the crop;
    coverage is (H, W) float32 in [0, 1], the share of each frame pixel that came from the crop.
    """
    height, width = frame_shape[:2]
    dsize = (width, height)
    back = cv2.warpAffine(
        crop, affine.astype(np.float64), dsize, flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    ones = np.ones(crop.shape[:2], dtype=np.float32)
    coverage = cv2.warpAffine(
        ones, affine.astype(np.float64), dsize, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return back, coverage


def hflip_affine(affine: np.ndarray, size: int) -> np.ndarray:
    """Affine of the horizontally mirrored crop: mirror(crop) == warp_face(frame, this)."""
    flip = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    full = np.vstack([affine.astype(np.float64), [0.0, 0.0, 1.0]])
    return (flip @ full)[:2].astype(np.float32)


def affine_scale(affine: np.ndarray) -> float:
    """Uniform scale of a similarity affine (crop px per frame px)."""
    return float(np.sqrt(abs(np.linalg.det(affine[:, :2].astype(np.float64)))))
