"""The engines side by side: ``detect scan`` and ``forge dataset`` in one process and on a local
Ray with 1 and 2 CPUs, on this machine, in one run.

    python bench/scale.py [--data ../shared/data] [--clips 40] [--seconds 3] [--videos 8] \
        [--forge-frames 50] [--work DIR] [--json out.json]

Scan: ``--clips`` short clips cut from the sample data's real videos (the first ``--seconds`` of
each of that many files of ``real_videos`` and ``real_videos_extra``, at their own size),
scanned by ``detect scan DIR --results T.parquet --json`` (the shipped detector, fast rules) as a
user runs it: one command per engine, start-up included. Forge: ``forge dataset`` over
``--videos`` of those clips x 2 configurations (fwa-sim at two render sizes; a real counterpart
each), ``--forge-frames`` frames per output.

Engines: the single process; a local Ray on this machine's cores with 1 and with 2 workers (for
the scan its scoring actors, each a detector on one thread; for the forge its cores, one task
per output on each).

Per engine: wall seconds, clips (outputs) per second, video frames per second, the ratio to the
single process, and where the time goes: the seconds each stage took summed over the inputs
(decode, faces, ROIs, network, labels, hash), against the wall seconds times the CPUs the engine
had; the rest is start-up and Ray's overhead (scheduling, moving frames' crops between
processes, idle cores). Ray's start and stop on their own are timed apart, and its fixed cost
per command (one clip on Ray against one clip in one process).

Projection (arithmetic, not a measurement): clips per hour on 8 and 64 GPU workers, each a GPU
with ``--cores-per-gpu`` CPU cores beside it. A clip costs the CPU stages measured here (every
stage but the network, single process, per clip) plus Ray's measured overhead per clip, spread
over the worker's cores; and the network measured here on one core divided by
``--gpu-speedup`` (an assumption: no GPU here to measure). A worker's rate is set by the slower
of the two; workers add up linearly (assumed: storage and the driver keep up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

# scan: Ray's workers are its scoring actors (each a detector, one thread on the CPU); the gather
# tasks take the local Ray's cores (all of them). forge: one CPU task per output; its workers are
# the local Ray's cores.
SCAN_ENGINES = (("single", 1, []), ("ray, 1 worker", 2, ["--engine", "ray", "--workers", "1"]),
                ("ray, 2 workers", 2, ["--engine", "ray", "--workers", "2"]))
FORGE_ENGINES = (("single", 1, []), ("ray, 1 worker", 1, ["--engine", "ray", "--cpus", "1"]),
                 ("ray, 2 workers", 2, ["--engine", "ray", "--cpus", "2"]))


def make_clips(data: Path, out: Path, count: int, seconds: float) -> list[Path]:
    """The first ``seconds`` of ``count`` real videos, spread over the sample data's folders."""
    from swapscope.media.images import collect_media, is_image
    from swapscope.media.video import VideoWriter, probe, read_frames

    sources = [p for p in collect_media([data / "real_videos", data / "real_videos_extra"])
               if not is_image(p)]
    step = max(1, len(sources) // count)
    clips = []
    for source in sources[::step][:count]:
        clip = out / f"{len(clips):02d}_{source.parent.name}.mp4"
        if not clip.exists():
            info = probe(source)
            with VideoWriter(clip, info.width, info.height, info.fps) as writer:
                for frame in read_frames(source, limit=max(1, round(seconds * info.fps))):
                    writer.write(frame.image)
        clips.append(clip)
    return clips


def run(command: list[str]) -> tuple[float, dict]:
    """(wall seconds, the JSON it printed) of one command; exit 0 or 2 (an input it could not
    score) are both finished runs."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 2) or not done.stdout.strip():
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout)


def fixed_cost(clip: Path, work: Path) -> float:
    """Ray's fixed cost for one command: a local Ray (2 CPUs) scanning one clip, less the
    single process scanning it (each start-up included): Ray's start, its workers' imports and
    the actor's detector, its stop."""
    one = work / "one"
    one.mkdir(exist_ok=True)
    if not (one / clip.name).exists():
        os.link(clip, one / clip.name)
    walls = []
    for _, _, options in (SCAN_ENGINES[0], SCAN_ENGINES[2]):
        walls.append(run([sys.executable, "-m", "detect", "scan", str(one), *options,
                          "--device", "cpu", "--json"])[0])
    return round(walls[1] - walls[0], 2)


def scan_rows(clips: list[Path], folder: Path, work: Path) -> list[dict]:
    """One row per engine; "cpus" is the cores it could use (the single process's network
    runs on both cores' threads, its decoding on one)."""
    from swapscope.media.video import probe

    frames = sum(probe(c).frame_count for c in clips)
    rows = []
    for name, cpus, options in SCAN_ENGINES:
        table = work / f"scan-{name.replace(' ', '').replace(',', '-')}.parquet"
        table.unlink(missing_ok=True)
        wall, out = run([sys.executable, "-m", "detect", "scan", str(folder), "--results",
                         str(table), *options, "--device", "cpu", "--json"])
        names = sorted({s for i in out["inputs"] for s in i["timings"]} - {"total"})
        stages = {s: round(sum(i["timings"].get(s, 0.0) for i in out["inputs"]), 2)
                  for s in names}
        rows.append({"engine": name, "cpus": cpus, "wall_s": round(wall, 2),
                     "clips": len(out["inputs"]), "clips_per_s": round(len(clips) / wall, 3),
                     "video_frames_per_s": round(frames / wall, 1), "stages_s": stages,
                     "in_stages_s": round(sum(stages.values()), 2),
                     "outside_stages_cpu_s": round(wall * cpus - sum(stages.values()), 2),
                     "scores": {Path(i["path"]).name: i["score"] for i in out["inputs"]}})
    base = rows[0]
    for row in rows:
        row["ratio_to_single"] = round(base["wall_s"] / row["wall_s"], 3)
        row["max_score_difference"] = max(
            (abs(row["scores"][k] - v) for k, v in base["scores"].items()
             if v is not None and row["scores"].get(k) is not None), default=0.0)
    return rows


def forge_rows(clips: list[Path], work: Path, frames: int) -> list[dict]:
    videos = work / "forge_videos"
    for clip in clips:  # a folder per video: its identity for the splits
        (videos / clip.stem).mkdir(parents=True, exist_ok=True)
        target = videos / clip.stem / clip.name
        if not target.exists():
            os.link(clip, target)
    rows = []
    for name, cpus, options in FORGE_ENGINES:
        out = work / f"set-{name.replace(' ', '').replace(',', '-')}"
        config = work / f"{out.name}.toml"
        config.write_text(f'out = "{out}"\nvideos = ["{videos}"]\nmax_frames = {frames}\n'
                          '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [64, 112]\n')
        subprocess.run(["rm", "-rf", str(out)], check=True)
        wall, summary = run([sys.executable, "-m", "forge", "dataset", str(config), *options,
                             "--device", "cpu", "--json"])
        outputs = summary["made"]
        rows.append({"engine": name, "cpus": cpus, "wall_s": round(wall, 2), "outputs": outputs,
                     "failed": len(summary["failed"]),
                     "outputs_per_s": round(outputs / wall, 3),
                     "video_frames_per_s": round(outputs * frames / wall, 1)})
    for row in rows:
        row["ratio_to_single"] = round(rows[0]["wall_s"] / row["wall_s"], 3)
    return rows


def ray_start_stop(cpus: int) -> float:
    code = ("import time; t = time.perf_counter()\n"
            "from swapscope.ray_engine import Engine, ray_session\n"
            f"with ray_session(Engine('ray', cpus={cpus})): pass\n"
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return round(float(done.stdout.strip().splitlines()[-1]), 2)


def projection(results: dict, cores: int, speedup: float) -> dict:
    """Clips per hour on 8 and 64 GPU workers, from the measured per-clip stage costs: the CPU
    stages and the network on one core as Ray's one-worker run measured them (one thread each),
    and Ray's cost per clip from its two-worker run (its CPU-seconds outside the stages, less
    its fixed cost per command and the single process's own start-up: an upper bound, as it
    counts idle cores too)."""
    single, one, two = results["scan"]
    clips = one["clips"]
    network = one["stages_s"].get("classify", 0.0) / clips
    cpu = (one["in_stages_s"] - one["stages_s"].get("classify", 0.0)) / clips
    overhead = max(0.0, (two["outside_stages_cpu_s"] - results["ray_fixed_s"] * two["cpus"]
                         - single["outside_stages_cpu_s"] * two["cpus"]) / clips)
    per_worker_s = max((cpu + overhead) / cores, network / speedup)
    return {
        "assumptions": {"cores_per_gpu": cores, "gpu_speedup_over_one_core": speedup,
                        "clip_seconds": results["seconds_per_clip"],
                        "mean_pixels": results["mean_pixels"], "scaling": "linear"},
        "cpu_stages_s_per_clip": round(cpu, 3), "network_s_per_clip_one_core": round(network, 3),
        "ray_overhead_cpu_s_per_clip_at_most": round(overhead, 3),
        "ray_fixed_s_per_command": results["ray_fixed_s"],
        "bound_by": "CPU stages" if (cpu + overhead) / cores >= network / speedup else "GPU",
        "clips_per_hour": {str(n): round(n * 3600 / per_worker_s) for n in (8, 64)},
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--forge-frames", type=int, default=50)
    parser.add_argument("--work", help="folder for the clips and outputs (default: a temp one)")
    parser.add_argument("--cores-per-gpu", type=int, default=8,
                        help="projection: CPU cores beside each GPU worker")
    parser.add_argument("--gpu-speedup", type=float, default=20.0,
                        help="projection: the network on a GPU against one CPU core (assumed)")
    args = parser.parse_args()
    data = shared_data(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        folder = work / "clips"
        folder.mkdir(parents=True, exist_ok=True)
        clips = make_clips(data, folder, args.clips, args.seconds)
        from swapscope.media.video import probe

        infos = [probe(c) for c in clips]
        results = {
            "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "clips": len(clips), "seconds_per_clip": args.seconds,
            "video_frames": sum(i.frame_count for i in infos),
            "mean_pixels": round(sum(i.width * i.height for i in infos) / len(infos)),
            "ray_start_stop_s": ray_start_stop(2),
            "ray_fixed_s": fixed_cost(clips[0], work),
            "scan": scan_rows(clips, folder, work),
            "forge": forge_rows(clips[:args.videos], work, args.forge_frames),
        }
    results["projection"] = projection(results, args.cores_per_gpu, args.gpu_speedup)
    for row in results["scan"]:
        row.pop("scores")
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
