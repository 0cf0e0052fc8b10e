"""Ablation: which negatives (FWA, SBI, mix) and whether the degradations help, one backbone.

    python bench/ablation.py FACESET ... --work DIR [--cache DIR] [--epochs 2] [--steps 45] \
        [--fakes MANIFEST ...] [--input-size N] [--only NAME ...] [--json out.json]
    python bench/ablation.py --table --json out.json

Six real training runs of ``detect train`` (efficientnet_lite0, AdamW 1e-4, batch 32, stride 3,
the same identity split and seed), one per artifact x degradations on/off, and with ``--fakes``
a seventh: SBI with degradations plus the forge's own model swaps of the sample data's lp_*
performers as fixed fakes (``bench/forged_fakes.sh`` makes them; the validation people stay the
same, ``split_by_identity``), each for the same short budget; each run's best epoch is then
measured the same way:

- synthetic AUC per artifact on the validation identities' faces (both artifacts, whatever the
  run trained on), clean and degraded, the same fixed examples for every run;
- ``dev_eval`` and ``dev_fakes`` input-level AUC per source and pooled (``detect scan`` fast rules).

Runs resume (``detect train`` does); runs already measured in ``--json`` at the same budget are
kept, not run again; ``--table`` prints the table of those measured so far. The budget
is far below a full run's (``bench/detector_recipe.sh``): the table compares recipes at equal
cost, it does not measure what a recipe reaches.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402
from dev_eval import DEV_EVAL_SOURCES, auc_rows, labelled_inputs, scan_inputs  # noqa: E402
from synthetic import face_items, synthetic_aucs  # noqa: E402

from eval.report import slug  # noqa: E402

# the six recipes, then one with the forge's own model swaps as fixed fakes (--fakes)
RUNS = [(artifact, degrade, False) for artifact in ("fwa", "sbi", "mix")
        for degrade in (True, False)] + [("sbi", True, True)]


FAKES_NAME = "forge model swaps"


def run_name(artifact: str, degrade: bool, forged: bool, fakes: str = FAKES_NAME,
             input_size: int = 0) -> str:
    return (f"{artifact}{' + ' + fakes if forged else ''}, "
            f"degradations {'on' if degrade else 'off'}"
            f"{f', {input_size} px ROI' if input_size else ''}")


def train_command(facesets: list[str], out: Path, cache: Path, artifact: str, degrade: bool,
                  epochs: int, steps: int, fakes: list[str] = (), input_size: int = 0
                  ) -> list[str]:
    fake_args = [a for manifest in fakes for a in ("--fakes", manifest)]
    size_args = ["--input-size", str(input_size)] if input_size else []
    return [sys.executable, "-m", "detect", "train", *facesets, *fake_args, *size_args,
            "--artifact", artifact,
            "--degrade" if degrade else "--no-degrade", "--epochs", str(epochs),
            "--steps-per-epoch", str(steps), "--batch-size", "32", "--stride", "3",
            "--optimizer", "adamw", "--lr", "0.0001", "--lr-decay", "0.95",
            "--val-fraction", "0.2", "--workers", "1", "--cache", str(cache), "--out", str(out),
            "--device", "cpu", "--json"]


def validation_items(facesets: list[str], cache: Path) -> list:
    """The faces of the runs' validation identities (the same split for every run)."""
    from detect.data import split_by_identity

    _, val_items = split_by_identity(face_items(facesets, cache), 0.2, 0)
    return val_items


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("facesets", nargs="*", help="face sets of real faces (forge extract)")
    parser.add_argument("--work", help="folder for the runs and the crop cache")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=45, help="steps per epoch (batch 32)")
    parser.add_argument("--cache", help="the faces' crop cache, shared with other runs on the "
                        "same face sets at stride 3 (default WORK/cache)")
    parser.add_argument("--fakes", action="append", default=[],
                        help="forge manifests of model swaps (bench/forged_fakes.sh): adds the run "
                        "'sbi + forge model swaps' (repeatable)")
    parser.add_argument("--fakes-name", default=FAKES_NAME,
                        help="what the --fakes are, in the run's name and folder (another set of "
                        "fakes measured beside the first needs its own name)")
    parser.add_argument("--input-size", type=int, default=0,
                        help="the runs' ROI side in px (detect train --input-size; 0: the "
                        "backbone's 224); a run at another size is a row of its own")
    parser.add_argument("--only", action="append", default=[],
                        help="run only this run (its name as in the table; repeatable)")
    parser.add_argument("--table", action="store_true",
                        help="only print the table of the runs --json holds (no training)")
    args = parser.parse_args()
    if args.table:
        if not args.json:
            parser.error("--table reads the runs in --json")
        print_table(json.loads(Path(args.json).read_text()))
        return
    if not args.facesets or not args.work:
        parser.error("give the face sets and --work (or --table --json FILE)")
    names = [run_name(*run, args.fakes_name, args.input_size) for run in RUNS]
    unknown = set(args.only) - set(names)
    if unknown:
        parser.error(f"--only: no run named {sorted(unknown)}; the runs: {names}")
    from detect.checkpoint import load_checkpoint
    from detect.scan import ScanConfig, Scanner

    data = shared_data(args.data)
    dev_eval, dev_fakes = labelled_inputs(data / "dev_eval"), labelled_inputs(data / "dev_fakes")
    work = Path(args.work)
    cache = Path(args.cache) if args.cache else work / "cache"
    results = {"machine": machine(), "epochs": args.epochs, "steps_per_epoch": args.steps,
               "batch_size": 32, "runs": {}}
    earlier = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() \
        else {}
    if (earlier.get("epochs"), earlier.get("steps_per_epoch")) == (args.epochs, args.steps):
        results["runs"] = earlier["runs"]  # runs measured before at this budget are kept
    for artifact, degrade, forged in RUNS:
        name = run_name(artifact, degrade, forged, args.fakes_name, args.input_size)
        if name in results["runs"] or (forged and not args.fakes) or \
                (args.only and name not in args.only):
            continue
        suffix = "" if args.fakes_name == FAKES_NAME else "_" + slug(args.fakes_name)
        out = work / (f"{artifact}_{'degrade' if degrade else 'clean'}"
                      f"{'_forged' + suffix if forged else ''}"
                      f"{f'_{args.input_size}px' if args.input_size else ''}")
        command = train_command(args.facesets, out, cache, artifact, degrade, args.epochs,
                                args.steps, args.fakes if forged else [], args.input_size)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        trained_s = time.perf_counter() - started
        scanner = Scanner(ScanConfig(models=(str(out / "best"),)), "cpu")
        results["runs"][name] = {
            "command": " ".join(["python"] + command[1:]), "train_seconds": round(trained_s, 1),
            "synthetic": synthetic_aucs(load_checkpoint(out / "best"),
                                        validation_items(args.facesets, cache)),
            "dev_eval": auc_rows(scan_inputs(scanner, dev_eval), DEV_EVAL_SOURCES, rounds=300),
            "dev_fakes": auc_rows(scan_inputs(scanner, dev_fakes), rounds=300)}
        print(f"{name}: done", file=sys.stderr, flush=True)
        write_json(args.json, results)
    print_table(results)
    write_json(args.json, results)


