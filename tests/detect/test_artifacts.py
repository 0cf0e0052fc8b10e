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


@pytest.mark.parametrize("seed", range(6))
def test_self_blend_leaves_every_pixel_outside_its_mask_as_it_was(astronaut, face, seed):
    from detect.artifacts import self_blend

    out, mask = self_blend(astronaut, face.landmarks, np.random.default_rng(seed))
    assert mask.shape == astronaut.shape[:2] and 0 <= mask.min() and mask.max() <= 1
    np.testing.assert_array_equal(out[mask == 0], astronaut[mask == 0])
    inside = mask > 0.5 * mask.max()  # the blend ratio scales the whole mask
    assert inside.sum() > 1000
    assert np.abs(out.astype(int) - astronaut.astype(int))[inside].mean() > 1.0


def test_self_blend_mask_covers_the_face_and_stays_near_it(astronaut, face):
    from detect.artifacts import SbiConfig, self_blend

    _, mask = self_blend(astronaut, face.landmarks, np.random.default_rng(3),
                         SbiConfig(ratios=(1.0,)))
    centre = np.round(face.landmarks[30]).astype(int)  # the nose tip
    assert mask[centre[1], centre[0]] > 0.9
    ys, xs = np.nonzero(mask)
    (x1, y1), (x2, y2) = face.landmarks.min(0), face.landmarks.max(0)
    reach = 0.4 * max(x2 - x1, y2 - y1)
    assert xs.min() > x1 - reach and xs.max() < x2 + reach and ys.min() > y1 - reach


def test_self_blend_is_deterministic_for_a_seed(astronaut, face):
    from detect.artifacts import self_blend

    a, ma = self_blend(astronaut, face.landmarks, np.random.default_rng(7))
    b, mb = self_blend(astronaut, face.landmarks, np.random.default_rng(7))
    c, _ = self_blend(astronaut, face.landmarks, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert (a != c).any()


def test_mix_draws_both_artifacts(astronaut, face):
    from detect.artifacts import ARTIFACTS, synthesise

    assert ARTIFACTS == ("fwa", "sbi", "mix")
    with pytest.raises(ValueError, match="choose from"):
        synthesise("blur", astronaut, face.landmarks, np.random.default_rng(0))
    fakes = [training_sample(astronaut, face.landmarks, np.random.default_rng(s), fake_prob=1.0,
                             artifact="mix") for s in range(12)]
    assert all(label == 1 for _, label in fakes)


class _Recorder:
    """A degradation that records the draws it was given and changes nothing."""

    flip = 0.5

    def __init__(self):
        self.draws = []

    def __call__(self, image, rng):
        self.draws.append(rng.random())
        return image


@pytest.mark.parametrize("artifact", ["fwa", "sbi", "mix"])
def test_real_and_fake_examples_are_degraded_alike(astronaut, face, artifact):
    real, fake = _Recorder(), _Recorder()
    for seed in range(8):
        training_sample(astronaut, face.landmarks, np.random.default_rng(seed), fake_prob=0.0,
                        artifact=artifact, degrade=real)
        training_sample(astronaut, face.landmarks, np.random.default_rng(seed), fake_prob=1.0,
                        artifact=artifact, degrade=fake)
    assert real.draws == fake.draws and len(real.draws) == 8


def test_every_degradation_keeps_the_size_and_changes_the_pixels(astronaut):
    from detect.data import Degrade

    crop = np.ascontiguousarray(astronaut[40:260, 140:340])
    always = dict(prob=1.0, rescale=0.0, smooth=0.0, sharpen=0.0)
    cases = {
        "h264 crf 40": Degrade(**always, h264=1.0, h264_crf=(40, 40), h264_half=0.0),
        "h264 at half size": Degrade(**always, h264=1.0, h264_crf=(30, 30), h264_half=1.0),
        "jpeg 40": Degrade(**always, h264=0.0, jpeg_quality=(40, 40)),
        "rescale": Degrade(**{**always, "rescale": 1.0}, min_scale=0.3, h264=0.0,
                           jpeg_quality=(100, 100)),
        "smooth": Degrade(**{**always, "smooth": 1.0}, h264=0.0, jpeg_quality=(100, 100)),
        "sharpen": Degrade(**{**always, "sharpen": 1.0}, h264=0.0, jpeg_quality=(100, 100)),
    }
    changes = {}
    for name, degrade in cases.items():
        out = degrade(crop, np.random.default_rng(0))
        assert out.shape == crop.shape and out.dtype == np.uint8, name
        changes[name] = np.abs(out.astype(int) - crop.astype(int)).mean()
    assert all(change > 0.5 for change in changes.values()), changes
    assert Degrade(prob=0.0)(crop, np.random.default_rng(0)) is crop
