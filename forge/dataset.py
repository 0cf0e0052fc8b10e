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

Each video's identity is its folder's name; identities (hence source videos) are split into
train/val/test. Every fake has its real counterpart: the same frames, the same encoder
settings, the same watermark policy. Re-running skips outputs the manifest already holds.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from forge.swap import CompositeConfig
from forge.swap_video import VideoConfig, encode_labelled, faces_to_mark, forge_video, sign_output
from swapscope import __version__
from swapscope.config import check_types, read_config_file, read_json_object, relative_to_config
from swapscope.device import resolve_device
from swapscope.errors import InputError
from swapscope.files import WriteLock, sha256_file, writable_folder, write_text_atomic
from swapscope.formats.manifest import (
    ManifestRow,
    commit,
    new_manifest_id,
    pending_path,
    read_manifest,
    settle_pending,
    write_data_card,
)
from swapscope.labels.credentials import signing_key
from swapscope.labels.provenance import read_provenance
from swapscope.media.images import collect_media, is_image
from swapscope.media.video import probe
from swapscope.progress import Progress
from swapscope.ray_engine import Engine

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


def split_identities(identities: list[str], splits: dict[str, float], seed: int) -> dict[str, str]:
    """identity -> split name: whole identities, in proportion to the shares, and at least one
    for every split with a share where there are enough identities."""
    order = sorted(identities)
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
        for identity in order[start:start + counts[k]]:
            out[identity] = k
        start += counts[k]
    return out


def knob_id(knobs: dict) -> str:
    return hashlib.sha256(json.dumps(knobs, sort_keys=True).encode()).hexdigest()[:10]


def build_dataset(config: DatasetConfig, device: str = "cpu",
                  progress: Progress | None = None, engine: Engine | None = None) -> dict:
    """Make every (video, knob combination) fake and every real counterpart; returns a summary.
    Each output made is logged; outputs the manifest already holds are skipped; an output that
    fails is one line in the summary's ``failed``. ``engine`` (default: this process) may make
    them in Ray tasks, one per output (``forge.ray_dataset``)."""
    config.check()
    engine = (engine or Engine()).check()
    root = writable_folder(config.out)
    with WriteLock(root / ".swapscope.lock", root, "forge dataset"):
        sweeps = _check_settings(root, config)
        # what a killed run left: outputs whose row is down go in place, the rest are removed
        settle_pending(root)
        return _build(config, root, sweeps, device, progress, engine)


# the settings every output of a set shares: a set is never extended under other ones (a new
# sweep only adds outputs, named by their knobs, so one set may hold several)
SETTINGS_OF_OUTPUTS = ("videos", "watermark", "max_frames", "splits", "seed")


def _check_settings(root: Path, config: DatasetConfig) -> list[dict]:
    """A re-run resumes the same set (or adds a sweep to it); one with other settings is
    refused, since the outputs already made would not match what ``dataset.json`` records.
    The settings are recorded before the first output is made. Returns every sweep the set
    holds, this one last."""
    path = root / "dataset.json"
    current = _settings(asdict(config))
    sweeps: list[dict] = []
    if path.is_file():
        recorded = read_json_object(path, "dataset settings")
        if not isinstance(recorded.get("config"), dict):
            raise InputError(f"{path}: has no 'config' object")
        changed = [k for k in SETTINGS_OF_OUTPUTS
                   if _settings(recorded["config"]).get(k) != current[k]]
        if changed:
            raise InputError(f"{root}: this forgery set was made with other {', '.join(changed)}; "
                             "choose another out (or restore the settings to resume it)")
        sweeps = [s for s in recorded.get("sweeps", [recorded["config"].get("sweep")])
                  if isinstance(s, dict) and s != config.sweep]
    sweeps.append(config.sweep)
    write_text_atomic(path, json.dumps({"config": asdict(config), "sweeps": sweeps,
                                        "code_version": __version__, "finished": False}, indent=2))
    return sweeps


def _settings(config: dict) -> dict:
    settings = {k: config.get(k) for k in SETTINGS_OF_OUTPUTS}
    if isinstance(settings["videos"], list):
        settings["videos"] = sorted(str(Path(str(v)).resolve()) for v in settings["videos"])
    return json.loads(json.dumps(settings))  # tuples as lists, as the recorded JSON has them


def _build(config: DatasetConfig, root: Path, sweeps: list[dict], device: str,
           progress: Progress | None, engine: Engine) -> dict:
    failed: list[str] = []
    videos = _real_sources(config.videos, root, failed)
    if not videos:
        raise InputError("the config's videos hold no real video files" + (
            f" ({'; '.join(failed)})" if failed else ""))
    split_of = split_identities(sorted({v.parent.name for v in videos}), config.splits, config.seed)
    done = {row.output for row in _rows(root)}
    every = outputs(videos, config, split_of)
    todo = [o for o in every if not (o.rel in done and (root / o.rel).is_file())]
    if engine.name == "single":
        made_here = _make_here(todo, config, root, resolve_device(device), progress)
    else:
        # optional: needs Ray (swapscope[scale])
        from forge.ray_dataset import make_on_ray

        made_here = make_on_ray(todo, config, root, device, engine, progress)
    made = 0
    for output, error in made_here:
        if error:
            failed.append(f"{output.rel}: {error}")
            continue
        made += 1
        log.info("[green]made[/] %s", output.rel)
    rows = _rows(root)
    write_data_card(root)
    summary = {"config": asdict(config), "sweeps": sweeps, "code_version": __version__,
               "finished": True,
               "splits": split_of}
    write_text_atomic(root / "dataset.json", json.dumps(summary, indent=2))
    return {"out": str(root), "made": made, "skipped": len(every) - len(todo), "failed": failed,
            "rows": len(rows), "fakes": sum(r.label == "fake" for r in rows),
            "reals": sum(r.label == "real" for r in rows), "splits": split_of}


