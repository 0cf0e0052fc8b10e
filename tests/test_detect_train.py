import copy
import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detect.checkpoint import load_detector, read_detector_config
from detect.cli import app as detect_app
from detect.data import ArtifactDataset, build_context_cache, split_by_identity
from detect.models import DEFAULT_ARCH, DataConfig, to_tensor
from swapscope.errors import InputError
from swapscope.formats.faceset import FaceSet
from swapscope.media.sample import write_clip
from swapscope.media.video import read_frames

runner = CliRunner()


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
    # a manifest's faces (fixed labels) follow their person and move nobody between splits,
    # however many there are, and a third person who has only those goes to training
    fixed = [dataclasses.replace(i, label=1) for i in items for _ in range(5)]
    fixed += [dataclasses.replace(items[0], identity="only-fakes", source_id="x", label=1)]
    train2, val2 = split_by_identity(items + fixed, 0.3)
    assert {i.identity for i in val2} == {i.identity for i in val}
    assert "only-fakes" in {i.identity for i in train2}
    assert len(val2) == 6 * len(val)


def test_dataset_examples_are_deterministic_for_validation(two_facesets, tmp_path):
    items = build_context_cache(FaceSet.open(two_facesets[0]), tmp_path / "c", stride=4)
    ds = ArtifactDataset(items, DataConfig(224, (0.5,) * 3, (0.5,) * 3, "bilinear"), "mix",
                         fixed=True)
    (a, la, ka), (b, lb, kb) = ds[1], ds[1]
    assert a.shape == (3, 224, 224) and torch.equal(a, b) and la == lb and ka == kb
    kinds = {int(ds[i][2]) for i in range(len(ds))}
    assert kinds <= {0, 1, 2} and len(kinds) >= 2  # reals and fakes, each fake of either artifact


def test_train_save_reload_resume_and_infer(two_facesets, tmp_path):
    out = tmp_path / "run"
    args = [
        "train", *map(str, two_facesets), "--out", str(out), "--epochs", "1", "--batch-size", "4",
        "--steps-per-epoch", "2", "--stride", "2", "--device", "cpu", "--json",
    ]
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
    detector = load_detector(out / "best")
    assert detector.meta["arch"] == DEFAULT_ARCH and detector.data_config.input_size == 224
    with torch.no_grad():
        assert detector.module(torch.zeros(1, 3, 224, 224)).shape == (1, 2)


