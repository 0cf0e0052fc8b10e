"""Depth of the alignment template's 51 points (``TEMPLATE_DEPTH`` in swapscope/faces/align.py)
from MediaPipe's 3D mesh, and a check of the pose-aware fit that turns the template by it.

Every ``--every``-th frame of the first video of each clip in ``real_videos`` and
``real_videos_extra`` (up to ``--frames``): the default backend's faces of 90 px and more, dlib's
68 points and the mesh (needs the mesh extra). On frontal faces (the mesh's |yaw| < 10 degrees),
the mesh's depth interpolated at the template's points, scaled into the template's unit by the
similarity that maps the points onto it and centred; the median over faces is what align.py
holds. The check, on every face: the yaw ``estimate_yaw`` finds from the 68 points against the
mesh's, per |yaw| bin.

    python bench/template_depth.py [--data ../shared/data] [--frames 150] [--every 15] [--json F]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.interpolate import LinearNDInterpolator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

from swapscope.faces.align import TEMPLATE, TEMPLATE_INDICES, estimate_yaw, umeyama_to_template  # noqa: E402,I001
from swapscope.faces.backends import create_backend  # noqa: E402
from swapscope.faces.mesh import Mesher, head_pose  # noqa: E402
from swapscope.media.video import read_frames  # noqa: E402

BINS = ((0, 15), (15, 30), (30, 60), (60, 90))
MIN_FACE = 90  # px box side: smaller faces give neither the 68 points nor the mesh reliably


def faces(data: Path, frames: int, every: int):
    """(clip, 68 points, mesh) of every face found in the sampled frames."""
    backend, mesher = create_backend("yunet"), Mesher()
    folders = [*(data / "real_videos").iterdir(), *(data / "real_videos_extra").iterdir()]
    for folder in sorted(folders):
        videos = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
        if not videos:
            continue
        for frame in read_frames(videos[0], every=every, limit=frames):
            for face in backend.faces(frame.image, frame.index):
                if face.box[2] - face.box[0] < MIN_FACE:
                    continue
                points = mesher.points(frame.image, face.box)
                if points is not None:
                    yield folder.name, face.landmarks, points


def template_depth(landmarks: np.ndarray, mesh: np.ndarray) -> np.ndarray | None:
    """(51,) the mesh's depth at the template points, in template units, centred."""
    depth = LinearNDInterpolator(mesh[:, :2], mesh[:, 2])(landmarks[TEMPLATE_INDICES])
    if np.isnan(depth).any():
        return None
    scale = float(np.sqrt(abs(np.linalg.det(umeyama_to_template(landmarks)[:, :2]))))
    return (depth - depth.mean()) * scale


def main() -> None:
    p = bench_parser(__doc__, frames=150)
    p.add_argument("--every", type=int, default=15)
    args = p.parse_args()
    data = shared_data(args.data)
    depths, yaws, clips = [], [], set()
    for clip, landmarks, mesh in faces(data, args.frames, args.every):
        clips.add(clip)
        yaw = head_pose(mesh).yaw
        yaws.append((yaw, landmarks))
        if abs(yaw) < 10 and (d := template_depth(landmarks, mesh)) is not None:
            depths.append(d)
    depth = np.median(depths, axis=0)
    spread = np.median(np.abs(np.array(depths) - depth), axis=0)
    print(f"{len(depths)} frontal faces of {len(yaws)} in {len(clips)} clips")
    print("TEMPLATE_DEPTH = " + np.array2string(depth.astype(np.float32), precision=4,
                                                separator=", ", max_line_width=96))
    print(f"median absolute deviation over faces: {np.median(spread):.4f} (template width 1)")
    print("nose tip (point 30) depth:", round(float(depth[30 - 17]), 4),
          "| template x span:", round(float(np.ptp(TEMPLATE[:, 0])), 3))
    # the check: yaw from the 68 points (this table runs with the depth align.py holds now)
    rows = []
    print("\n| mesh |yaw| | faces | yaw from 68 points: median abs error | sign agrees |")
    print("|---|---|---|---|")
    for lo, hi in BINS:
        inside = [(y, estimate_yaw(lm)) for y, lm in yaws if lo <= abs(y) < hi]
        if not inside:
            continue
        err = float(np.median([abs(a - b) for a, b in inside]))
        sign = float(np.mean([np.sign(a) == np.sign(b) for a, b in inside if abs(a) >= 5] or [1]))
        rows.append({"bin": [lo, hi], "faces": len(inside), "median_abs_error": err,
                     "sign_agrees": sign})
        print(f"| {lo}-{hi} | {len(inside)} | {err:.1f} | {sign:.2f} |")
    print(f"\nmachine: {machine()}")
    write_json(args.json, {"machine": machine(), "frontal_faces": len(depths), "faces": len(yaws),
                           "clips": len(clips), "template_depth": depth.tolist(),
                           "spread": spread.tolist(), "yaw_check": rows})


if __name__ == "__main__":
    main()
