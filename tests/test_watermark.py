"""The watermark as array code: the same marks as invisible-watermark's dwtDctSvd, both ways."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from swapscope.formats.watermark import (
    WATERMARK_BITS,
    WATERMARK_METHOD,
    WATERMARK_OPTIONS,
    Watermarker,
    payload,
    read_watermark,
)

MANIFEST_ID = "c0ffee00" * 4


@pytest.fixture(scope="module", params=[(720, 1280), (317, 319), (512, 512)])
def frame(request, astronaut):
    return cv2.resize(astronaut, request.param[::-1], interpolation=cv2.INTER_AREA)


def test_the_library_decoder_reads_our_marks_and_ours_reads_the_librarys(frame):
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    ours = Watermarker(MANIFEST_ID)(frame)
    library = WatermarkDecoder("bytes", WATERMARK_BITS)
    assert library.decode(np.ascontiguousarray(ours[..., ::-1]), WATERMARK_METHOD,
                          **WATERMARK_OPTIONS) == payload(MANIFEST_ID)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", payload(MANIFEST_ID))
    theirs = encoder.encode(np.ascontiguousarray(frame[..., ::-1]), WATERMARK_METHOD,
                            **WATERMARK_OPTIONS)[..., ::-1]
    assert read_watermark(np.ascontiguousarray(theirs)) == MANIFEST_ID[:4]
    assert read_watermark(frame) is None
    # only chroma moves: luma stays within rounding (a little more where B or G clip)
    luma = [cv2.cvtColor(x, cv2.COLOR_RGB2YUV)[..., 0].astype(int) for x in (frame, ours)]
    assert np.abs(luma[0] - luma[1]).mean() < 0.5


def test_a_batch_is_marked_as_each_frame_alone(frame):
    mark = Watermarker(MANIFEST_ID)
    frames = [frame, frame[:, ::-1].copy(), np.ascontiguousarray(frame[::-1])]
    together = [f.result() for f in mark.submit(frames)]
    for alone, batched in zip((mark(f) for f in frames), together):
        assert np.array_equal(alone, batched)
