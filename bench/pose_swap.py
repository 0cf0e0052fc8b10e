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
   input's |yaw| (< 15, 15-30, 30-60 degrees), over the frames the forge swapped (its labels
   name them) and where the output has a face mesh. Where the swap went: the share of the input's
   visible mesh its mask (from the output's labels) covers, and the share of the mask that lies
   off it (the mask reaches past the face by its feathering, so neither is 1 or 0 when right).

Only clips the sample-data card allows as swap targets and sources take part: the `lp_*`
performers, `vr_*` and `tpsmm_*` of `real_videos` (never `hdtf_*`, never `real_videos_extra`).
Before the swap, a survey of every allowed clip (every 6th frame, the largest face's mesh) says
how far their heads turn: the bins no allowed clip reaches cannot be measured on the sample data.

``--turn DEG`` measures turns no allowed clip makes: each clip's face is first turned further by
a yaw that sweeps between -DEG and +DEG and back every ``TURN_PERIOD`` frames
(``swapscope.faces.mesh.turned_face``: the mesh rotated in 3D, the picture following it), and
those rendered turns are the input of the steps above (face set A is extracted from them, as it
would be from footage of the person turning). The bins are still the mesh's |yaw| of the input
frame as rendered, which reads a rendered turn as about 0.7 of its angle. The person swapped in
(B) turns by the same sweep unless ``--source-turn`` says otherwise (``--source-turn 0``: B as
filmed, near frontal): a decoder renders only the poses its person showed it, so a swap into a
turned head needs footage of the source turning.

Outputs stay in --out (default bench/out/pose_swap; not committed: they show swaps of the sample
data's people). Only the tables, which show no face, are a report.

    python bench/pose_swap.py [--data ../shared/data] [--frames 360] [--steps 1500] [--turn 70]
                              [--source-turn DEG] [--json F]
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
TURN_PERIOD = 100  # frames of one sweep of the rendered turn (4 s at 25 fps)
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


def turned_clip(clip: Path, degrees: float, out: Path, mesher, backend) -> Path:
    """``clip`` with its largest face turned further, frame by frame, by a yaw that sweeps
    between -``degrees`` and +``degrees`` (frames without a mesh stay as they were)."""
    from swapscope.faces.mesh import turned_face
    from swapscope.faces.records import largest_face
    from swapscope.media.sample import write_clip
    from swapscope.media.video import read_frames

    if out.is_file():
        return out
    frames = []
    for frame in read_frames(clip):
        faces = backend.faces(frame.image, frame.index)
        points = mesher.points(frame.image, largest_face(faces).box) if faces else None
        yaw = degrees * np.sin(2 * np.pi * frame.index / TURN_PERIOD)
        frames.append(frame.image if points is None else turned_face(frame.image, points, yaw)[0])
    return write_clip(out, frames, fps=25)


def swap_masks(fake: Path) -> dict[int, list]:
    """frame index -> the swap's mask polygons, from the labels of the forge's output ``fake``."""
    from swapscope.formats.manifest import read_swap_frames, verified_outputs

    [(row, _)] = [(r, f) for r, f in verified_outputs(fake.parent) if f.name == fake.name]
    return {s.frame: [p for face in s.faces for p in face.mask]
            for s in read_swap_frames(fake.parent, row)}


def poses(original: Path, swapped: Path, every: int, mesher, backend) -> list[tuple]:
    """For each sampled frame whose largest input face has a mesh: (input yaw, pitch, roll,
    output yaw, pitch, roll (NaN where the output has no face mesh), swapped (0/1: the labels
    name the frame), coverage, spill): coverage is the share of the input's visible mesh the
    swap's mask covers, spill the share of the mask outside it (cheek edge, background)."""
    from swapscope.faces.mesh import head_pose, visible_mask
    from swapscope.faces.records import largest_face
    from swapscope.formats.manifest import fill_polygons
    from swapscope.media.video import read_frames

    masks, rows = swap_masks(swapped), []
    for a, b in zip(read_frames(original, every=every), read_frames(swapped, every=every)):
        faces = backend.faces(a.image, a.index)
        before = mesher.points(a.image, largest_face(faces).box) if faces else None
        if before is None:
            continue
        after = mesher.points(b.image, largest_face(faces).box)
        out = head_pose(after).to_json() if after is not None else [np.nan] * 3
        face_area = visible_mask(before, a.image.shape).astype(bool)
        swap = fill_polygons(masks.get(a.index, []), a.image.shape).astype(bool)
        coverage = (swap & face_area).sum() / max(face_area.sum(), 1)
        spill = (swap & ~face_area).sum() / max(swap.sum(), 1)
        rows.append((*head_pose(before).to_json(), *out, float(a.index in masks),
                     float(coverage), float(spill)))
    return rows


def allowed_clips(data: Path) -> list[Path]:
    return [first_video(folder) for folder in sorted((data / "real_videos").iterdir())
            if f"real_videos/{folder.name}".startswith(ALLOWED)]


def survey(clips: list[Path], mesher, backend) -> list[dict]:
    """How far the heads of the clips turn: mesh |yaw| of the largest face in every 6th frame,
    counted per bin."""
    from swapscope.faces.mesh import head_pose
    from swapscope.faces.records import largest_face
    from swapscope.media.video import read_frames

    out = []
    for clip in clips:
        yaws = []
        for frame in read_frames(clip, every=6):
            faces = backend.faces(frame.image, frame.index)
            points = mesher.points(frame.image, largest_face(faces).box) if faces else None
            if points is not None:
                yaws.append(abs(head_pose(points).yaw))
        name = clip.parent.name if clip.parent.name != "clips" else clip.stem
        out.append({"clip": name, "faces": len(yaws), "max_yaw": max(yaws, default=None),
                    **{f"{lo}-{hi}": sum(lo <= y < hi for y in yaws) for lo, hi in BINS},
                    "60+": sum(y >= 60 for y in yaws)})
    return out


def table(rows: dict[str, list[tuple]]) -> list[dict]:
    """Per input |yaw| bin and setting: input frames, how many the forge swapped, how many of
    those have a face mesh in the output, the pose error over those, and where the mask went
    (over the swapped frames)."""
    out = []
    for lo, hi in BINS:
        entry = {"bin": f"{lo}-{hi}"}
        for name, got in rows.items():
            inside = np.array([r for r in got if lo <= abs(r[0]) < hi]).reshape(-1, 9)
            swapped = inside[inside[:, 6] > 0]
            meshed = swapped[~np.isnan(swapped[:, 3])]
            err = np.abs(meshed[:, :3] - meshed[:, 3:6])
            entry[name] = {"frames": len(inside), "swapped": len(swapped), "meshed": len(meshed),
                           **{k: float(np.mean(err[:, i])) if len(meshed) else None
                              for i, k in enumerate(("yaw", "pitch", "roll"))},
                           **{k: float(np.mean(swapped[:, 7 + i])) if len(swapped) else None
                              for i, k in enumerate(("coverage", "spill"))}}
        out.append(entry)
    return out


def main() -> None:
    p = bench_parser(__doc__, frames=360)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--every", type=int, default=3, help="measure every N-th frame")
    p.add_argument("--turn", type=float, default=0.0,
                   help="turn the clips' faces further, sweeping between -DEG and +DEG")
    p.add_argument("--source-turn", type=float, default=None,
                   help="turn the face of the person swapped in (B) by this sweep (default: "
                        "--turn's)")
    p.add_argument("--out", type=Path, default=None,
                   help="work folder (default bench/out/pose_swap, pose_swap_turned with --turn, "
                        "pose_swap_turned_source0 with --source-turn 0)")
    args = p.parse_args()
    if args.source_turn is None:
        args.source_turn = args.turn
    if args.source_turn and not args.turn:
        p.error("--source-turn goes with --turn (the work folder of a plain run keeps B as filmed)")
    default = ("bench/out/pose_swap" if not args.turn else "bench/out/pose_swap_turned"
               if args.source_turn == args.turn else
               f"bench/out/pose_swap_turned_source{args.source_turn:g}")
    data, work = shared_data(args.data), (args.out or REPO / default).resolve()
    (work / "clips").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not all(c.startswith(ALLOWED) for c in [*TURNING, OTHER]):
        raise SystemExit("the sample data's card allows swaps of lp_*, vr_* and tpsmm_* only")
    from swapscope.faces.backends import create_backend
    from swapscope.faces.mesh import Mesher

    mesher, backend = Mesher(), create_backend("yunet")
    clips = [clip_of(first_video(data / c), args.frames, work / "clips" / f"{Path(c).name}.mp4")
             for c in TURNING]
    if args.turn:
        clips = [turned_clip(c, args.turn, c.with_name(f"{c.stem}_turned.mp4"), mesher, backend)
                 for c in clips]
    turns = survey(clips if args.turn else allowed_clips(data), mesher, backend)
    print(f"how far the heads of the {'rendered' if args.turn else 'allowed'} clips turn "
          "(mesh |yaw|, every 6th frame):\n")
    print("| clip | faces | " + " | ".join(f"{lo}-{hi}" for lo, hi in BINS) + " | 60+ | max |")
    print("|---|---|" + "---|" * (len(BINS) + 2))
    for row in turns:
        print(f"| {row['clip']} | {row['faces']} | "
              + " | ".join(str(row[f"{lo}-{hi}"]) for lo, hi in BINS)
              + f" | {row['60+']} | {row['max_yaw']:.1f} |")
    print()
    other = clip_of(first_video(data / OTHER), 300, work / "clips" / "other.mp4")
    if args.source_turn:
        other = turned_clip(other, args.source_turn, other.with_name("other_turned.mp4"), mesher,
                            backend)
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
          f"{len(clips)} clips x {args.frames} frames, {args.steps} steps each"
          f"{f', turned by up to {args.turn:g} degrees' if args.turn else ''}"
          f"{f', B by {args.source_turn:g}' if args.turn else ''}:\n")
    print("| input \\|yaw\\| | frames | swapped, before / after | with a face mesh out | "
          "yaw before | after | pitch before | after | roll before | after | face covered "
          "before | after | mask off the face before | after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for entry in result:
        b, a = entry["before"], entry["after"]
        cells = [str(b["frames"]), f"{b['swapped']} / {a['swapped']}",
                 f"{b['meshed']} / {a['meshed']}"]
        for key, form in (("yaw", ".1f"), ("pitch", ".1f"), ("roll", ".1f"), ("coverage", ".2f"),
                          ("spill", ".2f")):
            cells += [format(x[key], form) if x[key] is not None else "-" for x in (b, a)]
        print(f"| {entry['bin']} | " + " | ".join(cells) + " |")
    print(f"\ntimes (s): {timings}; all {time.perf_counter() - started:.0f}")
    print(f"machine: {machine()}")
    write_json(args.json, {"machine": machine(), "steps": args.steps, "frames": args.frames,
                           "turn": args.turn, "source_turn": args.source_turn,
                           "turn_period": TURN_PERIOD,
                           "clips": [c.name for c in clips], "survey": turns, "bins": result,
                           "timings": timings})


if __name__ == "__main__":
    main()