def _cell(row: dict | None) -> str:
    if not row or row.get("auc") is None or np.isnan(row["auc"]):
        return "-"
    low, high = row["ci"]
    return f"{row['auc']:.2f} [{low:.2f}, {high:.2f}]"


def print_table(results: dict) -> None:
    print(f"\nablation: {results['epochs']} epochs x {results['steps_per_epoch']} steps of batch "
          f"{results['batch_size']} per run, efficientnet_lite0, AdamW 1e-4\n")
    print("| negatives, degradations | synthetic FWA clean / degraded | synthetic SBI clean / "
          "degraded | dev_eval pooled | Celeb-DF-v2 | DFDC | FF++ c23 | dev_fakes pooled |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in results["runs"].items():
        s = run["synthetic"]
        d = run["dev_eval"]
        print(f"| {name} | {s['clean']['fwa']:.3f} / {s['degraded']['fwa']:.3f} | "
              f"{s['clean']['sbi']:.3f} / {s['degraded']['sbi']:.3f} | {_cell(d.get('pooled'))} | "
              f"{_cell(d.get('Celeb-DF-v2'))} | {_cell(d.get('DFDC'))} | "
              f"{_cell(d.get('FF++ c23'))} | {_cell(run['dev_fakes'].get('pooled'))} |")
    print("\ncommands:\n")
    for name, run in results["runs"].items():
        print(f"- {name} ({run['train_seconds'] / 60:.0f} min): `{run['command']}`")
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    main()
