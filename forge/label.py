"""Labels on everything the forge makes (DESIGN.md section 5), and reading them back.

Three labels per output: a manifest row (with per-frame labels: swapped boxes and mask
polygons), container metadata (IPTC digital source type + manifest id), and an invisible
watermark in every frame carrying a 16-bit magic number and the first 16 bits of the manifest id.

The watermark settings were chosen by measurement (bench/watermark.py, BENCHMARKS.md):
invisible-watermark's ``dwtDctSvd`` on the U channel with scale 200 and 8x8 blocks, 32 bits,
survives an H.264 CRF 18 -> CRF 23 re-encode in nearly every frame, down to 320x320 video, at
about 33 dB PSNR (chroma only). The library's defaults and ``dwtDct`` were lost after that
re-encode; 48 bits or a smaller scale failed on small frames; ``rivaGan`` took 1.4 s a frame.
"""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from forge.atomic import write_text_atomic
from forge.errors import InputError

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
METADATA_ID_KEY = "swapscope_manifest_id"
METADATA_TYPE_KEY = "digital_source_type"
WATERMARK_METHOD = "dwtDctSvd"
WATERMARK_OPTIONS = {"scales": [0, 200, 0], "block": 8}
WATERMARK_MAGIC = b"\x5a\x3c"  # 16 bits that say "swapscope", then 16 bits of the manifest id
WATERMARK_BITS = 32
MIN_WATERMARK_SIDE = 256  # invisible-watermark refuses smaller images


def new_manifest_id() -> str:
    return uuid.uuid4().hex


def _payload(manifest_id: str) -> bytes:
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
        self._payload = _payload(manifest_id)
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
                context.set_forkserver_preload(["forge.label", "imwatermark"])  # not __main__: may be torch-heavy
            else:
                context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                             initargs=(self._payload,))
        return [self._pool.submit(_embed_in_worker, image) for image in images]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Watermarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_watermark_size(image: np.ndarray) -> None:
    if min(image.shape[:2]) < MIN_WATERMARK_SIDE:
        raise InputError(f"frames of {image.shape[1]}x{image.shape[0]} are too small to carry the "
                         f"watermark every fake must have (at least {MIN_WATERMARK_SIDE} px a side)")


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
    return np.ascontiguousarray(encoder.encode(bgr, WATERMARK_METHOD, **WATERMARK_OPTIONS)[..., ::-1])


_worker_encoder = None  # one per worker process


def _start_worker(payload: bytes) -> None:
    global _worker_encoder
    _worker_encoder = _new_encoder(payload)


def _embed_in_worker(image: np.ndarray) -> np.ndarray:
    return _embed(_worker_encoder, image)


def read_watermark(image: np.ndarray) -> str | None:
    """The 4-hex-digit manifest id prefix a frame carries, or None (no swapscope watermark)."""
    from imwatermark import WatermarkDecoder

    if min(image.shape[:2]) < MIN_WATERMARK_SIDE:
        return None
    decoder = WatermarkDecoder("bytes", WATERMARK_BITS)
    payload = decoder.decode(np.ascontiguousarray(image[..., ::-1]), WATERMARK_METHOD, **WATERMARK_OPTIONS)
    if payload[:2] != WATERMARK_MAGIC:
        return None
    return payload[2:].hex()


def container_metadata(manifest_id: str, method: str) -> dict[str, str]:
    """Global tags for the output container. The comment repeats everything, because a
    re-encode that drops custom keys usually keeps the comment. ``method`` "real" marks the
    real counterparts of a dataset: they carry the manifest id, but no synthetic source type."""
    if method == "real":
        return {METADATA_ID_KEY: manifest_id,
                "comment": f"swapscope dataset: real counterpart (not synthetic); manifest {manifest_id}"}
    return {
        METADATA_TYPE_KEY: DIGITAL_SOURCE_TYPE,
        METADATA_ID_KEY: manifest_id,
        "comment": f"swapscope synthetic face swap ({method}); IPTC digital source type "
                   f"{DIGITAL_SOURCE_TYPE}; manifest {manifest_id}",
    }


def parse_metadata(tags: dict[str, str]) -> dict | None:
    """{"digital_source_type", "manifest_id"} if the tags carry swapscope's label, else None."""
    manifest_id = tags.get(METADATA_ID_KEY)
    source_type = tags.get(METADATA_TYPE_KEY)
    comment = tags.get("comment", "")
    if not manifest_id and "swapscope" in comment and "manifest " in comment:
        manifest_id = comment.rsplit("manifest ", 1)[1].split()[0].strip(";")
        source_type = DIGITAL_SOURCE_TYPE if DIGITAL_SOURCE_TYPE in comment else None
    if not manifest_id:
        return None
    return {"digital_source_type": source_type, "manifest_id": manifest_id}


