"""Faults of the second kind: runs killed at the worst moment (``SWAPSCOPE_FAULT`` kill points,
SIGTERM, SIGKILL), outputs that cannot be written, and hand-edited checkpoints and resume state.
Each test failed before its fix (issue: nothing lost, nothing mislabelled)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detect.cli import app as detect_app
from eval.cli import app as eval_app
from forge.cli import app as forge_app
from swapscope.files import sha256_file
from swapscope.formats.manifest import read_manifest

runner = CliRunner()


def _run(*args: str, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """A swapscope command in its own process (``python -m forge ...``), killed at ``fault``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("SWAPSCOPE_FAULT", None)
    if fault:
        env["SWAPSCOPE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _hidden(folder: Path) -> list[str]:
    """Temporary and pending files anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if ".tmp-" in p.name or ".pending-" in p.name)


def _committed(folder: Path) -> None:
    """Every row's output is there with its recorded hash, every labels file it names too."""
    for row in read_manifest(folder):
        assert sha256_file(folder / row.output) == row.output_sha256, row.output
        assert row.labels is None or (folder / row.labels).is_file()


# --- a fake and its manifest row land together --------------------------------------------

@pytest.mark.parametrize("fault", ["before-manifest-row", "after-manifest-row"])
def test_a_kill_between_a_fake_and_its_row_leaves_neither_alone(face_video, tmp_path, fault):
    out = tmp_path / "fake.mp4"
    args = ("forge", "video", str(face_video), "--out", str(out), "--max-frames", "6")
    killed = _run(*args, fault=fault)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()  # never a fake without its row
    rows = read_manifest(tmp_path) if (tmp_path / "manifest.jsonl").exists() else []
    assert len(rows) == (fault == "after-manifest-row")
    second = _run("forge", "video", str(face_video), "--out", str(tmp_path / "second.mp4"),
                  "--max-frames", "6")
    assert second.returncode == 0, second.stderr
    # the next writer of the set finished the committed fake and removed the uncommitted one
    assert out.exists() == (fault == "after-manifest-row")
    _committed(tmp_path)
    assert _hidden(tmp_path) == []


def test_a_dataset_killed_after_a_row_resumes_whole(tmp_path, astronaut):
    from swapscope.media.sample import moving_face_frames, write_clip

    write_clip(tmp_path / "videos" / "eileen" / "clip.mp4", moving_face_frames(astronaut, 6))
    config = tmp_path / "set.toml"
    config.write_text('out = "set"\nvideos = ["videos"]\nmax_frames = 6\nwatermark = "neither"\n'
                      'splits = {train = 1.0}\n[sweep]\nfwa_size = [64]\n')
    killed = _run("forge", "dataset", str(config), fault="after-manifest-row")
    assert killed.returncode == -signal.SIGKILL
    assert len(read_manifest(tmp_path / "set")) == 1  # the real counterpart's row, not its file
    again = _run("forge", "dataset", str(config), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["made"] == 1  # the fake; the real was settled, not remade
    _committed(tmp_path / "set")
    assert len(read_manifest(tmp_path / "set")) == 2 and _hidden(tmp_path / "set") == []


def test_overwriting_a_fake_removes_the_labels_of_the_old_one(face_video, tmp_path):
    out = tmp_path / "fake.mp4"
    args = ["video", str(face_video), "--out", str(out), "--max-frames", "4"]
    assert runner.invoke(forge_app, args).exit_code == 0
    old = read_manifest(tmp_path)[0]
    assert runner.invoke(forge_app, [*args, "--overwrite"]).exit_code == 0
    new = read_manifest(tmp_path)
    assert [r.id for r in new] != [old.id] and len(new) == 1
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [f"{new[0].id}.jsonl"]


# --- checkpoints: a kill half-way through a swap loses nothing -----------------------------

def _train_args(two_facesets, out, steps):
    return ("forge", "train", *map(str, two_facesets), "--out", str(out), "--arch",
            "swap-ae-lite", "--batch-size", "2", "--device", "cpu", "--no-gan", "--steps",
            str(steps), "--save-every", "1", "--preview-every", "1")


def test_a_checkpoint_swap_killed_between_its_renames_is_not_lost(two_facesets, tmp_path):
    out = tmp_path / "model"
    assert _run(*_train_args(two_facesets, out, 1)).returncode == 0
    weights = out / "weights.safetensors"
    saved = (sha256_file(weights), weights.stat().st_mtime_ns)
    killed = _run(*_train_args(two_facesets, out, 2), fault="swap-in")
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()  # the old checkpoint is set aside, the new one not yet in place
    again = _run(*_train_args(two_facesets, out, 1))  # step 1 is done: nothing to train
    assert again.returncode == 0, again.stderr
    assert (sha256_file(weights), weights.stat().st_mtime_ns) == saved
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["model"]
    assert _run(*_train_args(two_facesets, out, 2)).returncode == 0


def test_swap_in_never_deletes_the_only_copy(tmp_path):
    from swapscope.checkpoint import fresh_folder, swap_in

    final = tmp_path / "ckpt"
    old = tmp_path / "ckpt.old"
    old.mkdir()
    (old / "weights").write_text("step 1")  # what a kill between the renames leaves
    tmp = fresh_folder(final)
    (tmp / "weights").write_text("step 2")
    swap_in(tmp, final)
    assert (final / "weights").read_text() == "step 2"
    assert not old.exists() and not tmp.exists()


def test_a_checkpoint_interrupted_while_it_is_written_leaves_no_temp_folder(tmp_path):
    from swapscope.checkpoint import replacing

    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "weights").write_text("step 1")
    with pytest.raises(KeyboardInterrupt), replacing(final) as tmp:  # Ctrl-C or SIGTERM
        (tmp / "weights").write_text("half of step 2")
        raise KeyboardInterrupt
    assert (final / "weights").read_text() == "step 1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with replacing(final) as tmp:
        (tmp / "weights").write_text("step 2")
    assert (final / "weights").read_text() == "step 2"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


# --- SIGTERM and SIGKILL: no worker left running, no temp file left behind ----------------

def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, astronaut):
    from swapscope.media.sample import moving_face_frames, write_clip

    path = tmp_path_factory.mktemp("long") / "eileen.mp4"
    return write_clip(path, moving_face_frames(astronaut, 150), fps=25)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_forge_video_cleans_up(long_clip, tmp_path, sig):
    out = tmp_path / "fake.mp4"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "forge", "video", str(long_clip), "--out", str(out), "--method",
         "fwa-sim"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not _hidden(tmp_path) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert process.poll() is None and _hidden(tmp_path), "the fake was never being written"
    time.sleep(0.5)  # mid-way through writing the fake
    process.send_signal(sig)
    process.wait(timeout=60)
    assert _descendants(process.pid) == set()
    assert not out.exists()
    if sig == signal.SIGTERM:  # clean-up ran: nothing is left, and it says so
        assert process.returncode == 143
        assert "interrupted" in process.stderr.read()
        assert _hidden(tmp_path) == []
    else:  # nothing could run: the next run clears what the killed one left
        again = _run("forge", "video", str(long_clip), "--out", str(tmp_path / "b.mp4"),
                     "--max-frames", "4", "--method", "fwa-sim")
        assert again.returncode == 0, again.stderr
        assert _hidden(tmp_path) == []


