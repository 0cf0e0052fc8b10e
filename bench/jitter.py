"""Landmark jitter along tracks, raw vs One-Euro smoothed, on real clips.

Jitter: mean second difference of the 68 landmarks per frame, in units of the inter-ocular
distance (IOD) -- how far each point jumps off a locally straight path. Smoothing also moves
points; the mean shift between raw and smoothed landmarks bounds what it costs in lag.

    python bench/jitter.py [--data ../shared/data] [--frames 300] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

CLIPS = ["real_videos/lp_d6_woman_hairbun/d6.mp4", "real_videos/lp_d9_man_glasses/d9.mp4",
         "real_videos/hdtf_WDA_KatieHill/WDA_KatieHill_000.mp4"]


def main() -> None:
    parser = bench_parser(__doc__, frames=300)
    args = parser.parse_args()
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.faces.track import landmark_jitter, smooth_track
    from swapscope.timing import StageTimer

    root = shared_data(args.data)
    pipeline = FacePipeline(PipelineConfig(max_frames=args.frames))
    results = {"machine": machine(), "clips": {}}
    for rel in CLIPS:
        found = pipeline.faces_in_video(root / rel, StageTimer())
        times = {f.face.frame_index: f.time for f in found.faces}
        track = max(found.tracks, key=lambda t: len(t.faces))
        raw = np.stack([f.landmarks for f in track.faces])
        smooth = np.stack([f.landmarks for f in smooth_track(
            track, np.array([times[f.frame_index] for f in track.faces])).faces])
        iod = np.linalg.norm(raw[:, 36:42].mean(1) - raw[:, 42:48].mean(1), axis=-1)
        shift = float(np.mean(np.linalg.norm(smooth - raw, axis=-1).mean(-1) / iod))
        results["clips"][rel.split("/")[-1]] = {
            "frames": len(track.faces), "jitter_raw": landmark_jitter(raw),
            "jitter_smoothed": landmark_jitter(smooth), "mean_shift": shift,
            "iod_px": float(iod.mean()),
        }
    print(
        "| clip | frames | IOD px | jitter raw (IOD) | jitter smoothed (IOD) | reduction | mean "
        "shift (IOD) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results["clips"].items():
        print(
            f"| {name} | {r['frames']} | {r['iod_px']:.0f} | {r['jitter_raw']:.4f} | "
            f"{r['jitter_smoothed']:.4f} | {r['jitter_raw'] / r['jitter_smoothed']:.1f}x | "
            f"{r['mean_shift']:.4f} |"
        )
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