@dataclass
class Provenance:
    """What a file says about itself: metadata label and per-frame watermarks."""

    metadata: dict | None = None
    frames_checked: int = 0
    frames_marked: int = 0
    watermark_ids: dict[str, int] = field(default_factory=dict)  # id prefix -> frames

    @property
    def labelled(self) -> bool:
        return self.metadata is not None or self.frames_marked > 0

    def to_json(self) -> dict:
        return {"labelled": self.labelled, "summary": self.summary(), "metadata": self.metadata,
                "frames_checked": self.frames_checked, "frames_watermarked": self.frames_marked,
                "watermark_ids": self.watermark_ids}

    def summary(self) -> str:
        if not self.labelled:
            return "no swapscope label"
        parts = []
        if self.metadata:
            what = "synthetic" if self.metadata.get("digital_source_type") else "dataset real counterpart"
            parts.append(f"metadata: {what} ({self.metadata['manifest_id']})")
        if self.frames_marked:
            ids = ", ".join(self.watermark_ids)
            parts.append(f"watermark in {self.frames_marked}/{self.frames_checked} frames ({ids})")
        return "labelled by swapscope: " + "; ".join(parts)


def read_provenance(path: str | Path, images=(), tags: dict[str, str] | None = None) -> Provenance:
    """Labels of one file: container tags (read here unless given) and the watermark of each
    image in ``images`` (frames the caller decodes anyway)."""
    if tags is None:
        tags = read_tags(path)
    found = Provenance(metadata=parse_metadata(tags))
    for image in images:
        found.frames_checked += 1
        mark = read_watermark(image)
        if mark:
            found.frames_marked += 1
            found.watermark_ids[mark] = found.watermark_ids.get(mark, 0) + 1
    return found


def read_tags(path: str | Path) -> dict[str, str]:
    """Global container metadata of a video, or a PNG's text chunks; {} if there are none."""
    from forge.media import is_image

    path = Path(path)
    if is_image(path):
        from PIL import Image

        with Image.open(path) as image:
            return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}
    import av

    try:
        with av.open(str(path)) as container:
            return dict(container.metadata)
    except (av.error.InvalidDataError, OSError):
        return {}


# --- manifests -----------------------------------------------------------------------------

def mask_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """Outer contours of the pixels a blend mask can change, (H, W) float in [0, 1] -> polygons
    of [x, y] px, grown by a pixel so that the filled polygons cover every such pixel.

    Below 0.5/255 a blend weight cannot move an 8-bit value by a level, so those feather
    tails are left out.
    """
    binary = cv2.dilate((mask >= 0.5 / 255).astype(np.uint8), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        hull = cv2.convexHull(contour) if len(contour) > 64 else contour
        polygons.append(hull.reshape(-1, 2).astype(int).tolist())
    return polygons


def fill_polygons(polygons: list, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool raster of mask polygons from a manifest."""
    out = np.zeros(shape[:2], np.uint8)
    for polygon in polygons:
        cv2.fillPoly(out, [np.asarray(polygon, np.int32).reshape(-1, 1, 2)], 1)
    return out.astype(bool)


def append_manifest(folder: Path, row: dict) -> Path:
    """Add one output's row to ``folder/manifest.jsonl`` (rewritten atomically)."""
    path = folder / "manifest.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    lines = [line for line in lines if line.strip() and json.loads(line).get("id") != row["id"]]
    lines.append(json.dumps(row))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def read_labels(folder: Path, row: dict) -> list[dict]:
    """The per-frame labels of one manifest row: [{frame, time, faces: [{track, box, mask}]}]."""
    path = Path(folder) / row["labels"]
    if not path.is_file():
        raise InputError(f"{path}: labels of manifest row {row['id'][:8]} are missing")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: no such manifest")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"{path}:{number}: manifest line does not parse") from None
    return rows


def data_card(rows: list[dict]) -> str:
    """``data_card.md`` for a forgery set: what it is, how each output was made, and its labels."""
    fakes = [r for r in rows if r.get("label") == "fake"]
    reals = [r for r in rows if r.get("label") == "real"]
    methods = sorted({r.get("method", "") for r in fakes})
    lines = [
        "# swapscope forgery set",
        "",
        "**Every video marked `fake` here is a synthetic face swap made by swapscope's forge** "
        f"(IPTC digital source type `compositeWithTrainedAlgorithmicMedia`). {len(fakes)} fakes, "
        f"{len(reals)} real counterparts; methods: {', '.join(methods) or '-'}.",
        "",
        "Labels: `manifest.jsonl` (one row per output: hashes of source, output and checkpoint, "
        "identities, method and every realism knob, split) with per-frame labels in `labels/` "
        "(swapped face boxes and mask polygons); container metadata naming the source type and "
        "the manifest id; an invisible watermark (invisible-watermark dwtDctSvd) in every frame "
        "where the row says `watermark: true`.",
        "",
        "Made for detector research. Do not publish swaps of real people, and do not remove the labels.",
        "",
        "| id | label | split | method | source | output | watermark |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['id'][:8]} | {r.get('label')} | {r.get('split', '')} | {r.get('method', '')} "
                     f"| {Path(r.get('source', '')).name} | {r.get('output')} | {r.get('watermark')} |")
    return "\n".join(lines) + "\n"
