"""Finding and loading input media: images, videos, and folders of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from swapscope.errors import InputError
from swapscope.media.video import MAX_PIXELS, is_video

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".webp"}


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | Path) -> np.ndarray:
    """Any still image -> (H, W, 3) uint8 RGB, EXIF orientation applied.

    Grey, 16-bit, palette and alpha images are converted (alpha is dropped: faces are judged on
    what a viewer sees over an opaque background).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InputError(f"{path}: {img.width}x{img.height} is larger than the "
                                 f"{MAX_PIXELS // 1_000_000} MP this tool accepts")
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                arr = arr / max(arr.max(), 1.0) * 255.0
                img = Image.fromarray(arr.astype(np.uint8), mode="L")
            rgb = img.convert("RGB")
            rgb.load()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image is too large to open safely") from None
    return np.asarray(rgb, dtype=np.uint8)


def image_files(path: str | Path) -> list[Path]:
    """An image file, or every image below a folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path] if is_image(path) else []
    return sorted(p for p in path.rglob("*") if p.is_file() and is_image(p))


def collect_media(inputs: list[str | Path]) -> list[Path]:
    """Expand inputs into media files: videos and images, folders searched recursively.

    A missing path, a file of another type, or a folder with no media is an InputError.
    """
    found: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            media = sorted(
                p for p in path.rglob("*")
                if p.is_file() and (is_image(p) or is_video(p))
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not media:
                raise InputError(f"{path}: folder has no images or videos")
            found.extend(media)
        elif is_image(path) or is_video(path):
            found.append(path)
        else:
            raise InputError(
                f"{path}: not an image or video (unsupported file type {path.suffix or 'none'})"
            )
    return found
