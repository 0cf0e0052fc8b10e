import numpy as np
import pytest

from swapscope.errors import InputError
from swapscope.media.video import VideoWriter, _rotate, probe, read_frames


def test_decode_gives_every_frame_with_index_and_time(face_video):
    frames = list(read_frames(face_video))
    assert [f.index for f in frames] == list(range(24))
    np.testing.assert_allclose([f.time for f in frames], np.arange(24) / 25, atol=1e-3)
    assert frames[0].image.shape == (320, 320, 3) and frames[0].image.dtype == np.uint8


def test_every_nth_frame_keeps_true_indices(face_video):
    assert [f.index for f in read_frames(face_video, every=5)] == [0, 5, 10, 15, 20]


def test_a_dense_start_keeps_each_of_the_first_frames_then_every_nth(face_video):
    frames = read_frames(face_video, every=5, dense=7)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 5, 6, 10, 15, 20]


def test_probe_reads_size_rate_count_and_audio(face_video):
    info = probe(face_video)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (320, 320, 24, True)
    assert info.fps == pytest.approx(25.0)


def test_writer_keeps_frames_rate_size_and_copies_audio(tmp_path, face_video):
    import av

    out = tmp_path / "copy.mp4"
    frames = list(read_frames(face_video))
    with VideoWriter(out, 320, 320, probe(face_video).fps, audio_from=face_video, crf=12) as writer:
        for frame in frames:
            writer.write(frame.image, frame.time)
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (320, 320, 24, True)
    assert info.fps == pytest.approx(25.0)
    back = list(read_frames(out))
    assert np.abs(back[12].image.astype(int) - frames[12].image.astype(int)).mean() < 3
    with av.open(str(face_video)) as a, av.open(str(out)) as b:
        src = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
        dst = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
    assert src == dst  # the audio is copied, not re-encoded


def test_writer_keeps_an_odd_size(tmp_path):
    out = tmp_path / "odd.mp4"
    image = np.random.default_rng(0).integers(0, 256, (75, 101, 3), dtype=np.uint8)
    image[:] = image.mean((0, 1), dtype=np.uint8)  # flat, so the codec keeps it nearly exact
    image[-1, -1] = 255  # the last row and column are really written
    with VideoWriter(out, 101, 75, 25) as writer:
        for _ in range(3):
            writer.write(image)
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (101, 75, 3)
    back = next(read_frames(out)).image
    assert back.shape == (75, 101, 3) and back[-1, -1].mean() > back[0, 0].mean() + 40


def test_writer_trims_the_audio_of_a_cut_clip(tmp_path, face_video):
    import av

    out = tmp_path / "cut.mp4"
    frames = list(read_frames(face_video, limit=10))
    with VideoWriter(out, 320, 320, 25, audio_from=face_video, trim_audio=True) as writer:
        for frame in frames:
            writer.write(frame.image, frame.time)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        ends = [float((p.pts + p.duration) * p.time_base) for p in container.demux(audio) if p.size]
    assert (
        ends and 0.4 - 0.03 < max(ends) <= 0.4 + 0.03
    )  # 10 frames at 25 fps; AAC packets of 23 ms


def test_writer_failure_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 64, 64, 25) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_not_a_video_is_a_clear_error(tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video")
    with pytest.raises(InputError, match="not a readable video"):
        list(read_frames(bogus))


def test_truncated_video_is_a_clear_error(tmp_path, face_video):
    cut = tmp_path / "cut.mp4"
    data = face_video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|damaged|not a readable"):
        list(read_frames(cut))


def test_rotation_turns_frames_counter_clockwise():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    assert _rotate(image, 90).shape == (3, 2, 1)
    np.testing.assert_array_equal(_rotate(_rotate(image, 90), 270), image)
    np.testing.assert_array_equal(_rotate(image, 90)[:, :, 0], np.rot90(image[:, :, 0]))
