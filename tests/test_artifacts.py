import numpy as np
import pytest

from detect.artifacts import (
    HULL_POINTS,
    FwaConfig,
    colour_jitter,
    crop_roi,
    random_roi,
    training_sample,
    warp_artifact,
)


@pytest.fixture(scope="module")
def face(astronaut, dlib_backend):
    return dlib_backend.faces(astronaut)[0]


@pytest.mark.parametrize("seed", range(6))
def test_pixels_outside_the_warped_region_are_untouched(astronaut, face, seed):
    out, region = warp_artifact(astronaut, face.landmarks, np.random.default_rng(seed))
    assert region.any()
    np.testing.assert_array_equal(out[~region], astronaut[~region])


@pytest.mark.parametrize("seed", range(6))
def test_negative_differs_from_the_original_inside_the_region(astronaut, face, seed):
    out, region = warp_artifact(astronaut, face.landmarks, np.random.default_rng(seed))
    diff = np.abs(out.astype(int) - astronaut.astype(int))[region]
    assert diff.mean() > 1.0  # blur + down/up-sampling lose detail everywhere in the face


def test_hull_cut_keeps_the_region_inside_brows_and_lower_lip(astronaut, face):
    import cv2

    cfg = FwaConfig(hull_prob=1.0)
    _, region = warp_artifact(astronaut, face.landmarks, np.random.default_rng(0), cfg)
    hull = np.zeros(astronaut.shape[:2], np.uint8)
    cv2.fillConvexPoly(
        hull, cv2.convexHull(np.round(face.landmarks[HULL_POINTS]).astype(np.int32)), 1
    )
    assert region.any() and not (region & (hull == 0)).any()
    _, square = warp_artifact(
        astronaut, face.landmarks, np.random.default_rng(0), FwaConfig(hull_prob=0.0)
    )
    assert square.sum() > region.sum()


def test_artifacts_are_deterministic_for_a_seed(astronaut, face):
    a = training_sample(astronaut, face.landmarks, np.random.default_rng(42))
    b = training_sample(astronaut, face.landmarks, np.random.default_rng(42))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


@pytest.mark.parametrize("seed", range(20))
def test_roi_contains_every_landmark(astronaut, face, seed):
    box = random_roi(face.landmarks, astronaut.shape, np.random.default_rng(seed))
    x1, y1, x2, y2 = box
    lms = face.landmarks
    assert (lms[:, 0] >= x1).all() and (lms[:, 0] <= x2).all()
    assert (lms[:, 1] >= y1).all() and (lms[:, 1] <= y2).all()
    roi = crop_roi(astronaut, box)
    assert roi.shape == (224, 224, 3)


def test_roi_is_clipped_to_the_image(face):
    lms = face.landmarks - face.landmarks.min(0)  # face touching the top-left corner
    box = random_roi(lms, (300, 300, 3), np.random.default_rng(0))
    assert box[0] == 0 and box[1] == 0


def test_colour_jitter_stays_within_its_factors(astronaut):
    out = colour_jitter(astronaut, np.random.default_rng(0))
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    ratio = out.astype(float).mean() / astronaut.astype(float).mean()
    assert 0.6 < ratio < 1.45  # four factors in [0.8, 1.2] compound; brightness dominates


def test_training_labels_are_balanced(astronaut, face):
    rng = np.random.default_rng(0)
    labels = [training_sample(astronaut, face.landmarks, rng)[1] for _ in range(200)]
    assert 0.4 < np.mean(labels) < 0.6
