"""The closed loop: fine-tune a detector on the fakes that evade it most, then compare.

From a finished ``eval report`` (its ``report.json``): take the configurations with the lowest
video AUC for the chosen detector; fine-tune it (``detect train --init``) on the real faces
and those configurations' fakes of the *train and val* identities of each forgery set; then
benchmark the old and the new detector on the *test* identities only, and put the two side by
side. The split comes from the forgery sets' manifests (by identity, so by source video).

Everything it writes goes under ``REPORT/harden`` (the subsets of the forgery sets it trains and
tests on are forgery sets of their own there, their files linked); the forgery sets are only
read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from eval.benchmark import (
    BenchmarkConfig,
    BenchmarkResult,
    config_key,
    detector_name,
    run_benchmark,
)
from eval.metrics import MIN_PER_CLASS, TOO_FEW, too_few
from eval.report import slug
from swapscope.config import read_json_object
from swapscope.errors import InputError
from swapscope.formats.manifest import ManifestRow, read_manifest, write_manifest

if TYPE_CHECKING:  # eval --help loads no trainer
    from detect.train import Trained

log = logging.getLogger(__name__)


@dataclass
class HardenConfig:
    report: str = "report"  # folder of a finished eval report
    detector: str = ""  # the detector to harden against ("" = shipped); must be in the report
    top: int = 2  # how many evading configurations to train on
    epochs: int = 3
    batch_size: int = 32
    stride: int = 3
    seed: int = 0


@dataclass(frozen=True, slots=True)
class _Target:
    """The detector being hardened and the configurations it is hardened against."""

    name: str
    folder: Path  # its checkpoint: a detector's, or an ensemble's
    chosen: set[str]  # short configuration names, as the report shows them
    chosen_full: set[str]  # the same, with every knob (config_key of a manifest row)


@dataclass(frozen=True, slots=True)
class BeforeAfter:
    """One configuration of the test identities: video and frame AUC before and after."""

    config: str
    trained_on: bool  # its fakes (of the other identities) were trained on
    fakes: int
    reals: int
    before: dict[str, float]  # video_auc, frame_auc
    after: dict[str, float]

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True, eq=False)
class Hardened:
    """What eval harden did: the detector hardened, the one it made, what it trained on, and
    the before/after benchmark on the test identities."""

    detector: str  # the report's name of the detector hardened
    hardened: str  # the hardened checkpoint
    trained_on: list[str]  # configurations, as the report names them
    trained: Trained  # detect train's summary of the fine-tuning
    rows: list[BeforeAfter]
    result: BenchmarkResult  # both detectors on the test identities

    def to_json(self) -> dict:
        """What eval harden --json prints (the benchmark aside: it is written as a report)."""
        return {"detector": self.detector, "hardened": self.hardened,
                "trained_on": self.trained_on,
                "train_summary": {"best_val_auc": self.trained.best_val_auc,
                                  "train_faces": self.trained.train_faces,
                                  "val_faces": self.trained.val_faces},
                "rows": [r.to_json() for r in self.rows]}


def harden(config: HardenConfig, device: str) -> Hardened:
    """Run the loop; returns the before/after table, the hardened detector and the benchmark."""
    report_dir = Path(config.report)
    report = _read_report(report_dir)
    bench = report.config
    target = _choose(report, config)
    log.info("hardening %s against: %s", target.name, sorted(target.chosen))
    work = report_dir / "harden"
    train_manifests, test_sets, real_videos = split_sets(
        bench.sets, target.chosen_full, work / "sets"
    )
    summary = fine_tune(target, config, train_manifests, real_videos, work, device)
    log.info("benchmarking both detectors on the test identities")
    before_after = BenchmarkConfig(
        sets=test_sets, detectors=[config.detector, summary.best], mode=bench.mode,
        realism_frames=bench.realism_frames, bootstrap=bench.bootstrap,
        cache=str(report_dir / "cache"),
    )
    result = run_benchmark(before_after, work, device)
    return Hardened(
        detector=target.name, hardened=summary.best, trained_on=sorted(target.chosen),
        trained=summary,
        rows=compare(result, target), result=result)


def _read_report(report_dir: Path) -> BenchmarkResult:
    """An eval report's report.json, every part checked (a hand-edited file is one line naming
    it)."""
    path = report_dir / "report.json"
    if not path.is_file():
        raise InputError(f"{report_dir}: no report.json; run eval report --out {report_dir} first")
    return BenchmarkResult.from_json(read_json_object(path, "eval report"), str(path))


def _choose(report: BenchmarkResult, config: HardenConfig) -> _Target:
    # lazy: eval --help reads HardenConfig without loading the trainers
    from detect.checkpoint import checkpoint_folder
    from detect.scan import DEFAULT_DETECTOR
    from eval.report import evaders

    folder = checkpoint_folder(config.detector or DEFAULT_DETECTOR)  # a detector or an ensemble
    name = detector_name(config.detector, folder)
    names = [d.name for d in report.detectors]
    if name not in names:
        raise InputError(f"detector {name!r} is not in the report; choose from {names}")
    chosen = {e["config"] for e in evaders(report, config.top)[name]}
    full_names = {r.config: r.config_full or r.config for r in report.rows}
    return _Target(name=name, folder=folder, chosen=chosen,
                   chosen_full={full_names[c] for c in chosen})


def split_sets(sets: list[str], chosen_full: set[str], out: Path
               ) -> tuple[list[str], list[str], list[tuple[Path, str]]]:
    """Per forgery set, two subsets written under ``out`` as forgery sets of their own: its
    train/val reals and chosen fakes, and its test rows (their files hard-linked, or copied
    across file systems). Returns (train manifests, test manifests, train/val real videos with
    their people)."""
    train_manifests, test_sets, real_videos = [], [], []
    for i, folder in enumerate(map(Path, sets)):
        rows = read_manifest(folder)
        keep = [r for r in rows if r.split in ("train", "val")
                and (r.label == "real" or config_key(r) in chosen_full)]
        test = [r for r in rows if r.split == "test"]
        if not any(r.label == "fake" for r in keep):
            raise InputError(f"{folder}: no fakes of the evading configurations in its train/val "
                             "splits")
        if not any(r.label == "fake" for r in test) or not any(r.label == "real" for r in test):
            raise InputError(f"{folder}: its test split needs fakes and reals to compare on")
        named = out / f"{i:02d}_{folder.name}"
        train_manifests.append(str(_subset(folder, keep, named / "train")))
        test_sets.append(str(_subset(folder, test, named / "test")))
        real_videos += [(named / "train" / r.output, r.identity) for r in keep
                        if r.label == "real"]
    return train_manifests, test_sets, real_videos


def _subset(folder: Path, rows: list[ManifestRow], out: Path) -> Path:
    """A forgery set at ``out`` holding these rows of the set at ``folder``, and their files."""
    for row in rows:
        for rel in filter(None, (row.output, row.labels)):
            target = out / rel
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(folder / rel, target)
                except OSError:
                    shutil.copyfile(folder / rel, target)
    return write_manifest(out / "manifest.jsonl", rows)


def fine_tune(
    target: _Target,
    config: HardenConfig,
    train_manifests: list[str],
    real_videos: list[tuple[Path, str]],
    work: Path,
    device: str,
) -> Trained:
    """Fine-tune the detector being hardened (what it knew is the starting point) on the real
    faces and the chosen fakes; an ensemble has each member fine-tuned and is put together
    again (uncalibrated: its threshold is chosen on real footage, ``detect calibrate``). Returns
    detect train's summary (an ensemble's: its path and its members' lowest validation AUC)."""
    # lazy: eval --help reads HardenConfig without loading the trainers
    from detect.checkpoint import DETECTOR_KIND, read_config, save_ensemble, split_members
    from detect.train import TrainConfig
    from detect.train import train as train_detector
    from forge.extract import ExtractConfig, extract

    facesets = []
    for person in sorted({person for _, person in real_videos}):  # one face set per person,
        # labelled with its name, so the validation people are held out with their fakes (not
        # all under one folder name); named after the person, so a re-run reuses only its own
        faces = work / "real_faces" / (
            f"{slug(person)}_{hashlib.sha256(person.encode()).hexdigest()[:8]}")
        facesets.append(str(faces))
        videos = [video for video, who in real_videos if who == person]
        log.info("real faces of %d training videos of %s", len(videos), person)
        extract(videos, faces, ExtractConfig(label=person))  # skips the videos it already holds
    members = split_members(target.folder, work / "members")
    summaries = []
    for index, member in enumerate(members):
        log.info("training the hardened detector (member %d of %d)", index + 1, len(members))
        _, meta = read_config(member, DETECTOR_KIND, "detector", {"arch": str})
        out = work / "detector" if len(members) == 1 else work / "detectors" / str(index)
        summaries.append(train_detector(
            TrainConfig(
                facesets=facesets, fakes=train_manifests, out=str(out), init=str(member),
                arch=meta["arch"], epochs=config.epochs, batch_size=config.batch_size,
                stride=config.stride, seed=config.seed,
            ),
            device,
        ))
    if len(summaries) == 1:
        return summaries[0]
    best = save_ensemble([s.best for s in summaries], work / "detector" / "best",
                         half=False, overwrite=True)
    return replace(summaries[0], best=str(best),
                   best_val_auc=min(s.best_val_auc for s in summaries))