def test_input_size_is_the_roi_size_in_training_fine_tuning_and_scan(
    two_facesets, tmp_path, face_video, monkeypatch
):
    seen: list[tuple] = []
    forward = torch.nn.Module.__call__

    def spy(module, x, *a, **k):  # the batches the networks see, in training and in scan
        if isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3:
            seen.append(tuple(x.shape[2:]))
        return forward(module, x, *a, **k)

    out, tuned = tmp_path / "run", tmp_path / "tuned"
    common = [*map(str, two_facesets), "--epochs", "1", "--batch-size", "4",
              "--steps-per-epoch", "1", "--stride", "4", "--device", "cpu"]
    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    first = runner.invoke(detect_app, ["train", *common, "--input-size", "96", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert seen and set(seen) == {(96, 96)}  # training and validation batches alike
    assert load_detector(out / "best").data_config.input_size == 96
    # fine-tuning keeps its start's size unless told otherwise
    second = runner.invoke(detect_app, ["train", *common, "--init", str(out / "best"),
                                        "--out", str(tuned)])
    assert second.exit_code == 0, second.output
    assert load_detector(tuned / "best").data_config.input_size == 96
    seen.clear()
    scanned = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(out / "best"),
                                         "--max-frames", "5", "--json"])
    assert scanned.exit_code == 0, scanned.output
    assert seen and set(seen) == {(96, 96)}
    monkeypatch.setattr(torch.nn.Module, "__call__", forward)
    # a run is never resumed at another size, and a size no network can take is refused
    other = runner.invoke(detect_app, ["train", *common, "--epochs", "2", "--input-size", "128",
                                       "--out", str(out)])
    assert other.exit_code == 2 and "different training run" in other.output
    for size in ("8", "5000"):
        bad = runner.invoke(detect_app, ["train", *common, "--input-size", size,
                                         "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and f"--input-size {size}" in bad.stderr
        assert not (tmp_path / "bad").exists()


def test_adamw_runs_resume_and_refuse_changed_optimiser_settings(two_facesets, tmp_path):
    out = tmp_path / "run"
    args = ["train", *map(str, two_facesets), "--out", str(out), "--batch-size", "4",
            "--steps-per-epoch", "2", "--stride", "2", "--device", "cpu", "--json",
            "--optimizer", "adamw", "--lr", "0.0001"]
    first = runner.invoke(detect_app, [*args, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    assert json.loads((out / "resume" / "state.json").read_text())["optimizer"]["param_groups"][0][
        "lr"] == pytest.approx(1e-4 * 0.95)  # AdamW's groups, decayed once
    second = runner.invoke(detect_app, [*args, "--epochs", "2"])
    assert second.exit_code == 0, second.output
    assert [h["epoch"] for h in json.loads(second.stdout)["history"]] == [1, 2]
    for changed in (["--lr", "0.001"], ["--optimizer", "sgd"]):  # never resumed under other ones
        again = runner.invoke(detect_app, [*args, "--epochs", "3", *changed])
        assert again.exit_code == 2 and "different training run" in again.output


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
    result = runner.invoke(
        detect_app, ["train", str(two_facesets[0]), "--out", str(tmp_path / "r"), "--device", "cpu"]
    )
    assert result.exit_code == 2 and "at least 2 identities" in result.stderr


@pytest.fixture(scope="module")
def tiny_detector(two_facesets, tmp_path_factory):
    """A detector trained for one step: its scores mean nothing, its plumbing is real."""
    out = tmp_path_factory.mktemp("detector") / "run"
    trained = runner.invoke(
        detect_app,
        [
            "train", *map(str, two_facesets), "--out", str(out), "--epochs", "1", "--batch-size",
            "4", "--steps-per-epoch", "1", "--device", "cpu",
        ],
    )
    assert trained.exit_code == 0, trained.output
    return out / "best"


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


def test_heatmap_writes_the_scored_frames_with_grad_cam(
    tiny_detector, face_video, tmp_path, astronaut, dlib_backend
):
    import cv2

    from swapscope.media.video import probe

    out = tmp_path / "heat.mp4"
    result = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(tiny_detector),
                                        "--every", "3", "--heatmap", str(out)])
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert info.frame_count == 8 and (info.width, info.height) == (320, 320)
    photo = tmp_path / "eileen.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    drawn = tmp_path / "heat.png"
    result = runner.invoke(
        detect_app, ["scan", str(photo), "--model", str(tiny_detector), "--heatmap", str(drawn)]
    )
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(drawn))[..., ::-1]
    assert picture.shape == astronaut.shape
    _assert_drawn_on_the_face(picture, astronaut, dlib_backend.faces(astronaut)[0].box)
    wrong = tmp_path / "heat.gif"
    result = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(tiny_detector),
                                        "--heatmap", str(wrong)])
    assert result.exit_code == 2 and "must be a .mp4 file" in result.stderr and not wrong.exists()
    result = runner.invoke(
        detect_app,
        [
            "scan", str(face_video), str(photo), "--model", str(tiny_detector), "--heatmap",
            str(tmp_path / "two.mp4"),
        ],
    )
    assert result.exit_code == 2 and "draws one input" in result.stderr


def _assert_drawn_on_the_face(picture: np.ndarray, photo: np.ndarray, face_box) -> None:
    """The map covers the face, and nothing is drawn away from it (only the score's text above
    the ROI box)."""
    x1, y1, x2, y2 = np.asarray(face_box, float)
    changed = np.abs(picture.astype(int) - photo.astype(int)).max(-1) > 0
    inside = changed[int(y1):int(y2), int(x1):int(x2)]
    assert inside.mean() > 0.9  # the heat overlay covers the face
    ys, xs = np.nonzero(changed)
    side = max(x2 - x1, y2 - y1)  # the ROI is the face box enlarged, the text sits on top
    assert xs.min() >= x1 - side and xs.max() <= x2 + side
    assert ys.min() >= y1 - 1.5 * side and ys.max() <= y2 + side
    assert changed.mean() < 4 * side * side / changed.size


