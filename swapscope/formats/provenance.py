"""What a file says about itself: container metadata (the IPTC digital source type and the
manifest id, for tools that read no C2PA) and the watermark of the frames a caller decodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swapscope.formats.credentials import DIGITAL_SOURCE_TYPE, Credential, read_credential
from swapscope.formats.watermark import read_watermark
from swapscope.media.images import is_image

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
    """What a file says about itself, and how far it can be believed.

    ``status``: "verified" (a watermark payload found in agreeing frames, or valid Content
    Credentials that carry swapscope's label, and every label names the same manifest),
    "disputed" (the labels name different manifests), "claimed" (metadata, or a credential that
    no longer validates: the file changed after signing), or "none"."""

    metadata: dict | None = None
    credential: Credential | None = None
    frames_checked: int = 0
    frames_marked: int = 0
    watermark_ids: dict[str, int] = field(default_factory=dict)  # id prefix -> frames

    @property
    def watermark_id(self) -> str | None:
        """The id prefix most frames carry, if that is a payload and not chance: in two frames or
        more (the 16-bit magic number matches a random frame once in 65,536), or in the one
        frame of an image."""
        if not self.watermark_ids:
            return None
        best, count = max(self.watermark_ids.items(), key=lambda kv: kv[1])
        return best if count >= 2 or self.frames_checked == 1 else None

    @property
    def signed_id(self) -> str | None:
        """The manifest id of a valid credential that carries swapscope's label."""
        c = self.credential
        return self._credential_id() if c is not None and c.valid else None

    def _credential_id(self) -> str | None:
        c = self.credential
        if c is None or not c.present or not c.swapscope:
            return None
        return str(c.swapscope.get("manifest_id") or "") or None

    @property
    def status(self) -> str:
        mark, signed = self.watermark_id, self.signed_id
        ids = {i for i in (self._credential_id(), (self.metadata or {}).get("manifest_id")) if i}
        if len(ids) > 1 or (mark and any(not i.startswith(mark) for i in ids)):
            return "disputed"  # the labels name different manifests
        if mark or signed:
            return "verified"
        return "claimed" if ids else "none"

    @property
    def labelled(self) -> bool:
        return self.status != "none"

    def to_json(self) -> dict:
        return {"labelled": self.labelled, "status": self.status, "summary": self.summary(),
                "metadata": self.metadata,
                "credential": self.credential.to_json() if self.credential else None,
                "frames_checked": self.frames_checked, "frames_watermarked": self.frames_marked,
                "watermark_ids": self.watermark_ids}

    def summary(self) -> str:
        status = self.status
        evidence = []
        if self.watermark_id:
            evidence.append(f"watermark {self.watermark_id} in "
                            f"{self.watermark_ids[self.watermark_id]}/{self.frames_checked} frames")
        if self.credential and self.credential.present:
            evidence.append(self.credential.summary())
        if self.metadata:
            what = ("synthetic" if self.metadata.get("digital_source_type")
                    else "dataset real counterpart")
            evidence.append(f"metadata: {what} ({self.metadata['manifest_id']})")
        detail = "; ".join(evidence)
        if status == "verified":
            return f"labelled by swapscope (verified): {detail}"
        if status == "disputed":
            return f"swapscope labels DISPUTED (they name different manifests): {detail}"
        if status == "claimed":
            return ("claims to be labelled by swapscope (unverified: no watermark and no valid "
                    f"credential; metadata can be written by anyone): {detail}")
        return "no swapscope label" + (f"; {detail}" if detail else "")


def read_provenance(path: str | Path, images=(), tags: dict[str, str] | None = None) -> Provenance:
    """Labels of one file: container tags (read here unless given), Content Credentials, and
    the watermark of each image in ``images`` (frames the caller decodes anyway)."""
    if tags is None:
        tags = read_tags(path)
    found = Provenance(metadata=parse_metadata(tags), credential=read_credential(path))
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
