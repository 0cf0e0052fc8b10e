import cv2
import numpy as np
import pytest

from swapscope.faces.align import (
    TEMPLATE,
    TEMPLATE_INDICES,
    face_affine,
    hflip_affine,
    invert_affine,
    landmarks_to_crop,
    recrop_affine,
    transform_points,
    umeyama_to_template,
    unwarp_face,
    warp_face,
)


def template_points(size, padding=0.25):
    """(51, 2): where landmarks 17-67 of the mean face sit in a crop (the unit square maps onto
    [padding * size, (1 - padding) * size])."""
    return TEMPLATE * size * (1 - 2 * padding) + padding * size


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty]], np.float32)


def _landmarks_from_template(similarity):
    """68 landmarks whose points 17-67 are the template moved by ``similarity``; jaw random."""
    rng = np.random.default_rng(0)
    points = np.zeros((68, 2), np.float32)
    points[TEMPLATE_INDICES] = transform_points(TEMPLATE, similarity)
    points[:17] = rng.uniform(100, 200, (17, 2))
    return points


def test_known_similarity_is_recovered():
    sim = _similarity(180.0, 17.0, 240.0, 130.0)
    unit = umeyama_to_template(_landmarks_from_template(sim))
    np.testing.assert_allclose(unit, invert_affine(sim), atol=1e-4)


def test_aligned_landmarks_land_on_template_points():
    lms = _landmarks_from_template(_similarity(150.0, -25.0, 300.0, 200.0))
    affine = face_affine(lms, 256, 0.25)
    np.testing.assert_allclose(
        landmarks_to_crop(lms, affine)[17:], template_points(256, 0.25), atol=1e-3
    )


def test_landmark_transforms_invert_each_other():
    lms = _landmarks_from_template(_similarity(90.0, 40.0, 100.0, 80.0))
    affine = face_affine(lms, 128, 0.1)
    back = transform_points(landmarks_to_crop(lms, affine), invert_affine(affine))
    np.testing.assert_allclose(back, lms, atol=1e-3)


def test_unwarp_inverts_warp_inside_the_crop(astronaut):
    affine = _similarity(1.0, 10.0, -100.0, -20.0)  # crop px per frame px = 1: no resampling loss
    crop = warp_face(astronaut, affine, 256)
    back, coverage = unwarp_face(crop, affine, astronaut.shape)
    inside = cv2.erode((coverage > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert inside.sum() > 200 * 200
    diff = np.abs(back.astype(int) - astronaut.astype(int))[inside]
    assert diff.mean() < 3.0  # two bilinear resamplings of a rotated image
    assert coverage[~(coverage > 0)].sum() == 0


def test_recrop_affine_equals_direct_affine():
    lms = _landmarks_from_template(_similarity(120.0, 5.0, 200.0, 150.0))
    stored = face_affine(lms, 256, 0.25)
    np.testing.assert_allclose(
        recrop_affine(stored, 256, 0.25, 64, 0.1), face_affine(lms, 64, 0.1), atol=1e-3
    )


def test_hflip_affine_mirrors_the_crop_and_twice_is_identity(astronaut):
    affine = _similarity(0.8, 0.0, -50.0, -30.0)
    crop = warp_face(astronaut, affine, 128)
    flipped = warp_face(astronaut, hflip_affine(affine, 128), 128)
    assert np.abs(flipped.astype(int) - crop[:, ::-1].astype(int)).mean() < 1.0
    np.testing.assert_allclose(hflip_affine(hflip_affine(affine, 128), 128), affine, atol=1e-5)


def test_padding_outside_range_is_an_error():
    lms = _landmarks_from_template(_similarity(150.0, 0.0, 300.0, 200.0))
    with pytest.raises(ValueError):
        face_affine(lms, 256, 0.5)


def test_degenerate_landmarks_are_an_error():
    with pytest.raises(ValueError):
        umeyama_to_template(np.zeros((68, 2), np.float32))


def test_real_face_crop_puts_eyes_and_mouth_at_template_places(astronaut, dlib_backend):
    face = dlib_backend.faces(astronaut)[0]
    affine = face_affine(face.landmarks, 256)
    crop_lms = landmarks_to_crop(face.landmarks, affine)
    tpl = np.zeros((68, 2), np.float32)
    tpl[17:] = template_points(256)
    for group in (slice(36, 42), slice(42, 48), slice(48, 68)):
        # eye and mouth centres within 4% of the crop of the template's
        assert np.linalg.norm(crop_lms[group].mean(0) - tpl[group].mean(0)) < 0.04 * 256


def _turned_points(yaw, similarity):
    """68 landmarks whose points 17-67 are the 3D template turned by ``yaw`` degrees and moved by
    ``similarity`` (the jaw: random)."""
    from swapscope.faces.align import turned_template

    points = _landmarks_from_template(similarity)
    points[TEMPLATE_INDICES] = transform_points(turned_template(yaw), similarity)
    return points


@pytest.mark.parametrize("yaw", [-40, -20, 0, 30, 50])
def test_the_pose_fit_finds_the_yaw_of_a_turned_template(yaw):
    from swapscope.faces.align import estimate_yaw

    points = _turned_points(yaw, _similarity(180, 7, 40, 60))
    assert abs(estimate_yaw(points) - yaw) <= 2


def test_pose_alignment_keeps_a_turned_face_at_its_size_and_upright():
    """The flat template widens a face turned 45 degrees (its points bunch up on one side) and
    tilts it; the template turned to its yaw crops it at the size and angle of the same face seen
    from the front."""
    similarity = _similarity(180, 0, 40, 60)
    front = face_affine(_turned_points(0, similarity), 256)
    turned = _turned_points(45, similarity)
    flat, posed = face_affine(turned, 256), face_affine(turned, 256, align="pose")

    def scale(affine):
        return float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))

    def roll(affine):
        return float(np.degrees(np.arctan2(affine[1, 0], affine[0, 0])))

    assert abs(scale(posed) / scale(front) - 1) < 0.01 and abs(roll(posed)) < 0.5
    assert scale(flat) / scale(front) > 1.03 and abs(roll(flat)) > 2
    with pytest.raises(ValueError, match="unknown alignment"):
        face_affine(turned, 256, align="sideways")