def test_grad_cam_maps_are_normalised_and_probabilities_match_the_model(tiny_detector):
    from detect.heatmap import grad_cam

    model = load_detector(tiny_detector).module
    batch = torch.randn(2, 3, 224, 224)
    maps, probs = grad_cam(model, batch)
    assert maps.shape == (2, 224, 224) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    with torch.no_grad():
        expected = model(batch).softmax(-1)[:, 1].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_channels_last_scores_match_the_plain_layout(tiny_detector):
    """Loaded detectors run channels-last (faster on CPU and CUDA); the probabilities are the
    ones the network gives in PyTorch's default layout, whatever the batch size."""
    detector = load_detector(tiny_detector)
    first = next(detector.module.parameters())
    assert first.dim() != 4 or first.is_contiguous(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    rois = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(5)]
    plain = copy.deepcopy(detector.module).to(memory_format=torch.contiguous_format)
    cfg = detector.data_config
    with torch.no_grad():
        batch = torch.stack([to_tensor(r, cfg.mean, cfg.std) for r in rois])
        expected = plain(batch).softmax(-1)[:, 1].numpy()
    for batch_size in (2, 16):
        np.testing.assert_allclose(detector.probabilities(rois, batch_size), expected, atol=1e-5)


def test_export_halves_the_weights_and_keeps_the_predictions(tiny_detector, tmp_path):
    out = tmp_path / "release"
    result = runner.invoke(detect_app, ["export", str(tiny_detector), "--out", str(out)])
    assert result.exit_code == 0, result.output
    size = (out / "weights.safetensors").stat().st_size
    assert size < 0.55 * (tiny_detector / "weights.safetensors").stat().st_size
    _, config = read_detector_config(out)
    assert config["dtype"] == "float16" and len(config["exported_from"]["sha256"]) == 64
    source = load_detector(tiny_detector).module
    exported = load_detector(out).module
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_allclose(exported(x).softmax(-1), source(x).softmax(-1), atol=2e-2)


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


def _reals_carry_the_face_mark(folder):
    """watermark = "both": each real counterpart's faces carry its own manifest id."""
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.formats.manifest import read_manifest
    from swapscope.labels.facemark import MarkReader
    from swapscope.timing import StageTimer

    reals = [row for row in read_manifest(folder) if row.label == "real"]
    assert reals and all(row.watermark for row in reals)
    for row in reals:
        reader = MarkReader()
        pipeline = FacePipeline(PipelineConfig(min_size=32, embed=False))
        for item in pipeline.track_frames(folder / row.output, StageTimer()):
            reader.add(item.frame.image, [f.face.landmarks for f in item.faces])
        assert reader.payload()[0] == row.id[:8], row.output


