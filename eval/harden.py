"""The closed loop: fine-tune a detector on the fakes that evade it most, then compare.

From a finished ``eval report`` (its ``report.json``): take the configurations with the lowest
video AUC for the chosen detector; fine-tune it (``detect train --init``) on the real faces
and those configurations' fakes of the *train and val* identities of each forgery set; then
benchmark the old and the new detector on the *test* identities only, and put the two side by
side. The split comes from the forgery sets' manifests (by identity, so by source video).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from forge.errors import InputError


@dataclass
class HardenConfig:
    report: str = "report"  # folder of a finished eval report
    detector: str = ""  # the detector to harden against ("" = shipped); must be in the report
    top: int = 2  # how many evading configurations to train on
    epochs: int = 3
    batch_size: int = 32
    stride: int = 3
    seed: int = 0


def _filtered_manifest(folder: Path, rows: list[dict], name: str) -> Path:
    from forge.atomic import write_text_atomic

    path = folder / name
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def harden(config: HardenConfig, device: str, say=print) -> dict:
    from detect.train import TrainConfig
    from detect.train import train as train_detector
    from eval.benchmark import BenchmarkConfig, run_benchmark
    from eval.report import evaders
    from forge.extract import ExtractConfig, extract
    from forge.label import read_manifest

    report_dir = Path(config.report)
    report_path = report_dir / "report.json"
    if not report_path.is_file():
        raise InputError(f"{report_dir}: no report.json; run eval report --out {report_dir} first")
    report = json.loads(report_path.read_text())
    names = [d["name"] for d in report["detectors"]]
    bench = BenchmarkConfig(**report["config"])
    from detect.checkpoint import read_detector_config
    from detect.scan import DEFAULT_DETECTOR
    from eval.benchmark import detector_name as name_of

    detector_folder, detector_meta = read_detector_config(config.detector or DEFAULT_DETECTOR)
    detector_name = name_of(config.detector, detector_folder)
    if detector_name not in names:
        raise InputError(f"detector {detector_name!r} is not in the report; choose from {names}")
    worst = evaders(report, config.top)[detector_name]
    chosen = {e["config"] for e in worst}
    full_names = {r["config"]: r.get("config_full", r["config"]) for r in report["rows"]}
    chosen_full = {full_names[c] for c in chosen}
    say(f"hardening {detector_name} against: {sorted(chosen)}")

    from eval.benchmark import config_key

    train_manifests, test_sets, real_videos = [], [], []
    for folder in map(Path, bench.sets):
        rows = read_manifest(folder)
        keep = [r for r in rows if r["split"] in ("train", "val")
                and (r["label"] == "real" or config_key(r) in chosen_full)]
        test = [r for r in rows if r["split"] == "test"]
        if not any(r["label"] == "fake" for r in keep):
            raise InputError(f"{folder}: no fakes of the evading configurations in its train/val splits")
        if not any(r["label"] == "fake" for r in test) or not any(r["label"] == "real" for r in test):
            raise InputError(f"{folder}: its test split needs fakes and reals to compare on")
        train_manifests.append(str(_filtered_manifest(folder, keep, "manifest.harden-train.jsonl")))
        test_sets.append(str(_filtered_manifest(folder, test, "manifest.harden-test.jsonl")))
        real_videos += [folder / r["output"] for r in keep if r["label"] == "real"]
    work = report_dir / "harden"
    faces = work / "real_faces"
    if not faces.exists():
        say(f"extracting real faces of {len(real_videos)} training videos")
        extract(real_videos, faces, ExtractConfig())
    say("training the hardened detector")
    # fine-tune the detector being hardened, so what it already knew is the starting point
    summary = train_detector(TrainConfig(facesets=[str(faces)], fakes=train_manifests, out=str(work / "detector"),
                                         init=str(detector_folder), arch=detector_meta["arch"], epochs=config.epochs,
                                         batch_size=config.batch_size, stride=config.stride, seed=config.seed),
                             device)
    before_after = BenchmarkConfig(sets=test_sets, detectors=[config.detector, str(work / "detector" / "best")],
                                   mode=bench.mode, realism_frames=bench.realism_frames, bootstrap=bench.bootstrap,
                                   cache=str(report_dir / "cache"))
    say("benchmarking both detectors on the test identities")
    result = run_benchmark(before_after, work, device, progress=None)
    hardened_name = next(d["name"] for d in result["detectors"] if d["name"] != detector_name)
    table = []
    for row in result["rows"]:
        before, after = row["detectors"][detector_name], row["detectors"][hardened_name]
        table.append({"config": row["config"], "trained_on": row.get("config_full", row["config"]) in chosen_full,
                      "fakes": row["fakes"], "reals": row["reals"],
                      "before": {"video_auc": before["video"]["auc"], "frame_auc": before["frame"]["auc"]},
                      "after": {"video_auc": after["video"]["auc"], "frame_auc": after["frame"]["auc"]}})
    return {"detector": detector_name, "hardened": str(work / "detector" / "best"), "trained_on": sorted(chosen),
            "train_summary": {k: summary[k] for k in ("best_val_auc", "train_faces", "val_faces")},
            "rows": table, "result": result}


def before_after_markdown(outcome: dict) -> str:
    lines = [f"## Hardening {outcome['detector']} (closed loop)", "",
             f"Trained on the fakes of {', '.join(f'`{c}`' for c in outcome['trained_on'])} (train/val "
             f"identities) plus real faces; validation AUC {outcome['train_summary']['best_val_auc']:.3f}. "
             "Scored on the test identities only.", "",
             "| configuration | trained on it | fakes / reals | video AUC before | after | frame AUC before | after |",
             "|---|---|---|---|---|---|---|"]
    for r in outcome["rows"]:
        lines.append(f"| {r['config']} | {'yes' if r['trained_on'] else 'no'} | {r['fakes']} / {r['reals']} "
                     f"| {r['before']['video_auc']:.3f} | {r['after']['video_auc']:.3f} "
                     f"| {r['before']['frame_auc']:.3f} | {r['after']['frame_auc']:.3f} |")
    return "\n".join(lines)
