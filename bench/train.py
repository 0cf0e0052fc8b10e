"""forge train throughput: iterations/s and peak memory, per model, size and GAN on/off.

Each configuration runs in its own process (so its peak memory is its own) on face sets of two
people of the sample data, batch 16: warm-up steps, then timed steps (the time between the
progress callbacks of consecutive steps: data sampling, generator and discriminator updates;
checkpoint writing excluded). Peak memory is the process's peak resident set (CPU) or
``torch.cuda.max_memory_allocated`` (GPU).

    python bench/train.py [--data ../shared/data] [--steps 6] [--json out.json]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

PEOPLE = ("real_videos/lp_d6_woman_hairbun", "real_videos/lp_d9_man_glasses")
CONFIGS = [
    (arch, size, gan)
    for arch in ("swap-ae-lite", "swap-ae")
    for size in (64, 128)
    for gan in (False, True)
]
WARMUP = 2


class _StepClock:
    """A progress sink that records when each step finished."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def start(self, *args, **kwargs) -> None:
        self.times = [time.perf_counter()]

    def advance(self, n: int = 1, **fields) -> None:
        self.times.append(time.perf_counter())

    def stop(self) -> None:
        pass


def one(facesets: list[str], arch: str, size: int, gan: bool, steps: int, device: str) -> dict:
    """Run in a child process: train ``steps`` steps and report the timing and peak memory."""
    import resource

    import numpy as np
    import torch

    from forge.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            facesets=tuple(facesets), out=str(Path(tmp) / "m"), arch=arch, size=size, gan=gan,
            gan_warmup=0, batch_size=16, steps=WARMUP + steps, save_every=10**6,
            preview_every=10**6, stride=4,
        )
        clock = _StepClock()
        train(config, device, progress=clock)
    per_step = np.diff(clock.times)[WARMUP:]
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "arch": arch, "size": size, "gan": gan, "steps": len(per_step),
        "it_per_s": float(1 / per_step.mean()), "s_per_it": float(per_step.mean()),
        "peak_mb": peak_mb,
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--one", help="internal: run one configuration (JSON)")
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(one(**spec)))
        return
    from forge.extract import ExtractConfig, extract
    from swapscope.device import resolve_device

    device = resolve_device(args.device)
    root = shared_data(args.data)
    results = {"machine": machine(), "batch_size": 16, "timed_steps": args.steps, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        facesets = []
        for person in PEOPLE:
            out = Path(tmp) / Path(person).name
            extract([root / person], out, ExtractConfig(max_frames=240, crop_size=256))
            facesets.append(str(out))
        for arch, size, gan in CONFIGS:
            spec = {
                "facesets": facesets, "arch": arch, "size": size, "gan": gan, "steps": args.steps,
                "device": device,
            }
            child = subprocess.run(
                [sys.executable, __file__, "--one", json.dumps(spec)], check=True,
                capture_output=True, text=True,
            )
            run = json.loads(child.stdout.strip().splitlines()[-1])
            results["runs"].append(run)
            print(
                f"{arch} {size}px gan={gan}: {run['it_per_s']:.3f} it/s, peak "
                f"{run['peak_mb']:.0f} MB",
                file=sys.stderr,
            )
    print("| model | size | GAN terms | it/s | s/it | peak memory (MB) |")
    print("|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['arch']} | {r['size']} | {'on' if r['gan'] else 'off'} | {r['it_per_s']:.3f} "
              f"| {r['s_per_it']:.2f} | {r['peak_mb']:.0f} |")
    print(f"\nbatch 16, {args.steps} timed steps after {WARMUP} warm-up; device {device}")
    print(f"machine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
