"""forge's command line: forge extract on videos, images and folders, identities, bad input."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from forge.cli import app
from swapscope.faces.align import TEMPLATE
from swapscope.formats.faceset import FaceSet

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_extract_video_writes_an_aligned_face_set(tmp_path, face_video):
    out = tmp_path / "faces"
    result = _run("extract", face_video, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    source = summary["sources"][0]
    assert (source["frames"], source["frames_with_face"], source["status"]) == (24, 24, "done")
    assert set(summary["timings"]) >= {"decode", "detect", "landmarks", "embed", "align", "write"}
    faceset = FaceSet.open(out)
    assert len(faceset) == 24 and faceset.crop_size == 256
    row = faceset.rows[5]
    assert len(row.source_id) == 64 and row.frame_index == 5 and row.backend == "yunet"
    assert np.asarray(row.landmarks).shape == (68, 2) and np.asarray(row.affine).shape == (2, 3)
    crop = faceset.crop(5)
    assert crop.shape == (256, 256, 3)
    # eyes and mouth of every crop sit where the template puts them
    tpl = (
        TEMPLATE * 256 * (1 - 2 * 0.25) + 0.25 * 256
    )  # the mean face's landmarks 17-67 in the crop
    for i in range(len(faceset)):
        lms = faceset.crop_landmarks(i)
        for group in (slice(36, 42), slice(42, 48), slice(48, 68)):
            tg = slice(group.start - 17, group.stop - 17)
            assert np.linalg.norm(lms[group].mean(0) - tpl[tg].mean(0)) < 0.04 * 256
    # the crop really is the face: re-detecting in it finds one face near the template
    assert not (tmp_path / "faces.partial").exists()


def test_rerun_skips_finished_inputs(tmp_path, face_video):
    out = tmp_path / "faces"
    assert _run("extract", face_video, "--out", out).exit_code == 0
    again = _run("extract", face_video, "--out", out, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["sources"][0]["status"] == "skipped"
    assert len(FaceSet.open(out)) == 24


def test_resume_discards_a_half_written_input(tmp_path, face_video):
    out = tmp_path / "faces"
    partial = tmp_path / "faces.partial"
    assert _run("extract", face_video, "--out", out).exit_code == 0
    out.rename(partial)  # as if killed before the final rename...
    (partial / "sources.jsonl").write_text("")  # ...and before the input was marked done
    (partial / ".work" / "x").mkdir(parents=True)
    result = _run("extract", face_video, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sources"][0]["status"] == "done"
    faceset = FaceSet.open(out)
    assert len(faceset) == 24 and len(faceset.sources) == 1
    assert not partial.exists() and not (out / ".work").exists()


def test_images_and_folders_of_images(tmp_path, astronaut):
    folder = tmp_path / "photos" / "eileen"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), astronaut[..., ::-1])
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(folder / "grey.png"), grey)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(folder / "alpha.png"), rgba[..., [2, 1, 0, 3]])
    result = _run("extract", tmp_path / "photos", "--out", tmp_path / "fs", "--json")
    assert result.exit_code == 0, result.output
    faceset = FaceSet.open(tmp_path / "fs")
    assert len(faceset) == 3 and faceset.people() == ["eileen"]


def test_identity_keeps_only_that_person(tmp_path, face_video, astronaut, shared_data):
    keep = _run("extract", face_video, "--out", tmp_path / "a", "--identity",
                shared_data / "identities" / "fr_obama" / "obama.jpg", "--json")
    assert keep.exit_code == 2  # the astronaut is not Obama: nothing to keep
    assert "no face matches the identity 'fr_obama'" in keep.stderr
    assert not (tmp_path / "a").exists()
    ref = tmp_path / "eileen.png"
    cv2.imwrite(str(ref), np.ascontiguousarray(astronaut[:, ::-1])[..., ::-1])
    ok = _run("extract", face_video, "--out", tmp_path / "b", "--identity", ref, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["sources"][0]["faces"] == 24
    # a face set is a reference too: its faces, read by the face-set format for the face layer
    again = _run("extract", face_video, "--out", tmp_path / "c", "--identity", tmp_path / "b",
                 "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["sources"][0]["faces"] == 24


@pytest.mark.parametrize(
    "case", ["text_as_video", "wrong_type", "no_face", "tiny_face", "truncated", "missing"]
)
def test_bad_input_is_one_line_exit_2_and_no_face_set(tmp_path, face_video, case):
    from skimage import data

    if case == "text_as_video":
        bad = tmp_path / "clip.mp4"
        bad.write_text("not a video")
        expected = "not a readable video"
    elif case == "wrong_type":
        bad = tmp_path / "notes.txt"
        bad.write_text("hello")
        expected = "not an image or video"
    elif case == "no_face":
        bad = tmp_path / "coffee.png"
        cv2.imwrite(str(bad), data.coffee()[..., ::-1])
        expected = "no face found"
    elif case == "tiny_face":
        bad = tmp_path / "tiny.png"
        cv2.imwrite(str(bad), cv2.resize(data.astronaut(), (128, 128))[..., ::-1])
        expected = "faces are too small"
    elif case == "truncated":
        bad = tmp_path / "cut.mp4"
        raw = face_video.read_bytes()
        bad.write_bytes(raw[: len(raw) // 2])
        expected = "truncated|damaged|not a readable"
    else:
        bad = tmp_path / "nowhere.mp4"
        expected = "no such file"
    out = tmp_path / "out"
    result = _run("extract", bad, "--out", out)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    import re

    assert re.search(expected, lines[0]), lines[0]
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_bad_option_values_exit_2(tmp_path, face_video):
    result = _run("extract", face_video, "--out", tmp_path / "o", "--backend", "nope")
    assert result.exit_code == 2 and "unknown backend 'nope'" in result.stderr
    result = _run("extract", face_video, "--out", tmp_path / "o", "--every", "0")
    assert result.exit_code == 2 and "--every" in result.stderr
    assert not (tmp_path / "o").exists()


def test_help_of_every_cli():
    from detect.cli import app as detect_app
    from eval.cli import app as eval_app

    for cli in (app, detect_app, eval_app):
        result = runner.invoke(cli, ["--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_a_failed_input_among_good_ones_is_named_in_one_line(tmp_path, face_video):
    from skimage import data

    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), data.coffee()[..., ::-1])
    out = tmp_path / "faces"
    result = _run("extract", face_video, coffee, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"error: 1 of 2 inputs failed: {coffee}: no face found"
    assert len(FaceSet.open(out)) == 24  # the good input's faces are kept, and a re-run skips it
