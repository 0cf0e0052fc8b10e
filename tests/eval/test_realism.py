"""eval.realism: head pose, expression, Frechet distance."""

import numpy as np
import pytest

from eval.realism import expression_vector, frechet_distance, head_pose


def test_head_pose_and_expression_of_a_face(astronaut, dlib_backend):
    face = dlib_backend.faces(astronaut)[0]
    yaw, pitch, roll = head_pose(face.landmarks, astronaut.shape)
    assert abs(yaw) < 25 and abs(roll) < 15  # she faces the camera, head upright
    mirrored = face.landmarks.copy()
    mirrored[:, 0] = astronaut.shape[1] - mirrored[:, 0]
    assert abs(head_pose(mirrored, astronaut.shape)[0] + yaw) < 5  # a mirror flips the yaw
    scaled = face.landmarks * 1.5
    np.testing.assert_allclose(
        expression_vector(scaled), expression_vector(face.landmarks), atol=1e-4
    )


def test_frechet_distance_is_zero_for_one_sample_and_the_mean_shift_squared_for_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + [2, 0, 0, 0]) == pytest.approx(4, abs=1e-6)
