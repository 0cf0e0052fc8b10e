"""Where dlib's HOG box sits against YuNet's box for the same face: the offsets the ``yunet``
backend uses (``YUNET_TO_DLIB`` in swapscope/faces/backends.py), so dlib's 68-point predictor is
handed the kind of box it was trained on.

On every sample clip (``real_videos``: 19 people), every ``--every``-th frame of its first video
up to ``--frames``: where dlib (the default backend) and YuNet each find exactly one face, the
centre offset of dlib's box in YuNet's width / height, and dlib's side in sqrt(w * h). Prints the
medians (to put into backends.py) and checks them: the 68 points found on the mapped YuNet box
against the points found on dlib's own box, as a share of the distance between the eyes' centres
(median and 95th percentile), for the mapping in the code and for the raw YuNet box.

    python bench/yunet_box.py [--data ../shared/data] [--frames 60] [--every 10] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

from swapscope.faces import backends  # noqa: E402
from swapscope.media.video import read_frames  # noqa: E402


def pairs(data: Path, frames: int, every: int) -> tuple[list, list]:
    """(frame, dlib box, YuNet x y w h) for frames where each finds one face; clips used."""
    dlib = backends.create_backend("dlib")
    yunet = backends.create_backend("yunet")
    found, clips = [], []
    for folder in sorted((data / "real_videos").iterdir()):
        videos = sorted(folder.glob("*.mp4"))
        if not videos:
            continue
        clips.append(folder.name)
        for frame in read_frames(videos[0], every=every, limit=frames):
            boxes, _ = dlib.detect(frame.image)
            height, width = frame.image.shape[:2]
            scale = min(yunet.detect_size / max(height, width), 4.0)
            small = backends.cv2.resize(frame.image, (round(width * scale), round(height * scale)))
            raw = backends.yunet_raw(yunet._yunet, small, yunet.threshold)
            if len(boxes) == 1 and len(raw) == 1:
                found.append((frame.image, boxes[0], raw[0, 1:5] / scale))
    return found, clips


def eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def landmark_error(predictor, found: list, boxes_of) -> dict:
    errors = []
    for image, dlib_box, xywh in found:
        reference = predictor.landmarks(image, dlib_box[None])[0]
        moved = predictor.landmarks(image, boxes_of(xywh))[0]
        errors.append(np.linalg.norm(moved - reference, axis=1).mean() / eye_distance(reference))
    return {"median": round(float(np.median(errors)), 4),
            "p95": round(float(np.percentile(errors, 95)), 4)}


def main() -> None:
    p = bench_parser(__doc__)
    p.add_argument("--frames", type=int, default=60, help="frames read per clip")
    p.add_argument("--every", type=int, default=10, help="every N-th frame")
    args = p.parse_args()
    found, clips = pairs(shared_data(args.data), args.frames, args.every)
    if not found:
        sys.exit("no frame where both detectors find one face")
    dlib_boxes = np.array([f[1] for f in found])
    xywh = np.array([f[2] for f in found])
    x, y, w, h = xywh.T
    fitted = {
        "dx": float(np.median(((dlib_boxes[:, 0] + dlib_boxes[:, 2]) / 2 - (x + w / 2)) / w)),
        "dy": float(np.median(((dlib_boxes[:, 1] + dlib_boxes[:, 3]) / 2 - (y + h / 2)) / h)),
        "side": float(np.median((dlib_boxes[:, 2] - dlib_boxes[:, 0]) / np.sqrt(w * h))),
    }
    predictor = backends.create_backend("dlib")
    results = {
        "machine": machine(), "clips": len(clips), "frames": len(found),
        "fitted": {k: round(v, 4) for k, v in fitted.items()},
        "in_code": backends.YUNET_TO_DLIB,
        "landmark_error_in_code": landmark_error(predictor, found, backends.yunet_to_dlib_boxes),
        "landmark_error_raw_box": landmark_error(
            predictor, found, lambda b: np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]],
                                                 np.float32)[None]),
    }
    for key, value in results.items():
        print(f"{key}: {value}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
