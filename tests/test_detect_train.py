import json
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detect.checkpoint import load_detector, read_detector_config
from detect.cli import app as detect_app
from detect.data import FwaDataset, build_context_cache, split_by_identity
from forge.cli import app as forge_app
from forge.errors import InputError
from forge.faceset import FaceSet
from forge.sample import moving_face_frames, write_clip

runner = CliRunner()


@pytest.fixture(scope="module")
def two_facesets(tmp_path_factory, astronaut):
    """Two 'identities' made from the astronaut and her mirror image, one face set each."""
    root = tmp_path_factory.mktemp("train")
    sets = []
    for label, image in (("eileen", astronaut), ("mirror", np.ascontiguousarray(astronaut[:, ::-1]))):
        clip = write_clip(root / f"{label}.mp4", moving_face_frames(image, 16), fps=25)
        out = root / f"fs_{label}"
        result = runner.invoke(forge_app, ["extract", str(clip), "--out", str(out), "--label", label])
        assert result.exit_code == 0, result.output
        sets.append(out)
    return sets


def test_context_crops_hold_every_landmark_and_the_roi_margin(two_facesets, tmp_path):
    import cv2

    items = build_context_cache(FaceSet.open(two_facesets[0]), tmp_path / "cache", stride=2)
    assert len(items) == 8
    for item in items:
        h, w = cv2.imread(item.context).shape[:2]
        lo, hi = item.landmarks.min(0), item.landmarks.max(0)
        assert (lo >= 0).all() and hi[0] <= w and hi[1] <= h
    again = build_context_cache(FaceSet.open(two_facesets[0]), tmp_path / "cache", stride=2)
    assert [i.context for i in again] == [i.context for i in items]  # reused, not rebuilt


def test_split_by_identity_keeps_people_and_videos_apart(two_facesets, tmp_path):
    items = []
    for i, fs in enumerate(two_facesets):
        items += build_context_cache(FaceSet.open(fs), tmp_path / f"c{i}", stride=1)
    train, val = split_by_identity(items, 0.3)
    assert train and val
    assert not {i.identity for i in train} & {i.identity for i in val}
    assert not {i.source_id for i in train} & {i.source_id for i in val}
    with pytest.raises(InputError, match="at least 2 identities"):
        split_by_identity([i for i in items if i.identity == "eileen"], 0.3)


def test_dataset_examples_are_deterministic_for_validation(two_facesets, tmp_path):
    items = build_context_cache(FaceSet.open(two_facesets[0]), tmp_path / "c", stride=4)
    ds = FwaDataset(items, (0.5,) * 3, (0.5,) * 3, fixed=True)
    (a, la), (b, lb) = ds[1], ds[1]
    assert a.shape == (3, 224, 224) and torch.equal(a, b) and la == lb


def test_train_save_reload_resume_and_infer(two_facesets, tmp_path):
    out = tmp_path / "run"
    args = ["train", *map(str, two_facesets), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--steps-per-epoch", "2", "--stride", "2", "--device", "cpu", "--json"]
    first = runner.invoke(detect_app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert len(summary["history"]) == 1 and summary["train_identities"] != summary["val_identities"]
    assert (out / "curves.png").is_file() and (out / "best" / "weights.safetensors").is_file()
    # resume: asking for 2 epochs continues at epoch 2 instead of starting over
    second = runner.invoke(detect_app, args[:6] + ["2"] + args[7:])
    assert second.exit_code == 0, second.output
    history = json.loads(second.stdout)["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == summary["history"][0]
    model, data_cfg, config = load_detector(out / "best")
    assert config["arch"] == "efficientnet_lite0" and data_cfg.input_size == 224
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 2)


def test_pickles_and_other_kinds_are_refused(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(InputError, match="refusing to load a pickle"):
        read_detector_config(bad)
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.safetensors").write_bytes(b"")
    (other / "config.json").write_text(json.dumps({"kind": "swapscope.swap-model"}))
    with pytest.raises(InputError, match="not a detector"):
        load_detector(other)


def test_train_with_one_identity_is_a_clear_error(two_facesets, tmp_path):
    result = runner.invoke(detect_app, ["train", str(two_facesets[0]), "--out", str(tmp_path / "r"), "--device", "cpu"])
    assert result.exit_code == 2 and "at least 2 identities" in result.stderr


def test_scan_scores_videos_and_images_by_the_paper_rules(two_facesets, tmp_path, face_video, astronaut):
    import cv2

    out = tmp_path / "run"
    trained = runner.invoke(detect_app, ["train", *map(str, two_facesets), "--out", str(out), "--epochs", "1",
                                         "--batch-size", "4", "--steps-per-epoch", "1", "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    photo = tmp_path / "eileen.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    result = runner.invoke(detect_app, ["scan", str(face_video), str(photo), "--model", str(out / "best"),
                                        "--every", "4", "--rois", "4", "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    video, image = report["inputs"]
    assert len(video["frames"]) == 6 and len(image["frames"]) == 1
    frame_scores = np.array([f["score"] for f in video["frames"]])
    assert ((0 <= frame_scores) & (frame_scores <= 1)).all()
    assert video["score"] == pytest.approx(np.sort(frame_scores)[::-1][:2].mean())  # top third of 6
    assert video["verdict"] in ("fake", "real") and len(report["detector"]["sha256"]) == 64
    assert report["rules"]["rois"] == 4


def test_scan_bad_inputs_exit_2(two_facesets, tmp_path):
    import cv2
    from skimage import data

    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(detect_app, ["scan", str(empty), "--model", str(tmp_path)])
    assert result.exit_code == 2 and "no images or videos" in result.stderr
    pickled = tmp_path / "model.pth"
    pickled.write_bytes(pickle.dumps([1]))
    coffee = tmp_path / "coffee.png"
    cv2.imwrite(str(coffee), data.coffee()[..., ::-1])
    result = runner.invoke(detect_app, ["scan", str(coffee), "--model", str(pickled)])
    assert result.exit_code == 2 and "refusing to load a pickle" in result.stderr