def test_train_with_fakes_from_a_forge_manifest(two_facesets, tmp_path, astronaut):
    from forge.cli import app as forge_app
    from swapscope.media.sample import moving_face_frames

    videos = tmp_path / "videos"
    for person, image in (
        ("eileen", astronaut),
        ("mirror", np.ascontiguousarray(astronaut[:, ::-1])),
    ):
        (videos / person).mkdir(parents=True)
        write_clip(videos / person / "clip.mp4", moving_face_frames(image, 8), fps=25)
    config = tmp_path / "set.toml"
    config.write_text('out = "set"\nvideos = ["videos"]\nwatermark = "both"\nmax_frames = 8\n'
                      '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [48]\n')
    made = runner.invoke(forge_app, ["dataset", str(config)])
    assert made.exit_code == 0, made.output
    _reals_carry_the_face_mark(tmp_path / "set")
    from detect.data import build_manifest_cache

    items = build_manifest_cache(tmp_path / "set" / "manifest.jsonl", tmp_path / "cache", stride=2)
    assert {i.label for i in items} == {0, 1} and {i.identity for i in items} == {
        "eileen",
        "mirror",
    }
    for source in {i.source_id for i in items}:  # a fake and its real counterpart share the source
        assert {i.label for i in items if i.source_id == source} == {0, 1}
    out = tmp_path / "run"
    result = runner.invoke(
        detect_app,
        [
            "train", *map(str, two_facesets), "--fakes", str(tmp_path / "set"), "--out", str(out),
            "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "2", "--stride", "2",
            "--device", "cpu", "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    _, config_json = read_detector_config(out / "best")
    assert config_json["train_fixed_fakes"] > 0 and config_json["config"]["fakes"] == [
        str(tmp_path / "set")
    ]
    bad = runner.invoke(
        detect_app,
        [
            "train", *map(str, two_facesets), "--fakes", str(tmp_path / "nowhere"), "--out",
            str(tmp_path / "r2"), "--device", "cpu",
        ],
    )
    assert bad.exit_code == 2 and "no such manifest" in bad.stderr


def test_threshold_allows_at_most_the_false_positive_share():
    from detect.calibrate import threshold_for

    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    t = threshold_for(scores, 0.1)  # one of ten may reach it
    assert sum(s >= t for s in scores) == 1 and t > 0.9
    assert sum(s >= threshold_for(scores, 0.05) for s in scores) == 0
    assert threshold_for(scores, 0.99) <= 0.95


def test_calibration_stores_the_threshold_that_scan_then_uses(tiny_detector, two_facesets,
                                                               tmp_path):
    import shutil

    detector = tmp_path / "det"
    shutil.copytree(tiny_detector, detector)
    args = ["calibrate", str(detector), *[a for fs in two_facesets for a in ("--faces", str(fs))],
            "--frames", "10", "--device", "cpu", "--json"]
    result = runner.invoke(detect_app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["clips"] == 6 and record["fpr_measured"] <= 0.05  # one clip, six variants
    assert {r["variant"] for r in record["rows"]} == {"crf23", "crf30", "crf35", "crf40", "half",
                                                      "smoothed"}
    _, config = read_detector_config(detector)
    assert config["threshold"]["value"] == record["value"]
    clip = tmp_path / "calibration" / record["rows"][0]["identity"] / (
        Path(record["rows"][0]["clip"]).stem + ".crf40.mp4")
    scanned = runner.invoke(detect_app, ["scan", str(clip), "--model", str(detector), "--json"])
    rules = json.loads(scanned.stdout)["rules"]
    assert rules["threshold"] == record["value"]
    assert rules["threshold_source"].startswith("calibrated")
    assert json.loads(scanned.stdout)["inputs"][0]["verdict"] == "no artifact found"
    human = runner.invoke(detect_app, ["scan", str(clip), "--model", str(detector)])
    assert human.stdout.startswith("no artifact found") and " real" not in human.stdout
    uncalibrated = runner.invoke(detect_app, ["scan", str(clip), "--model", str(tiny_detector),
                                              "--json"])
    assert json.loads(uncalibrated.stdout)["rules"]["threshold"] == 0.5


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


@pytest.fixture(scope="module")
def other_detector(tiny_detector, tmp_path_factory):
    """The tiny detector with its classifier moved: a second member that scores differently."""
    from detect.checkpoint import save_detector

    detector = load_detector(tiny_detector)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in detector.module.get_classifier().parameters():
            param.add_(torch.randn_like(param))
    meta = {k: v for k, v in detector.meta.items() if k not in ("kind", "code_version", "dtype")}
    return save_detector(tmp_path_factory.mktemp("other") / "best", detector.module, meta)


def test_an_ensemble_checkpoint_scores_as_its_members_mean_and_calibrates(
        tiny_detector, other_detector, two_facesets, face_video, tmp_path):
    from detect.checkpoint import ENSEMBLE_KIND, load_checkpoint

    out = tmp_path / "ensemble"
    made = runner.invoke(detect_app, ["ensemble", str(tiny_detector), str(other_detector),
                                      "--out", str(out)])
    assert made.exit_code == 0 and "not calibrated" in made.stdout, made.output
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == ENSEMBLE_KIND and config["dtype"] == "float16"
    assert [m["sha256"] for m in config["members"]] == [
        load_detector(p).sha256 for p in (tiny_detector, other_detector)]
    ensemble = load_checkpoint(out)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(4)]
    members = [load_detector(p).probabilities(crops) for p in (tiny_detector, other_detector)]
    assert np.abs(members[0] - members[1]).max() > 0.01  # the two members do differ
    np.testing.assert_allclose(ensemble.probabilities({224: crops}), np.mean(members, 0),
                               atol=2e-2)

    # one checkpoint: scan names it, and says its threshold is not calibrated yet
    scanned = json.loads(runner.invoke(detect_app, ["scan", str(face_video), "--model", str(out),
                                                    "--json"]).stdout)
    assert scanned["detector"]["path"] == str(out)
    assert scanned["rules"]["threshold"] == 0.5
    assert scanned["rules"]["threshold_source"].startswith("not calibrated (an ensemble")

    args = ["calibrate", str(out), *[a for fs in two_facesets for a in ("--faces", str(fs))],
            "--frames", "10", "--device", "cpu", "--json"]
    calibrated = runner.invoke(detect_app, args)
    assert calibrated.exit_code == 0, calibrated.output
    record = json.loads(calibrated.stdout)
    assert json.loads((out / "config.json").read_text())["threshold"]["value"] == record["value"]
    again = json.loads(runner.invoke(detect_app, ["scan", str(face_video), "--model", str(out),
                                                  "--json"]).stdout)
    assert again["rules"]["threshold"] == record["value"]
    assert again["rules"]["threshold_source"].startswith("calibrated")
    assert again["detector"]["sha256"] == scanned["detector"]["sha256"]  # weights untouched


def test_ensembles_refuse_what_they_cannot_be(tiny_detector, other_detector, tmp_path):
    import shutil

    from detect.checkpoint import load_checkpoint

    one = runner.invoke(detect_app, ["ensemble", str(tiny_detector), "--out", str(tmp_path / "e")])
    assert one.exit_code == 2 and "at least two" in one.stderr
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    refused = runner.invoke(detect_app, ["ensemble", str(tiny_detector), str(other_detector),
                                         "--out", str(mine), "--overwrite"])
    assert refused.exit_code == 2 and "refusing to replace" in refused.stderr
    assert (mine / "keep.txt").read_text() == "mine"

    out = tmp_path / "ens"
    assert runner.invoke(detect_app, ["ensemble", str(tiny_detector), str(other_detector),
                                      "--out", str(out)]).exit_code == 0
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    config = json.loads((broken / "config.json").read_text())
    config["members"][1]["arch"] = "resnet18"  # weights that do not fit the network it names
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="do not fit"):
        load_checkpoint(broken)
    del config["members"][1]["arch"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="no valid 'arch'"):
        load_checkpoint(broken)
    result = runner.invoke(detect_app, ["scan", str(tmp_path), "--model", str(broken)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


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


@pytest.mark.slow
def test_torchrun_trains_on_two_processes_with_one_checkpoint(two_facesets, tmp_path):
    """Two gloo ranks: each trains on its share, the gradients are averaged, the weights end the
    same on both (the run checks), rank 0 alone writes the run and reports; a rank killed
    between checkpoints leaves the last one as it was, and the next torchrun resumes from it."""
    import subprocess
    import sys

    from swapscope.distributed import weights_digest

    out = tmp_path / "run"

    def torchrun(epochs: int, fault: str = "") -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--standalone", "-m", "detect", "train", *map(str, two_facesets),
                   "--out", str(out), "--epochs", str(epochs), "--batch-size", "4",
                   "--steps-per-epoch", "2", "--device", "cpu", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1",
                                   "SWAPSCOPE_FAULT": fault})
        assert (done.returncode != 0) == bool(fault), done.stderr[-3000:]
        return done

    def kept() -> dict:
        return {p.relative_to(out): p.read_bytes() for folder in ("resume", "best")
                for p in (out / folder).rglob("*") if p.is_file()}

    summary = json.loads(torchrun(2).stdout)  # one report, from rank 0
    assert summary["ranks"] == 2 and len(summary["history"]) == 2
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best", "cache", "curves.png", "history.json", "resume"]
    best = load_detector(out / "best")
    if best.meta["epoch"] == 2:
        assert weights_digest(best.module) == summary["weights_sha256"]
    before = kept()
    torchrun(3, fault="train-epoch3-rank1")  # rank 1 dies in epoch 3: torchrun stops the job
    assert kept() == before and len(json.loads((out / "history.json").read_text())) == 2
    again = torchrun(3)
    assert [h["epoch"] for h in json.loads(again.stdout)["history"]] == [1, 2, 3]  # resumed


