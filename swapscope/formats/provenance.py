"""What a file says about itself: container metadata (the IPTC digital source type and the
manifest id, for tools that read no C2PA) and the watermark of the frames a caller decodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swapscope.formats.watermark import read_watermark
from swapscope.media.images import is_image

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
METADATA_ID_KEY = "swapscope_manifest_id"
METADATA_TYPE_KEY = "digital_source_type"


def container_metadata(manifest_id: str, method: str) -> dict[str, str]:
    """Global tags for the output container. The comment repeats everything, because a
    re-encode that drops custom keys usually keeps the comment. ``method`` "real" marks the
    real counterparts of a dataset: they carry the manifest id, but no synthetic source type."""
    if method == "real":
        return {
            METADATA_ID_KEY: manifest_id,
            "comment": "swapscope dataset: real counterpart (not synthetic); "
                       f"manifest {manifest_id}",
        }
    return {
        METADATA_TYPE_KEY: DIGITAL_SOURCE_TYPE,
        METADATA_ID_KEY: manifest_id,
        "comment": f"swapscope synthetic face swap ({method}); IPTC digital source type "
                   f"{DIGITAL_SOURCE_TYPE}; manifest {manifest_id}",
    }


def parse_metadata(tags: dict[str, str]) -> dict | None:
    """{"digital_source_type", "manifest_id"} if the tags carry swapscope's label, else None."""
    manifest_id = tags.get(METADATA_ID_KEY)
    source_type = tags.get(METADATA_TYPE_KEY)
    comment = tags.get("comment", "")
    if not manifest_id and "swapscope" in comment and "manifest " in comment:
        manifest_id = comment.rsplit("manifest ", 1)[1].split()[0].strip(";")
        source_type = DIGITAL_SOURCE_TYPE if DIGITAL_SOURCE_TYPE in comment else None
    if not manifest_id:
        return None
    return {"digital_source_type": source_type, "manifest_id": manifest_id}


@dataclass
class Provenance:
    """What a file says about itself: metadata label and per-frame watermarks."""

    metadata: dict | None = None
    frames_checked: int = 0
    frames_marked: int = 0
    watermark_ids: dict[str, int] = field(default_factory=dict)  # id prefix -> frames

    @property
    def labelled(self) -> bool:
        return self.metadata is not None or self.frames_marked > 0

    def to_json(self) -> dict:
        return {"labelled": self.labelled, "summary": self.summary(), "metadata": self.metadata,
                "frames_checked": self.frames_checked, "frames_watermarked": self.frames_marked,
                "watermark_ids": self.watermark_ids}

    def summary(self) -> str:
        if not self.labelled:
            return "no swapscope label"
        parts = []
        if self.metadata:
            what = (
                "synthetic"
                if self.metadata.get("digital_source_type")
                else "dataset real counterpart"
            )
            parts.append(f"metadata: {what} ({self.metadata['manifest_id']})")
        if self.frames_marked:
            ids = ", ".join(self.watermark_ids)
            parts.append(f"watermark in {self.frames_marked}/{self.frames_checked} frames ({ids})")
        return "labelled by swapscope: " + "; ".join(parts)


def read_provenance(path: str | Path, images=(), tags: dict[str, str] | None = None) -> Provenance:
    """Labels of one file: container tags (read here unless given) and the watermark of each
    image in ``images`` (frames the caller decodes anyway)."""
    if tags is None:
        tags = read_tags(path)
    found = Provenance(metadata=parse_metadata(tags))
    for image in images:
        found.frames_checked += 1
        mark = read_watermark(image)
        if mark:
            found.frames_marked += 1
            found.watermark_ids[mark] = found.watermark_ids.get(mark, 0) + 1
    return found


def read_tags(path: str | Path) -> dict[str, str]:
    """Global container metadata of a video, or a PNG's text chunks; {} if there are none."""
    path = Path(path)
    if is_image(path):
        from PIL import Image

        with Image.open(path) as image:
            return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}
    import av

    try:
        with av.open(str(path)) as container:
            return dict(container.metadata)
    except (av.error.InvalidDataError, OSError):
        return {}
