"""Files a user hands over or names (issue 27): each bad one is one clear line and exit 2,
nothing written. Each test failed before its fix."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import app as forge_app
from tests.conftest import DETECT_ARGS, SWAP_ARGS

runner = CliRunner()


@pytest.mark.parametrize("name", ["out.txt", "out.png", "no_suffix", "folder"])
def test_forge_sample_names_a_file_it_cannot_write_in_one_line(tmp_path, name):
    (tmp_path / "folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(forge_app, ["sample", str(tmp_path / name), "--frames", "2"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and name in line
    assert sorted(tmp_path.rglob("*")) == before


def test_forge_sample_replaces_no_file(tmp_path):
    mine = tmp_path / "holiday.mp4"
    mine.write_bytes(b"someone's video")
    result = runner.invoke(forge_app, ["sample", str(mine), "--frames", "2"])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert mine.read_bytes() == b"someone's video"
    fresh = runner.invoke(forge_app, ["sample", str(tmp_path / "new.MP4"), "--frames", "2"])
    assert fresh.exit_code == 0, fresh.output


@pytest.mark.parametrize("option, name", [
    ("--heatmap", "mine.mp4"), ("--heatmap", "heat.txt"), ("--heatmap", "folder"),
    ("--results", "table.txt"), ("--results", "folder"),
])
def test_detect_scan_writes_its_outputs_only_where_it_may(face_video, tmp_path, option, name):
    """A heatmap over a file the user made (it was written over), or a results table or heatmap
    under a name its writer cannot write (a .txt table was written as Parquet)."""
    from detect.cli import app as detect_app

    (tmp_path / "folder").mkdir()
    (tmp_path / "mine.mp4").write_bytes(b"someone's video")
    before = {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    result = runner.invoke(detect_app, ["scan", str(face_video), option, str(tmp_path / name),
                                        "--max-frames", "2", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and name in line
    assert {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before


@pytest.mark.parametrize("damage", ["junk line", "truncated", "other key"])
def test_a_damaged_installation_signing_key_is_one_line(face_video, tmp_path, monkeypatch, damage):
    from swapscope.labels.credentials import _make_local_pair

    config = tmp_path / "config"
    monkeypatch.setenv("SWAPSCOPE_CONFIG_DIR", str(config))
    _make_local_pair(config / "c2pa")
    key = config / "c2pa" / "key.pem"
    text = key.read_text().splitlines()
    if damage == "junk line":
        key.write_text("\n".join(text[:2] + ["this is not base64 !!"] + text[2:]) + "\n")
    elif damage == "truncated":
        key.write_text("\n".join(text[:2]) + "\n")
    else:
        _make_local_pair(tmp_path / "other")
        key.write_bytes((tmp_path / "other" / "key.pem").read_bytes())
    out = tmp_path / "fakes" / "x.mp4"
    result = runner.invoke(forge_app, ["video", str(face_video), "--out", str(out),
                                       "--max-frames", "2"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "key.pem" in line and "move" in line
    assert not out.exists()


GOOD_REFERENCE = {"kind": "swapscope.identity-reference", "name": "eileen", "sources": ["a.png"],
                  "embeddings": [[0.01] * 128]}


@pytest.mark.parametrize("change", [
    {"embeddings": None}, {"name": 7}, {"name": None}, {"embeddings": [["x"] * 128]},
    {"embeddings": "abc"}, {"embeddings": [[0.1] * 127]}, {"embeddings": [[float("nan")] * 128]},
    {"sources": "a.png"}, {"sources": [3]},
])
def test_a_bad_identity_reference_is_one_line(face_video, tmp_path, change):
    import json

    ref = tmp_path / "ref.json"
    payload = {k: v for k, v in {**GOOD_REFERENCE, **change}.items() if v is not None}
    ref.write_text(json.dumps(payload))
    out = tmp_path / "x.mp4"
    result = runner.invoke(forge_app, ["video", str(face_video), "--out", str(out),
                                       "--identity", str(ref), "--max-frames", "2"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert str(ref) in line and "identity reference" in line
    assert not out.exists()


def _disk_fills_after(monkeypatch, writes: int):
    """safetensors' writer fails with a full disk after ``writes`` files, as it does (its
    SafetensorError with the OS's message)."""
    import safetensors.torch
    from safetensors import SafetensorError

    real, done = safetensors.torch.save_file, []

    def save_file(tensors, path, metadata=None):
        if len(done) >= writes:
            with open(path, "wb") as handle:
                handle.write(b"\x08\x00")  # what a full disk leaves of it
            raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")
        done.append(path)
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("trainer", ["forge", "detect"])
def test_a_full_disk_while_a_trainer_saves_is_one_line_and_keeps_the_last_checkpoint(
        two_facesets, tmp_path, monkeypatch, trainer):
    from detect.cli import app as detect_app

    out = tmp_path / "run"
    if trainer == "forge":
        app, args = forge_app, ["train", *map(str, two_facesets), "--out", str(out), "--arch",
                                "swap-ae-lite", "--batch-size", "2", "--no-gan", "--device", "cpu",
                                "--save-every", "1", "--preview-every", "1", "--steps"]
    else:
        app, args = detect_app, ["train", *map(str, two_facesets), "--out", str(out),
                                 "--steps-per-epoch", "1", "--batch-size", "4", "--device", "cpu",
                                 "--epochs"]
    assert runner.invoke(app, [*args, "1"]).exit_code == 0
    saved = _tree(out)
    _disk_fills_after(monkeypatch, 0)
    result = runner.invoke(app, [*args, "2"])
    assert result.exit_code == 2, (result.output, result.exception)
    [line] = result.stderr.strip().splitlines()
    assert "No space left on device" in line and "kept" in line
    monkeypatch.undo()
    now = _tree(out)
    assert {k: v for k, v in now.items() if k in saved} == saved  # nothing it had is changed
    assert all(k in saved or k.name == "curves.png" or "epochs" in k.parts for k in now)


