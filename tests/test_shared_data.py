"""Acceptance checks on the sample data in ../shared/data (slow; skipped where it is absent)."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from forge.cli import app
from swapscope.formats.faceset import FaceSet
from swapscope.media.sample import write_clip
from swapscope.media.video import read_frames

runner = CliRunner()
pytestmark = pytest.mark.slow


def test_extract_finds_a_face_in_99_percent_of_frames_of_every_real_clip(tmp_path, shared_data):
    out = tmp_path / "real"
    result = runner.invoke(
        app, ["extract", str(shared_data / "real_videos"), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    sources = json.loads(result.stdout)["sources"]
    assert len(sources) >= 19
    for s in sources:
        assert s["frames_with_face"] >= 0.99 * s["frames"], s
    faceset = FaceSet.open(out)
    labels = set(faceset.labels())
    assert "lp_d6_woman_hairbun" in labels and "hdtf_WDA_KatieHill" in labels


def _two_people(tmp_path, shared_data, count: int = 90):
    """A d6 | d9 side-by-side clip (480 px each) and a photo of her from outside the clip."""
    left_clip = shared_data / "real_videos/lp_d6_woman_hairbun/d6.mp4"
    right_clip = shared_data / "real_videos/lp_d9_man_glasses/d9.mp4"
    left = [f.image for f in read_frames(left_clip, limit=count)]
    right = [f.image[:, 16:496] for f in read_frames(right_clip, limit=count)]  # 512x480 -> 480x480
    both = write_clip(
        tmp_path / "two_people.mp4", [np.hstack([a, b]) for a, b in zip(left, right)], fps=30
    )
    photo = next(f.image for f in read_frames(left_clip) if f.index == 900)
    ref = tmp_path / "her.png"
    cv2.imwrite(str(ref), photo[..., ::-1])
    return both, ref


def test_identity_keeps_one_of_two_people_side_by_side(tmp_path, shared_data):
    count = 90
    both, ref = _two_people(tmp_path, shared_data, count)
    out = tmp_path / "her_faces"
    result = runner.invoke(
        app, ["extract", str(both), "--out", str(out), "--identity", str(ref), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = FaceSet.open(out).rows
    centres = np.array([(r.box[0] + r.box[2]) / 2 for r in rows])
    assert (centres < 480).all(), "a face of the other person was kept"
    assert len({r.frame_index for r in rows}) >= 0.95 * count


def test_forge_video_swaps_her_and_leaves_him_untouched(tmp_path, shared_data):
    from swapscope.formats.manifest import read_manifest
    from swapscope.formats.watermark import Watermarker

    both, ref = _two_people(tmp_path, shared_data, 45)
    out = tmp_path / "fake" / "her_swapped.mp4"
    # fwa-sim at 48 px: a re-render coarse enough to see in every frame
    result = runner.invoke(
        app, ["video", str(both), "--identity", str(ref), "--out", str(out), "--fwa-size", "48"]
    )
    assert result.exit_code == 0, result.output
    mark = Watermarker(read_manifest(out.parent)[0].id)
    left, right = [], []
    for original, fake in zip(
        (f.image for f in read_frames(both)), (f.image for f in read_frames(out))
    ):
        diff = np.abs(fake.astype(int) - mark(original).astype(int)).max(-1)
        # areas, not the codec's isolated pixels
        changed = (
            cv2.morphologyEx(
                (diff > 25).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
            )
            > 0
        )
        left.append(changed[:, :480].sum())
        right.append(changed[:, 480:].sum())
    assert min(left) > 100, left  # her face was re-rendered in every frame
    assert max(right) < 20, right  # his half: codec noise only
