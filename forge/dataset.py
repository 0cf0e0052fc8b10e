"""``forge dataset CONFIG``: sweep the realism knobs over real videos into one forgery set.

CONFIG (TOML or JSON) overrides ``DatasetConfig``; unknown keys are errors. ``sweep`` maps knob
names to lists of values and every combination is made for every video, e.g.::

    out = "forgeries"
    videos = ["../shared/data/real_videos/lp_d6_woman_hairbun",
              "../shared/data/real_videos/lp_d9_man_glasses"]
    watermark = "both"          # both | neither: reals and fakes alike, so no detector learns it
    max_frames = 60
    [sweep]
    method = ["fwa-sim"]
    fwa_size = [64, 96, 127]
    colour = ["none", "reinhard"]
    crf = [18, 28]

Each video's person is its folder's name; people (hence source videos) are split into
train/val/test. Every fake has its real counterpart: the same frames, the same encoder
settings, the same watermark policy. Re-running skips outputs the manifest already holds.

This module is the work, whichever engine runs it (the set's outputs, and how one is made);
``forge.dataset_driver`` holds the run (lock, settings, resume) and picks the engine: this
process, or ``forge.ray_dataset``.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from forge.swap import CompositeConfig
from forge.swap_video import VideoConfig, encode_labelled, faces_to_mark, forge_video, sign_output
from swapscope.config import check_types, read_config_file, relative_to_config
from swapscope.errors import InputError
from swapscope.files import sha256_file
from swapscope.formats.manifest import (
    Encoded,
    ManifestRow,
    PendingOutput,
    commit,
    read_manifest,
)
from swapscope.labels.credentials import signing_key
from swapscope.labels.provenance import read_provenance
from swapscope.media.images import collect_media, is_image
from swapscope.media.video import probe
from swapscope.progress import Progress

log = logging.getLogger(__name__)

VIDEO_KNOBS = {"method", "model", "to", "fwa_size", "smooth", "crf", "min_size"}
COMPOSITE_KNOBS = {f.name for f in fields(CompositeConfig)}
WATERMARK_POLICIES = ("both", "neither")


@dataclass
class DatasetConfig:
    out: str = "forgeries"
    videos: list[str] = field(default_factory=list)  # real videos or folders of them
    sweep: dict[str, list] = field(default_factory=lambda: {"method": ["fwa-sim"]})
    watermark: str = "both"  # both | neither
    max_frames: int | None = 60  # first N frames of each video
    splits: dict[str, float] = field(
        default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2}
    )
    batch_size: int = 8
    seed: int = 0
    # Content Credentials: the user's PEM key and certificate chain (paths relative to the
    # config file); "" = this installation's self-signed pair
    sign_key: str = ""
    sign_cert: str = ""

    @classmethod
    def load(cls, path: str | Path) -> DatasetConfig:
        path = Path(path)
        raw = read_config_file(path, {f.name for f in fields(cls)})
        config = cls(**check_types(raw, cls, path))
        config.videos = relative_to_config(path, config.videos)
        config.out = relative_to_config(path, [config.out])[0]
        for name in ("sign_key", "sign_cert"):
            if getattr(config, name):
                setattr(config, name, relative_to_config(path, [getattr(config, name)])[0])
        if "model" in config.sweep:
            config.sweep["model"] = relative_to_config(path, config.sweep["model"])
        config.check()
        return config

    def check(self) -> None:
        if not self.videos:
            raise InputError("the config lists no videos")
        if self.watermark not in WATERMARK_POLICIES:
            raise InputError(f"watermark must be one of {list(WATERMARK_POLICIES)}")
        unknown = set(self.sweep) - VIDEO_KNOBS - COMPOSITE_KNOBS
        if unknown:
            choices = sorted(VIDEO_KNOBS | COMPOSITE_KNOBS)
            raise InputError(f"unknown sweep knobs {sorted(unknown)}; choose from {choices}")
        for knob, values in self.sweep.items():
            if not isinstance(values, list) or not values:
                raise InputError(f"sweep.{knob} must be a non-empty list")
        if abs(sum(self.splits.values()) - 1) > 1e-6:
            raise InputError("splits must add up to 1")
        if self.batch_size < 1:
            raise InputError("batch_size must be at least 1")

    def combinations(self) -> list[dict]:
        names = sorted(self.sweep)
        return [
            dict(zip(names, values))
            for values in itertools.product(*(self.sweep[n] for n in names))
        ]


def _video_config(knobs: dict, config: DatasetConfig, split: str) -> VideoConfig:
    composite = CompositeConfig(**{k: v for k, v in knobs.items() if k in COMPOSITE_KNOBS})
    return VideoConfig(
        **{k: v for k, v in knobs.items() if k in VIDEO_KNOBS}, composite=composite,
        max_frames=config.max_frames, batch_size=config.batch_size, seed=config.seed, split=split,
        watermark=config.watermark == "both",
        sign_key=config.sign_key, sign_cert=config.sign_cert,
    )


def split_people(people: list[str], splits: dict[str, float], seed: int) -> dict[str, str]:
    """person -> split name: whole people, in proportion to the shares, and at least one
    for every split with a share where there are enough people."""
    order = sorted(people)
    np.random.default_rng(seed).shuffle(order)
    n, names = len(order), list(splits)
    counts = {k: int(splits[k] * n) for k in names}
    by_remainder = sorted(names, key=lambda k: splits[k] * n - counts[k], reverse=True)
    for k in by_remainder[: n - sum(counts.values())]:
        counts[k] += 1
    for k in names:
        donor = max(names, key=lambda j: counts[j])
        if splits[k] > 0 and counts[k] == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[k] += 1
    out, start = {}, 0
    for k in names:
        for person in order[start:start + counts[k]]:
            out[person] = k
        start += counts[k]
    return out


def knob_id(knobs: dict) -> str:
    return hashlib.sha256(json.dumps(knobs, sort_keys=True).encode()).hexdigest()[:10]


def real_sources(inputs: list[str], root: Path, failed: list[str]) -> list[Path]:
    """The videos among ``inputs`` that can be real sources: never a file inside the forgery set
    being written, and never a file that carries swapscope's label (a fake, or a real
    counterpart someone copied out of a set); each refused one is a line in ``failed``."""

    videos = []
    for video in collect_media(inputs):
        if is_image(video) or video.resolve().is_relative_to(root.resolve()):
            continue
        if read_provenance(video).metadata is not None:
            failed.append(f"{video}: carries swapscope's label (made by the forge); not a real "
                          "source")
            continue
        videos.append(video)
    return videos


@dataclass(frozen=True)
class Output:
    """One output of the set: a real counterpart (``knobs`` = its CRF) or a fake."""

    rel: str  # its path in the set
    video: Path  # its real source
    label: str  # real | fake
    knobs: dict
    person: str  # the source video's folder name
    split: str


def outputs(videos: list[Path], config: DatasetConfig, split_of: dict[str, str]) -> list[Output]:
    """Every output of the set: per video, a real counterpart per CRF of the sweep, then a fake
    per knob combination."""
    combos = config.combinations()
    names = output_names(videos)
    found = []
    for video in videos:
        person = video.parent.name
        common = {"video": video, "person": person, "split": split_of[person]}
        for crf in sorted({c.get("crf", 18) for c in combos}):
            found.append(Output(rel=f"real/crf{crf}/{names[video]}.mp4", label="real",
                                knobs={"crf": crf}, **common))
        for knobs in combos:
            found.append(Output(rel=f"fake/{knob_id(knobs)}/{names[video]}.mp4", label="fake",
                                knobs=knobs, **common))
    return found


def faces_of(video: Path, config: DatasetConfig) -> Callable[[], dict]:
    """Finds ``video``'s faces (the boxes a real counterpart's watermark goes on) when called."""
    return functools.partial(faces_to_mark, video, VideoConfig.min_size, config.max_frames)


def make_output(output: Output, config: DatasetConfig, root: Path, device: str,
                progress: Progress | None = None, faces: Callable | None = None) -> None:
    """Make one output and its manifest row (raises InputError); ``faces`` finds the source's
    faces for a real counterpart's watermark (default: found here)."""
    if output.label == "real":
        write_real(output.video, output.rel, root, output.knobs["crf"], config, output.person,
                   output.split, faces or faces_of(output.video, config))
    else:
        forge_video(output.video, root / output.rel,
                    _video_config(output.knobs, config, output.split), device, progress,
                    root=root)


