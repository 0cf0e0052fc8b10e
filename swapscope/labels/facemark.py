"""swapscope's face-anchored watermark: a mark that moves, scales and flips with the face.

The mark lives in the aligned face, not in the frame: each face's luma is resampled into a
``SIZE`` px crop by the same Umeyama alignment the forge swaps with (``face_affine``), projected
onto ``BITS`` fixed orthonormal patterns (smooth: random values on a 12 x 12 grid, cubic-upsampled,
windowed to the inner face, mean-free), and each projection is moved to the nearest point of the
quantiser lattice of its bit (spread-transform dither modulation: a lattice step of ``STEPS``,
keyed dither, bit 1 half a step from bit 0). The change, a smooth field in the crop, is warped back
into the frame and added to R, G and B alike (luma only, no tint).

Because the reader aligns the face it finds, a crop, a rescale or a re-framing of the video moves
the mark with the face; a horizontal flip mirrors the aligned crop, so the reader also reads the
crop mirrored about the template's axis. The patterns are mean-free, so a colour shift leaves the
projections as they are; smooth patterns survive H.264 and downscaling. Frame rate changes drop
frames, not bits: every face of every frame carries the whole payload.

Payload (64 bits): the manifest id's first 32 bits, a CRC-16 (CCITT, keyed with swapscope's
magic number 0x5A3C), then 2 Reed-Solomon parity bytes (``reedsolo``). A reader adds up each bit's
soft vote (the cosine of the projection's phase on the lattice: +1 on bit 0, -1 on bit 1) over
all the faces it sees, per orientation, each face weighted by how well its projections sit on
the lattice (the square of their mean fit: a face a heavy re-encode or a poor alignment blurred
counts little beside a clean one), and accepts a payload if Reed-Solomon decodes it and its
checksum holds (a corrected word only if the votes also agree at least ``MIN_AGREEMENT``: one
wrong byte, or any two wrong bits), else tries the least sure bits flipped (Chase decoding;
``MarkReader.payload``).

The change is capped at PSNR 40.5 dB per frame: a face that fills the frame gets a weaker mark.
A frame whose budget holds a coarser lattice whole gets it (the largest of ``STEPS`` that fits
without scaling down): a face small in its frame leaves budget a step of 200 does not use, and a
320 px clip re-encoded at CRF 35 needs the larger step (bench/watermark_edits.py). The reader
reads each face at every step and keeps the step and shift that fit the lattice best.
The writer anchors the mark at the landmarks it finds on the very image it marks (the swapped
one), as a reader will. Settings were chosen by measurement (bench/watermark_edits.py,
BENCHMARKS.md): a 12-cell grid over the inner face beat a 16-cell one and an ellipse over cheeks
and jaw; a step of 200 sits at the PSNR cap for talking-head framing; a step of 400 scaled down
to the cap read worse than 300 whole on the small clip that needs more than 200.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from swapscope.faces.align import TEMPLATE, face_affine

SIZE = 96  # aligned crop side, px
PADDING = 0.08  # of SIZE on each side around the template's unit square (brows to mouth)
GRID = 12  # the patterns' random grid, cells a side (16 measured less robust, 10 too)
ID_BYTES = 4
# Reed-Solomon parity: corrects any 1 wrong byte (4 bytes measured no better: more bits, each
# carrying less of the frame's PSNR budget)
PARITY_BYTES = 2
BITS = 8 * (ID_BYTES + 2 + PARITY_BYTES)  # 32 id + 16 CRC + 16 parity
# quantiser steps of a projection (crop luma units, unit-norm patterns), finest first: each frame
# is marked with the largest its PSNR budget holds whole (200 is the one earlier marks used)
STEPS = (200.0, 300.0)
KEY = 0x5A3C  # seeds the patterns and the dither; keys the CRC
MIN_AGREEMENT = 0.3  # mean |vote| per bit and face a corrected payload needs
# faces narrower than this (frame px, template width) are not read: too few pixels to trust; the
# writer marks every face it is given, however small, so no swapped face goes unmarked
MIN_FACE = 40
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class _Key:
    patterns: np.ndarray  # (BITS, SIZE*SIZE) float32, orthonormal rows
    dither: np.ndarray  # (BITS,) in [0, 1): a fraction of the step
    axis: float  # x of the template's symmetry axis in the crop, px


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_thread():
    """BLAS on one thread: these products are small, and a BLAS that spreads them over cores
    that are busy (the forge renders and encodes meanwhile) waits on them: 40 ms, not 1."""
    return _blas().limit(limits=1, user_api="blas")


@lru_cache(maxsize=1)
def _key() -> _Key:
    rng = np.random.default_rng(KEY)
    window = _window()
    w = window.reshape(-1)
    grids = rng.standard_normal((BITS, GRID, GRID)).astype(np.float32)
    fields = np.stack([cv2.resize(g, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for g in grids])
    basis = (fields * window).reshape(BITS, -1)
    basis -= basis.sum(axis=1, keepdims=True) / w.sum() * w  # mean-free, still zero off the face
    q, _ = np.linalg.qr(basis.T.astype(np.float64))
    patterns = q.T.astype(np.float32)
    axis = (float(TEMPLATE[:, 0].min() + TEMPLATE[:, 0].max()) / 2) * SIZE * (1 - 2 * PADDING)
    return _Key(patterns, rng.uniform(0, 1, BITS), axis + PADDING * SIZE)


def _window() -> np.ndarray:
    """(SIZE, SIZE) float32 in [0, 1]: the inner face (hull of brows, eyes, nose and mouth in the
    template), feathered so the mark fades out before the edge of what the forge swaps."""
    points = TEMPLATE * SIZE * (1 - 2 * PADDING) + PADDING * SIZE
    hull = cv2.convexHull(points.astype(np.float32)).astype(np.int32)
    mask = np.zeros((SIZE, SIZE), np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0)  # (an ellipse over cheeks and jaw measured worse)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
    return cv2.GaussianBlur(mask, (0, 0), SIZE / 24)


def encode_payload(manifest_id: str) -> np.ndarray:
    """(BITS,) uint8 0/1: the manifest id's first 32 bits, CRC-16, Reed-Solomon parity."""
    import reedsolo

    data = bytes.fromhex(manifest_id[: 2 * ID_BYTES])
    if len(data) != ID_BYTES:
        raise ValueError(f"a manifest id has {2 * ID_BYTES} hex digits at least: {manifest_id!r}")
    word = data + binascii.crc_hqx(data, KEY).to_bytes(2, "big")
    coded = bytes(reedsolo.RSCodec(PARITY_BYTES).encode(word))
    return np.unpackbits(np.frombuffer(coded, np.uint8))


