"""Labelled crop collections (detect train --crops): reading, faces found on each crop, balanced
draws, and training on them with the ROIs cut as detect scan cuts them."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detect.cli import app as detect_app
from detect.crops import collection_items, read_collection
from detect.data import BalancedSampler, FaceItem
from swapscope.errors import InputError

runner = CliRunner()


def _write_collection(root: Path, rows: list[tuple[str, np.ndarray | None, str, str, str]]) -> Path:
    """rows: (file, RGB image or None for none written, label, group, split)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "group", "split"])
        for name, image, label, group, split in rows:
            if image is not None:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / name), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            writer.writerow([name, label, group, split])
    return root


@pytest.fixture(scope="module")
def collection(tmp_path_factory, astronaut) -> Path:
    """A DFDC-like collection made from the astronaut: tight 224 px face crops, real ones and
    self-blended 'fakes' of each, a real and its fake sharing a group; a grey crop with no face;
    one row of the validation split."""
    from detect.artifacts import self_blend
    from swapscope.faces.backends import create_backend

    backend = create_backend("dlib")
    boxes, _ = backend.detect(astronaut)
    landmarks = backend.landmarks(astronaut, boxes[:1])[0]
    lo, hi = landmarks.min(0), landmarks.max(0)
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        shift = rng.uniform(-8, 8, 2)
        x1, y1 = (lo - 0.08 * (hi - lo) + shift).astype(int)
        x2, y2 = (hi + 0.08 * (hi - lo) + shift).astype(int)
        image = astronaut if k % 2 else np.ascontiguousarray(astronaut[:, ::-1])
        points = landmarks.copy()
        if not k % 2:  # the mirrored face: its box mirrored too
            points[:, 0] = astronaut.shape[1] - 1 - points[:, 0]
            x1, x2 = astronaut.shape[1] - 1 - x2, astronaut.shape[1] - 1 - x1
        fake = self_blend(image, points, np.random.default_rng(k))[0]
        for label, source in (("real", image), ("fake", fake)):
            crop = cv2.resize(source[y1:y2, x1:x2], (224, 224), interpolation=cv2.INTER_AREA)
            rows.append((f"train/{label}/{k}.jpg", crop, label, f"g{k}", "train"))
    rows.append(("train/fake/grey.jpg", np.full((224, 224, 3), 128, np.uint8), "fake", "g9",
                 "train"))
    rows.append(("val/real/v.jpg", np.full((224, 224, 3), 90, np.uint8), "real", "gv", "val"))
    return _write_collection(tmp_path_factory.mktemp("crops") / "faces", rows)


def test_a_collection_is_read_as_untrusted(tmp_path, collection):
    read = read_collection(collection)
    assert len(read.rows) == 13 and read.held_out == 1  # the val row is never trained on
    grey = np.zeros((8, 8, 3), np.uint8)
    for rows, message in (
        ([("../outside.jpg", None, "real", "g", "train")], "outside the collection"),
        ([("a.jpg", grey, "maybe", "g", "train")], "a label"),
        ([("a.jpg", grey, "real", "", "train")], "a group"),
        ([("a.jpg", grey, "real", "g", "val")], "no rows to train on"),
    ):
        folder = _write_collection(tmp_path / f"c{len(message)}", rows)
        with pytest.raises(InputError, match=message) as info:
            read_collection(folder)
        assert "\n" not in str(info.value)
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "labels.csv").write_text("path,kind\nx.jpg,real\n")
    with pytest.raises(InputError, match="missing column"):
        read_collection(tmp_path / "cols")
    with pytest.raises(InputError, match="not a crop collection"):
        read_collection(tmp_path / "nowhere")


def test_faces_are_found_on_every_crop_and_misses_are_counted(tmp_path, collection, monkeypatch):
    items, report = collection_items(collection, tmp_path / "cache")
    assert report.faces == {"real": 6, "fake": 6} and report.no_face == {"real": 0, "fake": 1}
    missing = [json.loads(line) for line in
               (tmp_path / "cache" / read_collection(collection).key / "no_face.jsonl").open()]
    assert [m["file"] for m in missing] == ["train/fake/grey.jpg"]
    for item in items:  # landmarks on the crop itself, not on the bordered copy looked at
        h, w = cv2.imread(item.context).shape[:2]
        lo, hi = item.landmarks.min(0), item.landmarks.max(0)
        assert (lo > -0.1 * w).all() and (hi < 1.1 * np.array([w, h])).all()
        assert hi[0] - lo[0] > 0.6 * w
    assert {(i.label, i.kind) for i in items} == {(None, "genuine"), (1, "genuine")}
    for group in {i.identity for i in items}:  # a real and its fake share the group
        assert {i.label for i in items if i.identity == group} == {None, 1}
    # the cache answers the second time: no face finder is built
    import swapscope.faces.pipeline as pipeline

    monkeypatch.setattr(pipeline, "FacePipeline", None)
    again, _ = collection_items(collection, tmp_path / "cache")
    assert [i.context for i in again] == [i.context for i in items]


