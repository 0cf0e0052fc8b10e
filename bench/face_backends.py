"""Which face detector to use: faces found by face size, false positives, time per frame, and
faces found on the sample clips, for each offline backend side by side in one run.

Backends: ``dlib`` (the default: HOG on a 480 px copy), ``dlib -u1`` (HOG upsampled once),
``dlib full frame`` (HOG on the frame as it is: ``--detect-size 0``),
``dlib-cnn`` (dlib's MMOD CNN on the 480 px copy) and ``yunet`` (YuNet on a 640 px copy, and on
the frame as it is, up to 960 px).

1. Small faces: six faces per 1280x720 frame (the astronaut that ships with scikit-image and five
   sample-clip faces, each cut out at twice its box and scaled so the box is S px), pasted on
   face-free scikit-image pictures; found = a detection centred inside a pasted face's box.
   Faces by size S, and time per 720p frame.
2. False positives: detections on face-free pictures (scikit-image's, at 1280x720; a cat among
   them).
3. Sample clips: of ``--clip-frames`` frames spread over each clip of ``real_videos`` and
   ``real_videos_extra``, the share with a face, and the clips where no frame has one.

    python bench/face_backends.py [--data ../shared/data] [--clip-frames 6] [--json out.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

from swapscope.faces.backends import create_backend  # noqa: E402
from swapscope.media.video import probe, read_frames  # noqa: E402

SIZES = [14, 20, 24, 32, 40, 48, 64, 96]
FRAME = (720, 1280)
FACE_FREE = ["coffee", "chelsea", "rocket", "coins", "hubble_deep_field", "immunohistochemistry",
             "horse", "brick", "grass", "gravel", "clock", "page", "text", "moon", "colorwheel"]


def backends() -> dict:
    return {
        "dlib": create_backend("dlib"),
        "dlib -u1": create_backend("dlib", upsample=1),
        "dlib full frame": create_backend("dlib", detect_size=0),
        "dlib-cnn": create_backend("dlib-cnn"),
        "yunet": create_backend("yunet"),
        "yunet 960": create_backend("yunet", detect_size=960),
    }


def as_frame(image: np.ndarray) -> np.ndarray:
    """Any scikit-image picture -> (720, 1280, 3) uint8 RGB."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (255 * (image - image.min()) / max(np.ptp(image), 1e-6)).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    return cv2.resize(np.ascontiguousarray(image[..., :3]), FRAME[::-1])


def face_free() -> list[np.ndarray]:
    pictures = []
    for name in FACE_FREE:
        try:
            pictures.append(as_frame(getattr(skdata, name)()))
        except Exception:  # noqa: BLE001 - a picture this scikit-image must download
            continue
    return pictures


def face_cutouts(data: Path, dlib) -> list[tuple[np.ndarray, np.ndarray]]:
    """(cut-out, its face box in cut-out px): the astronaut and five sample-clip people."""
    images = [skdata.astronaut()]
    for folder in sorted((data / "real_videos").iterdir())[:: 4][:5]:
        video = sorted(folder.glob("*.mp4"))[0]
        images.append(next(read_frames(video, limit=1)).image)
    cutouts = []
    for image in images:
        boxes, _ = dlib.detect(image)
        x1, y1, x2, y2 = boxes[0]
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        padded = cv2.copyMakeBorder(image, 400, 400, 400, 400, cv2.BORDER_REFLECT)
        left, top = int(cx - side) + 400, int(cy - side) + 400
        cut = padded[top:top + int(2 * side), left:left + int(2 * side)]
        cutouts.append((cut, np.array([side / 2, side / 2, 1.5 * side, 1.5 * side])))
    return cutouts


def pasted(background: np.ndarray, cutouts: list, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Six faces of box side ``size`` on a 3x2 grid; their boxes (6, 4) frame px."""
    frame, boxes = background.copy(), []
    for i, (cut, box) in enumerate(cutouts):
        scale = size / (box[2] - box[0])
        face = cv2.resize(cut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cx, cy = 213 + 427 * (i % 3), 180 + 360 * (i // 3)
        top, left = cy - face.shape[0] // 2, cx - face.shape[1] // 2
        frame[top:top + face.shape[0], left:left + face.shape[1]] = face
        boxes.append(box * scale + [left, top, left, top])
    return frame, np.array(boxes)


def found_in(detected: np.ndarray, truth: np.ndarray) -> int:
    centres = (detected[:, :2] + detected[:, 2:]) / 2
    return sum(bool(np.any((centres[:, 0] > b[0]) & (centres[:, 0] < b[2]) & (centres[:, 1] > b[1])
                           & (centres[:, 1] < b[3]))) for b in truth)


def small_faces(models: dict, cutouts: list, pictures: list[np.ndarray]) -> dict:
    results = {}
    for name, model in models.items():
        found, seconds, frames = {}, 0.0, 0
        for size in SIZES:
            hits = 0
            for background in pictures[:3]:
                frame, truth = pasted(background, cutouts, size)
                started = time.perf_counter()
                boxes, _ = model.detect(frame)
                seconds += time.perf_counter() - started
                frames += 1
                hits += found_in(boxes, truth)
            found[size] = f"{hits}/{3 * len(cutouts)}"
        false = sum(len(model.detect(p)[0]) for p in pictures)
        results[name] = {"found_by_size": found, "s_per_720p_frame": round(seconds / frames, 4),
                         "false_positives": f"{false} on {len(pictures)} pictures"}
        print(name, results[name], flush=True)
    return results


def sample_clips(models: dict, data: Path, per_clip: int) -> dict:
    frames_of = {}
    for group in ("real_videos", "real_videos_extra"):
        for folder in sorted((data / group).iterdir()):
            videos = sorted(folder.glob("*.mp4"))
            if not videos:
                continue
            count = probe(videos[0]).frame_count or 300
            every = max(1, count // per_clip)
            frames_of[(group, folder.name)] = [
                f.image for f in read_frames(videos[0], every=every, limit=every * per_clip)]
    results = {}
    for name, model in models.items():
        summary = {}
        for group in ("real_videos", "real_videos_extra"):
            with_face, total, empty = 0, 0, []
            for (g, clip), frames in frames_of.items():
                if g != group:
                    continue
                hits = sum(len(model.detect(f)[0]) > 0 for f in frames)
                with_face, total = with_face + hits, total + len(frames)
                if hits == 0:
                    empty.append(clip)
            summary[group] = {"frames_with_face": round(with_face / max(total, 1), 4),
                              "frames": total, "clips_without_face": empty}
        results[name] = summary
        print(name, summary, flush=True)
    return results


def main() -> None:
    p = bench_parser(__doc__)
    p.add_argument("--clip-frames", type=int, default=6, help="frames read per sample clip")
    args = p.parse_args()
    data = shared_data(args.data)
    models = backends()
    pictures = face_free()
    results = {"machine": machine(), "sizes": SIZES,
               "small_faces": small_faces(models, face_cutouts(data, models["dlib"]), pictures),
               "sample_clips": sample_clips(models, data, args.clip_frames)}
    write_json(args.json, results)


if __name__ == "__main__":
    main()