def test_two_processes_never_write_one_face_set(long_clip, tmp_path):
    out = tmp_path / "faces"
    # the first run stops itself while it holds the face set, just before committing its input
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SWAPSCOPE_FAULT": "stop:faceset-commit"}
    first = subprocess.Popen([sys.executable, "-m", "forge", "extract", str(long_clip), "--out",
                              str(out), "--every", "1"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _stopped(first.pid) and time.monotonic() < deadline:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.1)
        assert _stopped(first.pid), "the first run never reached its commit"
        second = _run("forge", "extract", str(long_clip), "--out", str(out))
        assert second.returncode == 2 and "another forge extract is writing it" in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    from swapscope.formats.faceset import FaceSet

    assert len(FaceSet.open(out)) == 150  # every frame's face, none lost to the second run


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP): state T in /proc/PID/stat."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError):
        return False


# --- outputs that cannot be written: one line, before any work ------------------------------

@pytest.fixture(scope="module")
def random_detector(tmp_path_factory):
    from detect.checkpoint import save_detector
    from detect.models import create_detector

    model, data_cfg = create_detector("efficientnet_lite0", pretrained=False)
    return save_detector(tmp_path_factory.mktemp("det") / "det", model,
                         {"arch": "efficientnet_lite0", "data_config": data_cfg.to_json()})


