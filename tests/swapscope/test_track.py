import numpy as np

from swapscope.faces.records import Face, FaceTrack
from swapscope.faces.track import (
    SWAPPED_IOU,
    OneEuro,
    Tracker,
    best_swapped_face,
    box_iou,
    landmark_jitter,
    one_euro,
    same_shot,
    smooth_track,
    swapped_faces,
)


def _face(frame, x, y, size=100, embedding=None):
    box = np.array([x, y, x + size, y + size], np.float32)
    lms = np.zeros((68, 2), np.float32) + [x + size / 2, y + size / 2]
    lms[36:42] -= [size / 4, 0]
    lms[42:48] += [size / 4, 0]
    return Face(
        frame_index=frame, box=box, landmarks=lms, score=1.0, backend="test", embedding=embedding
    )


def test_box_iou_of_identical_and_disjoint_boxes():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 0.0]])


def test_moving_face_stays_one_track():
    tracker = Tracker()
    ids = [tracker.update([_face(i, 10 + 5 * i, 20)])[0] for i in range(30)]
    assert set(ids) == {0}


def test_track_survives_two_missed_frames_but_not_three():
    tracker = Tracker(max_missed=2)
    a = tracker.update([_face(0, 10, 10)])[0]
    tracker.update([])
    tracker.update([])
    assert tracker.update([_face(3, 12, 10)])[0] == a
    for _ in range(3):
        tracker.update([])
    assert tracker.update([_face(7, 12, 10)])[0] != a


def test_two_people_side_by_side_get_two_tracks():
    tracker = Tracker()
    for i in range(10):
        left, right = tracker.update([_face(i, 10, 10), _face(i, 300, 10)])
        assert (left, right) == (0, 1)


def test_another_person_in_the_same_place_starts_a_new_track():
    tracker = Tracker(split_distance=0.6)
    alice, bob = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)  # distance 1.13
    first = tracker.update([_face(0, 10, 10, embedding=alice)])[0]
    assert tracker.update([_face(1, 10, 10, embedding=alice)])[0] == first
    assert tracker.update([_face(2, 10, 10, embedding=bob)])[0] != first
    assert len(tracker.tracks()) == 2


def _turned(face: Face, amount: float) -> Face:
    """The face with its nose and eyes moved sideways, as a head turning moves them."""
    lms = face.landmarks.copy()
    lms[27:48, 0] += amount * (face.box[2] - face.box[0])
    return Face(frame_index=face.frame_index, box=face.box, landmarks=lms, score=1.0,
                backend="test", embedding=face.embedding)


def test_a_head_turning_away_keeps_its_track_within_a_shot_but_not_across_a_cut():
    """Seen from the side, a face embeds far from itself seen from the front (dlib: beyond 0.6
    from about 35 degrees); within one shot a face that turned is the same person, across a cut
    (or with no turn) another one."""
    front, side = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)  # distance 1.13
    for shot, turn, same in ((True, 0.15, True), (False, 0.15, False), (True, 0.0, False)):
        tracker = Tracker(split_distance=0.6)
        first = tracker.update([_face(0, 10, 10, embedding=front)], same_shot=shot)[0]
        later = tracker.update([_turned(_face(1, 10, 10, embedding=side), turn)],
                               same_shot=shot)[0]
        assert (later == first) is same, (shot, turn)


def test_a_cut_is_told_from_a_turn(astronaut):
    moved = np.roll(astronaut, 2, axis=1)  # the head and camera move a little
    other = np.ascontiguousarray(astronaut[::-1])  # another picture altogether
    assert same_shot(astronaut, moved) and same_shot(astronaut, astronaut)
    assert not same_shot(astronaut, other)
    assert not same_shot(astronaut, astronaut[:200])  # another size: another shot


