"""``forge dataset``'s driver: the run around ``forge.dataset``'s work. It locks the set, checks
that a re-run keeps the set's settings, finishes what a killed run left, and picks the engine
that makes the outputs: this process, or Ray (``forge.ray_dataset``). The work knows no
engine; nothing it imports imports this."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from forge.dataset import (
    DatasetConfig,
    Output,
    faces_of,
    make_output,
    outputs,
    real_sources,
    set_rows,
    split_people,
)
from swapscope import __version__
from swapscope.config import read_json_object
from swapscope.device import resolve_device
from swapscope.errors import InputError
from swapscope.files import WriteLock, writable_folder, write_text_atomic
from swapscope.formats.manifest import settle_pending, write_data_card
from swapscope.progress import Progress
from swapscope.ray_engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Built:
    """What a forge dataset run did (``forge dataset --json`` prints it)."""

    out: str  # the forgery set's folder
    made: int  # outputs made by this run
    skipped: int  # outputs the set already held
    failed: list[str]  # one line per output that could not be made
    rows: int  # manifest rows of the set, all runs
    fakes: int
    reals: int
    splits: dict[str, str]  # person -> train | val | test

    def to_json(self) -> dict:
        return asdict(self)


def build_dataset(config: DatasetConfig, device: str = "cpu",
                  progress: Progress | None = None, engine: Engine | None = None) -> Built:
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
           progress: Progress | None, engine: Engine) -> Built:
    failed: list[str] = []
    videos = real_sources(config.videos, root, failed)
    if not videos:
        raise InputError("the config's videos hold no real video files" + (
            f" ({'; '.join(failed)})" if failed else ""))
    split_of = split_people(sorted({v.parent.name for v in videos}), config.splits, config.seed)
    done = {row.output for row in set_rows(root)}
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
    rows = set_rows(root)
    write_data_card(root)
    summary = {"config": asdict(config), "sweeps": sweeps, "code_version": __version__,
               "finished": True,
               "splits": split_of}
    write_text_atomic(root / "dataset.json", json.dumps(summary, indent=2))
    return Built(out=str(root), made=made, skipped=len(every) - len(todo), failed=failed,
                 rows=len(rows), fakes=sum(r.label == "fake" for r in rows),
                 reals=sum(r.label == "real" for r in rows), splits=split_of)


def _make_here(todo: list[Output], config: DatasetConfig, root: Path, device: str,
               progress: Progress | None) -> Iterator[tuple[Output, str]]:
    """(output, error or "") for each output, made in this process; a video's faces are found
    once for all its real counterparts."""
    faces: dict[Path, Callable] = {}
    for output in todo:
        if output.video not in faces:
            faces[output.video] = functools.cache(faces_of(output.video, config))
        try:
            make_output(output, config, root, device, progress, faces[output.video])
        except InputError as exc:
            yield output, str(exc)
            continue
        yield output, ""
