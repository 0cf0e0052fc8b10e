"""Head-pose error of the swap per yaw bin, before and after pose-aware alignment and the mesh
mask (issue 26): does a turned head come out of ``forge video`` turned as it went in?

1. ``forge extract --mesh`` of the sample clips with head turns (every 2nd frame of the first
   ``--frames``) into one face set, A, and of another person into B (reused if present);
2. ``forge train`` twice, same data, steps and seed: *before* ``--align frontal --train-mask
   hull`` (the flat template and the landmark hull, as every model until now), *after* the
   settings ``--align pose --train-mask auto`` (the template turned to each face's yaw, the
   learned mask taught the visible part of the mesh);
3. ``forge video`` of each clip with each model (A's face becomes B): before with the learned
   mask, after with ``--mask mesh``;
4. in every ``--every``-th frame, MediaPipe's mesh on the input face and on the output face (the
   same box), head pose of each; the error is the absolute difference per angle, binned by the
   input's |yaw| (< 15, 15-30, 30-60 degrees).

Only clips the sample-data card allows as swap targets and sources take part: the `lp_*`
performers, `vr_*` and `tpsmm_*` of `real_videos` (never `hdtf_*`, never `real_videos_extra`).
Before the swap, a survey of every allowed clip (every 6th frame, the largest face's mesh) says
how far their heads turn: the bins no allowed clip reaches cannot be measured on the sample data.

Outputs stay in --out (default bench/out/pose_swap; not committed: they show swaps of the sample
data's people). Only the tables, which show no face, are a report.

    python bench/pose_swap.py [--data ../shared/data] [--frames 360] [--steps 1500] [--json F]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

# the sample data's card: only these clips may be swapped (targets) or swapped in (sources)
ALLOWED = ("real_videos/lp_", "real_videos/vr_", "real_videos/tpsmm_")
# the allowed clips whose heads turn most (the survey: 15-30 degrees, none beyond 25), and the
# person they become (a performer whose head stays frontal)
TURNING = ["real_videos/lp_d3_woman_hoops", "real_videos/lp_d12_man_glasses_curly",
           "real_videos/vr_face2_man_map", "real_videos/vr_face1_man_suit"]
OTHER = "real_videos/lp_d9_man_glasses"
BINS = ((0, 15), (15, 30), (30, 60))
SETTINGS = {"before": (["--align", "frontal", "--train-mask", "hull"], ["--mask", "learned"]),
            "after": (["--align", "pose", "--train-mask", "auto"], ["--mask", "mesh"])}


def forge(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "forge", *args, "--json"], cwd=REPO, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def first_video(folder: Path) -> Path:
    return sorted(folder.glob("*.mp4"))[0]


def clip_of(video: Path, frames: int, out: Path) -> Path:
    """The first ``frames`` frames of ``video`` (so extraction, swap and measure see the same)."""
    from swapscope.media.sample import write_clip
    from swapscope.media.video import read_frames

    if not out.is_file():
        write_clip(out, [f.image for f in read_frames(video, limit=frames)], fps=25)
    return out


def poses(original: Path, swapped: Path, every: int, mesher, backend) -> list[tuple]:
    """(input yaw, pitch, roll, output yaw, pitch, roll) for each sampled frame whose largest
    face has a mesh in both."""
    from swapscope.faces.mesh import head_pose
    from swapscope.faces.records import largest_face
    from swapscope.media.video import read_frames

    rows = []
    for a, b in zip(read_frames(original, every=every), read_frames(swapped, every=every)):
        faces = backend.faces(a.image, a.index)
        if not faces:
            continue
        face = largest_face(faces)
        before, after = mesher.points(a.image, face.box), mesher.points(b.image, face.box)
        if before is not None and after is not None:
            rows.append((*head_pose(before).to_json(), *head_pose(after).to_json()))
    return rows


def survey(data: Path, mesher, backend) -> list[dict]:
    """How far the heads of every allowed clip turn: mesh |yaw| of the largest face in every 6th
    frame, counted per bin."""
    from swapscope.faces.mesh import head_pose
    from swapscope.faces.records import largest_face
    from swapscope.media.video import read_frames

    out = []
    for folder in sorted((data / "real_videos").iterdir()):
        name = f"real_videos/{folder.name}"
        if not name.startswith(ALLOWED):
            continue
        yaws = []
        for frame in read_frames(first_video(folder), every=6):
            faces = backend.faces(frame.image, frame.index)
            points = mesher.points(frame.image, largest_face(faces).box) if faces else None
            if points is not None:
                yaws.append(abs(head_pose(points).yaw))
        out.append({"clip": folder.name, "faces": len(yaws), "max_yaw": max(yaws, default=None),
                    **{f"{lo}-{hi}": sum(lo <= y < hi for y in yaws) for lo, hi in BINS},
                    "60+": sum(y >= 60 for y in yaws)})
    return out


def table(rows: dict[str, list[tuple]]) -> list[dict]:
    out = []
    for lo, hi in BINS:
        entry = {"bin": f"{lo}-{hi}"}
        for name, got in rows.items():
            inside = np.array([r for r in got if lo <= abs(r[0]) < hi]).reshape(-1, 6)
            err = np.abs(inside[:, :3] - inside[:, 3:])
            entry[name] = {"frames": len(inside),
                           **{k: float(np.mean(err[:, i])) if len(inside) else None
                              for i, k in enumerate(("yaw", "pitch", "roll"))}}
        out.append(entry)
    return out


def main() -> None:
    p = bench_parser(__doc__, frames=360)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--every", type=int, default=3, help="measure every N-th frame")
    p.add_argument("--out", type=Path, default=REPO / "bench/out/pose_swap")
    args = p.parse_args()
    data, work = shared_data(args.data), args.out.resolve()
    (work / "clips").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not all(c.startswith(ALLOWED) for c in [*TURNING, OTHER]):
        raise SystemExit("the sample data's card allows swaps of lp_*, vr_* and tpsmm_* only")
    from swapscope.faces.backends import create_backend
    from swapscope.faces.mesh import Mesher

    mesher, backend = Mesher(), create_backend("yunet")
    turns = survey(data, mesher, backend)
    print("how far the heads of the allowed clips turn (mesh |yaw|, every 6th frame):\n")
    print("| clip | faces | " + " | ".join(f"{lo}-{hi}" for lo, hi in BINS) + " | 60+ | max |")
    print("|---|---|" + "---|" * (len(BINS) + 2))
    for row in turns:
        print(f"| {row['clip']} | {row['faces']} | "
              + " | ".join(str(row[f"{lo}-{hi}"]) for lo, hi in BINS)
              + f" | {row['60+']} | {row['max_yaw']:.1f} |")
    print()
    clips = [clip_of(first_video(data / c), args.frames, work / "clips" / f"{Path(c).name}.mp4")
             for c in TURNING]
    other = clip_of(first_video(data / OTHER), 300, work / "clips" / "other.mp4")
    for name, sources in (("A", clips), ("B", [other])):
        if not (work / f"faces_{name}" / "faces.jsonl").is_file():
            forge("extract", *map(str, sources), "--out", str(work / f"faces_{name}"), "--mesh",
                  "--label", name, "--every", "2")
    rows, timings = {}, {}
    for name, (train_args, video_args) in SETTINGS.items():
        model = work / f"model_{name}"
        t = time.perf_counter()
        forge("train", str(work / "faces_A"), str(work / "faces_B"), "--out", str(model),
              "--arch", "swap-ae-lite", "--steps", str(args.steps), "--no-gan", "--save-every",
              str(args.steps), "--preview-every", str(args.steps), *train_args)
        timings[f"train {name}"] = round(time.perf_counter() - t, 1)
        rows[name] = []
        for clip in clips:
            fake = work / name / clip.name
            if not fake.is_file():
                forge("video", str(clip), "--out", str(fake), "--model", str(model), "--to", "b",
                      *video_args)
            rows[name] += poses(clip, fake, args.every, mesher, backend)
    result = table(rows)
    print(f"head-pose error of the swap, mean absolute degrees (input yaw bin; frames), "
          f"{len(clips)} clips x {args.frames} frames, {args.steps} steps each:\n")
    print("| input |yaw| | frames with a face mesh out, before / after | yaw before | yaw after "
          "| pitch before | pitch after | roll before | roll after |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in result:
        b, a = entry["before"], entry["after"]
        if not b["frames"]:
            print(f"| {entry['bin']} | 0 / 0 | - | - | - | - | - | - |")
            continue
        after = [f"{a[k]:.1f}" if a["frames"] else "-" for k in ("yaw", "pitch", "roll")]
        print(f"| {entry['bin']} | {b['frames']} / {a['frames']} | {b['yaw']:.1f} | {after[0]} | "
              f"{b['pitch']:.1f} | {after[1]} | {b['roll']:.1f} | {after[2]} |")
    print(f"\ntimes (s): {timings}; all {time.perf_counter() - started:.0f}")
    print(f"machine: {machine()}")
    write_json(args.json, {"machine": machine(), "steps": args.steps, "frames": args.frames,
                           "clips": [c.name for c in clips], "survey": turns, "bins": result,
                           "timings": timings})


if __name__ == "__main__":
    main()
