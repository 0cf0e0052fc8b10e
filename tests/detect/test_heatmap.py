"""detect scan --heatmap and Grad-CAM."""

import numpy as np
import torch
from typer.testing import CliRunner

from detect.checkpoint import load_detector
from detect.cli import app as detect_app

runner = CliRunner()


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
