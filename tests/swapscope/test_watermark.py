"""The watermarks: the face mark every output carries (payload code, invisibility, a chain of web
edits on a short clip) and the legacy frame mark, still read, as invisible-watermark's
dwtDctSvd in array code, both ways."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from swapscope.faces.pipeline import FacePipeline, PipelineConfig
from swapscope.labels import facemark
from swapscope.labels.facemark import MarkReader, decode_payload, encode_payload
from swapscope.labels.watermark import (
    WATERMARK_BITS,
    WATERMARK_METHOD,
    WATERMARK_OPTIONS,
    Watermarker,
    embed_frames,
    legacy_bits,
    payload,
    read_legacy_watermark,
)
from swapscope.media.video import VideoWriter
from swapscope.timing import StageTimer

MANIFEST_ID = "c0ffee00" * 4


def _faces(path, every=1, boxes=False):
    """(frame, its faces' landmarks, or their boxes) per processed frame."""
    pipeline = FacePipeline(PipelineConfig(every=every, min_size=32, embed=False))
    return [(item.frame.image, [f.face.box if boxes else f.face.landmarks for f in item.faces])
            for item in pipeline.track_frames(path, StageTimer())]


def _encode(frames, path, crf=18, fps=25.0):
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps, crf=crf) as writer:
        for image in frames:
            writer.write(image)
    return path


def _read(frames) -> tuple[str | None, bool]:
    reader = MarkReader()
    for image, faces in frames:
        reader.add(image, faces)
    return reader.payload()


def test_the_payload_corrects_a_byte_and_its_checksum_refuses_the_rest():
    bits = encode_payload(MANIFEST_ID)
    assert bits.shape == (facemark.BITS,) and decode_payload(bits) == (MANIFEST_ID[:8], 0)
    one_byte = bits.copy()
    one_byte[8:14] ^= 1  # six bits of one byte
    assert decode_payload(one_byte) == (MANIFEST_ID[:8], 1)
    rng = np.random.default_rng(0)
    random_words = [decode_payload(rng.integers(0, 2, facemark.BITS))[0] for _ in range(2000)]
    assert random_words.count(None) == 2000


def test_the_key_and_the_code_are_the_ones_earlier_fakes_carry():
    """Pinned: a change to the keyed dither or to the payload code would leave every fake made
    before it unread. (The dither is a fraction of the step since the step choice; times 200 it
    is the draw the first face mark used.)"""
    first_mark = [37.28536836788876, 51.74974313951684,
                  191.8074309624655, 140.01985570582784]  # its dither, step 200
    np.testing.assert_allclose(facemark._key().dither[:4] * 200, first_mark, rtol=0, atol=1e-9)
    assert np.packbits(encode_payload(MANIFEST_ID)).tobytes().hex() == "c0ffee00e22e4558"
    assert facemark.STEPS[0] == 200.0


def test_the_patterns_are_orthonormal_mean_free_and_zero_off_the_face():
    p = facemark._key().patterns.astype(np.float64)
    np.testing.assert_allclose(p @ p.T, np.eye(facemark.BITS), atol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 0, atol=1e-4)  # a colour shift moves nothing
    corners = p.reshape(-1, facemark.SIZE, facemark.SIZE)[:, :4, :4]
    assert np.abs(corners).max() < 1e-3 * np.abs(p).max()


@pytest.fixture(scope="module")
def marked_clip(tmp_path_factory, astronaut):
    """The astronaut clip at 480x480 (CRF 18), its faces, and the same marked (CRF 18). The
    clip pans at a talking head's pace and has a camera's noise: a still photo's every frame is
    the same, so a re-encode errs the same way in each and the vote over frames cannot help."""
    from swapscope.media.sample import moving_face_frames

    folder = tmp_path_factory.mktemp("mark")
    rng = np.random.default_rng(0)
    frames = [np.clip(cv2.resize(f, (480, 480), interpolation=cv2.INTER_AREA)
                      + rng.normal(0, 3, (480, 480, 1)), 0, 255).astype(np.uint8)
              for f in moving_face_frames(astronaut, 40, step=1)]
    source = _faces(_encode(frames, folder / "source.mp4"), boxes=True)
    mark = Watermarker(MANIFEST_ID)
    marked = [mark(image, boxes) for image, boxes in source]
    return folder, source, marked


