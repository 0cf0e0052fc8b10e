"""swapscope's invisible watermark: the payload format, the encoder and the decoder in one place.

Every frame carries 32 bits: a 16-bit magic number that says "swapscope", then the first 16 bits
of the manifest id. The settings were chosen by measurement (bench/watermark.py, BENCHMARKS.md):
invisible-watermark's ``dwtDctSvd`` on the U channel with scale 200 and 8x8 blocks survives an
H.264 CRF 18 -> CRF 23 re-encode in nearly every frame, down to 320x320 video, at about 33 dB
PSNR (chroma only). The library's defaults and ``dwtDct`` were lost after that re-encode; 48 bits
or a smaller scale failed on small frames.

The algorithm is invisible-watermark's, written here as array code over all the blocks of a batch
of frames (the library loops over 8x8 blocks in Python, 95 ms a 720p frame): the Haar LL band of
the U channel is cut into 8x8 blocks, bit ``i % 32`` goes to block ``i`` in raster order, and a
block's largest singular value (the same with or without the library's DCT, which is
orthonormal) is moved to the quarter or three-quarter point of its step of 200. Only that
singular value changes, so the block changes by ``(new - old) * u v^T``, and a change ``d`` of an
LL coefficient moves each of its 2x2 pixels' U by ``d / 2``, made in RGB along the direction
that leaves Y as it is. The library's decoder reads these marks and this decoder reads the
library's (tested).
"""

from __future__ import annotations

import os
from concurrent.futures import Future

import cv2
import numpy as np

from swapscope.device import cpu_cores
from swapscope.errors import InputError

WATERMARK_METHOD = "dwtDctSvd"
WATERMARK_OPTIONS = {"scales": [0, 200, 0], "block": 8}
WATERMARK_MAGIC = b"\x5a\x3c"  # 16 bits that say "swapscope", then 16 bits of the manifest id
WATERMARK_BITS = 32
MIN_WATERMARK_SIDE = 256  # invisible-watermark refuses smaller images


def payload(manifest_id: str) -> bytes:
    """The 32 bits a frame carries: the magic number, then the manifest id's first 16 bits."""
    return WATERMARK_MAGIC + bytes.fromhex(manifest_id[:4])


class Watermarker:
    """Embeds one manifest id's watermark in frames; (H, W, 3) uint8 RGB in and out.

    ``submit`` marks a batch of frames in one array pass here (``workers`` 1, the default), or
    spreads it over ``workers`` processes (forkserver: forked from a clean server, never from a
    process running torch's threads), which measured no faster on 2 cores once the watermark was
    array code. Use it as a context manager, or call ``close``, to stop them.
    """

    def __init__(self, manifest_id: str, workers: int = 1) -> None:
        """workers: processes for ``submit``; 1 = this process, 0 = one per CPU core."""
        if workers < 0:
            raise InputError("--workers must not be negative")
        self._payload = payload(manifest_id)
        self._encoder = _new_encoder(self._payload)
        self.workers = workers or cpu_cores()
        self._pool = None
        self._thread = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        _check_watermark_size(image)
        return _embed(self._encoder, image)

    def submit(self, images: list[np.ndarray]) -> list:
        """Start watermarking a batch of frames and return at once, so the caller can encode the
        last batch and prepare the next meanwhile; one future per frame, in order. The batch is
        marked in one array pass on a thread of this process (``workers`` 1), or spread over
        the worker processes."""
        for image in images:
            _check_watermark_size(image)
        if self.workers == 1:  # one thread here: numpy and OpenCV release the GIL
            if self._thread is None:
                from concurrent.futures import ThreadPoolExecutor

                self._thread = ThreadPoolExecutor(1, thread_name_prefix="watermark")
            batch = self._thread.submit(embed_frames, images, self._encoder)
            return [_Part(batch, i) for i in range(len(images))]
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                # not __main__: it may be torch-heavy
                context.set_forkserver_preload(["swapscope.formats.watermark"])
            else:
                context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker,
                initargs=(self._payload, os.getpid()),
            )
        return [self._pool.submit(_embed_in_worker, image) for image in images]

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(cancel_futures=True)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Watermarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_watermark_size(image: np.ndarray) -> None:
    if min(image.shape[:2]) < MIN_WATERMARK_SIDE:
        raise InputError(
            f"frames of {image.shape[1]}x{image.shape[0]} are too small to carry the "
            f"watermark every fake must have (at least {MIN_WATERMARK_SIDE} px a side)"
        )


class _Part:
    """Frame ``index`` of a batch being marked: ``result()`` waits for the batch."""

    def __init__(self, batch: Future, index: int) -> None:
        self.batch, self.index = batch, index

    def result(self) -> np.ndarray:
        return self.batch.result()[self.index]


def _new_encoder(payload: bytes) -> np.ndarray:
    """The payload as the bits each block in turn carries."""
    return np.unpackbits(np.frombuffer(payload, np.uint8)).astype(np.float64)


def _embed(bits: np.ndarray, image: np.ndarray) -> np.ndarray:
    return embed_frames([image], bits)[0]


SCALE = float(WATERMARK_OPTIONS["scales"][1])
BLOCK = int(WATERMARK_OPTIONS["block"])
# OpenCV's YUV: U moves by d when B moves by 2.032 d and G by -0.395 d, and Y stays
U_TO_RGB = ((1, -0.395), (2, 2.032))


def embed_frames(images: list[np.ndarray], bits: np.ndarray) -> list[np.ndarray]:
    """Watermark frames at once: (H, W, 3) uint8 RGB in and out (the block arithmetic of every
    frame in one array pass)."""
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


_worker_encoder = None  # one per worker process


def _start_worker(payload: bytes, owner: int) -> None:
    global _worker_encoder
    _worker_encoder = _new_encoder(payload)
    _exit_with(owner)


def _exit_with(owner: int, interval: float = 0.5) -> None:
    """Stop this worker when process ``owner`` (the forge that started it) is gone, so a
    SIGKILLed forge leaves no worker running; the fork server, which waits for its workers,
    then ends too."""
    import threading
    import time

    from swapscope.files import pid_alive

    def watch() -> None:
        while pid_alive(owner):
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-owner", daemon=True).start()


def _embed_in_worker(image: np.ndarray) -> np.ndarray:
    return _embed(_worker_encoder, image)


def read_watermark(image: np.ndarray) -> str | None:
    """The 4-hex-digit manifest id prefix a frame carries, or None (no swapscope watermark)."""
    if min(image.shape[:2]) < MIN_WATERMARK_SIDE:
        return None
    payload = np.packbits(decode_bits(image)).tobytes()
    if payload[:2] != WATERMARK_MAGIC:
        return None
    return payload[2:].hex()