def _commands(bad: Path, face_video, two_facesets, detector, tmp_path):
    """(app, args) of every command that writes, aimed at the output ``bad``."""
    fa, fb = map(str, two_facesets)
    config = tmp_path / "set.toml"
    config.write_text(f'out = "{bad}"\nvideos = ["{face_video.parent}"]\nmax_frames = 4\n')
    return {
        "forge extract": (forge_app, ["extract", str(face_video), "--out", str(bad)]),
        "forge train": (forge_app, ["train", fa, fb, "--out", str(bad), "--steps", "1",
                                    "--arch", "swap-ae-lite", "--batch-size", "2", "--no-gan"]),
        "forge video": (forge_app, ["video", str(face_video), "--out", str(bad / "x.mp4")]),
        "forge dataset": (forge_app, ["dataset", str(config)]),
        "forge sample": (forge_app, ["sample", str(bad / "x.mp4"), "--frames", "4"]),
        "detect train": (detect_app, ["train", fa, fb, "--out", str(bad), "--epochs", "1"]),
        "detect scan --heatmap": (detect_app, ["scan", str(face_video), "--model", str(detector),
                                               "--heatmap", str(bad / "h.mp4")]),
        "detect export": (detect_app, ["export", str(detector), "--out", str(bad)]),
        "eval report": (eval_app, ["report", "--out", str(bad), "--no-sample-data"]),
    }


@pytest.mark.parametrize("where", ["missing", "file in the way"])
def test_an_output_that_cannot_be_written_is_one_line(where, face_video, two_facesets,
                                                      random_detector, tmp_path):
    if where == "missing":
        bad = Path("/proc/swapscope-cannot-exist/out")  # not even root can make it
    else:
        (tmp_path / "a_file").write_text("mine")
        bad = tmp_path / "a_file" / "out"
    for name, (app, args) in _commands(bad, face_video, two_facesets, random_detector,
                                       tmp_path).items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output, result.exception)
        assert "cannot write there" in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
    if where != "missing":
        assert (tmp_path / "a_file").read_text() == "mine"


def test_a_full_disk_leaves_no_half_written_file(tmp_path, monkeypatch):
    import errno

    from swapscope.files import write_text_atomic

    target = tmp_path / "history.json"
    target.write_text("the old, whole file")

    def full(self, data):
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError):
        write_text_atomic(target, "the new file, twice as long as the old one")
    monkeypatch.undo()
    assert target.read_text() == "the old, whole file"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


# --- hand-edited checkpoints and resume state: one line -----------------------------------

def _edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.mark.parametrize("change", [
    lambda c: [c],  # a list, not an object
    lambda c: {k: v for k, v in c.items() if k != "arch"},
    lambda c: {**c, "data_config": {"input_size": "big"}},
])
def test_a_tampered_detector_config_is_one_line(random_detector, face_video, tmp_path, change):
    import shutil

    copy = tmp_path / "det"
    shutil.copytree(random_detector, copy)
    _edit_json(copy / "config.json", change)
    result = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(copy)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(result.stderr.strip().splitlines()) == 1 and "config" in result.stderr


