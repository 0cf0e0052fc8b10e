"""Training data for artifact detectors (FWA, SBI): real faces from face sets, negatives made
on the fly.

Negatives are never made from the face set's aligned crops: those were already resampled once,
and a detector would learn that resampling. Instead ``build_context_cache`` cuts each face once
out of its original frame, axis-aligned and at full resolution, with a margin wide enough for
the random ROI -- the same pixels ``detect scan`` will see -- and the FWA warp is synthesised on
that context crop each time the face is drawn.

Both classes get the same degradations a real-world fake arrives with (``Degrade``: rescaling,
smoothing, sharpening, JPEG or H.264, mirroring), so none of them can tell the classes apart.

Splits are by identity, and so by source video; ``split_by_identity`` asserts both are disjoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from detect.artifacts import ARTIFACTS, FwaConfig, training_sample
from detect.models import DataConfig, to_tensor
from swapscope.errors import InputError
from swapscope.faces.backends import create_backend
from swapscope.faces.records import largest_box
from swapscope.faces.track import swapped_faces
from swapscope.files import read_jsonl, write_jsonl_atomic
from swapscope.formats.faceset import FaceRow, FaceSet
from swapscope.formats.manifest import ManifestRow, read_swap_frames, verified_outputs
from swapscope.media.images import is_image, load_image
from swapscope.media.video import h264_roundtrip, read_frames
from swapscope.progress import NoProgress, Progress

CONTEXT_MARGIN = 0.35  # of the landmarks' larger side, on every side: > the ROI's h/5 and w/8


@dataclass(frozen=True, slots=True)
class FaceItem:
    context: str  # path of the context crop PNG
    landmarks: np.ndarray  # (68, 2) float32 in context-crop px
    identity: str
    source_id: str  # sha256 of the real video the face comes from (a fake: of its source)
    frame_index: int
    label: int | None = None  # None: a real face, made an FWA negative half the time; 0/1: fixed
    kind: str = "forged"  # what a fixed-label fake is: "forged" (a forge manifest), "genuine"


def _context_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    lo, hi = landmarks.min(0), landmarks.max(0)
    margin = CONTEXT_MARGIN * float(max(hi - lo))
    x1, y1 = np.floor(lo - margin).astype(int)
    x2, y2 = np.ceil(hi + margin).astype(int)
    return max(x1, 0), max(y1, 0), min(x2, shape[1]), min(y2, shape[0])


def build_context_cache(faceset: FaceSet, cache: Path, stride: int = 1,
                        progress: Progress | None = None) -> list[FaceItem]:
    """Cut every ``stride``-th face of each track out of its source frame, once; reuse the
    cache on later runs. Returns the items."""
    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / "items.jsonl"
    if index_path.is_file():
        return [_item_from_json(cache, row) for row in read_jsonl(index_path)]
    tracks: dict[tuple[str, int], list[FaceRow]] = {}
    for row in faceset.rows:
        tracks.setdefault((row.source_id, row.track_id), []).append(row)
    rows = [r for group in tracks.values()
            for r in sorted(group, key=lambda r: r.frame_index)[::stride]]
    by_source: dict[str, list[FaceRow]] = {}
    for row in rows:
        by_source.setdefault(row.source_path, []).append(row)
    progress = progress or NoProgress()
    progress.start(f"cutting faces of {faceset.root.name}", len(rows))
    items_json = []
    for source, source_rows in by_source.items():
        if not Path(source).is_file():
            raise InputError(f"{source}: source of face set {faceset.root} is missing; "
                             "FWA negatives are made from the original frames")
        wanted: dict[int, list[FaceRow]] = {}
        for row in source_rows:
            wanted.setdefault(row.frame_index, []).append(row)
        frames = ([(0, load_image(source))] if is_image(source)
                  else ((f.index, f.image) for f in read_frames(source) if f.index in wanted))
        for index, image in frames:
            for row in wanted.get(index, []):
                x1, y1, x2, y2 = _context_box(row.landmarks, image.shape)
                name = f"{row.source_id[:16]}_{index:06d}_t{row.track_id}.png"
                cv2.imwrite(str(cache / name), image[y1:y2, x1:x2][..., ::-1],
                            [cv2.IMWRITE_PNG_COMPRESSION, 1])
                items_json.append({"context": name,
                                   "landmarks": np.round(row.landmarks - [x1, y1], 2).tolist(),
                                   "identity": row.identity, "source_id": row.source_id,
                                   "frame_index": index})
                progress.advance(1)
    progress.stop()
    return _write_items(cache, items_json)


def _write_items(cache: Path, items_json: list[dict]) -> list[FaceItem]:
    """Commit a cache's index (atomically: a killed build leaves no index, so it is rebuilt)."""
    write_jsonl_atomic(cache / "items.jsonl", items_json)
    return [_item_from_json(cache, row) for row in items_json]


