"""Acceptance checks on the sample data in ../shared/data (slow; skipped where it is absent)."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from forge.cli import app
from forge.faceset import FaceSet
from forge.sample import write_clip
from forge.video import read_frames

runner = CliRunner()
pytestmark = pytest.mark.slow


def test_extract_finds_a_face_in_99_percent_of_frames_of_every_real_clip(tmp_path, shared_data):
    out = tmp_path / "real"
    result = runner.invoke(app, ["extract", str(shared_data / "real_videos"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    sources = json.loads(result.stdout)["sources"]
    assert len(sources) >= 19
    for s in sources:
        assert s["frames_with_face"] >= 0.99 * s["frames"], s
    faceset = FaceSet.open(out)
    labels = set(faceset.labels())
    assert "lp_d6_woman_hairbun" in labels and "hdtf_WDA_KatieHill" in labels


def test_identity_keeps_one_of_two_people_side_by_side(tmp_path, shared_data):
    left_clip = shared_data / "real_videos/lp_d6_woman_hairbun/d6.mp4"
    right_clip = shared_data / "real_videos/lp_d9_man_glasses/d9.mp4"
    count = 90
    left = [f.image for f in read_frames(left_clip, limit=count)]
    right = [f.image[:, 16:496] for f in read_frames(right_clip, limit=count)]  # 512x480 -> 480x480
    both = write_clip(tmp_path / "two_people.mp4", [np.hstack([a, b]) for a, b in zip(left, right)], fps=30)
    # the reference photo is a frame of d6 from outside the composite
    photo = next(f.image for f in read_frames(left_clip) if f.index == 900)
    ref = tmp_path / "her.png"
    cv2.imwrite(str(ref), photo[..., ::-1])

    out = tmp_path / "her_faces"
    result = runner.invoke(app, ["extract", str(both), "--out", str(out), "--identity", str(ref), "--json"])
    assert result.exit_code == 0, result.output
    rows = FaceSet.open(out).rows
    centres = np.array([(r["box"][0] + r["box"][2]) / 2 for r in rows])
    assert (centres < 480).all(), "a face of the other person was kept"
    assert len({r["frame_index"] for r in rows}) >= 0.95 * count
