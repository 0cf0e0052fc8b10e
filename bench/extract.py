"""Extraction throughput (frames/s) with the time split by stage, default path vs a naive one.

Default: YuNet on the frame resized to 640 px, detector every 5th frame with tracked boxes
between, embeddings every 15th frame. Side by side on the same frames: the same path with dlib's
HOG at 480 px (the default before YuNet), and a naive baseline: the detector on every frame at
full resolution (YuNet's limit, 960 px), embedding on every frame.

    python bench/extract.py [--data ../shared/data] [--frames 300] [--json out.json]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

CLIPS = {
    "480x480": "real_videos/lp_d6_woman_hairbun/d6.mp4",
    "720x1280 (720p portrait)": "real_videos/lp_d13_man_glasses_office/d13.mp4",
}
STAGES = ["decode", "detect", "landmarks", "embed", "align", "write"]


def run(path: Path, config) -> dict:
    from forge.extract import extract

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = extract([path], Path(tmp) / "fs", config)
        wall = time.perf_counter() - start
    source = summary.sources[0]
    return {
        "frames": source.frames, "frames_with_face": source.frames_with_face, "wall_s": wall,
        "fps": source.frames / wall, "stages_s": {k: summary.timings.get(k, 0.0) for k in STAGES},
    }


def main() -> None:
    parser = bench_parser(__doc__, frames=300)
    args = parser.parse_args()
    from forge.extract import ExtractConfig
    from swapscope.media.video import probe

    root = shared_data(args.data)
    results = {"machine": machine(), "frames": args.frames, "clips": {}}
    for name, rel in CLIPS.items():
        path = root / rel
        long_side = max(probe(path).width, probe(path).height)
        default = ExtractConfig(max_frames=args.frames)
        naive = ExtractConfig(
            max_frames=args.frames, detect_size=long_side, detect_every=1, embed_every=1
        )
        dlib = ExtractConfig(max_frames=args.frames, backend="dlib")
        results["clips"][name] = {"default": run(path, default), "dlib": run(path, dlib),
                                  "naive": run(path, naive)}
    print("| clip | path | frames/s | faces found | " + " | ".join(f"{s} s" for s in STAGES) + " |")
    print("|---|---|---|---|" + "---|" * len(STAGES))
    for name, runs in results["clips"].items():
        for label, r in runs.items():
            stages = " | ".join(f"{r['stages_s'][s]:.2f}" for s in STAGES)
            print(
                f"| {name} | {label} | {r['fps']:.1f} | {r['frames_with_face']}/{r['frames']} | "
                f"{stages} |"
            )
        ratio = runs["default"]["fps"] / runs["naive"]["fps"]
        print(f"| {name} | default / naive | **{ratio:.1f}x** | | |" + " |" * (len(STAGES) - 2))
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