def _item_from_json(cache: Path, row: dict) -> FaceItem:
    return FaceItem(
        context=str(cache / row["context"]), landmarks=np.asarray(row["landmarks"], np.float32),
        identity=row["identity"], source_id=row["source_id"], frame_index=row["frame_index"],
        label=row.get("label"),
    )


def manifest_cache_key(manifest: Path, stride: int) -> str:
    if not Path(manifest).is_file():
        raise InputError(
            f"{manifest}: no such manifest (forge video / forge dataset write manifest.jsonl)"
        )
    digest = hashlib.sha256(Path(manifest).read_bytes())
    digest.update(f"/{stride}".encode())
    return "m" + digest.hexdigest()[:15]


def build_manifest_cache(manifest: Path, cache: Path, stride: int = 3,
                         progress: Progress | None = None) -> list[FaceItem]:
    """Context crops of the faces in a forge manifest's outputs, with fixed labels: the swapped
    faces of each fake (every ``stride``-th labelled frame) are 1, the faces of each real
    counterpart 0. A fake's faces are cropped at the landmarks its labels keep (in labels from
    before they were kept, faces are re-detected in the output frames by dlib and the label's box
    picks the swapped one); a real counterpart's are detected. Identity and source id come from
    the source video, so a fake and its real counterpart always fall in the same split."""

    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / "items.jsonl"
    if index_path.is_file():
        return [_item_from_json(cache, row) for row in read_jsonl(index_path)]
    manifest = Path(manifest)
    folder = manifest.parent if manifest.is_file() else manifest
    outputs = verified_outputs(manifest)
    backend = create_backend("dlib")
    items_json = []
    progress = progress or NoProgress()
    progress.start(f"finding faces in {manifest.name}", len(outputs))
    for row, video in outputs:
        for frame, k, lms in _labelled_faces(video, folder, row, stride, backend):
            x1, y1, x2, y2 = _context_box(lms, frame.image.shape)
            name = f"{row.id[:12]}_{frame.index:06d}_{k}.png"
            cv2.imwrite(str(cache / name), frame.image[y1:y2, x1:x2][..., ::-1],
                        [cv2.IMWRITE_PNG_COMPRESSION, 1])
            items_json.append({"context": name, "landmarks": np.round(lms - [x1, y1], 2).tolist(),
                               "identity": row.identity, "source_id": row.source_sha256,
                               "frame_index": frame.index, "label": int(row.label == "fake")})
        progress.advance(1)
    progress.stop()
    if not items_json:
        raise InputError(f"{manifest}: no faces found in its outputs")
    return _write_items(cache, items_json)


def _labelled_faces(video: Path, folder: Path, row: ManifestRow, stride: int, backend):
    """(frame, face index, (68, 2) landmarks) of the faces to train on in one output: in a
    fake, those its labels say were swapped (every ``stride``-th labelled frame), at the
    landmarks the forge swapped them on where the labels keep them (found again by their boxes
    in labels written before they did); in a real counterpart, the largest face of every
    ``stride``-th frame."""

    fake = row.label == "fake"
    swaps = {swap.frame: swap.faces for swap in read_swap_frames(folder, row)[::stride]}
    for frame in read_frames(video):
        if (frame.index not in swaps) if fake else frame.index % stride:
            continue
        kept = [face.points() for face in swaps[frame.index]] if fake else [None]
        if all(points is not None for points in kept):
            yield from ((frame, k, points) for k, points in enumerate(kept))
            continue
        found, _ = backend.detect(frame.image)
        if not len(found):
            continue
        boxes = [face.box for face in swaps[frame.index]] if fake else []
        pick = swapped_faces(found, boxes) if fake else [largest_box(found)]
        if pick:
            for k, lms in zip(pick, backend.landmarks(frame.image, found[pick])):
                yield frame, k, lms


def faceset_cache_key(faceset: FaceSet, stride: int) -> str:
    """Stable name for a face set's context cache: its sources' hashes and the stride."""
    digest = hashlib.sha256()
    for sid in sorted({r.source_id for r in faceset.rows}):
        digest.update(sid.encode())
    digest.update(f"{len(faceset.rows)}/{stride}".encode())
    return digest.hexdigest()[:16]