def output_names(videos: list[Path]) -> dict[Path, str]:
    """Each video's output name, ``<person>__<stem>``; videos that would share one (the same
    folder and file names in two places) also get a hash of their path, so none overwrites
    another."""
    base = {v: f"{v.parent.name}__{v.stem}" for v in videos}
    counts = collections.Counter(base.values())
    return {v: name if counts[name] == 1 else
            f"{name}__{hashlib.sha256(str(v.resolve()).encode()).hexdigest()[:8]}"
            for v, name in base.items()}


def set_rows(root: Path) -> list[ManifestRow]:
    return read_manifest(root) if (root / "manifest.jsonl").is_file() else []


def write_real(source: Path, rel: str, root: Path, crf: int, config: DatasetConfig, person: str,
               split: str, faces: Callable[[], dict[int, list[np.ndarray]]]) -> ManifestRow:
    """The real counterpart: the same frames and encoder settings as the fakes, the same
    watermark policy (on the faces ``faces()`` finds), labelled ``real`` in the manifest and its
    container."""
    info = probe(source)
    output = PendingOutput(root, root / rel)  # at its pending name until its row is down
    watermark = config.watermark == "both"
    try:
        frames = encode_labelled(
            source, output.pending, info, manifest_id=output.id, method="real", crf=crf,
            watermark=watermark, faces=faces() if watermark else {},
            max_frames=config.max_frames,
            batch_size=config.batch_size,
        )
        source_hash = sha256_file(source)  # once, for the credential and the row
        sign_output(output.pending, Path(rel).name, signing_key(config.sign_key or None,
                                                                config.sign_cert or None),
                    manifest_id=output.id, method="real", source=source,
                    hashes=(source_hash, None))
        row = ManifestRow.new(
            output=output, label="real", method="real", split=split, source=source,
            source_sha256=source_hash, source_identity=person, target_identity=person,
            knobs={"crf": crf}, encoded=Encoded(frames, 0, info.fps, info.width, info.height),
            watermark=watermark, labels=None,
        )
        commit(root, row, [(output.pending, output.path)])
    finally:
        output.pending.unlink(missing_ok=True)
    return row
