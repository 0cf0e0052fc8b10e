import numpy as np

from swapscope.faces.pipeline import FacePipeline, PipelineConfig
from swapscope.timing import StageTimer


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
    per_frame = FacePipeline(PipelineConfig())
    reference = per_frame.faces_in_video(face_video, StageTimer())
    expected, processed, tracks = reference.faces, reference.frames, reference.tracks

    batched = FacePipeline(PipelineConfig())
    batched.backend = _BatchingDlib(dlib_backend, batch_size=5)
    timer = StageTimer()
    result = batched.faces_in_video(face_video, timer)
    found, batched_processed, batched_tracks = result.faces, result.frames, result.tracks

    assert batched.backend.calls == [list(range(i, min(i + 5, 24))) for i in range(0, 24, 5)]
    assert "detect+landmarks" in timer.as_dict()
    assert batched_processed == processed == 24
    assert [len(t.faces) for t in batched_tracks] == [
        len(t.faces) for t in tracks
    ]  # the clip jumps back at frame 20
    assert [f.face.frame_index for f in found] == [f.face.frame_index for f in expected]
    # every frame detected vs boxes tracked between detections: the landmarks agree closely
    gap = [np.abs(a.face.landmarks - b.face.landmarks).max() for a, b in zip(found, expected)]
    assert max(gap) < 0.05 * expected[0].face.size