@pytest.fixture(scope="module")
def swap_model(two_facesets, tmp_path_factory):
    out = tmp_path_factory.mktemp("swap") / "model"
    assert _run(*_train_args(two_facesets, out, 1)).returncode == 0
    return out


@pytest.mark.parametrize(("where", "change"), [
    ("config.json", lambda c: {k: v for k, v in c.items() if k != "identities"}),
    ("config.json", lambda c: {**c, "size": "large"}),
    ("resume/state.json", lambda s: [s]),
    ("resume/state.json", lambda s: {k: v for k, v in s.items() if k != "opt_g"}),
    ("resume/state.json", lambda s: {**s, "opt_g": {"param_groups": "x"}}),
])
def test_a_tampered_swap_model_or_resume_state_is_one_line(swap_model, two_facesets, face_video,
                                                           tmp_path, where, change):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(swap_model, copy)
    _edit_json(copy / where, change)
    resumed = _run(*_train_args(two_facesets, copy, 2))
    assert resumed.returncode == 2, resumed.stderr
    assert len(resumed.stderr.strip().splitlines()) == 1
    if where == "config.json":
        forged = runner.invoke(forge_app, ["video", str(face_video), "--model", str(copy),
                                           "--out", str(tmp_path / "f.mp4")])
        assert forged.exit_code == 2 and len(forged.stderr.strip().splitlines()) == 1


def test_a_tampered_detector_resume_state_is_one_line(two_facesets, tmp_path):
    def train(epochs):
        return runner.invoke(detect_app, [
            "train", *map(str, two_facesets), "--out", str(tmp_path / "run"), "--epochs",
            str(epochs), "--steps-per-epoch", "1", "--batch-size", "4", "--device", "cpu"])

    assert train(1).exit_code == 0
    _edit_json(tmp_path / "run" / "resume" / "state.json", lambda s: {**s, "scheduler": "gone"})
    resumed = train(2)
    assert resumed.exit_code == 2, (resumed.output, resumed.exception)
    assert "resume state" in resumed.stderr and len(resumed.stderr.strip().splitlines()) == 1


# --- a forgery set is never extended under other settings ---------------------------------

def test_a_dataset_rerun_with_other_settings_is_refused(tmp_path, astronaut):
    from swapscope.media.sample import moving_face_frames, write_clip

    write_clip(tmp_path / "videos" / "eileen" / "clip.mp4", moving_face_frames(astronaut, 6))
    config = tmp_path / "set.toml"
    text = ('out = "set"\nvideos = ["videos"]\nmax_frames = 6\nwatermark = "neither"\n'
            'splits = {train = 1.0}\n[sweep]\nfwa_size = [64]\n')
    config.write_text(text)
    assert runner.invoke(forge_app, ["dataset", str(config)]).exit_code == 0
    recorded = (tmp_path / "set" / "dataset.json").read_text()
    config.write_text(text.replace("max_frames = 6", "max_frames = 4"))
    changed = runner.invoke(forge_app, ["dataset", str(config)])
    assert changed.exit_code == 2 and "other max_frames" in changed.stderr
    assert (tmp_path / "set" / "dataset.json").read_text() == recorded
    config.write_text(text.replace("max_frames = 6", "max_frames = 6\nbatch_size = 2"))
    same = runner.invoke(forge_app, ["dataset", str(config), "--json"])  # speed only: resumes
    assert same.exit_code == 0 and json.loads(same.stdout)["made"] == 0
    config.write_text(text.replace("fwa_size = [64]", "fwa_size = [48]"))
    added = runner.invoke(forge_app, ["dataset", str(config), "--json"])  # a sweep adds outputs
    assert added.exit_code == 0 and json.loads(added.stdout)["made"] == 1
    recorded = json.loads((tmp_path / "set" / "dataset.json").read_text())
    assert recorded["sweeps"] == [{"fwa_size": [64]}, {"fwa_size": [48]}]
