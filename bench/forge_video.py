"""forge video throughput at 720p: frames per second, with the time split by stage.

Runs ``forge video`` on the first N frames of the 720x1280 sample clip, with the model method
(a forge train checkpoint; without --model an untrained swap-ae-lite of 64 px, the architecture
of the fixed swap run, whose cost is the same) and with fwa-sim. Stages: decode (both passes),
detect / landmarks / embed (the tracking pass), align, render (the network), blend (mask, colour,
warp back), labels, watermark, encode. Each method runs side by side with the watermark before
(the legacy frame mark: dwtDctSvd as array code over every whole frame) and now (the face mark:
landmarks found again on each swapped face, then the mark in its aligned crop), both on the
thread that marks one batch while the main thread encodes the last and swaps the next. Each
configuration runs in a fresh process.

    python bench/forge_video.py [--data ../shared/data] [--frames 150] [--model MODEL] \
        [--repeats 3] [--json out.json]

Each configuration runs ``--repeats`` times, round robin, and the run of median frames/s is
reported (single runs on this machine vary by up to 20%).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

CLIP = "real_videos/lp_d13_man_glasses_office/d13.mp4"  # 720x1280, the only 720p clip
LEGACY, FACE = "legacy frame mark (before)", "face mark (now)"


def _in_child(function, *args):
    """Run one configuration in a fresh process, so the legacy watermark patched into one run
    never leaks into the next."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def untrained_model(folder: Path, arch: str = "swap-ae-lite", size: int = 64) -> Path:
    from safetensors.torch import save_file

    from forge.models import SWAP_MODEL_KIND, create_model

    model = create_model(arch, size)
    folder.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "weights.safetensors"),
    )
    (folder / "config.json").write_text(json.dumps({
        "kind": SWAP_MODEL_KIND, "arch": arch, "size": size, "padding": 0.125, "step": 0,
        "identities": {"a": "a", "b": "b"}, "note": "untrained, for timing only"}))
    return folder


def legacy_watermark() -> None:
    """Mark whole frames with the legacy frame mark on the watermark's thread, as swapscope did
    before the face mark (the baseline)."""
    from swapscope.labels import watermark

    def submit(self, images, boxes):
        if self._thread is None:
            from concurrent.futures import ThreadPoolExecutor

            self._thread = ThreadPoolExecutor(1, thread_name_prefix="watermark")
        bits = watermark.legacy_bits(watermark.payload("5a3c" * 8))
        batch = self._thread.submit(watermark.embed_frames, images, bits)
        return [watermark._Part(batch, i) for i in range(len(images))]

    watermark.Watermarker.submit = submit


def run(source: Path, out: Path, config, device: str, legacy: bool) -> dict:
    from forge.swap_video import forge_video

    if legacy:
        legacy_watermark()
    start = time.perf_counter()
    result = forge_video(source, out, config, device)
    wall = time.perf_counter() - start
    return {"frames": result.frames, "swapped": result.swapped_frames, "wall_s": wall,
            "fps": result.frames / wall, "stages_s": result.timings}


def main() -> None:
    parser = bench_parser(__doc__, frames=150)
    parser.add_argument(
        "--model", help="forge train checkpoint (default: an untrained swap-ae-lite, 64 px)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each configuration (the median is reported)")
    args = parser.parse_args()
    from forge.swap_video import VideoConfig
    from swapscope.device import resolve_device
    from swapscope.media.video import probe

    device = resolve_device(args.device)
    source = shared_data(args.data) / CLIP
    info = probe(source)
    results = {
        "machine": machine(), "clip": CLIP, "size": f"{info.width}x{info.height}",
        "frames": args.frames, "device": device, "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(untrained_model(Path(tmp) / "model"))
        results["model"] = args.model or "untrained swap-ae-lite 64 px"
        configs = {}
        for method, knobs in (("model", {"model": model}), ("fwa-sim", {})):
            for code in (LEGACY, FACE):
                configs[f"{method}, {code}"] = (VideoConfig(**knobs, max_frames=args.frames),
                                                code == LEGACY)
        repeats: dict[str, list] = {name: [] for name in configs}
        for round_ in range(args.repeats):  # round robin: drift of the machine hits all alike
            for i, (name, (config, legacy)) in enumerate(configs.items()):
                out = Path(tmp) / f"{round_}-{i}" / "out.mp4"
                repeats[name].append(_in_child(run, source, out, config, device, legacy))
        for name, runs in repeats.items():  # the run of median frames/s
            results["runs"][name] = sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]
            results["runs"][name]["fps_all"] = [round(r["fps"], 2) for r in runs]
    stages = sorted({k for r in results["runs"].values() for k in r["stages_s"]})
    print(
        f"clip: {CLIP} ({results['size']}), first {args.frames} frames; model: {results['model']}\n"
    )
    print("| method | frames/s (median) | all runs | wall s | "
          + " | ".join(f"{s} s" for s in stages) + " |")
    print("|---|---|---|---|" + "---|" * len(stages))
    for name, r in results["runs"].items():
        cells = " | ".join(f"{r['stages_s'].get(s, 0):.2f}" for s in stages)
        every = ", ".join(f"{f:.1f}" for f in r["fps_all"])
        print(f"| {name} | {r['fps']:.2f} | {every} | {r['wall_s']:.1f} | {cells} |")
    runs = results["runs"]
    for method in ("model", "fwa-sim"):
        before, now = runs[f"{method}, {LEGACY}"], runs[f"{method}, {FACE}"]
        print(f"{method}: the face mark runs at {now['fps'] / before['fps']:.2f}x the frames/s of "
              "the legacy frame mark")
    print(f"\ndevice {device}; machine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