def test_one_euro_removes_jitter_at_rest_and_follows_fast_motion():
    rng = np.random.default_rng(0)
    t = np.arange(120) / 30.0
    truth = np.where(t < 2.0, 100.0, 100.0 + 600.0 * (t - 2.0))  # still, then 600 px/s
    noisy = truth + rng.normal(0, 2.0, t.shape)
    scale = np.full(len(t), 100.0)  # a 100 px face
    smoothed = one_euro(noisy[:, None], t, OneEuro(), scale=scale)[:, 0]
    fixed = one_euro(noisy[:, None], t, OneEuro(beta=0.0), scale=scale)[:, 0]  # plain 1 Hz low-pass
    still, moving = (t > 0.4) & (t < 1.9), t > 2.5
    assert np.std(smoothed[still] - truth[still]) < 0.6 * np.std(noisy[still] - truth[still])
    lag = np.abs(smoothed[moving] - truth[moving]).mean()
    assert lag < 0.2 * np.abs(fixed[moving] - truth[moving]).mean()


def test_smooth_track_lowers_landmark_jitter():
    rng = np.random.default_rng(1)
    faces = []
    for i in range(60):
        f = _face(i, 100, 100)
        noisy = f.landmarks + rng.normal(0, 1.5, f.landmarks.shape).astype(np.float32)
        faces.append(Face(frame_index=i, box=f.box, landmarks=noisy, score=1.0, backend="test"))
    track = FaceTrack(track_id=0, faces=tuple(faces))
    raw = landmark_jitter(np.stack([f.landmarks for f in faces]))
    smooth = landmark_jitter(
        np.stack([f.landmarks for f in smooth_track(track, np.arange(60) / 30.0).faces])
    )
    assert smooth < 0.5 * raw


def test_a_face_followed_from_its_track_stays_on_it_however_far_it_moved():
    tracker = Tracker()
    assert tracker.update([_face(0, 0, 0)]) == [0]
    # 200 px away: by overlap a new person; followed from track 0 (its hint), the same one
    assert tracker.update([_face(1, 200, 0)], hints=[0]) == [0]
    assert tracker.update([_face(2, 400, 0)]) == [1]


def test_followed_faces_keep_their_landmarks_on_a_face_that_jumps(tmp_path, astronaut):
    """Frames 5 apart of a face panning 15 px and jumping back 45 px: the landmarks of the
    frames between detections agree with a detection on every frame."""
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.media.sample import moving_face_frames, write_clip
    from swapscope.timing import StageTimer

    clip = write_clip(tmp_path / "pan.mp4", moving_face_frames(astronaut, 50))

    def landmarks(detect_every):
        pipeline = FacePipeline(PipelineConfig(every=5, detect_every=detect_every,
                                               detect_size=480, min_size=32, embed=False))
        return {item.frame.index: (item.faces[0].face.landmarks, item.faces[0].track_id)
                for item in pipeline.track_frames(clip, StageTimer()) if item.faces}

    detected, followed = landmarks(1), landmarks(6)
    assert sorted(followed) == sorted(detected) == list(range(0, 50, 5))
    for index, (points, _) in detected.items():
        size = np.ptp(points, 0).max()
        assert np.abs(followed[index][0] - points).mean() < 0.02 * size, index
    assert {track for _, track in followed.values()} == {0}


def test_a_dense_window_follows_faces_between_the_scored_frames(tmp_path, astronaut):
    """The label window (``dense_frames``) adds the frames between the every-th ones, whose
    faces are followed, not detected: the every-th frames keep their detections and their
    landmarks, and the frames between get the face too."""
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.media.sample import moving_face_frames, write_clip
    from swapscope.timing import StageTimer

    clip = write_clip(tmp_path / "pan.mp4", moving_face_frames(astronaut, 40))
    detections = []

    def read(dense):
        pipeline = FacePipeline(PipelineConfig(every=5, detect_every=6, detect_size=480,
                                               min_size=32, embed=False, dense_frames=dense))
        detect = pipeline.backend.detect

        def counted(image):
            detections.append(dense)
            return detect(image)

        pipeline.backend.detect = counted
        return {item.frame.index: item.faces[0].face.landmarks
                for item in pipeline.track_frames(clip, StageTimer()) if item.faces}

    sparse, dense = read(0), read(20)
    assert sorted(dense) == list(range(20)) + [20, 25, 30, 35]
    assert detections.count(0) == detections.count(20)  # the window adds no detection
    # nor where there is no face to follow: frames between are skipped, not searched
    detections.clear()
    clip = write_clip(tmp_path / "empty.mp4", [np.full((240, 320, 3), 90, np.uint8)] * 40)
    assert read(0) == read(20) == {}
    assert detections.count(0) == detections.count(20) == 8
    for index, points in sparse.items():
        size = np.ptp(points, 0).max()
        assert np.abs(dense[index] - points).mean() < 0.02 * size, index


