"""3D landmarks (swapscope.faces.mesh): the mesh extra, head pose, and the face-set fields."""

import json
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from forge.cli import app
from swapscope.errors import InputError
from swapscope.formats.faceset import FaceRow, FaceSet

runner = CliRunner()


@pytest.fixture(scope="module")
def mesher():
    pytest.importorskip("mediapipe", reason="the mesh extra is not installed: pip install -e "
                        "'.[mesh]' (CI installs it with [dev])")
    from swapscope.faces.mesh import Mesher

    mesher = Mesher()
    yield mesher
    mesher.close()


@pytest.fixture(scope="module")
def yunet():
    from swapscope.faces.backends import create_backend

    return create_backend("yunet")


def turned(image: np.ndarray, points: np.ndarray, degrees: float) -> np.ndarray:
    """The face of ``image`` turned by ``degrees`` (> 0: to the image's right) as the benchmarks
    turn one (``swapscope.faces.mesh.turned_face``)."""
    from swapscope.faces.mesh import turned_face

    return turned_face(image, points, degrees)[0]


def pose_of(image, mesher, yunet):
    from swapscope.faces.mesh import head_pose

    boxes, _ = yunet.detect(image)
    points = mesher.points(image, boxes[0])
    assert points is not None and points.shape == (468, 3)
    return head_pose(points)


def test_the_pose_changes_sign_on_a_mirrored_face(astronaut, mesher, yunet):
    boxes, _ = yunet.detect(astronaut)
    face = turned(astronaut, mesher.points(astronaut, boxes[0]), -30)
    pose = pose_of(face, mesher, yunet)
    mirrored = pose_of(np.ascontiguousarray(face[:, ::-1]), mesher, yunet)
    assert pose.yaw < -8  # turned to the image's left
    assert mirrored.yaw > 8 and abs(pose.yaw + mirrored.yaw) < 5
    # pitch: the mesh reads a rendered turn's pitch, mirrored or not, within a few degrees
    assert abs(pose.roll + mirrored.roll) < 3 and abs(pose.pitch - mirrored.pitch) < 5
    front = pose_of(astronaut, mesher, yunet)
    assert abs(front.yaw) < 5 and front.yaw > pose.yaw + 8


def test_a_self_made_turn_turns_the_head_its_way_and_leaves_the_frame_edge(astronaut, mesher,
                                                                           yunet):
    from swapscope.faces.mesh import head_pose, turned_face

    points = mesher.points(astronaut, yunet.detect(astronaut)[0][0])
    front = head_pose(points).yaw
    for degrees in (35, -35):
        image, moved = turned_face(astronaut, points, degrees)
        assert image.shape == astronaut.shape and moved.shape == points.shape
        turn = pose_of(image, mesher, yunet).yaw - front
        assert 12 < np.sign(degrees) * turn < 35, (degrees, turn)  # read as about 0.7 of it
        assert abs(head_pose(moved).yaw - front - degrees) < 5  # the mesh itself turned by it
        assert np.array_equal(image[:40, :40], astronaut[:40, :40])  # far from the face: as was
        assert np.array_equal(image[-40:, -40:], astronaut[-40:, -40:])


def test_extract_records_the_mesh_and_pose(astronaut, mesher, tmp_path):
    photo = tmp_path / "eileen.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    result = runner.invoke(app, ["extract", str(photo), "--out", str(tmp_path / "fs"), "--mesh",
                                 "--backend", "yunet", "--json"])
    assert result.exit_code == 0, result.output
    assert "mesh" in json.loads(result.stdout)["timings"]
    [row] = FaceSet.open(tmp_path / "fs").rows
    assert row.mesh.shape == (468, 3) and row.backend == "yunet"
    x1, y1, x2, y2 = row.box
    nose = row.mesh[1]
    assert x1 < nose[0] < x2 and y1 < nose[1] < y2
    assert abs(row.pose[0]) < 5  # she looks at the camera


def _row(**extra) -> dict:
    return {"source_id": "a" * 64, "source_path": "x.png", "frame_index": 0, "time": 0.0,
            "track_id": 0, "identity": "x", "box": [0, 0, 10, 10],
            "landmarks": [[1.0, 1.0]] * 68, "affine": [[1, 0, 0], [0, 1, 0]], "crop_size": 256,
            "padding": 0.25, "score": 1.0, "backend": "dlib", "crop": "crops/a.png", **extra}


def test_face_set_rows_without_a_mesh_still_read_and_a_bad_mesh_is_one_error():
    old = FaceRow.from_json(_row(), "faces.jsonl:1")
    assert old.mesh is None and old.pose is None and "mesh" not in old.to_json()
    new = FaceRow.from_json(_row(mesh=[[1.0, 2.0, 3.0]] * 468, pose=[10, -2, 1]), "faces.jsonl:2")
    assert new.mesh.shape == (468, 3) and new.pose == (10.0, -2.0, 1.0)
    assert FaceRow.from_json(new.to_json(), "again").pose == new.pose
    for bad in ({"mesh": [[1.0, 2.0]] * 468, "pose": [0, 0, 0]}, {"mesh": [[1.0, 2.0, 3.0]] * 468},
                {"mesh": "junk", "pose": [0, 0, 0]}, {"mesh": [[1, 2, 3]] * 468, "pose": 5}):
        with pytest.raises(InputError, match="faces.jsonl:3"):
            FaceRow.from_json(_row(**bad), "faces.jsonl:3")


