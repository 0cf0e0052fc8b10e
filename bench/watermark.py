"""Which invisible-watermark setting survives an H.264 re-encode, at what cost per frame.

For each candidate (method, payload bits, scale, block) and each sample clip: embed the payload
in the first N frames, encode at the forge's CRF 18, re-encode at CRF 23 (what a platform might
do), decode, and count frames whose payload comes back exactly. Also the embedding time per
frame and the PSNR the watermark costs. swapscope/labels/watermark.py uses the chosen row.

    python bench/watermark.py [--data ../shared/data] [--frames 24] [--json out.json]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

CANDIDATES = [  # (method, bits, options)
    ("dwtDct", 48, {}),
    ("dwtDctSvd", 48, {}),  # the library's default scales (U channel, 36) and 4x4 blocks
    ("dwtDctSvd", 48, {"scales": [0, 160, 0], "block": 8}),
    ("dwtDctSvd", 32, {"scales": [0, 160, 0], "block": 8}),
    ("dwtDctSvd", 32, {"scales": [0, 200, 0], "block": 8}),
]


def roundtrip(frames: list[np.ndarray], crfs: tuple[int, ...], folder: Path) -> list[np.ndarray]:
    from swapscope.media.video import VideoWriter, read_frames

    height, width = frames[0].shape[:2]
    for i, crf in enumerate(crfs):
        path = folder / f"pass{i}.mp4"
        with VideoWriter(path, width, height, 25, crf=crf) as writer:
            for image in frames:
                writer.write(image)
        frames = [f.image for f in read_frames(path)]
    return frames


def measure(frames: list[np.ndarray], method: str, bits: int, options: dict, folder: Path) -> dict:
    import cv2
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    payload = bytes(np.random.default_rng(bits).integers(0, 256, bits // 8, dtype=np.uint8))
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", payload)
    start = time.perf_counter()
    marked = [
        encoder.encode(np.ascontiguousarray(f[..., ::-1]), method, **options)[..., ::-1]
        for f in frames
    ]
    embed_ms = (time.perf_counter() - start) / len(frames) * 1000
    psnr = float(np.mean([cv2.PSNR(a, np.ascontiguousarray(b)) for a, b in zip(frames, marked)]))
    decoder = WatermarkDecoder("bytes", bits)
    out = {"embed_ms": embed_ms, "psnr_db": psnr}
    for name, crfs in (("crf18", (18,)), ("crf18_then_23", (18, 23))):
        decoded = roundtrip([np.ascontiguousarray(m) for m in marked], crfs, folder)
        got = [
            decoder.decode(np.ascontiguousarray(f[..., ::-1]), method, **options) for f in decoded
        ]
        out[name] = float(np.mean([g == payload for g in got]))
    return out


def main() -> None:
    parser = bench_parser(__doc__, frames=24)
    args = parser.parse_args()
    from skimage import data

    from swapscope.media.sample import moving_face_frames
    from swapscope.media.video import read_frames

    root = shared_data(args.data)
    clips = {"astronaut 320x320 (self-made)": moving_face_frames(data.astronaut(), args.frames)}
    for rel in sorted((root / "real_videos").glob("*/*.mp4")):
        clips[rel.parent.name + "/" + rel.name] = [
            f.image for f in read_frames(rel, limit=args.frames)
        ]
    results = {"machine": machine(), "frames": args.frames, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for method, bits, options in CANDIDATES:
            per_clip = {
                name: measure(frames, method, bits, options, Path(tmp))
                for name, frames in clips.items()
            }
            label = f"{method} {bits} bits {options or 'defaults'}"
            results["rows"].append({"candidate": label, "clips": per_clip})
            print(label, file=sys.stderr)
    print(
        f"{len(clips)} clips x {args.frames} frames; share of frames whose payload comes back "
        "exactly\n"
    )
    print(
        "| candidate | after CRF 18 (mean) | after CRF 18 -> 23 (mean) | worst clip after 23 | "
        "PSNR dB "
        "| embed ms/frame (720x1280) |"
    )
    print("|---|---|---|---|---|---|")
    for row in results["rows"]:
        clips_ = row["clips"]
        worst = min(clips_, key=lambda c: clips_[c]["crf18_then_23"])
        big = next((v for k, v in clips_.items() if "d13" in k), next(iter(clips_.values())))
        print(f"| {row['candidate']} | {np.mean([c['crf18'] for c in clips_.values()]):.3f} "
              f"| {np.mean([c['crf18_then_23'] for c in clips_.values()]):.3f} "
              f"| {clips_[worst]['crf18_then_23']:.2f} ({worst}) "
              f"| {np.mean([c['psnr_db'] for c in clips_.values()]):.1f} | {big['embed_ms']:.0f} |")
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
