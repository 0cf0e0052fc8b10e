"""Detectors side by side on genuine deepfakes and on degraded real footage.

    python bench/dev_eval.py --detector detect/weights/fwa_lite0 --detector RUN/best \
        [--detector A+B] --faces FACESET ... [--epochs RUN/epochs [--figure PNG]] [--json out.json]

(``A+B``: an ensemble, the members' probabilities averaged per face as ``detect scan --model A
--model B`` does.)

Per detector (``detect scan`` fast rules, each detector's own verdict threshold):
- ``dev_eval`` (genuine DFDC / FF++ c23 / Celeb-DF-v2 files), ``dev_fakes`` and
  ``dfdc_faces/val`` (DFDC crops of originals no training crop comes from; ``--dfdc-val N``
  scans N of each label, 0 none): input-level AUC per source and pooled, with 95% bootstrap
  intervals over inputs;
- the false-positive rate at the detector's threshold on the real clips of the last detector's
  validation identities (found in ``--faces``), re-encoded at CRF 23 / 30 / 35 / 40, at half size
  and smoothed (clips of people a detector trained on are left out of its rows), and on the
  ``real_videos_extra`` clips among them as they are.
With ``--epochs`` (a run's OUT/epochs, kept by ``detect train --keep-every``) it also plots
dev_eval AUC per source against the training epoch. These sets are small: they check, they
never tune.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

from eval.metrics import MIN_PER_CLASS, too_few  # noqa: E402

FINDERS = {"yunet": {}, "dlib": {"backend": "dlib", "detect_size": 480}}
DEV_EVAL_SOURCES = {"dfdc_jphdotam": "DFDC", "ffpp_gend": "FF++ c23",
                    "celebdfv2_gend": "Celeb-DF-v2", "celebdfv2_dicome": "Celeb-DF-v2"}


def labelled_inputs(root: Path) -> list[tuple[str, int, Path]]:
    """(source, label, file) of a set laid out as {real,fake}/<source>/<file> (or a file
    directly under real/ or fake/, its own source)."""
    from swapscope.media.images import collect_media

    out = []
    for label, side in ((0, "real"), (1, "fake")):
        for path in collect_media([root / side]):
            parts = path.relative_to(root / side).parts
            source = parts[0] if len(parts) > 1 else path.stem.replace("_fake", "")
            out.append((source, label, path))
    return out


def dfdc_val_inputs(root: Path, per_label: int) -> list[tuple[str, int, Path]]:
    """(source, label, file) of ``per_label`` crops of each label of dfdc_faces/val, the first
    in file order (the files are named by DFDC video id, an order unrelated to anything)."""
    import csv

    with open(root / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    out = []
    for label, name in ((0, "real"), (1, "fake")):
        picked = sorted(r["file"] for r in rows if r["label"] == name)[:per_label]
        out += [("dfdc_faces/val", label, root / file) for file in picked]
    return out


def scan_inputs(scanner, inputs: list[tuple[str, int, Path]]) -> list[dict]:
    from swapscope.errors import InputError

    rows = []
    for source, label, path in inputs:
        try:
            score = scanner.scan(path).score
        except InputError:
            score = None
        rows.append({"source": source, "label": label, "path": str(path), "score": score})
    return rows


def auc_rows(rows: list[dict], sources: dict[str, str] | None = None, rounds: int = 1000) -> dict:
    """Per source and pooled: input-level AUC with a 95% bootstrap interval, and counts."""
    from eval.metrics import Scores, bootstrap, point_metrics

    scored = [r for r in rows if r["score"] is not None]
    groups: dict[str, list[dict]] = {}
    for r in scored:
        groups.setdefault((sources or {}).get(r["source"], r["source"]), []).append(r)
    groups["pooled"] = scored
    out = {}
    for name, items in groups.items():
        labels = np.array([r["label"] for r in items])
        scores = np.array([r["score"] for r in items])
        data = Scores(labels, scores, np.array([r["path"] for r in items]))
        auc = point_metrics(labels, scores)["auc"]
        both = len(set(labels.tolist())) == 2 and rounds
        ci = bootstrap(data, rounds=rounds)["auc"] if both else [np.nan] * 2
        out[name] = {"auc": auc, "ci": ci, "fakes": int(labels.sum()),
                     "reals": int((1 - labels).sum())}
    out["no face"] = sum(r["score"] is None for r in rows)
    return out


def false_positives(scanner, detector_meta: dict, clips: list[tuple[str, Path]], work: Path,
                    frames: int) -> dict:
    """Share of real clips called fake at the scanner's threshold: per degradation of the
    validation clips, and the real_videos_extra ones as they are."""
    from detect.calibrate import VARIANTS, degraded_clip

    trained = set(detector_meta.get("train_identities") or [])
    mine = [(identity, video) for identity, video in clips if identity not in trained]
    rows = {}
    for variant in VARIANTS:
        scores = []
        for identity, video in mine:
            made = work / identity / f"{video.stem}.{variant.name}.mp4"
            if not made.is_file():
                degraded_clip(video, variant, made, frames)
            result = scanner.scan(made)
            if result.score is not None:
                scores.append(result.score)
        rows[variant.name] = _fp(scores, scanner.threshold)
    extra = [scanner.scan(video).score for _, video in mine if "real_videos_extra" in str(video)]
    rows["real_videos_extra as is"] = _fp([s for s in extra if s is not None], scanner.threshold)
    return rows


def _fp(scores: list[float], threshold: float) -> dict:
    return {"fpr": float(np.mean(np.asarray(scores) >= threshold)) if scores else None,
            "clips": len(scores), "mean_score": float(np.mean(scores)) if scores else None}


def epoch_curve(epochs: Path, inputs: list, out_png: Path) -> dict:
    """dev_eval AUC per source (and pooled) of every kept epoch of a run, and its plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detect.scan import ScanConfig, Scanner
    from swapscope.files import write_figure_atomic

    curve = {}
    for folder in sorted(p for p in epochs.iterdir() if (p / "config.json").is_file()):
        scanner = Scanner(ScanConfig(models=(str(folder),)), "cpu")
        curve[int(folder.name)] = auc_rows(scan_inputs(scanner, inputs), DEV_EVAL_SOURCES, rounds=0)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in ("pooled", "DFDC", "FF++ c23", "Celeb-DF-v2"):
        aucs = [curve[e].get(name, {}).get("auc", np.nan) for e in curve]
        ax.plot(list(curve), aucs, "o-", label=name)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("epoch"), ax.set_ylabel("dev_eval AUC (input level)"), ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_figure_atomic(out_png, fig, dpi=90)
    plt.close(fig)
    return curve