def decode_payload(bits: np.ndarray) -> tuple[str | None, int]:
    """(id as 8 hex digits, bytes Reed-Solomon corrected) of a 64-bit word; (None, 0) if
    Reed-Solomon or the checksum fail."""
    import reedsolo

    if np.size(bits) != BITS:  # not a word this mark writes
        return None, 0
    coded = np.packbits(np.asarray(bits, np.uint8)).tobytes()
    try:
        word, _, errata = reedsolo.RSCodec(PARITY_BYTES).decode(coded)
    except reedsolo.ReedSolomonError:
        return None, 0
    data, crc = bytes(word[:ID_BYTES]), int.from_bytes(bytes(word[ID_BYTES:]), "big")
    if binascii.crc_hqx(data, KEY) != crc:
        return None, 0
    return data.hex(), len(errata)


def decode_near(bits: np.ndarray) -> str | None:
    """The id of the payload at most two bits from a 64-bit word, else None (wrong bits in two
    bytes, which one Reed-Solomon parity pair cannot correct).

    The payload is affine in the id's 32 bits over GF(2) (a CRC and a Reed-Solomon code over
    GF(2^8) are both linear), so a word's syndrome under the code's parity-check matrix names the
    one- or two-bit error that turns a payload into it; no two such errors share a syndrome
    (the code's distance is at least 5, tested)."""
    if np.size(bits) != BITS:
        return None
    offset, columns, errors = _syndromes()
    syndrome = 0
    for i in np.flatnonzero(np.asarray(bits, np.uint8) ^ offset):
        syndrome ^= columns[i]
    flips = errors.get(syndrome) if syndrome else ()
    if flips is None:
        return None
    word = np.asarray(bits, np.uint8).copy()
    word[list(flips)] ^= 1
    return decode_payload(word)[0]


