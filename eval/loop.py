"""The default benchmark loop of ``eval report`` with no config: make the data, then report.

With the sample data (../shared/data) it uses four LivePortrait performers' clips (the card
allows swaps of them for development, never of the hdtf public figures); on a fresh install
without it, two clips it makes from scikit-image's astronaut photo and its mirror image.
Steps: extract the first two people's faces, train a small swap model, forge fwa-sim and model
fakes at several knob settings with real counterparts (forge dataset), then the benchmark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

from eval.benchmark import BenchmarkConfig
from forge.dataset import DatasetConfig
from forge.dataset_driver import build_dataset
from forge.extract import ExtractConfig, extract
from forge.train import TrainConfig, train
from swapscope.config import check_types, read_config_file, relative_to_config
from swapscope.errors import InputError
from swapscope.media.sample import moving_face_frames, write_clip
from swapscope.shared import find_shared_data

log = logging.getLogger(__name__)

SHARED_PEOPLE = [
    "lp_d6_woman_hairbun", "lp_d9_man_glasses", "lp_d3_woman_hoops", "lp_d12_man_glasses_curly",
]


@dataclass
class LoopConfig:
    # "" = look for ../shared/data or $SWAPSCOPE_SHARED_DATA; "none" = self-made clips
    shared_data: str = ""
    max_frames: int = 60  # frames of each clip in the forgery set
    train_frames: int = 300  # frames of each of the two people's clips for the swap model
    train_steps: int = 400
    fwa_sizes: list[int] = field(default_factory=lambda: [64, 112])
    blends: list[str] = field(default_factory=lambda: ["alpha", "poisson"])
    detectors: list[str | list[str]] = field(default_factory=lambda: [""])


def _self_made_videos(folder: Path) -> list[Path]:
    import numpy as np
    from skimage import data

    out = []
    for person, image in (
        ("astronaut", data.astronaut()),
        ("astronaut_mirrored", np.ascontiguousarray(data.astronaut()[:, ::-1])),
    ):
        (folder / person).mkdir(parents=True, exist_ok=True)
        path = folder / person / "clip.mp4"
        if not path.is_file():
            write_clip(path, moving_face_frames(image, 96), fps=25, audio_seconds=3.84)
        out.append(path)
    return out


def make_default_data(work: Path, config: LoopConfig, device: str) -> BenchmarkConfig:
    """Build (or reuse) the forgery set under ``work``; returns the benchmark config for it.
    Each step is logged."""

    shared = None if config.shared_data == "none" else find_shared_data(config.shared_data)
    if shared is not None:
        videos = [next((shared / "real_videos" / p).glob("*.mp4")) for p in SHARED_PEOPLE]
        log.info(f"sample data: {shared} ({', '.join(SHARED_PEOPLE)})")
    else:
        videos = _self_made_videos(work / "videos")
        log.info("no sample data found: using clips made from scikit-image's astronaut photo")
    facesets = []
    for video in videos[:2]:
        out = work / "facesets" / video.parent.name
        if not out.exists():
            log.info(f"extracting {video.parent.name}")
            extract([video], out, ExtractConfig(max_frames=config.train_frames))
        facesets.append(str(out))
    model = work / "model"
    log.info(
        f"training a swap model {Path(facesets[0]).name} <-> {Path(facesets[1]).name} "
        f"({config.train_steps} steps)"
    )
    train(
        TrainConfig(
            facesets=(facesets[0], facesets[1]), out=str(model), arch="swap-ae-lite", gan=False,
            steps=config.train_steps, save_every=config.train_steps,
            preview_every=config.train_steps,
        ),
        device,
    )
    root = work / "forgeries"
    sweeps = [{"method": ["fwa-sim"], "fwa_size": config.fwa_sizes},
              {"method": ["model"], "model": [str(model)], "blend": config.blends}]
    for sweep in sweeps:
        log.info(f"forging {sweep}")
        build_dataset(DatasetConfig(out=str(root), videos=[str(v) for v in videos], sweep=sweep,
                                    watermark="both", max_frames=config.max_frames), device)
    return BenchmarkConfig(sets=[str(root)], detectors=config.detectors)


def load_config(path: str | Path) -> tuple[BenchmarkConfig | None, LoopConfig]:
    """An eval config (TOML or JSON): ``sets`` and ``detectors`` to benchmark existing forgery
    sets, or ``[loop]`` settings for the default loop. Unknown keys are errors."""
    path = Path(path)
    raw = read_config_file(path, {f.name for f in fields(BenchmarkConfig)} | {"loop"})
    loop = raw.pop("loop", {})
    if not isinstance(loop, dict):
        raise InputError(f"{path}: [loop] must be a table of keys")
    unknown = set(loop) - {f.name for f in fields(LoopConfig)}
    if unknown:
        raise InputError(f"{path}: unknown config keys {sorted('loop.' + k for k in unknown)}")
    check_types(raw, BenchmarkConfig, path)
    check_types(loop, LoopConfig, f"{path} [loop]")
    if "sets" in raw:
        raw["sets"] = relative_to_config(path, raw["sets"])
    if "detectors" in raw:  # a checkpoint, or a list of them (an ensemble)
        raw["detectors"] = [relative_to_config(path, d) if isinstance(d, list)
                            else relative_to_config(path, [d])[0] for d in raw["detectors"]]
    bench = BenchmarkConfig(**raw) if raw.get("sets") else None
    return bench, LoopConfig(**loop)