def _make_here(todo: list[Output], config: DatasetConfig, root: Path, device: str,
               progress: Progress | None) -> Iterator[tuple[Output, str]]:
    """(output, error or "") for each output, made in this process; a video's faces are found
    once for all its real counterparts."""
    faces: dict[Path, Callable] = {}
    for output in todo:
        if output.video not in faces:
            faces[output.video] = functools.cache(_faces_of(output.video, config))
        try:
            make_output(output, config, root, device, progress, faces[output.video])
        except InputError as exc:
            yield output, str(exc)
            continue
        yield output, ""


def _real_sources(inputs: list[str], root: Path, failed: list[str]) -> list[Path]:
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
    identity: str
    split: str


def outputs(videos: list[Path], config: DatasetConfig, split_of: dict[str, str]) -> list[Output]:
    """Every output of the set: per video, a real counterpart per CRF of the sweep, then a fake
    per knob combination."""
    combos = config.combinations()
    names = output_names(videos)
    found = []
    for video in videos:
        identity = video.parent.name
        common = {"video": video, "identity": identity, "split": split_of[identity]}
        for crf in sorted({c.get("crf", 18) for c in combos}):
            found.append(Output(rel=f"real/crf{crf}/{names[video]}.mp4", label="real",
                                knobs={"crf": crf}, **common))
        for knobs in combos:
            found.append(Output(rel=f"fake/{knob_id(knobs)}/{names[video]}.mp4", label="fake",
                                knobs=knobs, **common))
    return found


def _faces_of(video: Path, config: DatasetConfig) -> Callable[[], dict]:
    """Finds ``video``'s faces (the boxes a real counterpart's watermark goes on) when called."""
    return functools.partial(faces_to_mark, video, VideoConfig.min_size, config.max_frames)


def make_output(output: Output, config: DatasetConfig, root: Path, device: str,
                progress: Progress | None = None, faces: Callable | None = None) -> None:
    """Make one output and its manifest row (raises InputError); ``faces`` finds the source's
    faces for a real counterpart's watermark (default: found here)."""
    if output.label == "real":
        write_real(output.video, output.rel, root, output.knobs["crf"], config, output.identity,
                   output.split, faces or _faces_of(output.video, config))
    else:
        forge_video(output.video, root / output.rel,
                    _video_config(output.knobs, config, output.split), device, progress,
                    root=root)


def output_names(videos: list[Path]) -> dict[Path, str]:
    """Each video's output name, ``<identity>__<stem>``; videos that would share one (the same
    folder and file names in two places) also get a hash of their path, so none overwrites
    another."""
    base = {v: f"{v.parent.name}__{v.stem}" for v in videos}
    counts = collections.Counter(base.values())
    return {v: name if counts[name] == 1 else
            f"{name}__{hashlib.sha256(str(v.resolve()).encode()).hexdigest()[:8]}"
            for v, name in base.items()}


def _rows(root: Path) -> list[ManifestRow]:
    return read_manifest(root) if (root / "manifest.jsonl").is_file() else []


def write_real(source: Path, rel: str, root: Path, crf: int, config: DatasetConfig, identity: str,
               split: str, faces: Callable[[], dict[int, list[np.ndarray]]]) -> ManifestRow:
    """The real counterpart: the same frames and encoder settings as the fakes, the same
    watermark policy (on the faces ``faces()`` finds), labelled ``real`` in the manifest and its
    container."""
    info = probe(source)
    manifest_id = new_manifest_id()
    watermark = config.watermark == "both"
    hidden = pending_path(root / rel)  # until its manifest row is down
    try:
        frames = encode_labelled(
            source, hidden, info, manifest_id=manifest_id, method="real", crf=crf,
            watermark=watermark, faces=faces() if watermark else {},
            max_frames=config.max_frames,
            batch_size=config.batch_size,
        )
        source_hash = sha256_file(source)  # once, for the credential and the row
        sign_output(hidden, Path(rel).name, signing_key(config.sign_key or None,
                                                        config.sign_cert or None),
                    manifest_id=manifest_id, method="real", source=source,
                    hashes=(source_hash, None))
        row = ManifestRow.new(
            manifest_id=manifest_id, label="real", method="real", split=split, source=source,
            source_sha256=source_hash, output=rel, written=hidden, folder=root,
            source_identity=identity,
            target_identity=identity, knobs={"crf": crf}, frames=frames, swapped_frames=0,
            fps=info.fps, width=info.width, height=info.height, watermark=watermark, labels=None,
        )
        commit(root, row, [(hidden, root / rel)])
    finally:
        hidden.unlink(missing_ok=True)
    return row
