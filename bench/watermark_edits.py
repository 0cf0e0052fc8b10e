"""Does the watermark survive what the web does to a video? Every edit, on every sample clip,
for today's face mark and the legacy frame mark side by side.

For each clip (the self-made 320x320 astronaut clip and the 20 real clips) the first ``--frames``
frames are encoded at the forge's CRF 18 and their faces found as ``forge video`` finds them;
the frames are marked with a fresh manifest id by each method (the face mark on those faces;
the legacy dwtDctSvd mark on the whole frame) and encoded at CRF 18 again. Each edit below is
then applied and the result encoded again at CRF 23 (CRF 35 for the re-encode edits), decoded,
and read as ``detect scan`` reads labels by default: the face mark from the faces of every frame
of scan's label window (the first 150 frames: the scored every 5th, where scan's fast preset
finds them, and those between, where it follows them), the legacy mark from every frame (two
agreeing frames at least; more generous than scan's 8). A video counts as recovered when its
payload is the true id; so does each 1-second segment read alone. The unmarked clips, edited
alike, give the false positives (any id found at all). Also the cost: PSNR and SSIM of the
marked frames against the unmarked ones, and embed / decode ms per 720p frame.

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

METHODS = ("face mark", "legacy frame mark")
EVERY = 5  # detect scan's fast preset scores every 5th frame (and reads labels in every frame
# of its label window, the first ScanConfig.label_frames)


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


def faces_of(path: Path, every: int, scan: bool) -> list[tuple[int, np.ndarray, list]]:
    """(frame index, frame, its faces): their landmarks as ``detect scan``'s fast preset finds
    them (``scan``: every ``every``-th frame and each frame of its label window), or their boxes
    as forge video finds them (every ``every``-th frame)."""
    from detect.scan import MODES, ScanConfig
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.timing import StageTimer

    fast = MODES["fast"]
    config = (PipelineConfig(every=every, detect_every=fast["detect_every"],
                             detect_size=fast["detect_size"], min_size=32, embed=False,
                             dense_frames=ScanConfig.label_frames)
              if scan else PipelineConfig(every=every, min_size=48, embed=False))
    pipeline = FacePipeline(config)
    return [(item.frame.index, item.frame.image,
             [f.face.landmarks if scan else f.face.box for f in item.faces])
            for item in pipeline.track_frames(path, StageTimer())]


def read_face_mark(frames: list[tuple[int, np.ndarray, list[np.ndarray]]]) -> str | None:
    from swapscope.labels.facemark import MarkReader

    reader = MarkReader()
    for _, image, faces in frames:
        reader.add(image, faces)
    return reader.payload()[0]


def read_legacy(frames: list[np.ndarray]) -> str | None:
    """The id a run of frames carries, by the legacy vote: two agreeing frames at least."""
    from swapscope.labels.watermark import read_legacy_watermark

    found = Counter(i for i in (read_legacy_watermark(np.ascontiguousarray(f)) for f in frames)
                    if i)
    if not found:
        return None
    best, count = found.most_common(1)[0]
    return best if count >= 2 or len(frames) == 1 else None


def mark(method: str, frames: list[np.ndarray], faces: list[list[np.ndarray]],
         manifest_id: str) -> list[np.ndarray]:
    from swapscope.labels import watermark as wm

    if method == METHODS[0]:
        marker = wm.Watermarker(manifest_id)
        return [marker(f, boxes) for f, boxes in zip(frames, faces)]
    return wm.embed_frames(frames, wm.legacy_bits(wm.payload(manifest_id)))


def read(method: str, path: Path, fps: float) -> tuple[str | None, list[str | None]]:
    """(the video's id, each 1-second segment's id) as ``method`` reads them."""
    second = max(1, round(fps))
    if method == METHODS[0]:
        from detect.scan import ScanConfig

        window = ScanConfig.label_frames
        frames = [f for f in faces_of(path, EVERY, scan=True) if f[0] < window]
        seconds = sorted({index // second for index, _, _ in frames})
        return read_face_mark(frames), [
            read_face_mark([f for f in frames if f[0] // second == s]) for s in seconds]
    from swapscope.media.video import read_frames

    frames = [f.image for f in read_frames(path)]
    return read_legacy(frames), [read_legacy(frames[i:i + second])
                                 for i in range(0, len(frames), second)]


def measure_clip(frames: list[np.ndarray], fps: float, folder: Path, manifest_id: str,
                 methods: tuple[str, ...] = METHODS) -> dict:
    from skimage.metrics import structural_similarity

    source = encode(frames, folder / "source.mp4", 18, fps)
    faces = [lms for _, _, lms in faces_of(folder / "source.mp4", 1, scan=False)]
    out = {}
    for method in methods:
        prefix = manifest_id[:8] if method == METHODS[0] else manifest_id[:4]
        marked = mark(method, source, faces, manifest_id)
        row = {"psnr_db": float(np.mean([cv2.PSNR(a, b) for a, b in zip(source, marked)])),
               "worst_frame_psnr_db": float(min(cv2.PSNR(a, b) for a, b in zip(source, marked))),
               "ssim": float(np.mean([structural_similarity(a, b, channel_axis=2)
                                      for a, b in zip(source, marked)])),
               "edits": {}}
        forged = encode(marked, folder / "marked.mp4", 18, fps)
        for name, (edit, every, crf) in EDITS.items():
            found = {}
            for label, video in (("marked", forged), ("real", source)):
                edited = [edit(f) if edit else f for f in video[::every]]
                encode(edited, folder / f"{label}-edit.mp4", crf, fps / every)
                found[label] = read(method, folder / f"{label}-edit.mp4", fps / every)
            video_id, segments = found["marked"]
            row["edits"][name] = {
                "recovered": video_id == prefix,
                "segments_recovered": float(np.mean([s == prefix for s in segments])),
                "false_positive": found["real"][0] is not None,
                "false_positive_segments": int(sum(s is not None for s in found["real"][1])),
            }
        out[method] = row
    return out


def speed(frames_720p: list[np.ndarray], manifest_id: str) -> dict:
    """ms per 720p frame: each method's embedder and decoder (the face mark's decoder per frame
    with its faces found; finding them is detect scan's work anyway)."""
    from swapscope.labels import watermark as wm
    from swapscope.labels.facemark import MarkReader

    with tempfile.TemporaryDirectory() as tmp:
        encode(frames_720p, Path(tmp) / "c.mp4", 18, 25.0)
        found = faces_of(Path(tmp) / "c.mp4", 1, scan=False)
    images = [f for _, f, _ in found]
    boxes = [b for _, _, b in found]
    out = {}
    marker = wm.Watermarker(manifest_id)
    marker(images[0], boxes[0])  # load the landmark model before the clock starts
    start = time.perf_counter()
    marked = [marker(f, b) for f, b in zip(images, boxes)]
    out["face mark embed_ms"] = (time.perf_counter() - start) / len(images) * 1000
    faces = [wm.landmarker().landmarks(f, np.asarray(b, np.float32)) for f, b in zip(marked, boxes)]
    start = time.perf_counter()
    reader = MarkReader()
    for f, lms in zip(marked, faces):
        reader.add(f, list(lms))
    out["face mark decode_ms"] = (time.perf_counter() - start) / len(images) * 1000
    start = time.perf_counter()
    legacy = wm.embed_frames(images, wm.legacy_bits(wm.payload(manifest_id)))
    out["legacy frame mark embed_ms"] = (time.perf_counter() - start) / len(images) * 1000
    start = time.perf_counter()
    for f in legacy:
        wm.read_legacy_watermark(f)
    out["legacy frame mark decode_ms"] = (time.perf_counter() - start) / len(images) * 1000
    return out


