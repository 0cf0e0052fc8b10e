"""Short runs that set forge train's defaults: learning rate, and the adversarial weight and
learning rate of the CycleGAN part after a reconstruction warm-up.

Each setting is one ``forge train`` command (printed and recorded) on the lp_d6 / lp_d9 face sets
of bench/swap_run.py, 600 steps of swap-ae-lite at 64 px, then bench/swap_run.py's identity
check and a high-frequency measure of the swapped faces (mean absolute Laplacian, as a multiple
of the real target faces': a checkerboard shows as a ratio above 1; a blurry swap is below 1).
A setting whose folder already holds a finished run is measured, not retrained.

    python bench/gan_settings.py [--out bench/out/gan_settings] \
        [--facesets bench/out/swap_run/facesets]
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402
from swap_run import PEOPLE, identity_check  # noqa: E402

BASE = [
    "--arch", "swap-ae-lite", "--size", "64", "--batch-size", "16", "--steps", "600", "--device",
    "cpu",
]
SETTINGS = {  # name -> the options that differ
    "lr 5e-5, no GAN": ["--no-gan", "--lr", "5e-5"],
    "lr 2e-4, no GAN": ["--no-gan", "--lr", "2e-4"],
    "lr 2e-4, GAN after 400: adv 0.1, lr-d 5e-5": [
        "--gan-warmup", "400", "--lr", "2e-4", "--adv-weight", "0.1", "--lr-d", "5e-5",
    ],
    "lr 2e-4, GAN after 400: adv 0.02, lr-d 2e-4": [
        "--gan-warmup", "400", "--lr", "2e-4", "--adv-weight", "0.02", "--lr-d", "2e-4",
    ],
}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "gan_settings"))
    parser.add_argument("--facesets", default=str(REPO / "bench" / "out" / "swap_run" / "facesets"))
    args = parser.parse_args()
    from forge.models import load_swap_model
    from forge.train import FaceData

    facesets = [str(Path(args.facesets) / Path(PEOPLE[side]).name) for side in "ab"]
    results = {"machine": machine(), "settings": {}}
    for i, (name, options) in enumerate(SETTINGS.items()):
        folder = Path(args.out) / f"setting{i}"
        argv = ["forge", "train", *facesets, "--out", str(folder), *BASE, *options]
        print(shlex.join(argv), file=sys.stderr)
        if (
            not (folder / "config.json").is_file()
            or json.loads((folder / "config.json").read_text())["step"] < 600
        ):
            subprocess.run([sys.executable, "-m", *argv], check=True, stdout=subprocess.DEVNULL)
        model, meta = load_swap_model(folder)
        data = {
            side: FaceData(facesets["ab".index(side)], meta["size"], meta["padding"])
            for side in "ab"
        }
        last = json.loads((folder / "history.json").read_text())[-1]
        results["settings"][name] = {
            "command": shlex.join(argv), "rec_a": last["rec_a"], "rec_b": last["rec_b"],
            "identity": identity_check(model, data, "cpu"),
        }
    print("| setting | reconstruction loss A / B at 600 | swaps closer to the target A->B / B->A "
          "| high frequency vs real A->B / B->A |")
    print("|---|---|---|---|")
    for name, r in results["settings"].items():
        ab, ba = r["identity"]["a->b"], r["identity"]["b->a"]
        print(
            f"| {name} | {r['rec_a']:.3f} / {r['rec_b']:.3f} | "
            f"{ab['swapped_closer_to_target']:.1%} / "
            f"{ba['swapped_closer_to_target']:.1%} | {ab['high_frequency_vs_real_target']:.2f} / "
            f"{ba['high_frequency_vs_real_target']:.2f} |"
        )
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
