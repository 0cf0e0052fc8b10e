"""detect calibrate: the threshold and how scan uses it."""

import json
from pathlib import Path

from typer.testing import CliRunner

from detect.checkpoint import read_detector_config
from detect.cli import app as detect_app

runner = CliRunner()


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