def compare(result: BenchmarkResult, target: _Target) -> list[BeforeAfter]:
    """Per configuration of the test identities: video and frame AUC before and after."""
    hardened = next(d.name for d in result.detectors if d.name != target.name)

    def aucs(levels) -> dict[str, float]:
        return {"video_auc": levels["video"].auc, "frame_auc": levels["frame"].auc}

    return [BeforeAfter(config=row.config,
                        trained_on=(row.config_full or row.config) in target.chosen_full,
                        fakes=row.fakes, reals=row.reals, before=aucs(row.detectors[target.name]),
                        after=aucs(row.detectors[hardened]))
            for row in result.rows]


def before_after_markdown(outcome: Hardened) -> str:
    lines = [
        f"## Hardening {outcome.detector} (closed loop)",
        "",
        f"Trained on the fakes of {', '.join(f'`{c}`' for c in outcome.trained_on)} (train/val "
        "identities) plus real faces; validation AUC "
        f"{outcome.trained.best_val_auc:.3f}. "
        "Scored on the test identities only.",
        "",
        "| configuration | trained on it | fakes / reals | video AUC before | after | frame AUC "
        "before | after |",
        "|---|---|---|---|---|---|---|",
    ]
    marked = False
    for r in outcome.rows:
        few = too_few(r.fakes, r.reals)  # every AUC of the row, as eval report marks it
        marked |= bool(few)
        lines.append(
            f"| {r.config} | {'yes' if r.trained_on else 'no'} | {r.fakes} / {r.reals} "
            f"| {r.before['video_auc']:.3f}{few} | {r.after['video_auc']:.3f}{few} "
            f"| {r.before['frame_auc']:.3f}{few} | {r.after['frame_auc']:.3f}{few} |"
        )
    if marked:
        lines += ["", f"AUCs marked \"{TOO_FEW}\" come from fewer than {MIN_PER_CLASS} videos of a "
                  "class on the held-out identities: they check the loop, they are not results."]
    return "\n".join(lines)