@lru_cache(maxsize=1)
def _syndromes() -> tuple[np.ndarray, list[int], dict[int, tuple[int, ...]]]:
    """(the payload of id 0, each bit's column of the parity-check matrix as a 32-bit int, the
    syndrome of every one- and two-bit error -> its bits), from ``encode_payload`` itself."""
    id_bits = 8 * ID_BYTES
    offset = encode_payload("0" * 2 * ID_BYTES)
    rows = np.stack([encode_payload(f"{1 << (id_bits - 1 - i):0{2 * ID_BYTES}x}") ^ offset
                     for i in range(id_bits)])  # (32, 64): the id bits, then their check bits
    check = np.concatenate([rows[:, id_bits:].T, np.eye(BITS - id_bits, dtype=np.uint8)], axis=1)
    columns = [int.from_bytes(np.packbits(c).tobytes(), "big") for c in check.T]
    errors: dict[int, tuple[int, ...]] = {}
    for i in range(BITS):
        errors[columns[i]] = (i,)
        for j in range(i):
            errors[columns[i] ^ columns[j]] = (j, i)
    return offset, columns, errors


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.transform(image, LUMA.reshape(1, 3)) if image.ndim == 3 else image


def _affine(landmarks: np.ndarray) -> np.ndarray | None:
    try:
        return face_affine(np.asarray(landmarks, np.float32), SIZE, PADDING)
    except ValueError:
        return None


def _big_enough(affine: np.ndarray, min_face: float) -> bool:
    """The template's unit square spans at least ``min_face`` frame px."""
    scale = float(np.hypot(*affine[:, 0]))  # crop px per frame px
    return SIZE * (1 - 2 * PADDING) / scale >= min_face


