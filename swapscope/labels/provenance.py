"""What a file says about itself: container metadata (the IPTC digital source type and the
manifest id, for tools that read no C2PA), Content Credentials, and the watermark of the faces a
caller decodes (``ProvenanceReader``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swapscope.formats.scan import ProvenanceReport
from swapscope.labels.credentials import DIGITAL_SOURCE_TYPE, Credential, read_credential
from swapscope.labels.facemark import MarkReader
from swapscope.labels.watermark import read_legacy_watermark
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


LEGACY_FRAMES = 8  # frames read for the legacy frame mark (10 ms a 720p frame)


@dataclass
class ProvenanceReader:
    """The watermark evidence of the frames a caller decodes anyway: every face's votes for the
    face mark, and the legacy frame mark of the first LEGACY_FRAMES frames with faces."""

    marks: MarkReader = field(default_factory=MarkReader)
    frames: int = 0
    legacy_ids: dict[str, int] = field(default_factory=dict)  # id prefix -> frames

    def add(self, image, faces) -> None:
        """One frame (H, W, 3) uint8 RGB and its faces' (68, 2) landmarks."""
        self.frames += 1
        self.marks.add(image, faces)
        if self.frames <= LEGACY_FRAMES:
            mark = read_legacy_watermark(image)
            if mark:
                self.legacy_ids[mark] = self.legacy_ids.get(mark, 0) + 1


@dataclass
class Provenance:
    """What a file says about itself, and how far it can be believed.

    ``status``: "verified" (a watermark payload that decodes and checks, or valid Content
    Credentials that carry swapscope's label, and every label names the same manifest),
    "disputed" (the labels name different manifests), "claimed" (metadata, or a credential that
    no longer validates: the file changed after signing), or "none"."""

    metadata: dict | None = None
    credential: Credential | None = None
    frames_checked: int = 0
    faces_read: int = 0
    mark_id: str | None = None  # the face mark's payload: the manifest id's first 8 hex digits
    mark_mirrored: bool = False  # read from the mirrored face: the video was flipped
    mark_agreement: float = 0.0
    legacy_frames: int = 0
    watermark_ids: dict[str, int] = field(default_factory=dict)  # legacy id prefix -> frames

    @property
    def legacy_id(self) -> str | None:
        """The legacy mark's id prefix most frames carry, if that is a payload and not chance:
        in two frames or more (its 16-bit magic number matches a random frame once in 65,536),
        or in the one frame of an image."""
        if not self.watermark_ids:
            return None
        best, count = max(self.watermark_ids.items(), key=lambda kv: kv[1])
        return best if count >= 2 or self.legacy_frames == 1 else None

    @property
    def watermark_id(self) -> str | None:
        """The manifest id prefix the watermark carries: the face mark's, else the legacy's."""
        return self.mark_id or self.legacy_id

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
                "watermark": {"id": self.mark_id, "mirrored": self.mark_mirrored,
                              "agreement": round(self.mark_agreement, 3),
                              "frames": self.frames_checked, "faces": self.faces_read},
                "legacy_watermark": {"id": self.legacy_id, "frames": self.legacy_frames,
                                     "ids": self.watermark_ids}}

    def report(self) -> ProvenanceReport:
        """The record a scan result carries (what ``to_json`` writes, typed)."""
        return ProvenanceReport(**self.to_json())

    def summary(self) -> str:
        status = self.status
        evidence = []
        if self.mark_id:
            flipped = ", mirrored" if self.mark_mirrored else ""
            evidence.append(f"watermark {self.mark_id} from {self.faces_read} faces in "
                            f"{self.frames_checked} frames{flipped}")
        elif self.legacy_id:
            evidence.append(f"legacy watermark {self.legacy_id} in "
                            f"{self.watermark_ids[self.legacy_id]}/{self.legacy_frames} frames")
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


def read_provenance(path: str | Path, frames: ProvenanceReader | None = None,
                    tags: dict[str, str] | None = None) -> Provenance:
    """Labels of one file: container tags (read here unless given), Content Credentials, and
    the watermark evidence of the frames the caller decoded (``frames``)."""
    if tags is None:
        tags = read_tags(path)
    found = Provenance(metadata=parse_metadata(tags), credential=read_credential(path))
    if frames is not None:
        found.frames_checked, found.faces_read = frames.frames, frames.marks.faces
        found.mark_id, found.mark_mirrored = frames.marks.payload()
        found.mark_agreement = frames.marks.agreement()
        found.legacy_frames = min(frames.frames, LEGACY_FRAMES)
        found.watermark_ids = dict(frames.legacy_ids)
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
