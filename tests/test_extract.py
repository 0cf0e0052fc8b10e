import numpy as np

from forge.extract import ExtractConfig, Extractor
from forge.timing import StageTimer


class _BatchingDlib:
    """dlib behind the batched interface that the fan backend offers, recording its calls."""

    def __init__(self, dlib_backend, batch_size):
        self._dlib = dlib_backend
        self.name = dlib_backend.name
        self.batch_size = batch_size
        self.calls: list[list[int]] = []

    def faces_batch(self, images, frame_indices):
        self.calls.append(list(frame_indices))
        return [self._dlib.faces(image, index) for image, index in zip(images, frame_indices)]


def test_batching_backends_get_frames_in_batches_and_give_the_same_tracks(face_video, dlib_backend):
    per_frame = Extractor(ExtractConfig())
    expected, processed, tracks = per_frame.faces_in_video(face_video, StageTimer())

    batched = Extractor(ExtractConfig())
    batched.backend = _BatchingDlib(dlib_backend, batch_size=5)
    timer = StageTimer()
    found, batched_processed, batched_tracks = batched.faces_in_video(face_video, timer)

    assert batched.backend.calls == [list(range(i, min(i + 5, 24))) for i in range(0, 24, 5)]
    assert "detect+landmarks" in timer.as_dict()
    assert batched_processed == processed == 24
    assert [len(t.faces) for t in batched_tracks] == [len(t.faces) for t in tracks]  # the clip jumps back at frame 20
    assert [f.frame_index for f, _, _ in found] == [f.frame_index for f, _, _ in expected]
    # every frame detected vs boxes tracked between detections: the landmarks agree closely
    gap = [np.abs(a.landmarks - b.landmarks).max() for (a, _, _), (b, _, _) in zip(found, expected)]
    assert max(gap) < 0.05 * expected[0][0].size