def _crop(luma: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(luma, affine, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)


MAX_MSE = 255.0**2 / 10 ** (40.5 / 10)  # a frame's change stays under this: PSNR >= 40.5 dB


def embed(image: np.ndarray, faces: list[np.ndarray], bits: np.ndarray) -> np.ndarray:
    """Mark every face of one (H, W, 3) uint8 RGB frame; ``faces``: (68, 2) landmarks each.

    Each projection moves all the way to its lattice point unless the frame's change would pass
    MAX_MSE; then the whole change is scaled down (distortion-compensated: the reader sees a
    smaller margin, the frame keeps its PSNR). The lattice is the largest of ``STEPS`` whose
    change fits MAX_MSE whole, else the finest."""
    with _one_thread():
        return _embed(image, faces, bits)


def _embed(image: np.ndarray, faces: list[np.ndarray], bits: np.ndarray) -> np.ndarray:
    regions = list(_face_regions(image, faces, min_face=0))
    if not regions:
        return image
    budget = MAX_MSE * image.shape[0] * image.shape[1]
    step = STEPS[0]
    changes = _changes(regions, bits, step)
    energy = _energy(changes)
    for larger in STEPS[1:]:
        # a change grows with its step squared: try a larger step only where that would fit
        if energy * (larger / step) ** 2 > budget:
            break
        bigger = _changes(regions, bits, larger)
        if (bigger_energy := _energy(bigger)) > budget:
            break
        step, changes, energy = larger, bigger, bigger_energy
    gain = min(1.0, float(np.sqrt(budget / max(energy, 1e-9))))
    out = image.copy()
    for (x0, y0, x1, y1), change in changes:
        region = out[y0:y1, x0:x1].astype(np.float32) + (gain * change)[..., None]
        out[y0:y1, x0:x1] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return out


def _changes(regions: list, bits: np.ndarray, step: float) -> list:
    """(box, luma change) per face that moves its projections to the lattice of ``step``."""
    key = _key()
    phase = (key.dither + bits.astype(np.float64) / 2) * step
    changes = []
    for box, local, luma in regions:
        x0, y0, x1, y1 = box
        change = np.zeros(luma.shape, np.float32)
        for _ in range(2):  # the second pass corrects what resampling lost
            x = key.patterns @ _crop(luma + change, local).reshape(-1)
            q = np.round((x - phase) / step) * step + phase
            crop_field = ((q - x).astype(np.float32) @ key.patterns).reshape(SIZE, SIZE)
            change += cv2.warpAffine(crop_field, local, (x1 - x0, y1 - y0),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        changes.append((box, change))
    return changes


def _energy(changes: list) -> float:
    return sum(float(np.square(c).sum()) for _, c in changes)


def _face_regions(image: np.ndarray, faces: list[np.ndarray], min_face: float = MIN_FACE):
    """(box, affine from the box's pixels to the crop, the box's luma) of each face at least
    ``min_face`` px wide and inside the frame."""
    for landmarks in faces:
        affine = _affine(landmarks)
        if affine is None or not _big_enough(affine, min_face):
            continue
        box = _face_box(affine, image.shape[:2])
        if box is None:
            continue
        x0, y0, x1, y1 = box
        local = affine.copy()
        local[:, 2] += affine[:, :2] @ np.array([x0, y0], np.float32)
        yield box, local, _luma(image[y0:y1, x0:x1]).astype(np.float32)


def _face_box(affine: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The frame px box the crop covers, clipped to the frame; None if it lies outside."""
    h, w = shape
    corners = np.array([[0, 0], [SIZE, 0], [0, SIZE], [SIZE, SIZE]], np.float32)
    inverse = cv2.invertAffineTransform(affine)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + 1, (w, h))
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


SHIFTS = [(dx, dy) for dy in (-1.0, -0.5, 0.0, 0.5, 1.0) for dx in (-1.0, -0.5, 0.0, 0.5, 1.0)]


Read = tuple[np.ndarray, float]  # a face's soft votes (BITS,) in [-1, 1] and their lattice fit


def votes(image: np.ndarray, faces: list[np.ndarray]) -> list[tuple[Read, Read]]:
    """Per face of one frame: its soft votes and their fit to the lattice (the mean of
    cos(2 * phase) over the bits: 1 on the lattice, about 0 off it, 0.13-0.21 at the best of
    the shifts and steps for an unmarked face of the sample clips at CRF 35, mean per clip), as
    it is and mirrored.

    The reader's landmarks miss the writer's by a pixel or so, which smears the projections, so
    each orientation is read at sub-pixel shifts of the crop (``SHIFTS``, crop px) and at every
    step of ``STEPS``, and the pair whose projections sit closest to the lattice (of either bit)
    gives the votes. (A wider search, +-3 px and +-3% scale, measured worse: it finds spurious
    fits.)"""
    with _one_thread():
        return _votes(image, faces)


def _votes(image: np.ndarray, faces: list[np.ndarray]) -> list[tuple[Read, Read]]:
    key = _key()
    mirror = np.array([[-1, 0, 2 * key.axis], [0, 1, 0], [0, 0, 1]], np.float32)
    out = []
    for _, local, luma in _face_regions(image, faces):
        mirrored = (mirror @ np.vstack([local, [0, 0, 1]]))[:2].astype(np.float32)
        out.append((_read_face(luma, local), _read_face(luma, mirrored)))
    return out


def _read_face(luma: np.ndarray, affine: np.ndarray) -> Read:
    """The soft votes of one face at the step and shift whose projections fit the lattice best,
    and that fit."""
    key = _key()
    crops = []
    for dx, dy in SHIFTS:
        shifted = affine.copy()
        shifted[:, 2] += (dx, dy)
        crops.append(_crop(luma, shifted).reshape(-1))
    projections = np.stack(crops) @ key.patterns.T  # (shifts, BITS)
    steps = np.asarray(STEPS)[:, None, None]
    phase = 2 * np.pi * (projections[None] / steps - key.dither)  # (steps, shifts, BITS)
    fits = np.cos(2 * phase).mean(axis=2)
    best = np.unravel_index(int(np.argmax(fits)), fits.shape)
    return np.cos(phase[best]), float(fits[best])


@dataclass
class MarkReader:
    """Adds up the soft votes of every face a reader sees, each weighted by its fit squared
    (``weight``); ``payload`` decides."""

    sums: np.ndarray = field(default_factory=lambda: np.zeros((2, BITS)))  # weighted votes
    weights: np.ndarray = field(default_factory=lambda: np.zeros(2))  # their weights' sum
    faces: int = 0

    def add(self, image: np.ndarray, faces: list[np.ndarray]) -> None:
        for reads in votes(image, faces):
            self.add_face(reads)

    def add_face(self, reads: tuple[Read, Read]) -> None:
        """One face's (votes, fit) as it is and mirrored."""
        for side, (face_votes, fit) in enumerate(reads):
            self.sums[side] += weight(fit) * face_votes
            self.weights[side] += weight(fit)
        self.faces += 1

    def _strength(self) -> np.ndarray:
        """(2,) each orientation's weighted mean |vote| per bit (1: every face agrees fully)."""
        return np.abs(self.sums).mean(axis=1) / np.maximum(self.weights, 1e-12)

    def agreement(self) -> float:
        """The better orientation's weighted mean |vote| per bit."""
        return float(self._strength().max()) if self.faces else 0.0

    def payload(self) -> tuple[str | None, bool]:
        """(id, mirrored) of the orientation whose votes decode; (None, False) if none does.

        A word that decodes as it is (its 16 checksum and 16 parity bits all hold: 1 in 2^32 by
        chance) is taken at any agreement; one Reed-Solomon has to correct (one wrong byte) or
        that lies two bits from a payload (``decode_near``; together 3,832 words around each
        payload, 1 in 2^20 by chance) only with the votes agreeing at least MIN_AGREEMENT (a
        weak gate: the faces of an unmarked clip agree 0.14-0.66 over 50 frames at CRF 35, half
        of 20 sample clips 0.3 or more, weighted as here, since its projections sit still; the
        code is the guard). Failing those, the ``CHASE`` least sure bits are flipped in every
        combination, and a word that then decodes as it is is taken (Chase decoding: 63 tries,
        1 in 2^26 by chance): the bits a re-encode turns are most often among the least sure."""
        if not self.faces:
            return None, False
        strength = self._strength()
        for side in np.argsort(-strength):
            votes = self.sums[side]
            bits = (votes < 0).astype(np.uint8)
            found, corrected = decode_payload(bits)
            if found and (not corrected or strength[side] >= MIN_AGREEMENT):
                return found, bool(side)
            if strength[side] >= MIN_AGREEMENT:
                found = decode_near(bits)
                if found:
                    return found, bool(side)
            unsure = np.argsort(np.abs(votes))[:CHASE]
            for flips in _chase_patterns(np.abs(votes)[unsure]):
                tried = bits.copy()
                tried[unsure[flips]] ^= 1
                found, corrected = decode_payload(tried)
                if found and not corrected:
                    return found, bool(side)
        return None, False


CHASE = 6


def weight(fit: float) -> float:
    """A face's share of the vote: its lattice fit squared (none for a fit at or below 0).
    Measured at CRF 35 on four of the weakest sample clips (lp_d12, lp_d19, vr_face4,
    KatieHill), 27 times marked with fresh ids and read in every frame: equal weights failed 7,
    the fit alone 1, the fit less an unmarked face's 0.1 1, the fit squared none; none of them
    read an id in the same clips unmarked. (The self-made astronaut clip failed all four.)"""
    return max(fit, 0.0) ** 2


def _chase_patterns(doubt: np.ndarray) -> list[np.ndarray]:
    """Every non-empty subset of the unsure bits (as index arrays), the likeliest first: the
    smallest total |vote| to overturn."""
    import itertools

    subsets = [np.array(c) for r in range(1, len(doubt) + 1)
               for c in itertools.combinations(range(len(doubt)), r)]
    return sorted(subsets, key=lambda c: float(doubt[c].sum()))
