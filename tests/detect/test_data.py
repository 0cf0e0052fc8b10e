"""detect.data: context crops, identity splits, deterministic validation examples."""

import dataclasses

import pytest
import torch

from detect.data import ArtifactDataset, build_context_cache, split_by_identity
from detect.models import DataConfig
from swapscope.errors import InputError
from swapscope.formats.faceset import FaceSet


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


def test_a_fakes_training_faces_sit_at_the_landmarks_its_labels_keep(forgery_set, tmp_path):
    """The forge keeps the 68 points it swapped on in each label; detect's crops of a fake use
    them, and labels written before they were kept still give the same faces (found again)."""
    import json
    import shutil
    from pathlib import Path

    import numpy as np

    from detect.data import build_manifest_cache
    from swapscope.formats.manifest import read_manifest, read_swap_frames

    fakes = [row for row in read_manifest(forgery_set) if row.label == "fake"]
    for row in fakes:
        for swap in read_swap_frames(forgery_set, row):
            for face in swap.faces:
                points = face.points()
                assert points.shape == (68, 2)
                x1, y1, x2, y2 = face.box  # the area written: the face the points outline
                assert x1 < points[:, 0].mean() < x2 and y1 < points[:, 1].mean() < y2
    old = tmp_path / "old"
    shutil.copytree(forgery_set, old)
    for labels in (old / "labels").glob("*.jsonl"):
        rows = [json.loads(line) for line in labels.read_text().splitlines()]
        for raw in rows:
            for face in raw["faces"]:
                del face["landmarks"]
        labels.write_text("".join(json.dumps(raw) + "\n" for raw in rows))
    assert all(face.landmarks is None for row in fakes
               for swap in read_swap_frames(old, row) for face in swap.faces)
    kept = build_manifest_cache(forgery_set / "manifest.jsonl", tmp_path / "kept", stride=3)
    found = build_manifest_cache(old / "manifest.jsonl", tmp_path / "found", stride=3)

    def fakes_by_name(items):  # output and frame (one face a frame here)
        return {Path(i.context).name.rsplit("_", 1)[0]: i for i in items if i.label == 1}

    kept_fakes, found_fakes = fakes_by_name(kept), fakes_by_name(found)
    labelled = sum(len(swap.faces) for row in fakes for swap in read_swap_frames(old, row)[::3])
    assert len(kept_fakes) == labelled  # every labelled face, none missed by a face finder
    assert found_fakes and found_fakes.keys() <= kept_fakes.keys(), (
        sorted(kept_fakes), sorted(found_fakes))
    for name, item in found_fakes.items():
        # the kept points are the input's; found again on the output, they move by a pixel or two
        moved = np.linalg.norm(item.landmarks - kept_fakes[name].landmarks, axis=1)
        assert np.median(moved) < 3.0, (name, np.median(moved))
    assert sorted(i.landmarks.sum() for i in kept if i.label == 0) == sorted(
        i.landmarks.sum() for i in found if i.label == 0)  # real counterparts: detected alike