def _item(group: str, label, kind="genuine") -> FaceItem:
    return FaceItem(context="x.png", landmarks=np.zeros((68, 2), np.float32), identity=group,
                    source_id=group, frame_index=0, label=label, kind=kind)


def test_balanced_draws_halve_the_classes_and_spread_over_groups():
    crowd = [_item("crowd", None) for _ in range(200)]  # one group with many faces
    singles = [_item(f"g{i}", None) for i in range(50)]
    fakes = [_item(f"g{i}", 1) for i in range(50)] + [_item("crowd", 1) for _ in range(200)]
    items = crowd + singles + fakes
    sampler = BalancedSampler(items, "sbi", length=4000, seed=1)
    keys = list(sampler)
    kinds = [kind for _, kind in keys]
    assert kinds.count("real") == 2000 and kinds.count("sbi") == kinds.count("genuine") == 1000
    for kind in ("real", "genuine"):
        crowd_share = np.mean([items[i].identity == "crowd" for i, k in keys if k == kind])
        assert crowd_share < 0.05  # 1 group of 51, not 200 faces of 450
    assert all(items[i].label is None for i, k in keys if k in ("real", "sbi"))
    sampler.epoch = 1
    assert list(sampler) != keys  # every epoch draws anew
    halves = [list(BalancedSampler(items, "sbi", 4000, 1, rank=r, world=2)) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == sorted(keys)  # torchrun: each rank its share
    fixed = BalancedSampler(items, "mix", 0, fixed=True).keys()
    assert len(fixed) == len(items) + len(crowd) + len(singles)  # reals once more as negatives
    with pytest.raises(InputError, match="kind of fake"):
        BalancedSampler(crowd, "none", 10)


def test_training_on_crops_cuts_rois_as_scan_does(collection, two_facesets, tmp_path, monkeypatch):
    """Genuine fakes with SBI negatives: every ROI the network sees is cut from the crop itself
    by the scan's margin rule at the network's input size, in training and in scan."""
    import detect.artifacts as artifacts
    import detect.scan as scan_module

    cuts: list[tuple] = []
    cut = artifacts.crop_roi

    def spy(image, box, size=224):
        cuts.append((image.shape, tuple(int(v) for v in box), size))
        return cut(image, box, size)

    monkeypatch.setattr(artifacts, "crop_roi", spy)
    monkeypatch.setattr(scan_module, "crop_roi", spy)
    out = tmp_path / "run"
    args = ["train", *map(str, two_facesets), "--crops", str(collection), "--artifact", "sbi",
            "--input-size", "96", "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "2",
            "--stride", "4", "--val-fraction", "0.4", "--cache", str(tmp_path / "cache"),
            "--device", "cpu", "--out", str(out), "--json"]
    result = runner.invoke(detect_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["crops"][0]["no_face"] == {"real": 0, "fake": 1}
    assert summary["crops"][0]["held_out"] == 1
    assert {"val_auc_genuine", "val_auc_sbi"} <= set(summary["history"][0])
    meta = json.loads((out / "best" / "config.json").read_text())
    assert meta["train_genuine_fakes"] > 0
    assert {size for _, _, size in cuts} == {96}
    crop_cuts = [(shape, box) for shape, box, _ in cuts if shape[:2] == (224, 224)]
    assert crop_cuts  # crops were cut from the 224 px crop itself, never a bordered copy
    for (h, w, _), (x1, y1, x2, y2) in crop_cuts:
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    cuts.clear()
    image = collection / "train" / "real" / "1.jpg"
    scanned = runner.invoke(detect_app, ["scan", str(image), "--model", str(out / "best"),
                                         "--json"])
    assert scanned.exit_code == 0, scanned.output
    assert cuts and {size for _, _, size in cuts} == {96}
    assert {shape[:2] for shape, _, _ in cuts} == {(224, 224)}


def test_crop_recipes_are_checked_before_anything_is_written(collection, tmp_path):
    out = tmp_path / "run"
    none = runner.invoke(detect_app, ["train", str(tmp_path), "--artifact", "none",
                                      "--out", str(out)])
    assert none.exit_code == 2 and "--artifact none" in none.stderr
    share = runner.invoke(detect_app, ["train", "--crops", str(collection), "--h264-share", "2",
                                       "--out", str(out)])
    assert share.exit_code == 2 and "--h264-share" in share.stderr
    nothing = runner.invoke(detect_app, ["train", "--out", str(out)])
    assert nothing.exit_code == 2 and "crop collection" in nothing.stderr
    assert not out.exists()


def test_genuine_fakes_alone_train_without_synthesis(collection, tmp_path):
    result = runner.invoke(detect_app, [
        "train", "--crops", str(collection), "--artifact", "none", "--epochs", "1",
        "--batch-size", "4", "--steps-per-epoch", "1", "--val-fraction", "0.4",
        "--cache", str(tmp_path / "cache"), "--device", "cpu", "--out", str(tmp_path / "run"),
        "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["history"][0]
    assert "val_auc_genuine" in record and "val_auc_sbi" not in record
    assert torch.isfinite(torch.tensor(record["train_loss"]))
