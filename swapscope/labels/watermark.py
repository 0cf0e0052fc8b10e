"""swapscope's invisible watermarks: the face-anchored mark every output carries now, and the
frame mark earlier versions wrote, still read so that their fakes stay labelled.

The mark (``swapscope.labels.facemark``): a 64-bit payload (32 bits of the manifest id, CRC-16,
Reed-Solomon parity) in each face's aligned crop, read back through the face the reader aligns,
so crops, rescales, flips, re-encodes, frame-rate changes and colour shifts leave it readable
(bench/watermark_edits.py). ``Watermarker`` marks a batch of frames on a thread, so it overlaps
the encoding of the last batch and the swapping of the next.

The legacy mark (versions before the face mark): every frame carries 32 bits, a 16-bit magic
number then the first 16 bits of the manifest id, in invisible-watermark's ``dwtDctSvd`` on the U
channel (scale 200, 8x8 blocks), written here as array code over all the blocks of a batch of
frames: the Haar LL band of the U channel is cut into 8x8 blocks, bit ``i % 32`` goes to block
``i`` in raster order, and a block's largest singular value is moved to the quarter or
three-quarter point of its step of 200. It survives re-encoding and colour shifts but no crop,
rescale or flip, and costs 33 dB PSNR in chroma. The library's decoder reads these marks and
this decoder reads the library's (tested); ``embed_frames`` stays for that test and for the
side-by-side benchmark.
"""

from __future__ import annotations

from concurrent.futures import Future
from functools import lru_cache

import cv2
import numpy as np

from swapscope.faces.backends import create_backend
from swapscope.labels import facemark

WATERMARK_METHOD = "dwtDctSvd"
WATERMARK_OPTIONS = {"scales": [0, 200, 0], "block": 8}
WATERMARK_MAGIC = b"\x5a\x3c"  # 16 bits that say "swapscope", then 16 bits of the manifest id
WATERMARK_BITS = 32
MIN_WATERMARK_SIDE = 256  # the legacy mark: invisible-watermark refuses smaller images


def payload(manifest_id: str) -> bytes:
    """The legacy mark's 32 bits: the magic number, then the manifest id's first 16 bits."""
    return WATERMARK_MAGIC + bytes.fromhex(manifest_id[:4])


