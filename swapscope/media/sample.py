"""A sample clip made from data a dependency ships: scikit-image's astronaut photo (a real face),
panned across so the face moves, with a sine tone as audio. For trying the tools right after
installation and for tests; it is real footage of a real face, not a fake."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from swapscope.files import output_file, remove_leftovers


def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB."""
    from skimage import data

    return data.astronaut()


def moving_face_frames(
    image: np.ndarray, count: int, size: int = 320, step: int = 3
) -> list[np.ndarray]:
    """``count`` frames of a ``size`` px window panning across ``image``: a face that moves."""
    frames = []
    for i in range(count):
        x, y = 60 + i * step % 60, 20 + (i * step // 2) % 30
        frames.append(np.ascontiguousarray(image[y:y + size, x:x + size]))
    return frames


def write_clip(
    path: str | Path, frames: list[np.ndarray], fps: int = 25, audio_seconds: float = 0.0
) -> Path:
    """Write frames as H.264 (plus a 440 Hz tone as AAC if ``audio_seconds``), atomically."""
    import os

    path = output_file(path, (".mp4", ".mov", ".mkv"))
    remove_leftovers(path.parent)  # temp files of killed writers
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        _encode_clip(tmp, frames, fps, audio_seconds)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only by a failed or interrupted write
    return path


def _encode_clip(path: Path, frames: list[np.ndarray], fps: int, audio_seconds: float) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames[0].shape[1], frames[0].shape[0]
        video.pix_fmt = "yuv420p"
        audio = None
        if audio_seconds:
            audio = container.add_stream("aac", rate=44100)
            audio.layout = "mono"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            samples = int(44100 * audio_seconds)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
            for start in range(0, samples, 1024):
                frame = av.AudioFrame.from_ndarray(
                    tone[None, start : start + 1024], format="fltp", layout="mono"
                )
                frame.sample_rate = 44100
                frame.pts = start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)


def write_sample(path: str | Path, frames: int = 48, fps: int = 25) -> Path:
    return write_clip(
        path, moving_face_frames(astronaut(), frames), fps=fps, audio_seconds=frames / fps
    )