def test_a_batched_backend_detects_no_more_in_the_dense_window(tmp_path, astronaut):
    """A backend that detects frames in batches (fan, on a GPU) takes the same path: the frames
    of the label window between the every-th ones get landmarks in the boxes of the frame before,
    never a detection, and nothing where that frame had no face."""
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.media.sample import moving_face_frames, write_clip
    from swapscope.timing import StageTimer

    detected = []

    def read(clip, dense):
        pipeline = FacePipeline(PipelineConfig(every=5, detect_size=480, min_size=32,
                                               embed=False, dense_frames=dense))
        backend = pipeline.backend

        def faces_batch(images, indices):  # a batched stand-in: dlib, frame by frame
            detected.extend((dense, i) for i in indices)
            return [backend.faces(image, index) for image, index in zip(images, indices)]

        backend.faces_batch = faces_batch
        backend.batch_size = 3
        read.backend = backend
        return {item.frame.index: (item.faces[0].face.landmarks, item.frame.image)
                for item in pipeline.track_frames(clip, StageTimer()) if item.faces}

    clip = write_clip(tmp_path / "pan.mp4", moving_face_frames(astronaut, 40))
    sparse, dense = read(clip, 0), read(clip, 20)
    assert sorted(dense) == list(range(20)) + [20, 25, 30, 35]
    assert [i for d, i in detected if d == 0] == [i for d, i in detected if d == 20] == \
        list(range(0, 40, 5))
    for index, (points, _) in sparse.items():
        assert np.array_equal(dense[index][0], points)  # every-th frames: detected alike
    for index in (i for i in range(20) if i % 5):  # between: where a detection puts the face
        points, image = dense[index]
        found = read.backend.faces(image)[0].landmarks
        assert np.abs(points - found).mean() < 0.03 * np.ptp(found, 0).max(), index
    detected.clear()
    empty = write_clip(tmp_path / "empty.mp4", [np.full((240, 320, 3), 90, np.uint8)] * 40)
    assert read(empty, 20) == {} and len(detected) == 8


def test_one_rule_ranks_faces_by_size_everywhere():
    """The larger side of the box, for Face.size, largest_face and largest_box alike (data and
    realism ranked boxes by area, identity and crops by side)."""
    from swapscope.faces.records import box_size, largest_box, largest_face

    boxes = np.array([[0, 0, 100, 20], [0, 0, 60, 60]], np.float32)  # areas 2000 and 3600
    assert box_size(boxes).tolist() == [100, 60] and largest_box(boxes) == 0
    faces = [Face(0, b, np.zeros((68, 2), np.float32), 1.0, "dlib") for b in boxes]
    assert largest_face(faces) is faces[0] and faces[1].size == 60


def test_a_swapped_face_is_found_again_by_one_rule():
    """detect's training crops and eval's realism find the face a swap record names the same
    way: the detections overlapping its box over SWAPPED_IOU, the best one for one box."""
    found = np.array([[0, 0, 100, 100], [90, 0, 190, 100], [300, 300, 400, 400]], np.float32)
    record = [5, 0, 105, 100]
    assert swapped_faces(found, [record]) == [0]
    assert swapped_faces(found, [record, [300, 300, 400, 400]]) == [0, 2]
    assert best_swapped_face(found, record) == 0
    assert best_swapped_face(found, [150, 150, 250, 250]) is None  # touches none enough
    assert swapped_faces(found[:0], [record]) == [] and best_swapped_face(found[:0], record) is None
    assert 0 < SWAPPED_IOU < 0.5