def _lying_header(path):
    data = bytearray(path.read_bytes())
    data[:8] = (len(data) * 4).to_bytes(8, "little")  # a header longer than the file
    path.write_bytes(bytes(data))


def _reshaped(path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if v.ndim)
    tensors[key] = tensors[key].flatten()[:5].clone()
    save_file(tensors, str(path))


def _state(change):
    def edit(path):
        import json

        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return edit


def _resume_damaged(saved_runs, two_facesets, tmp_path, name, file, damage):
    import shutil

    from detect.cli import app as detect_app

    out = tmp_path / name
    shutil.copytree(saved_runs / name, out)
    damage(out / file)
    app, args = ((forge_app, [*SWAP_ARGS, "3"]) if name == "model"
                 else (detect_app, [*DETECT_ARGS, "2"]))
    result = runner.invoke(app, ["train", *map(str, two_facesets), "--out", str(out), *args])
    assert result.exit_code == 2, (result.output, result.exception)
    [line] = result.stderr.strip().splitlines()
    assert Path(file).name in line or "resume state" in line, line


@pytest.mark.parametrize("file,damage", [
    ("weights.safetensors", _lying_header), ("resume/opt_g.safetensors", _lying_header),
    ("resume/opt_g.safetensors", _reshaped), ("resume/pools.safetensors", _reshaped),
    ("resume/state.json", _state(lambda s: {**s, "torch_rng": s["torch_rng"][:100]})),
    ("resume/state.json", _state(lambda s: {**s, "numpy_rng": {"state": "junk"}})),
])
def test_a_hand_edited_swap_model_resume_state_is_one_line(saved_runs, two_facesets, tmp_path,
                                                           file, damage):
    _resume_damaged(saved_runs, two_facesets, tmp_path, "model", file, damage)


@pytest.mark.parametrize("file,damage", [
    ("resume/model.safetensors", _lying_header), ("resume/optimizer.safetensors", _reshaped),
    ("resume/state.json", _state(lambda s: {**s, "torch_rng": [300] * len(s["torch_rng"])})),
])
def test_a_hand_edited_detector_resume_state_is_one_line(saved_runs, two_facesets, tmp_path,
                                                         file, damage):
    _resume_damaged(saved_runs, two_facesets, tmp_path, "run", file, damage)