def split_by_identity(items: list[FaceItem], val_fraction: float, seed: int = 0
                      ) -> tuple[list[FaceItem], list[FaceItem]]:
    """Whole identities go to validation until it holds ``val_fraction`` of the faces.

    The people and their shares are those of the face sets' real faces where there are any: a
    forge manifest's faces (fixed labels) follow their person into whichever split it fell in, so
    adding one never moves a person between splits (runs with and without it validate alike).

    Raises InputError with fewer than two identities: a validation split of faces of people the
    detector trained on would measure memorisation, not detection.
    """
    basis = [it for it in items if it.label is None] or items
    identities = sorted({it.identity for it in basis})
    if len(identities) < 2:
        raise InputError(f"need faces of at least 2 identities to hold some out for validation, "
                         f"got {identities}")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(identities))
    counts = Counter(it.identity for it in basis)
    val_ids: set[str] = set()
    held = 0
    while order and held < val_fraction * len(basis) and len(val_ids) < len(identities) - 1:
        name = order.pop()
        val_ids.add(name)
        held += counts[name]
    train = [it for it in items if it.identity not in val_ids]
    val = [it for it in items if it.identity in val_ids]
    shared_sources = {it.source_id for it in train} & {it.source_id for it in val}
    val = [it for it in val if it.source_id not in shared_sources]  # a video with both people
    assert not {it.identity for it in train} & {it.identity for it in val}
    assert not {it.source_id for it in train} & {it.source_id for it in val}
    return train, val


H264_SHARE = 0.6  # of the degradations' codec round trips, H.264's (the rest JPEG)


