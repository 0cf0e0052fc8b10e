"""Faults a user meets: outputs that already exist, interrupted appends, resumed runs with
changed options, configs of the wrong type, inputs with nothing to score. Each test failed before
its fix (issue: nothing lost, nothing mislabelled)."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from detect.cli import app as detect_app
from forge.cli import app as forge_app
from swapscope.formats.faceset import FaceSet
from swapscope.formats.manifest import read_manifest

runner = CliRunner()


def _train(two_facesets, out, *extra):
    return runner.invoke(forge_app, ["train", *map(str, two_facesets), "--out", str(out),
                                     "--arch", "swap-ae-lite", "--batch-size", "2", "--device",
                                     "cpu", "--preview-every", "1", "--json", *extra])


def test_a_run_saved_before_its_image_pools_filled_resumes(two_facesets, tmp_path):
    out = tmp_path / "model"
    first = _train(two_facesets, out, "--steps", "2", "--save-every", "1", "--no-gan")
    assert first.exit_code == 0, first.output
    again = _train(two_facesets, out, "--steps", "3", "--save-every", "1", "--no-gan")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["step"] == 3


def test_a_resumed_run_uses_and_records_a_new_learning_rate(two_facesets, tmp_path):
    from forge.models import read_swap_config

    out = tmp_path / "model"
    assert _train(two_facesets, out, "--steps", "1", "--no-gan").exit_code == 0
    resumed = _train(two_facesets, out, "--steps", "2", "--no-gan", "--lr", "0.001")
    assert resumed.exit_code == 0, resumed.output
    checkpoint = read_swap_config(out)
    state = json.loads((checkpoint.folder / "resume" / "state.json").read_text())
    assert checkpoint.config["config"]["lr"] == 0.001
    assert {group["lr"] for group in state["opt_g"]["param_groups"]} == {0.001}


@pytest.fixture(scope="module")
def random_detector(tmp_path_factory):
    from detect.checkpoint import save_detector
    from detect.models import create_detector

    model, data_cfg = create_detector("efficientnet_lite0", pretrained=False)
    return save_detector(tmp_path_factory.mktemp("det") / "det", model,
                         {"arch": "efficientnet_lite0", "data_config": data_cfg.to_json()})


def _export(source, out, *extra):
    return runner.invoke(detect_app, ["export", str(source), "--out", str(out), *extra])


def test_export_never_replaces_what_it_did_not_make(random_detector, tmp_path):
    mine = tmp_path / "my_folder"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = _export(random_detector, mine)
    assert result.exit_code == 2 and "already exists" in result.stderr
    forced = _export(random_detector, mine, "--overwrite")
    assert forced.exit_code == 2 and "not a detector checkpoint" in forced.stderr
    assert (mine / "notes.txt").read_text() == "keep me"
    plain = tmp_path / "file.bin"
    plain.write_bytes(b"data")
    assert _export(random_detector, plain).exit_code == 2
    assert plain.read_bytes() == b"data"
    release = tmp_path / "release"
    assert _export(random_detector, release).exit_code == 0
    again = _export(random_detector, release, "--overwrite")
    assert again.exit_code == 0, again.output


def test_forge_video_never_replaces_what_it_did_not_make(face_video, tmp_path):
    other = tmp_path / "holiday.mp4"
    other.write_bytes(b"someone's video")
    args = ["video", str(face_video), "--out", str(other), "--max-frames", "4"]
    result = runner.invoke(forge_app, args)
    assert result.exit_code == 2 and "already exists" in result.stderr
    forced = runner.invoke(forge_app, [*args, "--overwrite"])
    assert forced.exit_code == 2 and "refusing to replace" in forced.stderr
    assert other.read_bytes() == b"someone's video"
    fake = tmp_path / "fake.mp4"
    args = ["video", str(face_video), "--out", str(fake), "--max-frames", "4"]
    assert runner.invoke(forge_app, args).exit_code == 0
    assert runner.invoke(forge_app, args).exit_code == 2  # without --overwrite: refused
    assert runner.invoke(forge_app, [*args, "--overwrite"]).exit_code == 0
    rows = read_manifest(tmp_path)
    assert len(rows) == 1 and rows[0].output == "fake.mp4"  # the stale row went with its file


def test_scan_json_says_why_an_input_has_no_score(tmp_path):
    from skimage import data

    from swapscope.media.sample import write_clip

    clip = write_clip(tmp_path / "cup.mp4", [data.coffee()[:320, :320]] * 4, fps=25)
    result = runner.invoke(detect_app, ["scan", str(clip), "--json"])
    assert result.exit_code == 2
    item = json.loads(result.stdout)["inputs"][0]
    assert item["verdict"] == "no face" and item["error"] == f"{clip}: no face found to score"


@pytest.mark.parametrize(("text", "key"), [
    ('videos = "videos"\n', "videos"),
    ('videos = ["videos"]\nmax_frames = "all"\n', "max_frames"),
    ('videos = ["videos"]\n[sweep]\ncrf = 28\n', "sweep"),
])
def test_a_config_of_the_wrong_type_is_one_line(tmp_path, text, key):
    config = tmp_path / "set.toml"
    config.write_text(text)
    result = runner.invoke(forge_app, ["dataset", str(config)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert f"'{key}' must be" in result.stderr
    assert not (tmp_path / "forgeries").exists()


def test_a_torn_face_set_append_does_not_break_the_next_run(face_video, tmp_path, astronaut):
    import cv2

    out = tmp_path / "faces"
    assert runner.invoke(forge_app, ["extract", str(face_video), "--out", str(out)]).exit_code == 0
    with open(out / "faces.jsonl", "a") as handle:  # a disk that filled up mid-append
        handle.write('{"source_id": "4f1c", "frame_ind')
    photo = tmp_path / "eileen" / "photo.png"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    again = runner.invoke(forge_app, ["extract", str(face_video), str(photo), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert len(FaceSet.open(out)) == 25


def test_extract_never_takes_its_own_crops_as_input(tmp_path, astronaut):
    import cv2

    folder = tmp_path / "eileen"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), astronaut[..., ::-1])
    args = ["extract", str(folder), "--out", str(folder / "faces"), "--json"]
    assert runner.invoke(forge_app, args).exit_code == 0
    cv2.imwrite(str(folder / "b.png"), np.ascontiguousarray(astronaut[:, ::-1, ::-1]))
    again = runner.invoke(forge_app, args)
    assert again.exit_code == 0, again.output
    assert [s["path"] for s in json.loads(again.stdout)["sources"]] == [
        str(folder / "a.png"), str(folder / "b.png")]
    sources = {Path(row.source_path).name for row in FaceSet.open(folder / "faces").rows}
    assert sources == {"a.png", "b.png"}


def test_a_second_writer_of_a_face_set_is_refused(face_video, tmp_path):
    from swapscope.files import WriteLock

    out = tmp_path / "faces"
    with WriteLock(tmp_path / ".faces.lock", out, "forge extract"):  # a first run, still going
        result = runner.invoke(forge_app, ["extract", str(face_video), "--out", str(out)])
    assert result.exit_code == 2 and "another forge extract is writing it" in result.stderr
    assert not out.exists() and not (tmp_path / "faces.partial").exists()


def _clip(path, image, frames=6):
    from swapscope.media.sample import moving_face_frames, write_clip

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_clip(path, moving_face_frames(image, frames), fps=25)


def test_dataset_takes_no_forge_output_as_a_real_source(tmp_path, astronaut):
    _clip(tmp_path / "videos" / "eileen" / "clip.mp4", astronaut)
    _clip(tmp_path / "videos" / "mirror" / "clip.mp4", np.ascontiguousarray(astronaut[:, ::-1]))
    config = tmp_path / "set.toml"
    config.write_text('out = "videos/set"\nvideos = ["videos"]\nmax_frames = 6\n'
                      'watermark = "neither"\n[sweep]\nfwa_size = [64]\n')
    assert runner.invoke(forge_app, ["dataset", str(config)]).exit_code == 0
    rows = read_manifest(tmp_path / "videos" / "set")
    again = runner.invoke(forge_app, ["dataset", str(config), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["made"] == 0
    assert read_manifest(tmp_path / "videos" / "set") == rows
    copied = tmp_path / "videos" / "copied" / "fake.mp4"  # a fake copied out of the set
    copied.parent.mkdir()
    copied.write_bytes((tmp_path / "videos" / "set" / rows[-1].output).read_bytes())
    third = runner.invoke(forge_app, ["dataset", str(config)])
    assert third.exit_code == 2 and "carries swapscope's label" in third.stderr


def test_dataset_outputs_of_same_named_videos_do_not_collide(tmp_path, astronaut):
    _clip(tmp_path / "a" / "alice" / "clip.mp4", astronaut)
    _clip(tmp_path / "b" / "alice" / "clip.mp4", np.ascontiguousarray(astronaut[:, ::-1]))
    (tmp_path / "b" / "broken").mkdir()
    (tmp_path / "b" / "broken" / "clip.mp4").write_bytes(b"not a video")
    config = tmp_path / "set.toml"
    config.write_text('out = "set"\nvideos = ["a", "b"]\nmax_frames = 6\nwatermark = "neither"\n'
                      'splits = {train = 1.0}\n[sweep]\nfwa_size = [64]\n')
    result = runner.invoke(forge_app, ["dataset", str(config), "--json"])
    assert result.exit_code == 2 and "broken/clip.mp4" in result.stderr  # one bad video, one row
    summary = json.loads(result.stdout)
    assert (summary["fakes"], summary["reals"]) == (2, 2)
    assert (tmp_path / "set" / "dataset.json").is_file()
    outputs = [r.output for r in read_manifest(tmp_path / "set")]
    assert len(set(outputs)) == 4 and all((tmp_path / "set" / o).is_file() for o in outputs)


def test_forge_video_refuses_a_manifest_it_cannot_read_before_making_a_fake(face_video, tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"id": "x", "label": \n')
    out = tmp_path / "fake.mp4"
    result = runner.invoke(forge_app, ["video", str(face_video), "--out", str(out)])
    assert result.exit_code == 2 and "manifest line does not parse" in result.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.suffix == ".mp4"]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, astronaut):
    """A forgery set of one fake and its real counterpart."""
    root = tmp_path_factory.mktemp("set")
    _clip(root / "videos" / "eileen" / "clip.mp4", astronaut, frames=8)
    config = root / "set.toml"
    config.write_text('out = "set"\nvideos = ["videos"]\nmax_frames = 8\nwatermark = "neither"\n'
                      'splits = {train = 1.0}\n[sweep]\nfwa_size = [64]\n')
    assert runner.invoke(forge_app, ["dataset", str(config)]).exit_code == 0
    return root / "set"


def _tampered(small_set, tmp_path, change):
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(small_set, copy)
    rows = [json.loads(line) for line in (copy / "manifest.jsonl").read_text().splitlines()]
    (copy / "manifest.jsonl").write_text("".join(json.dumps(change(r)) + "\n" for r in rows))
    return copy


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/etc/passwd"])
def test_manifest_paths_are_never_followed_out_of_their_folder(small_set, tmp_path, two_facesets,
                                                               path):
    from eval.cli import app as eval_app

    bad = _tampered(small_set, tmp_path, lambda r: {**r, "output": path})
    trained = runner.invoke(detect_app, ["train", str(two_facesets[0]), "--fakes", str(bad),
                                         "--out", str(tmp_path / "run"), "--epochs", "1",
                                         "--device", "cpu"])
    assert trained.exit_code == 2 and "lies outside the manifest's folder" in trained.stderr
    config = tmp_path / "eval.toml"
    config.write_text(f'sets = ["{bad}"]\n')
    report = runner.invoke(eval_app, ["report", "--config", str(config), "--out",
                                      str(tmp_path / "r")])
    assert report.exit_code == 2 and "lies outside the manifest's folder" in report.stderr


def test_a_real_listed_as_a_fake_is_refused(small_set, tmp_path, two_facesets):
    real = next(r for r in read_manifest(small_set) if r.label == "real")
    swapped = _tampered(small_set, tmp_path, lambda r: {**r, "output": real.output}
                        if r["label"] == "fake" else r)
    trained = runner.invoke(detect_app, ["train", str(two_facesets[0]), "--fakes", str(swapped),
                                         "--out", str(tmp_path / "run"), "--epochs", "1",
                                         "--device", "cpu"])
    # the fake's row names the real's file: two rows, one file (before: caught by the hash)
    assert trained.exit_code == 2 and "name the same file" in trained.stderr
    assert not (tmp_path / "run" / "best").exists()


def _same_file_twice(small_set, tmp_path):
    """The real counterpart's row names the fake's own file (its hash updated to match)."""
    fake = next(r for r in read_manifest(small_set) if r.label == "fake")
    return _tampered(small_set, tmp_path, lambda r: {
        **r, "output": fake.output, "output_sha256": fake.output_sha256} if r["label"] == "real"
        else r)


def _linked_to_the_fake(small_set, tmp_path):
    """The real counterpart's file replaced by a symlink to the fake's (its hash updated)."""
    copy = _same_file_twice(small_set, tmp_path)
    rows = read_manifest(small_set)
    fake = next(r for r in rows if r.label == "fake")
    real = next(r for r in rows if r.label == "real")
    (copy / real.output).unlink()
    (copy / real.output).symlink_to((copy / fake.output).resolve())
    lines = [json.loads(line) for line in (copy / "manifest.jsonl").read_text().splitlines()]
    for line in lines:
        if line["label"] == "real":
            line["output"] = real.output
    (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return copy


@pytest.mark.parametrize("tamper", [_same_file_twice, _linked_to_the_fake])
def test_a_real_counterpart_that_is_another_file_of_the_set_is_one_line(
        small_set, tmp_path, two_facesets, tamper):
    from eval.cli import app as eval_app

    bad = tamper(small_set, tmp_path)
    trained = runner.invoke(detect_app, ["train", str(two_facesets[0]), "--fakes", str(bad),
                                         "--out", str(tmp_path / "run"), "--epochs", "1",
                                         "--batch-size", "4", "--steps-per-epoch", "1",
                                         "--device", "cpu"])
    assert trained.exit_code == 2 and "name the same file" in trained.stderr, trained.output
    assert len(trained.stderr.strip().splitlines()) == 1
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".lock"]  # refused before any work
    config = tmp_path / "eval.toml"
    config.write_text(f'sets = ["{bad}"]\nbootstrap = 10\nrealism_frames = 2\n')
    report = runner.invoke(eval_app, ["report", "--config", str(config), "--out",
                                      str(tmp_path / "r")])
    assert report.exit_code == 2 and "name the same file" in report.stderr, report.output
    assert not (tmp_path / "r" / "report.md").exists()


def test_a_fake_whose_source_has_other_frames_is_one_line(small_set, tmp_path):
    """The source a fake's row names, hash and all, is a video of another size."""
    from eval.cli import app as eval_app
    from swapscope.files import sha256_file
    from swapscope.media.sample import write_clip

    other = write_clip(tmp_path / "other.mp4", [np.full((240, 200, 3), 90, np.uint8)] * 8)
    bad = _tampered(small_set, tmp_path, lambda r: {
        **r, "source": str(other), "source_sha256": sha256_file(other)} if r["label"] == "fake"
        else r)
    config = tmp_path / "eval.toml"
    config.write_text(f'sets = ["{bad}"]\nbootstrap = 10\nrealism_frames = 2\n')
    report = runner.invoke(eval_app, ["report", "--config", str(config), "--out",
                                      str(tmp_path / "r")])
    assert report.exit_code == 2 and "not the video it was made from" in report.stderr, \
        report.output
    assert not (tmp_path / "r" / "report.md").exists()
