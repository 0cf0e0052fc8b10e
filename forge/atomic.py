"""Writing a file so that a reader (or a killed run) sees the old file or the new one, never
half of one: write beside it under a temporary name, then rename over it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_image_atomic(path: str | Path, image: np.ndarray) -> Path:
    """(H, W, 3) uint8 RGB to PNG or JPEG, by the path's suffix."""
    import cv2

    ok, buffer = cv2.imencode(Path(path).suffix or ".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f"{path}: cannot encode an image of this type")
    return write_bytes_atomic(path, buffer.tobytes())


def write_figure_atomic(path: str | Path, fig, dpi: int = 90) -> Path:
    """A matplotlib figure as PNG."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_bytes_atomic(path, buffer.getvalue())
