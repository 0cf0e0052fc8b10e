"""Does the watermark survive what the web does to a video? Every edit, on every sample clip.

For each clip (the self-made 320x320 astronaut clip and the 20 real clips) the first ``--frames``
frames are marked with a fresh manifest id as ``forge video`` marks them and encoded at the
forge's CRF 18; then each edit below is applied and the result encoded again at CRF 23 (CRF 35
for the re-encode edit), decoded, and read as ``detect scan`` reads labels. A video counts as
recovered when the id most frames carry is the true one (votes as in
``swapscope.formats.provenance``: two agreeing frames at least); so does each 1-second segment.
The unmarked clips, edited alike, give the false positives (any id found at all). Also the cost:
PSNR and SSIM of the marked frames against the originals, and embed / decode ms per 720p frame,
for the library's per-block code (the baseline) and swapscope's array code, side by side.

    python bench/watermark_edits.py [--data ../shared/data] [--frames 50] [--json out.json]

Targets (issue "Labels that survive"): >= 95% of videos under every edit, 0 false positives,
PSNR >= 40 dB.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402


def _crop(frac: float):
    def edit(image):
        h, w = image.shape[:2]
        dy, dx = int(round(h * frac)), int(round(w * frac))
        return image[dy:h - dy, dx:w - dx]
    return edit


def _crop_px(px: int):
    return lambda image: image[px:-px, px:-px]


def _scale(factor: float):
    def edit(image):
        h, w = image.shape[:2]
        size = (max(2, round(w * factor / 2) * 2), max(2, round(h * factor / 2) * 2))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1
                          else cv2.INTER_LINEAR)
    return edit


def _shift(levels: int):
    return lambda image: np.clip(image.astype(int) + levels, 0, 255).astype(np.uint8)


def _chain(*edits):
    def edit(image):
        for step in edits:
            image = step(image)
        return image
    return edit


EDITS = {  # name -> (frame edit, keep every n-th frame, CRF of the re-encode)
    "re-encode CRF 23": (None, 1, 23),
    "re-encode CRF 35": (None, 1, 35),
    "crop 3 px a side": (_crop_px(3), 1, 23),
    "crop 10% a side": (_crop(0.10), 1, 23),
    "rescale 0.5x": (_scale(0.5), 1, 23),
    "rescale 0.75x": (_scale(0.75), 1, 23),
    "rescale 1.5x": (_scale(1.5), 1, 23),
    "horizontal flip": (lambda image: np.ascontiguousarray(image[:, ::-1]), 1, 23),
    "half the frame rate": (None, 2, 23),
    "colour shift +8": (_shift(8), 1, 23),
    "crop 5% + 0.75x + CRF 30": (_chain(_crop(0.05), _scale(0.75)), 1, 30),
}


def encode(frames: list[np.ndarray], path: Path, crf: int, fps: float) -> list[np.ndarray]:
    from swapscope.media.video import VideoWriter, read_frames

    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps, crf=crf) as writer:
        for image in frames:
            writer.write(image)
    return [f.image for f in read_frames(path)]


def read_ids(frames: list[np.ndarray]) -> list[str | None]:
    from swapscope.formats.watermark import read_watermark

    return [read_watermark(np.ascontiguousarray(f)) for f in frames]


def verdict(ids: list[str | None]) -> str | None:
    """The id a run of frames carries, by the vote ``detect scan`` takes."""
    found = Counter(i for i in ids if i)
    if not found:
        return None
    best, count = found.most_common(1)[0]
    return best if count >= 2 or len(ids) == 1 else None


def measure_clip(frames: list[np.ndarray], fps: float, folder: Path, manifest_id: str) -> dict:
    from skimage.metrics import structural_similarity

    from swapscope.formats.watermark import Watermarker

    marked = Watermarker(manifest_id)
    marked_frames = [f.result() for f in marked.submit(frames)]
    psnr = [cv2.PSNR(a, b) for a, b in zip(frames, marked_frames)]
    ssim = [structural_similarity(a, b, channel_axis=2) for a, b in zip(frames, marked_frames)]
    forged = encode(marked_frames, folder / "marked.mp4", 18, fps)
    real = encode(frames, folder / "real.mp4", 18, fps)
    second = max(1, round(fps))
    out = {"psnr_db": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "edits": {}}
    for name, (edit, every, crf) in EDITS.items():
        row = {}
        for label, source in (("marked", forged), ("real", real)):
            edited = [edit(f) if edit else f for f in source[::every]]
            ids = read_ids(encode(edited, folder / f"{label}-edit.mp4", crf, fps / every))
            step = max(1, second // every)
            segments = [verdict(ids[i:i + step]) for i in range(0, len(ids), step)]
            row[label] = {"video": verdict(ids), "segments": segments}
        out["edits"][name] = {
            "recovered": row["marked"]["video"] == manifest_id[:4],
            "segments_recovered": float(np.mean([s == manifest_id[:4]
                                                 for s in row["marked"]["segments"]])),
            "false_positive": row["real"]["video"] is not None,
            "false_positive_segments": int(sum(s is not None for s in row["real"]["segments"])),
        }
    return out


def speed(frames_720p: list[np.ndarray], manifest_id: str) -> dict:
    """ms per 720p frame: the library's encoder, the array code, and the decoder."""
    from imwatermark import WatermarkEncoder

    from swapscope.formats import watermark as wm

    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", wm.payload(manifest_id))
    start = time.perf_counter()
    for image in frames_720p:
        encoder.encode(np.ascontiguousarray(image[..., ::-1]), wm.WATERMARK_METHOD,
                       **wm.WATERMARK_OPTIONS)
    library = (time.perf_counter() - start) / len(frames_720p)
    bits = wm._new_encoder(wm.payload(manifest_id))
    start = time.perf_counter()
    marked = wm.embed_frames(frames_720p, bits)
    arrays = (time.perf_counter() - start) / len(frames_720p)
    start = time.perf_counter()
    read_ids(marked)
    decode = (time.perf_counter() - start) / len(frames_720p)
    return {"library_embed_ms": library * 1000, "array_embed_ms": arrays * 1000,
            "decode_ms": decode * 1000}