class Watermarker:
    """Embeds one manifest id's face mark in frames; (H, W, 3) uint8 RGB in and out, with each
    frame's faces as (4,) boxes.

    The mark is anchored where a reader will find the face: the landmarks are found again (dlib,
    as ``detect scan`` finds them) on the very image being marked, the swapped one, in the box
    the face was found in. ``submit`` marks a batch on a thread of this process (numpy, OpenCV
    and dlib release the GIL), so the caller encodes the last batch and swaps the next meanwhile.
    Use it as a context manager, or call ``close``, to stop the thread."""

    def __init__(self, manifest_id: str) -> None:
        self.bits = facemark.encode_payload(manifest_id)
        self._thread = None

    def __call__(self, image: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        if not len(boxes):
            return image
        landmarks = landmarker().landmarks(image, np.asarray(boxes, np.float32))
        return facemark.embed(image, list(landmarks), self.bits)

    def submit(self, images: list[np.ndarray], boxes: list[list[np.ndarray]]) -> list:
        """Start marking a batch of frames and return at once; one future per frame, in order.
        ``boxes``: each frame's faces (frames without faces stay as they are)."""
        if self._thread is None:
            from concurrent.futures import ThreadPoolExecutor

            self._thread = ThreadPoolExecutor(1, thread_name_prefix="watermark")
        batch = self._thread.submit(lambda: [self(i, b) for i, b in zip(images, boxes)])
        return [_Part(batch, i) for i in range(len(images))]

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(cancel_futures=True)
            self._thread = None

    def __enter__(self) -> Watermarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@lru_cache(maxsize=1)
def landmarker():
    """The dlib landmark model the watermark anchors to, loaded once a process (a second a
    load): ``forge dataset`` marks one output after another."""

    return create_backend("dlib")


class _Part:
    """Frame ``index`` of a batch being marked: ``result()`` waits for the batch."""

    def __init__(self, batch: Future, index: int) -> None:
        self.batch, self.index = batch, index

    def result(self) -> np.ndarray:
        return self.batch.result()[self.index]


def legacy_bits(payload: bytes) -> np.ndarray:
    """The legacy payload as the bits each block in turn carries."""
    return np.unpackbits(np.frombuffer(payload, np.uint8)).astype(np.float64)


SCALE = float(WATERMARK_OPTIONS["scales"][1])
BLOCK = int(WATERMARK_OPTIONS["block"])
# OpenCV's YUV: U moves by d when B moves by 2.032 d and G by -0.395 d, and Y stays
U_TO_RGB = ((1, -0.395), (2, 2.032))


def embed_frames(images: list[np.ndarray], bits: np.ndarray) -> list[np.ndarray]:
    """The legacy mark on frames at once: (H, W, 3) uint8 RGB in and out (the block arithmetic
    of every frame in one array pass); ``bits``: ``legacy_bits(payload(...))``."""
    lls = [_ll_band(image) for image in images]
    cut = [_blocks(ll[None]) for ll in lls]
    u, s, v = _top_singular(np.concatenate([blocks for blocks, _, _ in cut]), iterations=6)
    order = np.concatenate([np.arange(len(blocks)) % len(bits) for blocks, _, _ in cut])
    target = (np.floor(s / SCALE) + 0.25 + 0.5 * bits[order]) * SCALE
    delta = ((target - s)[:, None, None] * u[:, :, None] * v[:, None, :]).astype(np.float32)
    out, start = [], 0
    for image, ll, (blocks, rows, cols) in zip(images, lls, cut):
        d_ll = np.zeros(ll.shape, np.float32)
        d_ll[:rows * BLOCK, :cols * BLOCK] = delta[start:start + len(blocks)].reshape(
            rows, cols, BLOCK, BLOCK).swapaxes(1, 2).reshape(rows * BLOCK, cols * BLOCK)
        start += len(blocks)
        out.append(_shift_u(image, d_ll))
    return out


def _shift_u(image: np.ndarray, d_ll: np.ndarray) -> np.ndarray:
    """Move the U of each 2x2 pixel block by half its LL coefficient's change, in RGB."""
    h, w = d_ll.shape[0] * 2, d_ll.shape[1] * 2
    d_u = cv2.resize(d_ll / 2, (w, h), interpolation=cv2.INTER_NEAREST)
    marked = image.copy()
    for channel, gain in U_TO_RGB:  # rounded and saturated to 8 bits by OpenCV
        marked[:h, :w, channel] = cv2.add(np.ascontiguousarray(image[:h, :w, channel]),
                                          gain * d_u, dtype=cv2.CV_8U)
    return marked


def decode_bits(image: np.ndarray, length: int = WATERMARK_BITS) -> np.ndarray:
    """The ``length`` bits a frame's blocks vote for (bool), as the library's decoder reads
    them."""
    blocks, _, _ = _blocks(_ll_band(image)[None])
    s = _top_singular(blocks, iterations=12)[1]
    votes = (s % SCALE) > SCALE * 0.5 + 1e-6  # exact ties (flat blocks) read as 0
    index = np.arange(len(s)) % length
    share = np.bincount(index, weights=votes, minlength=length) / np.bincount(index,
                                                                               minlength=length)
    return share * 255 > 127


def _ll_band(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H/4*2, W/4*2) float32: the Haar LL band of the U channel (as
    cv2.cvtColor rounds it to 8 bits) over the largest area of whole 4x4 cells."""
    h, w = (image.shape[0] // 4) * 4, (image.shape[1] // 4) * 4
    u = cv2.cvtColor(image, cv2.COLOR_RGB2YUV)[:h, :w, 1].astype(np.float32)
    return cv2.resize(u, (w // 2, h // 2), interpolation=cv2.INTER_AREA) * 2  # (a+b+c+d) / 2


def _blocks(ll: np.ndarray) -> tuple[np.ndarray, int, int]:
    n = ll.shape[0]
    rows, cols = ll.shape[1] // BLOCK, ll.shape[2] // BLOCK
    cut = ll[:, :rows * BLOCK, :cols * BLOCK].reshape(n, rows, BLOCK, cols, BLOCK)
    return cut.swapaxes(2, 3).reshape(-1, BLOCK, BLOCK).astype(np.float64), rows, cols


def _top_singular(blocks: np.ndarray, iterations: int) -> tuple[np.ndarray, ...]:
    """(u, s, v) of the largest singular value of each (n, b, b) block, by power iteration on
    B^T B from the all-ones direction, which chroma blocks, dominated by their mean, are close
    to: 4 steps bring s within 1e-11 of LAPACK's on the first frames of 30 sample clips; the
    embedder takes 6, the decoder 12."""
    gram = np.matmul(blocks.transpose(0, 2, 1), blocks)
    v = np.full(blocks.shape[:2], 1 / np.sqrt(blocks.shape[1]))
    for _ in range(iterations):
        v = np.matmul(gram, v[..., None])[..., 0]
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-30
    u = np.matmul(blocks, v[..., None])[..., 0]
    s = np.linalg.norm(u, axis=1)
    return u / (s[:, None] + 1e-30), s, v


def read_legacy_watermark(image: np.ndarray) -> str | None:
    """The 4-hex-digit manifest id prefix a frame of an earlier version carries, or None."""
    if min(image.shape[:2]) < MIN_WATERMARK_SIDE:
        return None
    payload = np.packbits(decode_bits(image)).tobytes()
    if payload[:2] != WATERMARK_MAGIC:
        return None
    return payload[2:].hex()
