"""Shared fixtures: self-made media from skimage's astronaut, and the one way to find
../shared/data (skipped with a reason where absent; required when CI=true)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from swapscope.shared import find_shared_data

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded in tests
os.environ.setdefault("SWAPSCOPE_OFFLINE", "1")
# the per-installation Content Credentials key is made in a folder of the test run's own,
# never in the user's config folder (commands run in subprocesses inherit it)
os.environ["SWAPSCOPE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="swapscope-config-")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: real videos, identity photos and dev fakes (never committed)."""
    found = find_shared_data()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                "CI=true but ../shared/data is missing: the sample data must be present in CI"
            )
        pytest.skip("sample data ../shared/data not found (set SWAPSCOPE_SHARED_DATA to its path)")
    return found


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: a real face that ships with scikit-image."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def face_video(tmp_path_factory, astronaut) -> Path:
    """A 24-frame 320x320 clip of the astronaut's face moving, with a sine-tone audio track."""
    from swapscope.media.sample import moving_face_frames, write_clip

    path = tmp_path_factory.mktemp("media") / "astronaut.mp4"
    return write_clip(path, moving_face_frames(astronaut, 24), fps=25, audio_seconds=1.0)


@pytest.fixture(scope="session")
def dlib_backend():
    from swapscope.faces.backends import create_backend

    return create_backend("dlib")


@pytest.fixture(scope="session")
def two_facesets(tmp_path_factory, astronaut) -> list[Path]:
    """Two 'identities' made from the astronaut and her mirror image, one face set each."""
    from typer.testing import CliRunner

    from forge.cli import app
    from swapscope.media.sample import moving_face_frames, write_clip

    root = tmp_path_factory.mktemp("facesets")
    sets = []
    for label, image in (
        ("eileen", astronaut),
        ("mirror", np.ascontiguousarray(astronaut[:, ::-1])),
    ):
        clip = write_clip(root / f"{label}.mp4", moving_face_frames(image, 16), fps=25)
        out = root / f"fs_{label}"
        result = CliRunner().invoke(
            app, ["extract", str(clip), "--out", str(out), "--label", label]
        )
        assert result.exit_code == 0, result.output
        sets.append(out)
    return sets


RAY_FAULTS = ("ray-gather", "ray-score", "ray-forge")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray with 2 CPUs for a module's engine tests (its start and its workers' imports
    paid once; stopped when the module's tests end). Each of its worker kinds dies once, at its
    first input: a gather task, a scoring actor, a forge task; the folder yielded holds a file
    per fault that fired."""
    import ray

    marks = tmp_path_factory.mktemp("ray-faults")
    saved = {k: os.environ.get(k) for k in ("SWAPSCOPE_FAULT", "SWAPSCOPE_FAULT_MARK")}
    os.environ["SWAPSCOPE_FAULT"] = ",".join(f"once:{name}" for name in RAY_FAULTS)
    os.environ["SWAPSCOPE_FAULT_MARK"] = str(marks)
    try:  # the workers take the environment Ray starts with
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield marks
    ray.shutdown()


@pytest.fixture(scope="session")
def forgery_set(tmp_path_factory, astronaut) -> Path:
    """A forge dataset: fwa-sim fakes (render size 40 and 120 px) of two 12-frame clips (the
    astronaut and her mirror image) and their real counterparts."""
    from typer.testing import CliRunner

    from forge.cli import app as forge_app
    from swapscope.media.sample import moving_face_frames, write_clip

    root = tmp_path_factory.mktemp("eval")
    for person, image in (
        ("eileen", astronaut),
        ("mirror", np.ascontiguousarray(astronaut[:, ::-1])),
    ):
        (root / "videos" / person).mkdir(parents=True)
        write_clip(root / "videos" / person / "clip.mp4", moving_face_frames(image, 12), fps=25)
    config = root / "set.toml"
    config.write_text('out = "set"\nvideos = ["videos"]\nmax_frames = 12\n'
                      '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [40, 120]\n')
    made = CliRunner().invoke(forge_app, ["dataset", str(config)])
    assert made.exit_code == 0, made.output
    return root / "set"


SWAP_ARGS = ["--arch", "swap-ae-lite", "--batch-size", "2", "--device", "cpu", "--gan-warmup",
             "0", "--save-every", "2", "--preview-every", "2", "--steps"]
DETECT_ARGS = ["--steps-per-epoch", "1", "--batch-size", "4", "--device", "cpu", "--epochs"]


@pytest.fixture(scope="session")
def saved_runs(two_facesets, tmp_path_factory):
    """A swap model after 2 steps and a detector run after 1 epoch, each with its resume state;
    tests damage copies."""
    from typer.testing import CliRunner

    from detect.cli import app as detect_app
    from forge.cli import app as forge_app

    root = tmp_path_factory.mktemp("runs")
    for app, name, args in ((forge_app, "model", [*SWAP_ARGS, "2"]),
                            (detect_app, "run", [*DETECT_ARGS, "1"])):
        done = CliRunner().invoke(app, ["train", *map(str, two_facesets), "--out",
                                        str(root / name), *args])
        assert done.exit_code == 0, done.output
    return root