def main() -> None:
    parser = bench_parser(__doc__, frames=50)
    args = parser.parse_args()
    from skimage import data

    from swapscope.formats.manifest import new_manifest_id
    from swapscope.media.sample import moving_face_frames
    from swapscope.media.video import probe, read_frames

    root = shared_data(args.data)
    clips = {"astronaut 320x320 (self-made)": (moving_face_frames(data.astronaut(), args.frames),
                                               25.0)}
    for path in sorted((root / "real_videos").glob("*/*.mp4")):
        clips[path.parent.name + "/" + path.name] = (
            [f.image for f in read_frames(path, limit=args.frames)], probe(path).fps)
    results = {"machine": machine(), "frames": args.frames, "clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (frames, fps) in clips.items():
            manifest_id = new_manifest_id()
            results["clips"][name] = measure_clip(frames, fps, Path(tmp), manifest_id)
            print(f"{name}: done", file=sys.stderr)
    big = next(frames for name, (frames, _) in clips.items() if "d13" in name)
    results["speed"] = speed(big[:16], new_manifest_id())
    print_table(results)
    write_json(args.json, results)


def print_table(results: dict) -> None:
    clips = results["clips"]
    print(f"{len(clips)} clips x {results['frames']} frames, marked as forge video marks them\n")
    print("| edit | videos recovered | 1-s segments recovered | worst clip (segments) "
          "| false positives: videos | false positives: segments |")
    print("|---|---|---|---|---|---|")
    for edit in EDITS:
        rows = {name: c["edits"][edit] for name, c in clips.items()}
        worst = min(rows, key=lambda n: rows[n]["segments_recovered"])
        print(f"| {edit} | {np.mean([r['recovered'] for r in rows.values()]):.0%} "
              f"| {np.mean([r['segments_recovered'] for r in rows.values()]):.0%} "
              f"| {worst} ({rows[worst]['segments_recovered']:.0%}) "
              f"| {sum(r['false_positive'] for r in rows.values())} of {len(rows)} "
              f"| {sum(r['false_positive_segments'] for r in rows.values())} |")
    psnr = [c["psnr_db"] for c in clips.values()]
    ssim = [c["ssim"] for c in clips.values()]
    s = results["speed"]
    print(f"\nPSNR {np.mean(psnr):.1f} dB (worst clip {min(psnr):.1f}), SSIM {np.mean(ssim):.3f}; "
          f"embed per 720p frame: library {s['library_embed_ms']:.0f} ms, array code "
          f"{s['array_embed_ms']:.0f} ms; decode {s['decode_ms']:.0f} ms")
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    main()
