"""Identity: 128-d face embeddings (dlib's ResNet from face-recognition-models), references,
and matching faces and whole tracks to a reference.

Distances are Euclidean between dlib descriptors; dlib's model was trained so that 0.6 separates
same-person from different-person pairs (99.38% on LFW). ``bench/identity.py`` measures it on
the project's sample photos.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swapscope.errors import InputError
from swapscope.faces.backends import model_file
from swapscope.faces.records import Face, FaceTrack, largest_face
from swapscope.media.images import image_files, load_image

DEFAULT_THRESHOLD = 0.6
EMBEDDING_DIM = 128
REFERENCE_KIND = "swapscope.identity-reference"
# A folder of stored faces of one person (a face set; swapscope.formats.faceset
# faceset_embeddings) as (embeddings, where each came from, the person's name), or None if the
# folder is not of its kind. The faces layer reads no file format: callers pass these in.
FaceStore = Callable[[Path, "Embedder"], tuple[list[np.ndarray], list[str], str] | None]


class Embedder:
    """dlib face-recognition ResNet; ``embed`` takes frames and 68-point landmarks."""

    def __init__(self, jitter: int = 0) -> None:
        import dlib

        self._net = dlib.face_recognition_model_v1(
            str(model_file("dlib_face_recognition_resnet_model_v1.dat"))
        )
        self._jitter = jitter

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB and (N, 68, 2) frame px -> (N, 128) float32 embeddings."""
        import dlib

        if len(landmarks) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        image = np.ascontiguousarray(image)
        chips = []
        for points in landmarks:
            x1, y1 = points.min(axis=0)
            x2, y2 = points.max(axis=0)
            rect = dlib.rectangle(int(x1), int(y1), int(x2), int(y2))
            shape = dlib.full_object_detection(
                rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points]
            )
            chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        vectors = self._net.compute_face_descriptor(chips, self._jitter)
        return np.asarray([np.asarray(v) for v in vectors], np.float32)

    def embed_faces(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return self.embed(
            image, np.stack([f.landmarks for f in faces]) if faces else np.zeros((0, 68, 2))
        )


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between (..., 128) embeddings."""
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


@dataclass(frozen=True, slots=True, eq=False)
class Reference:
    """An enrolled identity: one or more embeddings of the same person."""

    name: str
    embeddings: np.ndarray  # (K, 128) float32
    sources: tuple[str, ...]  # where each embedding came from

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, 128) -> (N,) distance to the nearest enrolled embedding.

        The nearest rather than the centroid, so a reference built from a frontal and a profile
        photo matches both poses.
        """
        emb = np.atleast_2d(embeddings)
        return np.min(np.linalg.norm(emb[:, None, :] - self.embeddings[None], axis=-1), axis=1)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        try:
            payload = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                f"{path}: not an identity reference ({exc.__class__.__name__})"
            ) from None
        if not isinstance(payload, dict) or payload.get("kind") != REFERENCE_KIND:
            raise InputError(f"{path}: not an identity reference (kind is not {REFERENCE_KIND!r})")
        name, sources = payload.get("name"), payload.get("sources", [])
        if not isinstance(name, str) or not name:
            raise InputError(f"{path}: identity reference needs a name (a non-empty string)")
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise InputError(f"{path}: identity reference's sources must be a list of strings")
        try:  # a number past float32 becomes inf (refused below), not a warning
            with np.errstate(over="ignore"):
                emb = np.asarray(payload.get("embeddings"), np.float32)
        except (TypeError, ValueError):
            emb = np.zeros((0,), np.float32)
        if (emb.ndim != 2 or emb.shape[1] != EMBEDDING_DIM or len(emb) == 0
                or not np.isfinite(emb).all()):
            raise InputError(f"{path}: identity reference needs embeddings: a list of "
                             f"{EMBEDDING_DIM}-number lists of finite numbers")
        return cls(name=name, embeddings=emb, sources=tuple(sources))


def enrol(
    paths: list[str | Path], backend, embedder: Embedder, name: str | None = None,
    stores: Sequence[FaceStore] = (),
) -> Reference:
    """Build a reference from photos, folders of photos, saved references, or folders that one
    of ``stores`` reads (face sets).

    In each photo the largest face is the person; a photo with no face is an error, since a
    reference built from the wrong face would silently select the wrong person.
    """

    embeddings: list[np.ndarray] = []
    sources: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == ".json":
            ref = Reference.load(path)
            embeddings.extend(ref.embeddings)
            sources.extend(ref.sources)
            name = name or ref.name
            continue
        stored = next(filter(None, (read(path, embedder) for read in stores)), None)
        if path.is_dir() and stored is not None:
            embeddings.extend(stored[0])
            sources.extend(stored[1])
            name = name or stored[2]
            continue
        files = image_files(path)
        if not files:
            raise InputError(f"{path}: no images to enrol an identity from")
        for file in files:
            image = load_image(file)
            faces = backend.faces(image)
            if not faces:
                raise InputError(f"{file}: no face found to enrol")
            largest = largest_face(faces)
            embeddings.append(embedder.embed_faces(image, [largest])[0])
            sources.append(str(file))
        name = name or (path.parent.name if path.is_file() else path.name)
    if not embeddings:
        raise InputError("no faces to enrol an identity from")
    return Reference(name=name or "reference", embeddings=np.stack(embeddings).astype(np.float32),
                     sources=tuple(sources))


def match_track(track: FaceTrack, reference: Reference, threshold: float = DEFAULT_THRESHOLD
                ) -> tuple[bool, float]:
    """Decide whether a whole track is the reference person.

    Uses the median distance of the track's embedded faces, so a few bad frames (blur, a hand in
    front of the face) neither admit nor reject a track. Returns (is_match, median distance).
    """
    embs = [f.embedding for f in track.faces if f.embedding is not None]
    if not embs:
        return False, float("inf")
    dist = float(np.median(reference.distance(np.stack(embs))))
    return dist <= threshold, dist