@dataclass(frozen=True, slots=True)
class Degrade:
    """How footage arrives, applied alike to real and fake examples, at the frame region's own
    size (before the ROI is cut and resized): rescaling of the face, edge-preserving smoothing
    (what beauty filters do), sharpening, then JPEG or H.264 -- the latter at the region's size
    or after a 0.5x downscale. ``flip`` is the chance the ROI is mirrored afterwards."""

    prob: float = 0.8  # chance an example is degraded at all
    rescale: float = 0.3  # chance of a down-and-up rescale ...
    min_scale: float = 0.3  # ... by a factor drawn from [min_scale, 1)
    smooth: float = 0.2  # chance of a bilateral filter
    sharpen: float = 0.1  # chance of an unsharp mask
    h264: float = H264_SHARE  # share of H.264 among the codecs (the rest: JPEG)
    h264_crf: tuple[int, int] = (18, 40)
    h264_half: float = 0.5  # share of H.264 round trips made at half the size
    jpeg_quality: tuple[int, int] = (40, 100)
    flip: float = 0.5

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> the same size, degraded (1 - ``prob`` of the time: as it is)."""
        if rng.random() >= self.prob:
            return image
        h, w = image.shape[:2]
        if rng.random() < self.rescale:
            image = _rescaled(image, rng.uniform(self.min_scale, 1.0))
        if rng.random() < self.smooth:
            sigma_colour, sigma_space = float(rng.uniform(20, 60)), float(rng.uniform(3, 7))
            image = cv2.bilateralFilter(image, 7, sigma_colour, sigma_space)
        if rng.random() < self.sharpen:
            amount = rng.uniform(0.3, 1.0)
            blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
            image = cv2.addWeighted(image, 1 + amount, blurred, -amount, 0)
        if rng.random() < self.h264:
            crf = int(rng.integers(self.h264_crf[0], self.h264_crf[1] + 1))
            if rng.random() < self.h264_half and min(h, w) >= 32:
                half = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
                image = cv2.resize(h264_roundtrip(half, crf), (w, h),
                                   interpolation=cv2.INTER_LINEAR)
            else:
                image = h264_roundtrip(image, crf)
        else:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return np.ascontiguousarray(image)


def _rescaled(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(8, round(w * scale)), max(8, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


KINDS = {"real": 0, "fwa": 1, "sbi": 2, "forged": 3, "genuine": 4}  # for per-kind AUC


class ArtifactDataset(torch.utils.data.Dataset):
    """Real faces and on-the-fly negatives of ``artifact`` (fwa, sbi or mix; label 1), plus
    fakes and reals with fixed labels (forge manifests' forged faces, crop collections' genuine
    fakes), as the network ``data`` describes them (its input size and normalisation). Items
    are (ROI tensor, label, kind), kind from ``KINDS``.

    An integer index draws as the paper does: a real face becomes a negative half the time. A
    key ``(index, kind)`` from ``BalancedSampler`` says what to make of the face: "real" as it
    is, "fwa" or "sbi" that negative of it, or the fixed label of a fake. With ``fixed`` each
    key always gives the same example (validation); otherwise the epoch changes the draw."""

    def __init__(self, items: list[FaceItem], data: DataConfig, artifact: str = "fwa",
                 fwa: FwaConfig = FwaConfig(), degrade: Degrade | None = Degrade(), seed: int = 0,
                 fixed: bool = False) -> None:
        if artifact not in (*ARTIFACTS, "none"):
            raise InputError(f"unknown --artifact {artifact!r}; choose from "
                             f"{[*ARTIFACTS, 'none']}")
        self.items, self.mean, self.std, self.artifact = items, data.mean, data.std, artifact
        # the ROI is cut at the network's input size, the size `detect scan` cuts it at
        self.fwa = dataclasses.replace(fwa, roi_size=data.input_size)
        self.degrade, self.seed, self.fixed = degrade, seed, fixed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, str]):
        index, wanted = key if isinstance(key, tuple) else (key, None)
        item = self.items[index]
        epoch = 0 if self.fixed else self.epoch
        salt = [] if wanted is None else [KINDS[wanted]]
        rng = np.random.default_rng([self.seed, epoch, index, *salt])
        image = cv2.imread(item.context, cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(
                f"{item.context}: face image missing; delete the cache folder to rebuild it"
            )
        image = image[..., ::-1]
        if item.label is not None:  # a forged or genuine fake, or a manifest's real: as it is
            roi, _ = training_sample(image, item.landmarks, rng, fake_prob=0.0, config=self.fwa,
                                     degrade=self.degrade)
            return self._tensor(roi), item.label, KINDS[item.kind] if item.label else 0
        if wanted is None:  # the paper's draw: a negative half the time
            kind = self.artifact if self.artifact != "mix" else ("fwa", "sbi")[int(rng.integers(2))]
            fake_prob = 0.0 if kind == "none" else 0.5
        else:
            kind, fake_prob = wanted, float(wanted != "real")
        roi, label = training_sample(image, item.landmarks, rng, fake_prob=fake_prob,
                                     config=self.fwa, artifact=kind, degrade=self.degrade)
        return self._tensor(roi), label, KINDS[kind] if label else KINDS["real"]

    def _tensor(self, roi: np.ndarray) -> torch.Tensor:
        return to_tensor(roi, self.mean, self.std)


def negative_kinds(artifact: str) -> tuple[str, ...]:
    """The artifacts a recipe makes of real faces: none, one, or (mix) both."""
    return {"none": (), "mix": ("fwa", "sbi")}.get(artifact, (artifact,))


class BalancedSampler(torch.utils.data.Sampler):
    """Keys ``(index, kind)`` for ``ArtifactDataset``: half of every epoch real faces, half
    fakes, the fakes shared equally among the kinds there are (genuine, forged, and each
    artifact the recipe makes of real faces). Each draw picks a group (a person, or an original
    video) uniformly, then a face of it, so a group with many faces does not crowd out the rest.
    ``fixed``: every face once as itself, and every real face once more as one of the
    artifacts (validation). Under torchrun each rank takes every ``world``-th key."""

    def __init__(self, items: list[FaceItem], artifact: str, length: int, seed: int = 0,
                 fixed: bool = False, rank: int = 0, world: int = 1) -> None:
        self.items, self.artifact, self.length, self.seed = items, artifact, length, seed
        self.fixed, self.rank, self.world = fixed, rank, world
        self.epoch = 0
        grouped: dict[str, dict[str, list[int]]] = {}  # kind -> group -> item indices
        for i, item in enumerate(items):
            kinds = (["real", *negative_kinds(artifact)] if item.label is None
                     else [item.kind] if item.label else ["real"])
            for kind in kinds:
                grouped.setdefault(kind, {}).setdefault(item.identity, []).append(i)
        self.pools = {kind: list(groups.values()) for kind, groups in grouped.items()}
        if "real" not in self.pools or len(self.pools) < 2:
            raise InputError("a balanced recipe needs real faces and at least one kind of fake "
                             "(genuine fakes, forge manifests, or an --artifact)")

    def keys(self) -> list[tuple[int, str]]:
        if self.fixed:
            made = negative_kinds(self.artifact)
            keys = [(i, "real" if it.label is None else it.kind if it.label else "real")
                    for i, it in enumerate(self.items)]
            keys += [(i, made[i % len(made)]) for i, it in enumerate(self.items)
                     if it.label is None and made]
            return keys
        rng = np.random.default_rng([self.seed, self.epoch])
        fakes = sorted(k for k in self.pools if k != "real")
        draws = ["real"] * (self.length // 2) + [fakes[i % len(fakes)]
                                                 for i in range(self.length - self.length // 2)]
        rng.shuffle(draws)
        keys = []
        for kind in draws:
            groups = self.pools[kind]
            faces = groups[int(rng.integers(len(groups)))]
            keys.append((faces[int(rng.integers(len(faces)))], kind))
        return keys

    def __iter__(self):
        return iter(self.keys()[self.rank::self.world])

    def __len__(self) -> int:
        total = len(self.keys()) if self.fixed else self.length
        return len(range(self.rank, total, self.world))
