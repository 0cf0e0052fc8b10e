"""Detector checkpoints: refused kinds, the channels-last layout, export, ensembles."""

import copy
import json
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detect.checkpoint import load_detector, read_detector_config
from detect.cli import app as detect_app
from detect.models import to_tensor
from swapscope.errors import InputError

runner = CliRunner()


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