def main() -> None:
    parser = bench_parser(__doc__, frames=50)
    parser.add_argument("--clips", type=int, default=0, help="only the first N clips (0: all)")
    parser.add_argument("--no-legacy", action="store_true", help="the face mark alone")
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
    if args.clips:
        clips = dict(list(clips.items())[:args.clips])
    methods = METHODS[:1] if args.no_legacy else METHODS
    results = {"machine": machine(), "frames": args.frames, "clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (frames, fps) in clips.items():
            results["clips"][name] = measure_clip(frames, fps, Path(tmp), new_manifest_id(),
                                                  methods)
            print(f"{name}: done", file=sys.stderr)
    big = next((frames for name, (frames, _) in clips.items() if "d13" in name),
               next(iter(clips.values()))[0])
    results["speed"] = speed(big[:16], new_manifest_id())
    print_table(results)
    write_json(args.json, results)


def print_table(results: dict) -> None:
    clips = results["clips"]
    print(f"{len(clips)} clips x {results['frames']} frames, marked as forge video marks them, "
          "read as detect scan reads them\n")
    print("| edit | method | videos recovered | 1-s segments recovered | worst clip (segments) "
          "| false positives: videos | false positives: segments |")
    print("|---|---|---|---|---|---|---|")
    for edit in EDITS:
        for method in (m for m in METHODS if m in next(iter(clips.values()))):
            rows = {name: c[method]["edits"][edit] for name, c in clips.items()}
            worst = min(rows, key=lambda n: rows[n]["segments_recovered"])
            print(f"| {edit} | {method} | {np.mean([r['recovered'] for r in rows.values()]):.0%} "
                  f"| {np.mean([r['segments_recovered'] for r in rows.values()]):.0%} "
                  f"| {worst} ({rows[worst]['segments_recovered']:.0%}) "
                  f"| {sum(r['false_positive'] for r in rows.values())} of {len(rows)} "
                  f"| {sum(r['false_positive_segments'] for r in rows.values())} |")
    s = results["speed"]
    print("\n| method | PSNR dB (mean / worst clip / worst frame) | SSIM | embed ms per 720p frame "
          "| decode ms per 720p frame |")
    print("|---|---|---|---|---|")
    for method in (m for m in METHODS if m in next(iter(clips.values()))):
        psnr = [c[method]["psnr_db"] for c in clips.values()]
        worst_frame = min(c[method]["worst_frame_psnr_db"] for c in clips.values())
        ssim = [c[method]["ssim"] for c in clips.values()]
        print(f"| {method} | {np.mean(psnr):.1f} / {min(psnr):.1f} / {worst_frame:.1f} "
              f"| {np.mean(ssim):.4f} | {s[method + ' embed_ms']:.1f} "
              f"| {s[method + ' decode_ms']:.1f} |")
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    main()