def test_the_mark_is_invisible_luma_only_and_stays_on_the_face(marked_clip):
    _, source, marked = marked_clip
    for (image, faces), out in zip(source, marked):
        assert cv2.PSNR(image, out) >= 40
        change = out.astype(int) - image.astype(int)
        unclipped = (image > 40).all(-1) & (image < 215).all(-1)
        # R, G and B move alike (no tint); rounding may split them by one level
        assert np.abs(change[..., 0] - change[..., 1])[unclipped].max() <= 1
        ys, xs = np.nonzero(np.abs(change).max(-1))
        box = faces[0]  # the face's box (the mark reaches a little above the brows)
        assert xs.min() >= box[0] - 10 and xs.max() <= box[2] + 10
        assert ys.min() >= box[1] - 25 and ys.max() <= box[3] + 10


def test_the_mark_survives_a_crop_rescale_flip_and_reencode_chain(marked_clip):
    folder, source, marked = marked_clip
    _encode(marked, folder / "marked.mp4")
    assert _read(_faces(folder / "marked.mp4")) == (MANIFEST_ID[:8], False)

    def chain(image):  # 5% off each side, 0.75x, mirrored; then CRF 23
        h, w = image.shape[:2]
        cut = image[round(h * 0.05):h - round(h * 0.05), round(w * 0.05):w - round(w * 0.05)]
        small = cv2.resize(cut, (324, 324), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(small[:, ::-1])

    from swapscope.media.video import read_frames

    for name, frames in (("marked", folder / "marked.mp4"), ("source", folder / "source.mp4")):
        edited = [chain(f.image) for f in read_frames(frames)]
        _encode(edited, folder / f"{name}-edited.mp4", crf=23)
    # read as detect scan reads: every 5th frame
    assert _read(_faces(folder / "marked-edited.mp4", every=5)) == (MANIFEST_ID[:8], True)
    assert _read(_faces(folder / "source-edited.mp4", every=5)) == (None, False)


def test_a_batch_is_marked_as_each_frame_alone(marked_clip):
    _, source, marked = marked_clip
    with Watermarker(MANIFEST_ID) as mark:
        together = [f.result() for f in mark.submit([i for i, _ in source[:4]],
                                                    [f for _, f in source[:4]])]
    for alone, batched in zip(marked, together):
        assert np.array_equal(alone, batched)
    image = source[0][0]
    assert mark(image, []) is image  # no face: nothing to mark


@pytest.fixture(scope="module", params=[(720, 1280), (317, 319), (512, 512)])
def frame(request, astronaut):
    return cv2.resize(astronaut, request.param[::-1], interpolation=cv2.INTER_AREA)


def test_the_library_decoder_reads_legacy_marks_and_ours_reads_the_librarys(frame):
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    ours = embed_frames([frame], legacy_bits(payload(MANIFEST_ID)))[0]
    library = WatermarkDecoder("bytes", WATERMARK_BITS)
    assert library.decode(np.ascontiguousarray(ours[..., ::-1]), WATERMARK_METHOD,
                          **WATERMARK_OPTIONS) == payload(MANIFEST_ID)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", payload(MANIFEST_ID))
    theirs = encoder.encode(np.ascontiguousarray(frame[..., ::-1]), WATERMARK_METHOD,
                            **WATERMARK_OPTIONS)[..., ::-1]
    assert read_legacy_watermark(np.ascontiguousarray(theirs)) == MANIFEST_ID[:4]
    assert read_legacy_watermark(frame) is None
    # only chroma moves: luma stays within rounding (a little more where B or G clip)
    luma = [cv2.cvtColor(x, cv2.COLOR_RGB2YUV)[..., 0].astype(int) for x in (frame, ours)]
    assert np.abs(luma[0] - luma[1]).mean() < 0.5


def test_votes_of_unmarked_faces_decode_to_nothing():
    """The reader's every path (as read, corrected, Chase flips) on random votes: a payload
    found by chance would be a false label."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        reader = MarkReader(sums=rng.normal(0, 1, (2, facemark.BITS)) * 5,
                            weights=np.full(2, 8.0), faces=8)
        assert reader.payload() == (None, False)


def test_a_face_that_fits_the_lattice_outvotes_several_that_barely_do():
    """Votes are weighted by the face's fit squared: one clean face (fit 0.8) decides against
    three blurred ones (fit 0.2) that agree on other bits; counted alike, they would win."""
    truth = encode_payload(MANIFEST_ID)
    clean = 1.0 - 2.0 * truth  # +1 on bit 0, -1 on bit 1
    blurred = clean.copy()
    blurred[:12] *= -1  # 12 bits wrong: beyond what Reed-Solomon or Chase can mend
    reader = MarkReader()
    reader.add_face(((0.8 * clean, 0.8), (np.zeros(facemark.BITS), 0.0)))
    for _ in range(3):
        reader.add_face(((0.5 * blurred, 0.2), (np.zeros(facemark.BITS), 0.0)))
    assert reader.payload() == (MANIFEST_ID[:8], False)
    assert facemark.weight(-0.1) == 0.0
    alike = MarkReader(sums=np.stack([0.8 * clean + 1.5 * blurred, np.zeros(facemark.BITS)]),
                       weights=np.array([4.0, 0.0]), faces=4)
    assert alike.payload() == (None, False)


def test_every_face_given_is_marked_however_small_and_only_readable_ones_are_read(marked_clip):
    _, source, _ = marked_clip
    image = source[0][0]
    small = cv2.resize(image, (120, 120), interpolation=cv2.INTER_AREA)  # a face ~30 px wide
    from swapscope.labels.watermark import landmarker

    landmarks = landmarker().landmarks(small, np.asarray(source[0][1], np.float32) / 4)
    assert np.ptp(landmarks[0][17:27, 0]) < facemark.MIN_FACE
    marked = facemark.embed(small, list(landmarks), encode_payload(MANIFEST_ID))
    assert not np.array_equal(marked, small)  # the swapped face carries the mark
    assert facemark.votes(marked, list(landmarks)) == []  # too few pixels to read


def test_any_two_wrong_bits_are_mended_when_the_votes_agree():
    """Two confidently wrong bits in two bytes: one Reed-Solomon parity pair cannot mend them and
    Chase never flips confident bits; the code's parity check can (its one- and two-bit errors
    all have distinct syndromes: distance 5 at least), and random words stay unread."""
    bits = encode_payload(MANIFEST_ID)
    assert len(facemark._syndromes()[2]) == facemark.BITS * (facemark.BITS + 1) // 2
    rng = np.random.default_rng(2)
    for _ in range(200):
        word = bits.copy()
        word[rng.choice(facemark.BITS, 2, replace=False)] ^= 1
        assert facemark.decode_near(word) == MANIFEST_ID[:8]
    assert [facemark.decode_near(rng.integers(0, 2, facemark.BITS)) for _ in range(2000)] == \
        [None] * 2000
    votes = 1.0 - 2.0 * bits
    votes[50:] *= 0.5  # the least sure bits, the ones Chase would flip, are all right
    votes[[3, 40]] *= -1  # byte 0 and byte 5
    assert decode_payload((votes < 0).astype(np.uint8)) == (None, 0)
    reader = MarkReader(sums=np.stack([votes, np.zeros(facemark.BITS)]),
                        weights=np.array([1.0, 0.0]), faces=1)
    assert reader.payload() == (MANIFEST_ID[:8], False)
    reader.sums *= 0.2  # votes that barely agree are not mended
    assert reader.payload() == (None, False)


def _lattice_fits(image, landmarks) -> dict[float, float]:
    """How closely one face's projections sit on each step's lattice (1: exactly)."""
    key = facemark._key()
    (_, local, luma), = facemark._face_regions(image, [landmarks])
    x = key.patterns @ facemark._crop(luma, local).reshape(-1)
    return {s: float(np.cos(4 * np.pi * (x / s - key.dither)).mean()) for s in facemark.STEPS}


def test_a_frame_with_budget_to_spare_takes_the_coarser_lattice_whole(astronaut, monkeypatch):
    """A face small in its frame leaves PSNR budget the finest step does not use: the mark takes
    the larger step, still >= 40.5 dB; a face that fills its frame keeps the finest; a frame
    marked as earlier versions marked every frame (the finest step) still reads."""
    from swapscope.faces.backends import create_backend

    landmarks = create_backend("dlib").faces(astronaut)[0].landmarks
    bits = encode_payload(MANIFEST_ID)
    wide = cv2.copyMakeBorder(astronaut, 104, 104, 384, 384, cv2.BORDER_CONSTANT,
                              value=(90, 90, 90))  # 720p, the face ~150 px
    tight = np.ascontiguousarray(astronaut[40:240, 140:320])
    for frame, face, step in ((wide, landmarks + (384, 104), facemark.STEPS[-1]),
                              (tight, landmarks - (140, 40), facemark.STEPS[0])):
        marked = facemark.embed(frame, [face], bits)
        assert cv2.PSNR(frame, marked) >= 40.4
        fits = _lattice_fits(marked, face)
        assert fits[step] > 0.9 and all(f < 0.5 for s, f in fits.items() if s != step), fits
        assert _read([(marked, [face])]) == (MANIFEST_ID[:8], False)
    finest = facemark.STEPS[0]
    with monkeypatch.context() as patch:
        patch.setattr(facemark, "STEPS", (finest,))
        marked = facemark.embed(wide, [landmarks + (384, 104)], bits)
    assert _lattice_fits(marked, landmarks + (384, 104))[finest] > 0.9
    assert _read([(marked, [landmarks + (384, 104)])]) == (MANIFEST_ID[:8], False)
