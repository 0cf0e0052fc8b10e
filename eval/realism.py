"""Realism of a forged video against its source (DESIGN.md section 6).

Per fake, on up to ``frames`` labelled frames spread over the video, the swapped face is found
again in the fake (dlib, the label's box picks it) and in the same source frame:

- identity: cosine similarity of the swapped face's dlib embedding to the target identity's
  centroid and to the source's; top-1 retrieval among the run's identity centroids;
- pose: yaw / pitch / roll from six landmarks with ``cv2.solvePnP`` on a 3D mean face, swapped
  vs original frame, degrees;
- expression: mouth and eye landmarks after Umeyama alignment to the template, swapped vs
  original, in template units (the template's unit square spans brows to lower lip);
- distribution: Frechet distance between the embeddings of the swapped faces and of real
  faces of the target (the Gaussians' FD, no Inception weights needed);
- flicker: mean frame-to-frame change inside the blend mask, fake minus source (8-bit levels),
  over consecutive labelled frames.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from swapscope.errors import InputError
from swapscope.faces.align import transform_points, umeyama_to_template
from swapscope.faces.backends import create_backend
from swapscope.faces.identity import Embedder
from swapscope.faces.records import largest_box
from swapscope.faces.track import best_swapped_face
from swapscope.formats.manifest import SwapFrame, fill_polygons
from swapscope.media.video import probe, read_frames

# 3D mean face for solvePnP (mm; nose tip at the origin), and its 68-landmark indices
MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0),  # nose tip (30)
    (0.0, -330.0, -65.0),  # chin (8)
    (-225.0, 170.0, -135.0),  # left eye, outer corner (36)
    (225.0, 170.0, -135.0),  # right eye, outer corner (45)
    (-150.0, -150.0, -125.0),  # mouth, left corner (48)
    (150.0, -150.0, -125.0),  # mouth, right corner (54)
], np.float64)
POSE_LANDMARKS = [30, 8, 36, 45, 48, 54]
EXPRESSION_LANDMARKS = np.r_[36:48, 48:68]  # eyes, mouth


def head_pose(landmarks: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """(3,) yaw, pitch, roll in degrees from (68, 2) landmarks, pinhole camera f = image width."""
    height, width = image_shape[:2]
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(
        MODEL_POINTS, landmarks[POSE_LANDMARKS].astype(np.float64), camera, None,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return np.full(3, np.nan)
    rotation, _ = cv2.Rodrigues(rvec)
    angles, *_ = cv2.RQDecomp3x3(rotation)  # degrees about x (pitch), y (yaw), z (roll)
    pitch, yaw, roll = angles
    pitch = (pitch + 180) % 360 - 180
    pitch = pitch - 180 if pitch > 90 else pitch + 180 if pitch < -90 else pitch
    return np.array([yaw, pitch, roll])


def expression_vector(landmarks: np.ndarray) -> np.ndarray:
    """(32, 2) eye and mouth landmarks in template units, pose and scale removed."""

    return transform_points(landmarks, umeyama_to_template(landmarks))[EXPRESSION_LANDMARKS]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to (N, D) and (M, D) samples."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.atleast_2d(a)
    return (a @ b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b) + 1e-12)


@dataclass
class Realism:
    frames: int  # labelled frames measured
    identity_to_target: float  # mean cosine similarity
    identity_to_source: float
    top1_target: float  # share of swapped faces whose nearest identity centroid is the target
    pose_error_deg: float  # mean absolute yaw/pitch/roll difference
    expression_error: float  # mean landmark distance, template units
    frechet: float  # embeddings of swapped faces vs real faces of the target
    flicker: float  # inside the mask, fake minus source, 8-bit levels per frame

    def to_json(self) -> dict:
        return {
            k: (None if isinstance(v, float) and np.isnan(v) else v)
            for k, v in asdict(self).items()
        }


class RealismMeter:
    """Holds the face models and the identity centroids of a run."""

    def __init__(self) -> None:
        self.identities: dict[str, np.ndarray] = {}  # name -> (K, 128) embeddings of real faces

    @functools.cached_property
    def backend(self):  # loaded on first use: a fully cached benchmark needs no face models

        return create_backend("dlib")

    @functools.cached_property
    def embedder(self):
        return Embedder()

    def enrol(self, name: str, embeddings: np.ndarray) -> None:
        if len(embeddings):
            self.identities[name] = np.concatenate(
                [self.identities.get(name, np.zeros((0, 128))), embeddings]
            )

    def real_embeddings(self, video: Path, frames: int = 8) -> np.ndarray:
        """(K, 128) embeddings of the largest face in ``frames`` frames spread over a real video."""

        total = probe(video).frame_count or 1
        wanted = set(np.linspace(0, total - 1, frames).round().astype(int).tolist())
        out = []
        for frame in read_frames(video):
            if frame.index not in wanted:
                continue
            found, _ = self.backend.detect(frame.image)
            if len(found):
                largest = found[[largest_box(found)]]
                out.append(
                    self.embedder.embed(frame.image, self.backend.landmarks(frame.image, largest))[
                        0
                    ]
                )
        return np.array(out).reshape(-1, 128)

    def face_in(self, image: np.ndarray, box) -> np.ndarray | None:
        """(68, 2) landmarks of the detected face that ``box`` (a swap record's) names, or
        None.

        Found again in the frame even where the label keeps the forge's landmarks: realism
        measures the face the output shows (does a face finder still see one, whose identity),
        and the landmarks the forge swapped on describe its input."""

        found, _ = self.backend.detect(image)
        best = best_swapped_face(found, box)
        return None if best is None else self.backend.landmarks(image, found[[best]])[0]

    def measure(self, fake: Path, source: Path, labels: list[SwapFrame], target: str | None,
                source_name: str, frames: int = 8, flicker_frames: int = 30
                ) -> tuple[Realism, np.ndarray, np.ndarray]:
        """Realism of one fake; also returns the swapped and the original faces' embeddings."""
        if not labels:
            raise InputError(f"{fake}: no swapped frames in its labels")
        found = self._compare_frames(fake, source, labels, frames, flicker_frames)
        swapped = np.array(found.swapped).reshape(-1, 128)
        original = np.array(found.original).reshape(-1, 128)
        if source_name not in self.identities:
            self.enrol(source_name, original)
        target_name = target or source_name
        nan = float("nan")
        if not len(swapped):
            return Realism(0, nan, nan, nan, nan, nan, nan, nan), swapped, original
        target_real = self.identities.get(target_name, original)
        names = sorted(self.identities)
        centroids = np.stack([self.identities[n].mean(0) for n in names])
        nearest = [names[int(np.argmax(cosine(centroids, e)))] for e in swapped]
        flicker = (np.mean(found.flicker_fake) - np.mean(found.flicker_real)
                   if found.flicker_fake else nan)
        realism = Realism(
            frames=len(swapped),
            identity_to_target=float(cosine(swapped, target_real.mean(0)).mean()),
            identity_to_source=float(cosine(swapped, original.mean(0)).mean()),
            top1_target=float(np.mean([n == target_name for n in nearest])),
            pose_error_deg=float(np.nanmean(found.poses)),
            expression_error=float(np.mean(found.expressions)),
            frechet=frechet_distance(swapped, target_real), flicker=float(flicker))
        return realism, swapped, original

    def _compare_frames(self, fake: Path, source: Path, labels: list[SwapFrame], frames: int,
                        flicker_frames: int) -> _Comparison:
        """One pass over the fake and its source: faces of ``frames`` labelled frames spread
        over the clip, and the change inside the mask over the first ``flicker_frames``."""

        by_frame = {lab.frame: lab for lab in labels}
        ordered = sorted(by_frame)
        picks = np.linspace(0, len(ordered) - 1, min(frames, len(ordered))).round().astype(int)
        measured = {ordered[i] for i in picks}
        flicker_set = set(ordered[:flicker_frames])
        last = ordered[-1] + 1
        out, previous = _Comparison(), None
        for f_fake, f_real in zip(read_frames(fake, limit=last), read_frames(source, limit=last)):
            if f_fake.image.shape != f_real.image.shape:
                raise InputError(f"{fake}: its frames are {_size(f_fake.image)} and its source "
                                 f"{source}'s {_size(f_real.image)}: not the video it was made "
                                 "from")
            lab = by_frame.get(f_fake.index)
            if lab is None:
                previous = None
                continue
            if f_fake.index in flicker_set:
                polygons = [p for face in lab.faces for p in face.mask]
                mask = fill_polygons(polygons, f_fake.image.shape)
                now = (f_fake.image.astype(np.int16), f_real.image.astype(np.int16))
                if previous is not None and mask.any():
                    out.flicker_fake.append(np.abs(now[0] - previous[0])[mask].mean())
                    out.flicker_real.append(np.abs(now[1] - previous[1])[mask].mean())
                previous = now
            if f_fake.index in measured:
                for face in lab.faces:
                    self._compare_face(f_fake.image, f_real.image, face.box, out)
        return out

    def _compare_face(self, fake: np.ndarray, real: np.ndarray, box, out: _Comparison) -> None:
        lms_fake, lms_real = self.face_in(fake, box), self.face_in(real, box)
        if lms_fake is None or lms_real is None:
            return
        out.swapped.append(self.embedder.embed(fake, lms_fake[None])[0])
        out.original.append(self.embedder.embed(real, lms_real[None])[0])
        out.poses.append(np.abs(head_pose(lms_fake, fake.shape) - head_pose(lms_real, real.shape)))
        moved = expression_vector(lms_fake) - expression_vector(lms_real)
        out.expressions.append(np.linalg.norm(moved, axis=1).mean())


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


@dataclass
class _Comparison:
    """What one pass over a fake and its source collects, per compared face or frame pair."""

    swapped: list[np.ndarray] = field(default_factory=list)  # (128,) swapped faces' embeddings
    original: list[np.ndarray] = field(default_factory=list)  # (128,) the same faces in the source
    poses: list[np.ndarray] = field(default_factory=list)  # (3,) |yaw, pitch, roll| differences
    expressions: list[float] = field(default_factory=list)
    flicker_fake: list[float] = field(default_factory=list)  # mean |change| inside the mask
    flicker_real: list[float] = field(default_factory=list)
