"""detect scan: the paper's and the fast rules, batching, bad inputs, several models, the
results table, engines."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from detect.cli import app as detect_app
from swapscope.media.sample import write_clip
from swapscope.media.video import read_frames

runner = CliRunner()


def test_scan_scores_videos_and_images_by_the_paper_rules(
    tiny_detector, tmp_path, face_video, astronaut
):
    import cv2

    photo = tmp_path / "eileen.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    result = runner.invoke(
        detect_app,
        [
            "scan", str(face_video), str(photo), "--model", str(tiny_detector), "--mode", "paper",
            "--every", "4", "--rois", "4", "--top-k", "2", "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    video, image = report["inputs"]
    assert len(video["frames"]) == 6 and len(image["frames"]) == 1
    frame_scores = np.array([f["score"] for f in video["frames"]])
    assert ((0 <= frame_scores) & (frame_scores <= 1)).all()
    assert video["score"] == pytest.approx(np.sort(frame_scores)[::-1][:2].mean())  # top third of 6
    assert video["verdict"] in ("fake", "no artifact found")
    assert len(report["detector"]["sha256"]) == 64
    rules = report["rules"]
    knobs = ("rois", "top_k", "every", "detect_every", "detect_size")
    assert [rules[k] for k in knobs] == [4, 2, 4, 1, 0]
    assert {"decode", "detect", "landmarks", "roi", "classify"} <= set(video["timings"])


def test_a_hand_edited_data_config_is_one_clear_line(tiny_detector, face_video, two_facesets,
                                                      tmp_path):
    import shutil

    for key, value in (("input_size", 5), ("input_size", 100000), ("std", [0.2, 0.2, 0]),
                       ("mean", [0.5, "x", 0.5])):
        edited = tmp_path / f"{key}_{value}".replace(" ", "")
        shutil.copytree(tiny_detector, edited)
        config = json.loads((edited / "config.json").read_text())
        config["data_config"][key] = value
        (edited / "config.json").write_text(json.dumps(config))
        result = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(edited)])
        assert result.exit_code == 2 and "data_config" in result.stderr, (key, result.output)
        assert len(result.stderr.strip().splitlines()) == 1
        trained = runner.invoke(detect_app, ["train", *map(str, two_facesets), "--init",
                                             str(edited), "--out", str(tmp_path / "tuned")])
        assert trained.exit_code == 2 and "data_config" in trained.stderr, trained.output
        assert not (tmp_path / "tuned").exists()  # refused before the run folder is made


def test_fast_mode_fills_the_knobs_left_open(tiny_detector, face_video):
    result = runner.invoke(
        detect_app, ["scan", str(face_video), "--model", str(tiny_detector), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rules = report["rules"]
    assert (rules["mode"], rules["rois"], rules["top_k"], rules["every"]) == ("fast", 1, 1, 5)
    assert (rules["detect_every"], rules["detect_size"], rules["backend"]) == (6, 640, "yunet")
    assert [f["frame"] for f in report["inputs"][0]["frames"]] == [0, 5, 10, 15, 20]


def test_batched_scores_equal_one_roi_at_a_time(tiny_detector, face_video):
    from detect.scan import ScanConfig, Scanner

    def scan(batch_size):
        config = ScanConfig(models=(str(tiny_detector),), rois=3, top_k=3, batch_size=batch_size)
        return Scanner(config, "cpu").scan(face_video)

    one, many = scan(1), scan(64)
    assert [f.frame for f in one.frames] == [f.frame for f in many.frames]
    np.testing.assert_allclose(one.frame_scores, many.frame_scores, atol=1e-5)


def test_scan_bad_inputs_exit_2(tiny_detector, tmp_path):
    import cv2
    from skimage import data

    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(detect_app, ["scan", str(empty), "--model", str(tiny_detector)])
    assert result.exit_code == 2 and "no images or videos" in result.stderr
    pickled = tmp_path / "model.pth"
    pickled.write_bytes(pickle.dumps([1]))
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), data.coffee()[..., ::-1])
    result = runner.invoke(detect_app, ["scan", str(coffee), "--model", str(pickled)])
    assert result.exit_code == 2 and "refusing to load a pickle" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.safetensors").write_bytes(b"")
    (other / "config.json").write_text(json.dumps({"kind": "swapscope.swap-model"}))
    result = runner.invoke(detect_app, ["scan", str(coffee), "--model", str(other)])
    assert result.exit_code == 2 and "not a detector" in result.stderr
    no_face = write_clip(tmp_path / "cup.mp4", [data.coffee()[:320, :320]] * 6, fps=25)
    result = runner.invoke(detect_app, ["scan", str(no_face), "--model", str(tiny_detector)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {no_face}: no face found to score"]


def test_several_models_average_per_face(tiny_detector, face_video):
    one = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(tiny_detector),
                                     "--json"])
    two = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(tiny_detector),
                                     "--model", str(tiny_detector), "--json"])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    single, pair = json.loads(one.stdout), json.loads(two.stdout)
    np.testing.assert_allclose(pair["inputs"][0]["score"], single["inputs"][0]["score"], atol=1e-6)
    assert " + " in pair["detector"]["path"]
    assert pair["detector"]["sha256"] != single["detector"]["sha256"]


def _corpus(folder: Path, face_video: Path) -> Path:
    """Two short clips of a face (one mirrored, half as long) and a file that is no video."""
    import shutil

    folder.mkdir()
    shutil.copy(face_video, folder / "a.mp4")
    write_clip(folder / "b.mp4", [np.ascontiguousarray(f.image[:, ::-1])
                                  for f in read_frames(face_video, limit=12)])
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    return folder


def test_scan_results_table_resumes_and_rescans_for_another_detector(
        tiny_detector, other_detector, face_video, tmp_path):

    import pyarrow.parquet as pq

    corpus = _corpus(tmp_path / "corpus", face_video)
    table = tmp_path / "scans.parquet"
    args = ["scan", str(corpus), "--results", str(table), "--label-frames", "0", "--json"]

    first = runner.invoke(detect_app, [*args, "--model", str(tiny_detector)])
    assert first.exit_code == 2 and "1 of 3 inputs could not be scored" in first.stderr
    scanned = {Path(i["path"]).name: i for i in json.loads(first.stdout)["inputs"]}
    rows = {Path(r["path"]).name: r for r in pq.read_table(table).to_pylist()}
    assert sorted(rows) == ["a.mp4", "b.mp4", "broken.mp4"]
    assert rows["broken.mp4"]["verdict"] == "error" and rows["broken.mp4"]["error"]
    for name in ("a.mp4", "b.mp4"):
        row = rows[name]
        assert row["score"] == pytest.approx(scanned[name]["score"], abs=1e-9)
        assert row["frame_scores"] == [f["score"] for f in scanned[name]["frames"]]
        assert row["sha256"] == scanned[name]["sha256"] and row["duration_s"] > 0
        assert row["detector_sha256"] == json.loads(first.stdout)["detector"]["sha256"]
        assert json.loads(row["rules"])["every"] == 5 and row["faces"] >= row["frames_scored"]

    again = runner.invoke(detect_app, [*args, "--model", str(tiny_detector)])
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.stdout)
    assert resumed["inputs"] == [] and len(resumed["skipped"]) == 3
    assert pq.read_table(table).num_rows == 3

    other = runner.invoke(detect_app, [*args, "--model", str(other_detector)])
    assert len(json.loads(other.stdout)["inputs"]) == 3  # another detector scans them all again
    assert pq.read_table(table).num_rows == 6
    assert len(set(pq.read_table(table).column("detector_sha256").to_pylist())) == 2


@pytest.mark.slow
def test_ray_engine_scans_like_one_process_and_survives_killed_workers(
        tiny_detector, other_detector, face_video, tmp_path, local_ray):
    """A local Ray with 2 CPUs: the same rows as the single process (scores to 1e-4), a corrupt
    clip one error row, a gather worker and a scoring actor each killed once without losing an
    input, a second run scans nothing, another detector scans again."""

    import pyarrow.parquet as pq

    corpus = _corpus(tmp_path / "corpus", face_video)
    args = ["scan", str(corpus), "--model", str(tiny_detector), "--label-frames", "0", "--json"]

    def rows(table: Path) -> dict:
        return {Path(r["path"]).name: r for r in pq.read_table(table).to_pylist()}

    single = runner.invoke(detect_app, [*args, "--results", str(tmp_path / "single.parquet")])
    assert single.exit_code == 2, single.output
    table = tmp_path / "ray.parquet"
    first = runner.invoke(detect_app, [*args, "--engine", "ray", "--results", str(table)])
    assert first.exit_code == 2 and "1 of 3 inputs could not be scored" in first.stderr
    assert {p.name for p in local_ray.iterdir()} >= {"ray-gather", "ray-score"}  # both died
    expected, got = rows(tmp_path / "single.parquet"), rows(table)
    assert sorted(got) == ["a.mp4", "b.mp4", "broken.mp4"]
    assert got["broken.mp4"]["verdict"] == "error" and got["broken.mp4"]["error"]
    for name in ("a.mp4", "b.mp4"):
        assert got[name]["score"] == pytest.approx(expected[name]["score"], abs=1e-4)
        assert got[name]["frame_scores"] == pytest.approx(expected[name]["frame_scores"],
                                                          abs=1e-4)
        for key in ("verdict", "sha256", "rules_sha256", "detector_sha256"):
            assert got[name][key] == expected[name][key]
    assert [i["path"] for i in json.loads(first.stdout)["inputs"]] == \
        [i["path"] for i in json.loads(single.stdout)["inputs"]]  # in input order

    again = runner.invoke(detect_app, [*args, "--engine", "ray", "--results", str(table)])
    assert again.exit_code == 0 and json.loads(again.stdout)["inputs"] == []
    assert len(json.loads(again.stdout)["skipped"]) == 3

    other = [a if a != str(tiny_detector) else str(other_detector) for a in args]
    rescan = runner.invoke(detect_app, [*other, "--engine", "ray", "--workers", "2",
                                        "--results", str(table)])
    assert len(json.loads(rescan.stdout)["inputs"]) == 3
    assert pq.read_table(table).num_rows == 6


def test_engine_options_are_checked(face_video, tmp_path):
    result = runner.invoke(detect_app, ["scan", str(face_video), "--workers", "2"])
    assert result.exit_code == 2 and "are for --engine ray" in result.stderr
    result = runner.invoke(detect_app, ["scan", str(face_video), "--engine", "spark"])
    assert result.exit_code == 2 and "unknown --engine 'spark'" in result.stderr
    result = runner.invoke(detect_app, ["scan", str(face_video), "--engine", "ray",
                                        "--heatmap", str(tmp_path / "h.mp4")])
    assert result.exit_code == 2 and "leave out --engine ray" in result.stderr
    assert not (tmp_path / "h.mp4").exists()


def test_scan_results_refuse_a_file_that_is_not_a_results_table(tiny_detector, face_video,
                                                                 tmp_path):
    notes = tmp_path / "notes.parquet"
    notes.write_text("my notes")
    result = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(tiny_detector),
                                        "--results", str(notes)])
    assert result.exit_code == 2 and "not a Parquet table" in result.stderr
    assert notes.read_text() == "my notes"
    # nothing but the (empty) lock the scan took beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.parquet.lock", "notes.parquet"]
