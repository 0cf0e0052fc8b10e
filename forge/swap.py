"""One frame's face swap: align -> render -> mask -> colour -> warp back -> blend.

A *renderer* turns aligned crops of the target face into new faces (and optionally masks):
``ModelRenderer`` runs the shared encoder and the other identity's decoder of a ``forge train``
model; ``FwaSimRenderer`` needs no model -- it re-renders the face itself at a small size with a
blur, which leaves exactly the resolution/blur artifact that FWA detectors learn. Everything
after rendering is the same for both, and every choice is a named knob.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from forge.models import read_swap_config, swap_model_from
from swapscope.device import autocast_for
from swapscope.errors import InputError
from swapscope.faces.align import (
    face_affine,
    invert_affine,
    landmarks_to_crop,
    transform_points,
    warp_face,
)
from swapscope.faces.mesh import head_pose, visible_mask

MASKS = ("learned", "hull", "mesh")
COLOURS = ("none", "reinhard", "histogram")
BLENDS = ("alpha", "poisson")


@dataclass
class CompositeConfig:
    # learned (the decoder's mask channel) | hull (landmark convex hull) | mesh (the visible part
    # of the face's 3D mesh; the mesh extra)
    mask: str = "learned"
    erode: float = 0.03  # mask erosion, fraction of the crop side
    feather: float = 0.05  # mask feather (Gaussian sigma), fraction of the crop side
    colour: str = "reinhard"  # none | reinhard (LAB mean/std) | histogram (per-channel matching)
    blend: str = "alpha"  # alpha (feathered) | poisson (cv2.seamlessClone)

    def check(self) -> None:
        for name, value, choices in (("mask", self.mask, MASKS), ("colour", self.colour, COLOURS),
                                     ("blend", self.blend, BLENDS)):
            if value not in choices:
                raise InputError(f"unknown --{name} {value!r}; choose from {list(choices)}")
        if not 0 <= self.erode < 0.5 or not 0 <= self.feather < 0.5:
            raise InputError("--erode and --feather must be in [0, 0.5)")


class ModelRenderer:
    """A ``forge train`` model: encoder, then identity ``to``'s decoder (RGB + learned mask)."""

    name = "model"

    def __init__(self, path: str, to: str, device: str) -> None:
        if to not in ("a", "b"):
            raise InputError(f"unknown --to {to!r}; choose from ['a', 'b']")
        self.checkpoint = read_swap_config(path)
        self.model = swap_model_from(self.checkpoint, device)
        self.size, self.padding = self.checkpoint.size, self.checkpoint.padding
        self.align = self.checkpoint.align
        self.to, self.device = to, device
        self.has_mask = True

    @torch.no_grad()
    def render(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> (faces (N, S, S, 3) uint8, masks (N, S, S) float32 in [0, 1])."""
        x = (
            torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)))
            .to(self.device)
            .float()
            / 255
        )
        with autocast_for(self.device):
            rgb, mask = self.model(x, self.to)
        faces = (rgb.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return faces, mask.float()[:, 0].cpu().numpy()


class FwaSimRenderer:
    """The face itself, rendered at ``size`` px with a 5x5 Gaussian blur (Li & Lyu's artifact)."""

    name = "fwa-sim"
    padding = 0.0  # the template's unit square, eyebrows to lower lip, as in the FWA recipe
    align = "frontal"  # the FWA recipe's flat template
    has_mask = False

    def __init__(self, size: int, blur: int = 5) -> None:
        if not 16 <= size <= 512:
            raise InputError("--fwa-size must be in [16, 512]")
        self.size, self.blur = size, blur

    def render(self, crops: np.ndarray) -> tuple[np.ndarray, None]:
        return np.stack([cv2.GaussianBlur(c, (self.blur, self.blur), 0) for c in crops]), None


def crop_mask(
    size: int, crop_landmarks: np.ndarray, learned: np.ndarray | None, cfg: CompositeConfig,
    mesh: np.ndarray | None = None, affine: np.ndarray | None = None,
) -> np.ndarray:
    """(S, S) float32 blend mask in crop px: learned, hull, or the visible part of the (468, 3)
    frame-px ``mesh`` moved by ``affine`` (the hull where the mesh found no face); eroded,
    feathered."""
    if cfg.mask == "learned" and learned is not None:
        mask = (learned > 0.5).astype(np.uint8)
    elif cfg.mask == "mesh" and mesh is not None:
        mask = visible_mask(mesh, (size, size), affine)
    else:
        mask = np.zeros((size, size), np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(crop_landmarks).astype(np.int32)), 1)
    erode = int(round(cfg.erode * size))
    if erode > 0:
        mask = cv2.erode(
            mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
        )
    mask = mask.astype(np.float32)
    sigma = cfg.feather * size
    if sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma)
    return np.clip(mask, 0.0, 1.0)


