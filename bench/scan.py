"""Scanning speed and what the fast preset costs in AUC, against the paper's protocol.

Speed, side by side in one run on a 720p clip: ``detect scan``'s default (fast preset, the
shipped detector: three efficientnet_lite0 networks averaged) against the paper's protocol (dlib
on every full-size frame, 10 ROIs per face, top 5, ResNet50). ResNet50's ImageNet weights
cannot be downloaded here, so it runs with random weights: its cost does not depend on them.

AUC, with the same trained detector (the shipped one) under both rule sets: real clips (up to
``--clips``) of the identities held out of its training, and fwa-sim fakes made from the same clips
(each frame's face re-rendered at one random size per clip, blurred and warped back, as a swap
model would; the same H.264 settings for both classes). Frame AUC over scored frames; video AUC
over 2-second segments of each clip (the mean of each segment's highest third of frame scores).

    python bench/scan.py [--data ../shared/data] [--frames 150] [--speed-frames 300] \
        [--clips 4] [--json out.json]
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

SPEED_CLIP = "real_videos/lp_d13_man_glasses_office/d13.mp4"  # 720x1280, the only 720p clip
SEGMENT_SECONDS = 2.0


def timed_scan(path: Path, config, device: str = "cpu") -> dict:
    from detect.scan import Scanner

    scanner = Scanner(config, device)
    start = time.perf_counter()
    result = scanner.scan(path)
    wall = time.perf_counter() - start
    frames = result.frames
    covered = (frames[-1].frame + 1) if frames else 0
    from swapscope.media.video import probe

    fps = probe(path).fps
    return {"wall_s": wall, "frames_scored": len(frames), "frames_covered": covered,
            "scored_per_s": len(frames) / wall, "video_frames_per_s": covered / wall,
            "video_seconds_per_s": covered / fps / wall, "stages_s": result.timings}


def resnet50_checkpoint(folder: Path) -> Path:
    from detect.checkpoint import save_detector
    from detect.models import create_detector

    model, data_cfg = create_detector("resnet50", pretrained=False)
    return save_detector(folder, model, {"arch": "resnet50", "data_config": data_cfg.to_json(),
                                         "note": "random weights, for timing only"})


def make_fwa_sim_pair(
    source: Path, out_dir: Path, frames: int, rng: np.random.Generator
) -> tuple[Path, Path]:
    """(real, fake): the first ``frames`` frames re-encoded, and the same with the FWA warp."""
    from detect.artifacts import FwaConfig, warp_artifact
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.media.video import VideoWriter, probe
    from swapscope.timing import StageTimer

    info = probe(source)
    size = int(rng.integers(64, 128))
    config = FwaConfig(min_size=size, max_size=size, hull_prob=float(rng.random() < 0.5))
    pipeline = FacePipeline(PipelineConfig(max_frames=frames, embed=False))
    real, fake = out_dir / f"{source.stem}_real.mp4", out_dir / f"{source.stem}_fwa.mp4"
    with VideoWriter(real, info.width, info.height, info.fps) as w_real, \
            VideoWriter(fake, info.width, info.height, info.fps) as w_fake:
        for item in pipeline.track_frames(source, StageTimer()):
            frame, image = item.frame, item.frame.image
            warped = image
            for tracked in item.faces:
                warped, _ = warp_artifact(
                    warped, tracked.face.landmarks,
                    np.random.default_rng(int(rng.integers(1 << 31))), config,
                )
            w_real.write(image, frame.time)
            w_fake.write(warped, frame.time)
    return real, fake


def segment_scores(frames: list, fps: float, top_fraction: float) -> list[float]:
    from detect.scan import video_score

    segments: dict[int, list[float]] = {}
    for f in frames:
        segments.setdefault(int(f.frame / fps // SEGMENT_SECONDS), []).append(f.score)
    return [video_score(np.array(v), top_fraction) for v in segments.values()]


def auc_comparison(root: Path, frames: int, most: int) -> dict:
    from sklearn.metrics import roc_auc_score

    from detect.checkpoint import load_checkpoint
    from detect.scan import DEFAULT_DETECTOR, ScanConfig, Scanner
    from swapscope.media.video import probe

    shipped = load_checkpoint(DEFAULT_DETECTOR)
    held_out = shipped.identities["val_identities"]
    sources = [source for identity in held_out for folder in ("real_videos", "real_videos_extra")
               for source in sorted((root / folder / identity).glob("*.mp4"))][:most]
    rng = np.random.default_rng(0)
    scanners = {mode: Scanner(ScanConfig(mode=mode), "cpu", shipped) for mode in ("fast", "paper")}
    scores = {mode: {"frame": ([], []), "video": ([], [])} for mode in scanners}
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            real, fake = make_fwa_sim_pair(source, Path(tmp), frames, rng)
            clips.append(str(source.relative_to(root)))
            fps = probe(real).fps
            for label, path in ((0, real), (1, fake)):
                for mode, scanner in scanners.items():
                    result = scanner.scan(path)
                    frame_scores = result.frame_scores
                    scores[mode]["frame"][0].extend(frame_scores)
                    scores[mode]["frame"][1].extend([label] * len(frame_scores))
                    segs = segment_scores(result.frames, fps, scanner.config.top_fraction)
                    scores[mode]["video"][0].extend(segs)
                    scores[mode]["video"][1].extend([label] * len(segs))
    out = {"held_out_identities": sorted({Path(c).parent.name for c in clips}), "clips": clips,
           "frames_per_clip": frames, "modes": {}}
    for mode, levels in scores.items():
        out["modes"][mode] = {
            level: {"auc": float(roc_auc_score(y, s)), "n": len(y), "fakes": int(sum(y))}
            for level, (s, y) in levels.items()
        }
    return out


def main() -> None:
    parser = bench_parser(__doc__, frames=150)
    parser.add_argument(
        "--speed-frames", type=int, default=300, help="frames of the 720p clip to time"
    )
    parser.add_argument("--clips", type=int, default=4, help="held-out real clips for the AUC")
    args = parser.parse_args()
    import torch

    from detect.scan import ScanConfig
    from swapscope.media.video import probe

    torch.set_num_threads(torch.get_num_threads())
    root = shared_data(args.data)
    clip = root / SPEED_CLIP
    info = probe(clip)
    results = {"machine": machine(), "clip": SPEED_CLIP, "size": f"{info.width}x{info.height}",
               "speed_frames": args.speed_frames}
    with tempfile.TemporaryDirectory() as tmp:
        resnet = resnet50_checkpoint(Path(tmp) / "resnet50")
        results["speed"] = {
            "default (fast, shipped detector)": timed_scan(
                clip, ScanConfig(max_frames=args.speed_frames)
            ),
            "paper (every frame, full-size dlib, 10 ROIs, ResNet50)": timed_scan(
                clip, ScanConfig(models=(str(resnet),), mode="paper", max_frames=args.speed_frames)
            ),
        }
    results["auc"] = auc_comparison(root, args.frames, args.clips)

    (fast_name, fast), (paper_name, paper) = results["speed"].items()
    results["speedup"] = fast["video_frames_per_s"] / paper["video_frames_per_s"]
    print(f"clip: {SPEED_CLIP} ({results['size']}, {args.speed_frames} frames)\n")
    print("| mode | frames scored | frames scored/s | video frames/s | video s/s | wall s |")
    print("|---|---|---|---|---|---|")
    for name, r in results["speed"].items():
        print(
            f"| {name} | {r['frames_scored']} | {r['scored_per_s']:.2f} | "
            f"{r['video_frames_per_s']:.1f} "
            f"| {r['video_seconds_per_s']:.2f} | {r['wall_s']:.1f} |"
        )
    print(f"| default / paper | | | **{results['speedup']:.1f}x** | | |\n")
    print("stages (s):")
    for name, r in results["speed"].items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
        print(f"- {name}: {stages}")
    auc = results["auc"]
    print(f"\nAUC, shipped detector, held-out identities {auc['held_out_identities']}, "
          f"{len(auc['clips'])} clips x {auc['frames_per_clip']} frames, real vs fwa-sim:\n")
    print("| rules | frame AUC (n) | video AUC, 2 s segments (n) |")
    print("|---|---|---|")
    for mode, r in auc["modes"].items():
        print(
            f"| {mode} | {r['frame']['auc']:.3f} ({r['frame']['n']}) | {r['video']['auc']:.3f} "
            f"({r['video']['n']}) |"
        )
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
