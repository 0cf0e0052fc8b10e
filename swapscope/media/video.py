"""All codec code: PyAV decode with frame index and timestamp, H.264 encode with audio passthrough.

Frames are (H, W, 3) uint8 RGB with rotation metadata already applied, so every coordinate in
the project is in the frame as a person sees it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from swapscope.errors import InputError
from swapscope.files import remove_leftovers, writable_folder

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}
_CLOCK = Fraction(1, 90000)  # encoder time base: fine enough for any frame rate, MPEG's own clock
MAX_PIXELS = 8192 * 8192  # a frame larger than this is refused rather than swapping the machine


@dataclass(frozen=True, slots=True)
class VideoInfo:
    path: str
    width: int  # after rotation
    height: int  # after rotation
    fps: float  # average frame rate
    frame_count: int  # from the container; may be an estimate, decoding is the truth
    duration: float  # seconds
    rotation: int  # degrees counter-clockwise the stored frames are turned for display
    codec: str
    has_audio: bool
    time_base: Fraction


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    index: int  # 0-based position in decode order of displayed frames
    time: float  # presentation time in seconds from the stream start
    pts: int | None  # presentation timestamp in the stream's time base
    image: np.ndarray  # (H, W, 3) uint8 RGB, rotation applied


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable video ({exc.__class__.__name__})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Read a video's container metadata without decoding it (one frame for rotation)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = int(getattr(frame, "rotation", 0) or 0)
                break
        except Exception as exc:  # noqa: BLE001 - any decode failure means the file is unusable
            raise InputError(f"{path}: cannot decode its first frame ({exc})") from None
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        frames = stream.frames or int(round(duration * float(rate)))
        return VideoInfo(
            path=str(path), width=width, height=height, fps=float(rate), frame_count=frames,
            duration=duration, rotation=rotation, codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
            time_base=stream.time_base or Fraction(1, 90000),
        )


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def read_frames(path: str | Path, every: int = 1, limit: int | None = None,
                dense: int = 0) -> Iterator[Frame]:
    """Decode a video's frames in order, keeping every ``every``-th one (and each of the first
    ``dense`` frames).

    Decoding goes to the end of the stream, flushing the decoder, so the last frames are not
    lost. A file that breaks off mid-stream raises InputError naming the frame it stopped at.
    """
    import av

    if every < 1:
        raise ValueError("every must be >= 1")
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = stream.frames or 0
        index = 0
        try:
            for frame in container.decode(stream):
                if limit is not None and index >= limit:
                    return
                if index % every == 0 or index < dense:
                    if frame.width * frame.height > MAX_PIXELS:
                        raise InputError(
                            f"{path}: frames of {frame.width}x{frame.height} are larger than "
                            f"the {MAX_PIXELS // 1_000_000} MP this tool accepts"
                        )
                    # rows can be padded to the codec's line size; dlib and cv2 need them packed
                    image = np.ascontiguousarray(
                        _rotate(frame.to_ndarray(format="rgb24"), int(frame.rotation or 0)))
                    time = float(frame.time) if frame.time is not None else index / 25.0
                    yield Frame(index=index, time=time, pts=frame.pts, image=image)
                index += 1
        except av.error.FFmpegError as exc:
            raise InputError(
                f"{path}: video is damaged or truncated at frame {index} ({exc})"
            ) from None
    if index == 0:
        raise InputError(f"{path}: video has no decodable frames")
    if limit is None and declared and index < 0.9 * declared:
        raise InputError(f"{path}: video is truncated: decoded {index} of {declared} frames")


def cuts_video(info: VideoInfo, max_frames: int | None) -> bool:
    """Whether keeping the first ``max_frames`` frames cuts the video short (so its audio must be
    cut too; a video that ends first keeps all its audio)."""
    return max_frames is not None and (info.frame_count or 0) > max_frames


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoWriter:
    """H.264 writer that copies the audio stream of a source video, written atomically.

    Frames go to a temporary file beside ``out``; ``close()`` renames it into place, and an
    exception inside the ``with`` block deletes it, so a failed run leaves nothing behind.
    Even sizes are written as yuv420p; an odd width or height cannot be (4:2:0 halves both), so
    those are written as yuv444p (H.264 High 4:4:4) to keep the exact size. ``trim_audio`` cuts
    the copied audio where the written video ends (for a clip cut to its first N frames).
    """

    def __init__(
        self,
        out: str | Path,
        width: int,
        height: int,
        fps: float | Fraction,
        audio_from: str | Path | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        metadata: dict[str, str] | None = None,
        trim_audio: bool = False,
    ) -> None:
        import av

        self.out = Path(out)
        remove_leftovers(writable_folder(self.out.parent))  # temp files of killed writers
        self._tmp = self.out.with_name(f".{self.out.stem}.tmp-{os.getpid()}{self.out.suffix}")
        # custom tags (the labels of DESIGN.md section 5) need mp4's metadata-tags flag; the
        # index (and with it the labels) goes first, so a file cut short keeps its labels and
        # the frames before the cut
        options = {"movflags": "+faststart" + ("+use_metadata_tags" if metadata else "")}
        self._container = av.open(str(self._tmp), mode="w", options=options)
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value
        rate = Fraction(fps).limit_denominator(100000)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv444p" if width % 2 or height % 2 else "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset}
        self._stream.codec_context.time_base = _CLOCK
        self._rate = rate
        self._count = 0
        self._last_pts = -1
        self._trim_audio = trim_audio
        self._end = 0.0  # seconds: where the last written frame stops showing
        self._audio_from = Path(audio_from) if audio_from else None
        self._audio_in = None
        self._audio_out = None
        if self._audio_from is not None:
            source = av.open(str(self._audio_from))
            if source.streams.audio:
                self._audio_in = source
                self._audio_out = self._container.add_stream_from_template(source.streams.audio[0])
            else:
                source.close()

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame, shown at ``time`` seconds (for variable frame
        rate sources) or, by default, at the next slot of the constant frame rate."""
        import av

        if image.shape[:2] != (self._stream.height, self._stream.width):
            raise ValueError(f"frame of {image.shape[1]}x{image.shape[0]} for a "
                             f"{self._stream.width}x{self._stream.height} video")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        seconds = time if time is not None else self._count / self._rate
        self._end = max(self._end, seconds + float(1 / self._rate))
        pts = max(int(round(seconds / _CLOCK)), self._last_pts + 1)
        frame.pts = pts
        frame.time_base = _CLOCK
        self._last_pts = pts
        self._count += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> Path:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        if self._audio_in is not None:
            audio = self._audio_in.streams.audio[0]
            for packet in self._audio_in.demux(audio):
                if packet.dts is None:
                    continue
                if (
                    self._trim_audio
                    and packet.pts is not None
                    and packet.pts * packet.time_base >= self._end
                ):
                    break
                packet.stream = self._audio_out
                self._container.mux(packet)
            self._audio_in.close()
        self._container.close()
        os.replace(self._tmp, self.out)
        return self.out

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file goes either way
            pass
        if self._audio_in is not None:
            self._audio_in.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def h264_roundtrip(image: np.ndarray, crf: int = 28) -> np.ndarray:
    """Encode one (H, W, 3) uint8 RGB image as an H.264 intra frame at ``crf`` and decode it:
    the compression a face suffers in a streamed video, for training augmentation."""
    import io

    import av

    height, width = image.shape[0] - image.shape[0] % 2, image.shape[1] - image.shape[1] % 2
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "ultrafast", "tune": "zerolatency"}
        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(image[:height, :width]), format="rgb24"
        )
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    out = image.copy()
    out[:height, :width] = decoded
    return out
