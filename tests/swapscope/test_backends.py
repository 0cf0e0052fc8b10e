import time

import numpy as np
import pytest

from swapscope.errors import InputError
from swapscope.faces.backends import BackendUnavailable, backend_names, create_backend


def test_dlib_finds_the_astronaut_with_68_landmarks(astronaut, dlib_backend):
    faces = dlib_backend.faces(astronaut, frame_index=7)
    assert len(faces) == 1
    face = faces[0]
    assert face.frame_index == 7 and face.backend == "dlib"
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    x1, y1, x2, y2 = face.box
    # her face is around x 180-275, y 75-175 in the 512 px image
    assert 150 < x1 < 200 and 250 < x2 < 300 and 50 < y1 < 100 and 150 < y2 < 200
    inside = (face.landmarks[:, 0] > x1 - 20) & (face.landmarks[:, 0] < x2 + 20)
    assert inside.all()


def test_dlib_maps_boxes_back_from_the_downscaled_frame(astronaut):
    import cv2

    big = cv2.resize(astronaut, (1536, 1536))
    small_box = create_backend("dlib", detect_size=480).faces(astronaut)[0].box
    big_box = create_backend("dlib", detect_size=480).faces(big)[0].box
    np.testing.assert_allclose(big_box / 3.0, small_box, atol=6.0)


def test_dlib_finds_small_faces_by_upscaling(astronaut):
    import cv2

    tiny = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)  # face ~25 px
    assert len(create_backend("dlib").faces(tiny)) == 1


def test_unknown_backend_lists_the_choices():
    choices = r"\['dlib', 'dlib-cnn', 'fan', 'yunet'\]"
    with pytest.raises(ValueError, match=r"unknown backend 'x'; choose from " + choices):
        create_backend("x")
    assert backend_names() == ["dlib", "dlib-cnn", "fan", "yunet"]


def test_dlib_cnn_finds_the_face_hog_finds_with_the_same_landmarks(astronaut, dlib_backend):
    cnn = create_backend("dlib-cnn")
    [face] = cnn.faces(astronaut)
    [hog] = dlib_backend.faces(astronaut)
    assert face.backend == "dlib-cnn" and face.landmarks.shape == (68, 2)
    eyes = slice(36, 48)  # the eyes: the points least moved by a different box
    assert np.abs(face.landmarks[eyes] - hog.landmarks[eyes]).max() < 0.05 * hog.size


def test_fan_fails_fast_offline_naming_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(BackendUnavailable) as info:
        create_backend("fan")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints") in message and "\n" not in message
    assert isinstance(info.value, InputError)


@pytest.fixture
def fan_stand_in_weights(tmp_path, monkeypatch):
    """Random weights of the right names in a temporary TORCH_HOME."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), cache / "2DFAN4-11f355bf06.pth.tar")
    # zeroed detector: every anchor scores exactly 0.5, below its filter, so it finds nothing
    torch.save({k: torch.zeros_like(v) for k, v in s3fd().state_dict().items()},
               cache / "s3fd-619a316812.pth")
    return cache


def test_fan_runs_with_stand_in_weights(fan_stand_in_weights, astronaut):
    """The real integration path with random weights of the right names: the landmarks are
    meaningless, the plumbing (cache lookup, detector, FAN, shapes, coordinates) is not."""
    backend = create_backend("fan", device="cpu")
    assert set(backend.weight_files()) == {"2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"}
    box = np.array([[180.0, 75.0, 275.0, 175.0]], np.float32)
    points = backend.landmarks(astronaut, box)
    assert points.shape == (1, 68, 2) and np.isfinite(points).all()
    assert backend.faces(astronaut[:256, :256]) == []
    assert backend.faces_batch([astronaut[:256, :256]] * 3, [0, 1, 2]) == [[], [], []]


def test_extract_drives_fan_through_its_batched_path(fan_stand_in_weights, face_video, tmp_path):
    from typer.testing import CliRunner

    from forge.cli import app

    out = tmp_path / "faces"
    result = CliRunner().invoke(
        app,
        [
            "extract", str(face_video), "--out", str(out), "--backend", "fan", "--device", "auto",
            "--batch-size", "4",
        ],
    )
    # the zeroed stand-in detector finds nothing, so the run ends as a clean "no face" failure
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {face_video}: no face found"]
    assert not out.exists() and not out.with_name("faces.partial").exists()


def test_dlib_detect_size_zero_sees_the_frame_as_it_is(astronaut):
    full = create_backend("dlib", detect_size=0)
    same = create_backend("dlib", detect_size=512)  # the astronaut is 512 px: no resize either way
    boxes, _ = full.detect(astronaut)
    np.testing.assert_allclose(boxes, same.detect(astronaut)[0])
    assert len(boxes) == 1


def _pasted(face: np.ndarray, side: int) -> np.ndarray:
    """The astronaut's picture scaled so her face is about ``side`` px, on a 640x360 grey frame."""
    import cv2

    scale = side / 95  # her face box is about 95 px in the 512 px picture
    small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((360, 640, 3), 128, np.uint8)
    frame[100:100 + small.shape[0], 200:200 + small.shape[1]] = small[:260, :440]
    return frame


def test_yunet_finds_a_24_px_face_that_hog_misses(astronaut, dlib_backend):
    frame = _pasted(astronaut, 24)
    yunet = create_backend("yunet", detect_size=0)
    [face] = yunet.faces(frame)
    assert face.backend == "yunet" and face.landmarks.shape == (68, 2)
    assert 18 < face.size < 34
    assert dlib_backend.faces(frame) == []  # HOG, even upscaled from 360 to 480 px, does not


def test_yunet_boxes_give_dlibs_68_points(astronaut, dlib_backend):
    [face] = create_backend("yunet").faces(astronaut)
    [hog] = dlib_backend.faces(astronaut)
    error = np.linalg.norm(face.landmarks - hog.landmarks, axis=1).mean()
    eyes = np.linalg.norm(hog.landmarks[36:42].mean(0) - hog.landmarks[42:48].mean(0))
    assert error < 0.06 * eyes  # bench/yunet_box.py: median 0.012, 95th percentile 0.036
    assert 0 < face.score <= 1


def test_yunet_finds_nothing_on_a_face_free_picture():
    from skimage import data

    assert len(create_backend("yunet").detect(data.coffee())[0]) == 0


def test_yunet_leaves_the_openmp_settings_as_they_were(monkeypatch):
    import os

    from swapscope.faces.backends import load_yunet

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    load_yunet()
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OMP_WAIT_POLICY" not in os.environ
