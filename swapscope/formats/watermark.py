"""swapscope's invisible watermark: the payload format, the encoder and the decoder in one place.

Every frame carries 32 bits: a 16-bit magic number that says "swapscope", then the first 16 bits
of the manifest id. The settings were chosen by measurement (bench/watermark.py, BENCHMARKS.md):
invisible-watermark's ``dwtDctSvd`` on the U channel with scale 200 and 8x8 blocks survives an
H.264 CRF 18 -> CRF 23 re-encode in nearly every frame, down to 320x320 video, at about 33 dB
PSNR (chroma only). The library's defaults and ``dwtDct`` were lost after that re-encode; 48 bits
or a smaller scale failed on small frames.
"""

from __future__ import annotations

import os
from concurrent.futures import Future

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

    invisible-watermark's dwtDctSvd runs a Python loop over 8x8 blocks, so threads do not help;
    ``submit`` spreads a batch of frames over ``workers`` processes (forkserver: the workers are
    forked from a clean server, never from a process running torch's threads). Use it as a
    context manager, or call ``close``, to stop them.
    """

    def __init__(self, manifest_id: str, workers: int = 1) -> None:
        """workers: processes for ``submit``; 1 = this process, 0 = one per CPU core."""
        if workers < 0:
            raise InputError("--workers must not be negative")
        self._payload = payload(manifest_id)
        self._encoder = _new_encoder(self._payload)
        self.workers = workers or cpu_cores()
        self._pool = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        _check_watermark_size(image)
        return _embed(self._encoder, image)

    def submit(self, images: list[np.ndarray]) -> list[Future]:
        """Start watermarking a batch of frames; one future per frame, in order. With ``workers``
        > 1 the frames go to the worker processes and this returns at once, so the caller can
        prepare the next batch meanwhile; otherwise the work is done here."""
        for image in images:
            _check_watermark_size(image)
        if self.workers == 1:
            return [_done(_embed(self._encoder, image)) for image in images]
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                # not __main__: it may be torch-heavy
                context.set_forkserver_preload(["swapscope.formats.watermark", "imwatermark"])
            else:
                context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker,
                initargs=(self._payload, os.getpid()),
            )
        return [self._pool.submit(_embed_in_worker, image) for image in images]

    def close(self) -> None:
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


def _done(image: np.ndarray) -> Future:
    future: Future = Future()
    future.set_result(image)
    return future


def _new_encoder(payload: bytes):
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", payload)
    return encoder


def _embed(encoder, image: np.ndarray) -> np.ndarray:
    bgr = np.ascontiguousarray(image[..., ::-1])
    return np.ascontiguousarray(
        encoder.encode(bgr, WATERMARK_METHOD, **WATERMARK_OPTIONS)[..., ::-1]
    )


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
    from imwatermark import WatermarkDecoder

    if min(image.shape[:2]) < MIN_WATERMARK_SIDE:
        return None
    decoder = WatermarkDecoder("bytes", WATERMARK_BITS)
    payload = decoder.decode(
        np.ascontiguousarray(image[..., ::-1]), WATERMARK_METHOD, **WATERMARK_OPTIONS
    )
    if payload[:2] != WATERMARK_MAGIC:
        return None
    return payload[2:].hex()