def test_extract_mesh_without_the_extra_is_one_line_and_no_output(astronaut, tmp_path,
                                                                  monkeypatch):
    photo = tmp_path / "eileen.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    result = runner.invoke(app, ["extract", str(photo), "--out", str(tmp_path / "fs"), "--mesh"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: 3D landmarks need the mesh extra: pip install -e '.[mesh]' (README: 3D landmarks)"]
    assert not (tmp_path / "fs").exists()
    plain = runner.invoke(app, ["extract", str(photo), "--out", str(tmp_path / "fs")])
    assert plain.exit_code == 0, plain.output  # nothing else changes


@pytest.mark.parametrize("degrees", [40, -40])
def test_a_turned_face_is_masked_inside_the_visible_part_of_its_mesh(astronaut, mesher, yunet,
                                                                      degrees):
    """forge's mesh mask on a turned head, aligned to its pose, warped back into the frame: it
    stays on the face the camera sees and covers most of it; the landmark hull spills over the
    turned-away side and covers less."""
    from forge.swap import CompositeConfig, composite, crop_mask
    from swapscope.faces.align import face_affine, landmarks_to_crop, warp_face
    from swapscope.faces.mesh import head_pose, visible_mask

    boxes, _ = yunet.detect(astronaut)
    frame = turned(astronaut, mesher.points(astronaut, boxes[0]), degrees)
    [face] = yunet.faces(frame)
    mesh = mesher.points(frame, face.box)
    assert abs(head_pose(mesh).yaw) > 15
    visible = visible_mask(mesh, frame.shape).astype(bool)
    affine = face_affine(face.landmarks, 128, 0.125, "pose", head_pose(mesh).yaw)
    share = {}
    for kind in ("mesh", "hull"):
        mask = crop_mask(128, landmarks_to_crop(face.landmarks, affine), None,
                         CompositeConfig(mask=kind), mesh, affine)
        _, alpha, (x1, y1, x2, y2) = composite(frame, warp_face(frame, affine, 128), mask, affine,
                                               "alpha")
        blended = np.zeros(frame.shape[:2], bool)
        blended[y1:y2, x1:x2] = alpha > 0.5
        share[kind] = ((blended & ~visible).sum() / blended.sum(),
                       (blended & visible).sum() / visible.sum())
    assert share["mesh"][0] < 0.002 and share["mesh"][1] > 0.75, share
    assert share["hull"][0] > 3 * share["mesh"][0] and share["hull"][1] < share["mesh"][1], share


def test_the_visible_mesh_loses_the_far_side_of_a_turned_face(astronaut, mesher, yunet):
    from swapscope.faces.mesh import mesh_triangles, visible_triangles

    boxes, _ = yunet.detect(astronaut)
    points = mesher.points(astronaut, boxes[0])
    front = visible_triangles(points)
    assert len(mesh_triangles()) > 800 and front.mean() > 0.95
    frame = turned(astronaut, points, 40)
    side = visible_triangles(mesher.points(frame, yunet.detect(frame)[0][0]))
    assert side.mean() < front.mean() - 0.03


@pytest.fixture(scope="module")
def mesh_faceset(tmp_path_factory, face_video, mesher):
    out = tmp_path_factory.mktemp("mesh") / "fs"
    result = runner.invoke(app, ["extract", str(face_video), "--out", str(out), "--mesh",
                                 "--label", "eileen", "--every", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_training_masks_come_from_the_visible_mesh_and_need_one(mesh_faceset, two_facesets,
                                                                 tmp_path):
    from forge.train import FaceData, TrainConfig

    data = FaceData(mesh_faceset, 64, 0.125, align="pose", mask_source="auto")
    hull = FaceData(mesh_faceset, 64, 0.125, align="pose", mask_source="hull")
    assert data.mesh_masks == len(data) > 0 and hull.mesh_masks == 0
    _, _, mask = data.sample(0, None, TrainConfig())
    _, _, hull_mask = hull.sample(0, None, TrainConfig())
    assert mask.shape == (64, 64) and mask.sum() > hull_mask.sum()  # forehead included
    assert FaceData(two_facesets[0], 64, 0.125, mask_source="auto").mesh_masks == 0
    with pytest.raises(InputError, match="forge extract --mesh"):
        FaceData(two_facesets[0], 64, 0.125, mask_source="mesh")
    result = runner.invoke(app, ["train", str(two_facesets[0]), str(two_facesets[1]), "--out",
                                 str(tmp_path / "never"), "--train-mask", "mesh", "--steps", "1"])
    assert result.exit_code == 2 and "forge extract --mesh" in result.stderr


def test_forge_video_blends_on_the_visible_mesh(face_video, mesher, tmp_path):
    out = tmp_path / "fake.mp4"
    result = runner.invoke(app, ["video", str(face_video), "--out", str(out), "--mask", "mesh",
                                 "--max-frames", "6", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "mesh" in report["timings"] and out.is_file()
    row = json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[-1])
    assert row["knobs"]["mask"] == "mesh"