def _fmt(row: dict) -> str:
    if row.get("auc") is None or np.isnan(row["auc"]):
        return "-"
    low, high = row["ci"]
    ci = "" if np.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    few = too_few(row["fakes"], row["reals"])  # (inputs here: images or videos)
    return f"{row['auc']:.3f}{ci} ({row['fakes']}/{row['reals']}){' *' if few else ''}"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--detector", action="append", required=True,
                        help="checkpoint, or checkpoints joined by + (an ensemble); repeatable")
    parser.add_argument("--faces", action="append", default=[],
                        help="face sets the last detector trained on")
    parser.add_argument("--epochs", help="a run's OUT/epochs, for the AUC-by-epoch plot")
    parser.add_argument("--figure", help="where --epochs' plot goes",
                        default=str(REPO / "bench" / "figures" / "dev_eval_by_epoch.png"))
    parser.add_argument("--frames", type=int, default=60, help="frames of each degraded real clip")
    parser.add_argument("--work", default=str(REPO / "bench" / "out" / "dev_eval"))
    parser.add_argument("--dfdc-val", type=int, default=400,
                        help="dfdc_faces/val crops of each label to scan (0: none)")
    parser.add_argument("--finder", choices=sorted(FINDERS), default="yunet",
                        help="the scan's face detector: yunet (the fast preset's since "
                        "2026-12-05) or dlib at 480 px (its before)")
    args = parser.parse_args()
    from detect.calibrate import validation_clips
    from detect.checkpoint import combine, load_checkpoint
    from detect.scan import ScanConfig, Scanner

    data = shared_data(args.data)
    dev_eval, dev_fakes = labelled_inputs(data / "dev_eval"), labelled_inputs(data / "dev_fakes")
    dfdc_val = dfdc_val_inputs(data / "dfdc_faces", args.dfdc_val) if args.dfdc_val else []
    last = load_checkpoint(args.detector[-1].split("+")[-1])
    clips = validation_clips(last.identities, args.faces) if args.faces else []
    results = {"machine": machine(), "detectors": {},
               "validation_clips": [str(v) for _, v in clips]}
    for path in args.detector:
        detector = combine([load_checkpoint(member) for member in path.split("+")])
        # an ensemble's false positives: on clips of people none of its members trained on
        trained = detector.identities["train_identities"]
        scanner = Scanner(ScanConfig(models=tuple(path.split("+")), **FINDERS[args.finder]), "cpu",
                          detector)
        results["detectors"][path] = {
            "threshold": scanner.threshold, "threshold_source": scanner.threshold_source,
            "dev_eval": auc_rows(scan_inputs(scanner, dev_eval), DEV_EVAL_SOURCES),
            "dev_fakes": auc_rows(scan_inputs(scanner, dev_fakes)),
            "dfdc_val": auc_rows(scan_inputs(scanner, dfdc_val)) if dfdc_val else {},
            "false_positives": false_positives(scanner, {"train_identities": trained}, clips,
                                               Path(args.work),
                                               args.frames) if clips else {}}
    if args.epochs:
        results["by_epoch"] = epoch_curve(Path(args.epochs), dev_eval, Path(args.figure))
    print_tables(results)
    write_json(args.json, results)


def print_tables(results: dict) -> None:
    names = list(results["detectors"])
    for key, title in (("dev_eval", "dev_eval"), ("dev_fakes", "dev_fakes"),
                       ("dfdc_val", "dfdc_faces/val")):
        found = {g for d in results["detectors"].values() for g in d.get(key, {})
                 if g not in ("no face", "pooled" if key == "dfdc_val" else "")}
        if not found:
            continue
        groups = sorted(found, key=lambda g: (g == "pooled", g))
        print(f"\n{title}: input-level AUC [95% bootstrap] (fakes/reals)\n")
        print("| detector | " + " | ".join(groups) + " | no face |")
        print("|---" * (len(groups) + 2) + "|")
        for name in names:
            row = results["detectors"][name].get(key, {})
            print(f"| {name} | " + " | ".join(_fmt(row.get(g, {})) for g in groups)
                  + f" | {row.get('no face', '-')} |")
    print("\nfalse positives at each detector's threshold (real clips called fake / clips)\n")
    variants = sorted({v for d in results["detectors"].values() for v in d["false_positives"]})
    print("| detector | threshold | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 2) + "|")
    for name in names:
        d = results["detectors"][name]
        cells = [f"{r['fpr']:.0%} of {r['clips']}" if r["fpr"] is not None else "-"
                 for r in (d["false_positives"].get(v, {"fpr": None}) for v in variants)]
        print(f"| {name} | {d['threshold']:.3f} | " + " | ".join(cells) + " |")
    print(f"\n* fewer than {MIN_PER_CLASS} inputs of a class: not a result, shown for "
          "completeness")
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    main()