def transfer_colour(
    face: np.ndarray, original: np.ndarray, mask: np.ndarray, method: str
) -> np.ndarray:
    """Match the rendered face's colours to the original face's, measured inside ``mask``.

    face, original: (S, S, 3) uint8 RGB crops; mask (S, S) float32.
    """
    inside = mask > 0.5
    if method == "none" or inside.sum() < 16:
        return face
    if method == "histogram":
        from skimage.exposure import match_histograms

        matched = face.copy()
        matched[inside] = match_histograms(
            face[inside][None], original[inside][None], channel_axis=-1
        )[0]
        return matched
    # Reinhard et al. 2001: shift and scale each LAB channel to the original's statistics
    src = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-6
    r_mean, r_std = ref[inside].mean(0), ref[inside].std(0) + 1e-6
    out = np.clip((src - s_mean) * (r_std / s_std) + r_mean, 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_LAB2RGB)


def composite(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, affine: np.ndarray, blend: str
              ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Warp the rendered face and its mask back into the frame and blend them in.

    frame (H, W, 3) uint8; face (S, S, 3) uint8 and mask (S, S) float32 in crop px; affine (2, 3)
    frame px -> crop px. Works inside the crop's bounding box only. Returns (new frame, mask in
    the box (h, w) float32, box x1, y1, x2, y2).
    """
    height, width = frame.shape[:2]
    size = face.shape[0]
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float32),
                               invert_affine(affine))
    x1, y1 = np.floor(corners.min(0)).astype(int).clip(0, [width, height])
    x2, y2 = np.ceil(corners.max(0)).astype(int).clip(0, [width, height])
    out = frame.copy()
    if x2 - x1 < 2 or y2 - y1 < 2:
        return out, np.zeros((0, 0), np.float32), (0, 0, 0, 0)
    shifted = affine.astype(np.float64).copy()
    shifted[:, 2] += shifted[:, :2] @ np.array([x1, y1], np.float64)  # box px -> crop px
    box = (x2 - x1, y2 - y1)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(face, shifted, box, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, shifted, box, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    region = out[y1:y2, x1:x2]
    if blend == "poisson" and (alpha > 0.5).any():
        binary = ((alpha > 0.5) * 255).astype(np.uint8)
        binary[[0, -1], :] = 0  # seamlessClone needs a border of untouched pixels
        binary[:, [0, -1]] = 0
        ys, xs = np.nonzero(binary)
        if len(xs):
            bx, by, bw, bh = cv2.boundingRect(np.stack([xs, ys], 1).astype(np.int32))
            centre = (bx + bw // 2, by + bh // 2)
            cloned = cv2.seamlessClone(
                back, np.ascontiguousarray(region), binary, centre, cv2.NORMAL_CLONE
            )
            alpha = (binary > 0).astype(np.float32)
            out[y1:y2, x1:x2] = np.where(alpha[..., None] > 0, cloned, region)
            return out, alpha, (int(x1), int(y1), int(x2), int(y2))
    a = alpha[..., None]
    out[y1:y2, x1:x2] = np.clip(region * (1 - a) + back * a + 0.5, 0, 255).astype(np.uint8)
    return out, alpha, (int(x1), int(y1), int(x2), int(y2))


def align_faces(
    frame: np.ndarray, faces: list[np.ndarray], renderer, meshes: list | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Affines (2, 3) frame px -> crop px and aligned crops (N, S, S, 3) of the faces with
    these (68, 2) frame-px landmarks, at the renderer's size, padding and alignment (turned to
    the yaw of the face's mesh where ``meshes`` has one, else to the yaw its points fit)."""

    meshes = meshes or [None] * len(faces)
    affines = [face_affine(lms, renderer.size, renderer.padding, renderer.align,
                           None if m is None or renderer.align != "pose" else head_pose(m).yaw)
               for lms, m in zip(faces, meshes)]
    crops = np.stack([warp_face(frame, a, renderer.size) for a in affines]) if affines else \
        np.zeros((0, renderer.size, renderer.size, 3), np.uint8)
    return affines, crops


def blend_faces(
    frame: np.ndarray,
    faces: list[np.ndarray],
    affines: list[np.ndarray],
    crops: np.ndarray,
    rendered: np.ndarray,
    learned: np.ndarray | None,
    size: int,
    cfg: CompositeConfig,
    meshes: list | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Mask, colour-match and blend rendered faces into the frame.

    Returns (new frame, per face {"mask": (h, w) float32 in its box, "box": x1, y1, x2, y2}).
    """
    out, results = frame, []
    meshes = meshes or [None] * len(faces)
    for i, (lms, affine) in enumerate(zip(faces, affines)):
        mask = crop_mask(
            size, landmarks_to_crop(lms, affine), learned[i] if learned is not None else None, cfg,
            meshes[i], affine)
        face = transfer_colour(rendered[i], crops[i], mask, cfg.colour)
        out, alpha, box = composite(out, face, mask, affine, cfg.blend)
        results.append({"mask": alpha, "box": box})
    return out, results

