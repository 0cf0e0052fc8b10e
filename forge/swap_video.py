"""``forge video``: a labelled face-swap video from a real one (and ``forge dataset`` builds on it).

Phases: ``plan_swaps`` finds and tracks every face and picks the target (the tracks that match
``identity``, else the largest face's track and the same person's other tracks) and One-Euro
smooths its landmarks along time; ``encode_labelled`` decodes again, swaps the target's faces in
batches of frames (one renderer call per batch), watermarks each swapped face and encodes H.264 with
the input's size, frame times and audio -- the same loop writes the real counterparts of a
dataset; ``record`` writes the per-frame labels, the manifest row and the data card. Other
people are never touched.

Outputs, beside ``out``: ``labels/<id>.jsonl`` (per frame: swapped boxes and mask polygons),
a row in ``manifest.jsonl`` and ``data_card.md``. The video carries the container labels and
the watermark. Everything is written to temporary names first and renamed at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from forge.swap import CompositeConfig, FwaSimRenderer, ModelRenderer, align_faces, blend_faces
from swapscope.errors import InputError
from swapscope.faces.identity import DEFAULT_THRESHOLD, Reference, match_track
from swapscope.faces.mesh import Mesher
from swapscope.faces.pipeline import FacePipeline, PipelineConfig
from swapscope.faces.records import FaceTrack
from swapscope.faces.track import smooth_track
from swapscope.files import sha256_file, writable_folder
from swapscope.formats.faceset import faceset_embeddings
from swapscope.formats.manifest import (
    Encoded,
    ManifestRow,
    PendingOutput,
    SwapFrame,
    SwappedFace,
    commit,
    mask_polygons,
    pending_path,
    read_manifest,
    settle_pending,
    write_data_card,
    write_swap_frames,
)
from swapscope.labels.credentials import SigningKey, sign_file, signing_key
from swapscope.labels.provenance import container_metadata
from swapscope.labels.watermark import Watermarker
from swapscope.media.images import is_image
from swapscope.media.video import Frame, VideoInfo, VideoWriter, cuts_video, probe, read_frames
from swapscope.progress import NoProgress, Progress
from swapscope.timing import StageTimer

METHODS = ("model", "fwa-sim")


@dataclass
class VideoConfig:
    method: str = ""  # model | fwa-sim; "" = model when a model is given, else fwa-sim
    model: str = ""  # forge train checkpoint (method model)
    to: str = "b"  # the model identity the target face becomes
    # the person to swap (reference photos, folders, face sets); default: the largest face
    identity: list[str] = field(default_factory=list)
    identity_threshold: float = DEFAULT_THRESHOLD
    composite: CompositeConfig = field(default_factory=CompositeConfig)
    smooth: bool = True  # One-Euro smoothing of the target's landmarks along its track
    fwa_size: int = 0  # fwa-sim render size; 0 = drawn from [64, 127] per video (seeded)
    crf: int = 18  # output H.264 quality
    batch_size: int = 8  # frames per renderer call
    min_size: int = 48  # faces smaller than this (px) are not swapped
    max_frames: int | None = None  # only the first N frames; the audio is cut with them
    seed: int = 0
    split: str = ""  # dataset split the output belongs to
    # forge video always; forge dataset follows its policy for reals and fakes alike
    watermark: bool = True
    overwrite: bool = False  # replace ``out`` if it is a fake this forge made (its manifest says)
    # Content Credentials: the user's PEM key and certificate chain; "" = this installation's
    # self-signed pair (swapscope.labels.credentials)
    sign_key: str = ""
    sign_cert: str = ""

    def resolved(self) -> VideoConfig:
        method = self.method or ("model" if self.model else "fwa-sim")
        if method not in METHODS:
            raise InputError(f"unknown --method {method!r}; choose from {list(METHODS)}")
        if method == "model" and not self.model:
            raise InputError("--method model needs --model (a forge train checkpoint)")
        if self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if not 0 <= self.crf <= 51:
            raise InputError("--crf must be in [0, 51]")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError("--max-frames must be at least 1")
        self.composite.check()
        fwa_size = self.fwa_size or int(np.random.default_rng(self.seed).integers(64, 128))
        composite = (
            self.composite
            if method == "model" or self.composite.mask == "mesh"
            else CompositeConfig(**{**asdict(self.composite), "mask": "hull"})
        )
        return VideoConfig(
            **{**asdict(self), "method": method, "fwa_size": fwa_size, "composite": composite}
        )


@dataclass
class VideoResult:
    id: str
    output: str
    frames: int
    swapped_frames: int
    target_tracks: list[int]
    timings: dict
    row: ManifestRow


def _target_tracks(
    tracks: list[FaceTrack], pipeline: FacePipeline, cfg: VideoConfig, path: Path
) -> list[FaceTrack]:
    """The tracks of the person to swap: those matching the reference, else the largest face's
    track and every other track of the same person (a cut, a turn away and back)."""
    reference = pipeline.reference
    if reference is None:
        if not tracks:
            raise InputError(f"{path}: no face found")
        largest = max(
            tracks, key=lambda t: (float(np.median([f.size for f in t.faces])), len(t.faces))
        )
        embeddings = [f.embedding for f in largest.faces if f.embedding is not None]
        if not embeddings:
            return [largest]
        reference = Reference(
            name="largest face", embeddings=np.stack(embeddings), sources=(str(path),)
        )
    chosen = [t for t in tracks if match_track(t, reference, cfg.identity_threshold)[0]]
    if not chosen:
        raise InputError(f"{path}: no face matches the identity {reference.name!r}")
    return chosen


@dataclass(frozen=True, slots=True, eq=False)
class SwapPlan:
    """What pass 1 decided: whom to swap, and where their face is in each frame."""

    reference: Reference | None  # the enrolled --identity, if one was given
    targets: list[FaceTrack]  # the target person's tracks
    # frame index -> [(track id, (68, 2) float32 landmarks in frame px)]
    landmarks: dict[int, list[tuple[int, np.ndarray]]]
    # frame index -> the (4,) boxes of the same faces, where the watermark finds them again
    boxes: dict[int, list[np.ndarray]]
    frames: int  # frames processed


def forge_video(source: str | Path, out: str | Path, config: VideoConfig, device: str = "cpu",
                progress: Progress | None = None, root: str | Path | None = None) -> VideoResult:
    """Swap the target face of ``source`` into ``out`` and label it; the manifest, labels and
    data card go to ``root`` (default: beside ``out``). Raises InputError on bad input."""
    source, out = Path(source), Path(out)
    progress = progress or NoProgress()
    cfg = config.resolved()
    folder = Path(root) if root is not None else out.parent
    info = _check_paths(source, out, cfg, folder)
    key = signing_key(cfg.sign_key or None, cfg.sign_cert or None)  # before any work
    renderer = (
        ModelRenderer(cfg.model, cfg.to, device)
        if cfg.method == "model"
        else FwaSimRenderer(cfg.fwa_size)
    )
    mesher = None
    if cfg.composite.mask == "mesh":  # before any work: without the extra, one line
        mesher = Mesher()
    timer = StageTimer()
    plan = plan_swaps(source, info, cfg, timer, progress)
    output = PendingOutput(folder, out)  # at its pending name until its row is down
    swaps: list[SwapFrame] = []
    progress.start(f"swapping {source.name}", _frames_to_write(info, cfg.max_frames))
    try:
        written = encode_labelled(
            source, output.pending, info, manifest_id=output.id, method=cfg.method, crf=cfg.crf,
            watermark=cfg.watermark, faces=plan.boxes, max_frames=cfg.max_frames,
            batch_size=cfg.batch_size, timer=timer, progress=progress,
            render=lambda batch: _swap_batch(batch, plan.landmarks, renderer, cfg, swaps, timer,
                                             mesher),
        )
        progress.stop()
        if written != plan.frames:
            raise InputError(
                f"{source}: decoded {written} frames on the second pass, {plan.frames} on the first"
            )
        hashes = (sha256_file(source), _checkpoint_hash(cfg, renderer))  # once, for both
        with timer("sign"):
            sign_output(output.pending, out.name, key, manifest_id=output.id, method=cfg.method,
                        source=source, hashes=hashes)
        encoded = Encoded(written, len(swaps), info.fps, info.width, info.height)
        row = record(Made(output, source, plan, swaps, encoded, hashes), cfg, renderer)
    finally:
        output.pending.unlink(missing_ok=True)  # still there only if the fake was not committed
    return VideoResult(
        id=output.id, output=str(out), frames=written, swapped_frames=len(swaps),
        target_tracks=[t.track_id for t in plan.targets], timings=timer.as_dict(), row=row,
    )


def _check_paths(source: Path, out: Path, cfg: VideoConfig, folder: Path) -> VideoInfo:
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    if is_image(source):
        raise InputError(f"{source}: forge video takes a video, not an image")
    if out.suffix.lower() != ".mp4":
        raise InputError(f"{out}: the output must be an .mp4 file")
    if out.resolve() == source.resolve():
        raise InputError(f"{out}: would overwrite the input")
    if not out.resolve().is_relative_to(folder.resolve()):
        raise InputError(f"{out}: must lie inside {folder}, the folder of its manifest")
    # a manifest that does not read is refused before a fake is made
    rows = read_manifest(folder) if (folder / "manifest.jsonl").is_file() else []
    writable_folder(out.parent)
    settle_pending(folder, also=(out.parent,))  # what a killed run left: finished, or removed
    if out.exists() or out.is_symlink():
        _check_replaceable(out, folder, rows, cfg.overwrite)
    return probe(source)


def _check_replaceable(out: Path, folder: Path, rows: list[ManifestRow], overwrite: bool) -> None:
    """An existing ``out`` is replaced only when asked to, and only if the manifest in ``folder``
    says this forge made it."""
    if not overwrite:
        raise InputError(f"{out}: already exists; choose another --out, or --overwrite to replace "
                         "a fake forge video made")
    made = any((folder / row.output).resolve() == out.resolve() for row in rows)
    if not made or not out.is_file():
        raise InputError(f"{out}: not a fake listed in {folder / 'manifest.jsonl'}; refusing to "
                         "replace it")


def _frames_to_write(info: VideoInfo, max_frames: int | None) -> int | None:
    return min(info.frame_count or 0, max_frames or 10**9) or None


def plan_swaps(
    source: Path, info: VideoInfo, cfg: VideoConfig, timer: StageTimer, progress: Progress
) -> SwapPlan:
    """Pass 1: faces, tracks, the target, and its (smoothed) landmarks in each frame."""
    pipeline = FacePipeline(PipelineConfig(min_size=cfg.min_size, identity=list(cfg.identity),
                                           identity_threshold=cfg.identity_threshold, embed=True,
                                           max_frames=cfg.max_frames),
                            stores=(faceset_embeddings,))
    progress.start(f"tracking {source.name}", _frames_to_write(info, cfg.max_frames))
    found = pipeline.faces_in_video(source, timer, progress)
    progress.stop()
    targets = _target_tracks(found.tracks, pipeline, cfg, source)
    times = {f.face.frame_index: f.time for f in found.faces}
    landmarks: dict[int, list[tuple[int, np.ndarray]]] = {}
    boxes: dict[int, list[np.ndarray]] = {}
    for track in targets:
        for face in track.faces:
            boxes.setdefault(face.frame_index, []).append(face.box)
        if cfg.smooth:
            track = smooth_track(track, np.array([times[f.frame_index] for f in track.faces]))
        for face in track.faces:
            landmarks.setdefault(face.frame_index, []).append((track.track_id, face.landmarks))
    return SwapPlan(reference=pipeline.reference, targets=targets, landmarks=landmarks,
                    boxes=boxes, frames=found.frames)


def faces_to_mark(source: Path, min_size: int, max_frames: int | None,
                  timer: StageTimer | None = None) -> dict[int, list[np.ndarray]]:
    """Frame index -> the boxes of every face in ``source``: where a real counterpart's
    watermark goes."""
    pipeline = FacePipeline(PipelineConfig(min_size=min_size, embed=False,
                                           max_frames=max_frames))
    found = pipeline.faces_in_video(source, timer or StageTimer(), NoProgress())
    marks: dict[int, list[np.ndarray]] = {}
    for f in found.faces:
        marks.setdefault(f.face.frame_index, []).append(f.face.box)
    return marks


def _batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_labelled(
    source: Path,
    out: Path,
    info: VideoInfo,
    *,
    manifest_id: str,
    method: str,
    crf: int,
    watermark: bool,
    faces: dict[int, list[np.ndarray]],
    max_frames: int | None,
    batch_size: int,
    timer: StageTimer | None = None,
    progress: Progress | None = None,
    render: Callable[[list[Frame]], list[np.ndarray]] | None = None,
) -> int:
    """Decode ``source``, turn each batch of frames into images (``render``; None keeps them as
    they are: a real counterpart), watermark the faces in ``faces`` (frame index -> boxes: the
    swapped faces of a fake, every face of a real counterpart) and encode them into ``out`` with
    the source's audio and the container labels. Returns the number of frames written."""
    timer = timer or StageTimer()
    progress = progress or NoProgress()
    mark = Watermarker(manifest_id) if watermark else None
    with mark or nullcontext(), \
            VideoWriter(out, info.width, info.height, info.fps, audio_from=source, crf=crf,
                        metadata=container_metadata(manifest_id, method),
                        trim_audio=cuts_video(info, max_frames)) as writer:
        output = MarkedOutput(writer, mark, faces, timer)
        for batch in _batches(
            timer.iterate("decode", read_frames(source, limit=max_frames)), batch_size
        ):
            output.put(batch, render(batch) if render else [f.image for f in batch])
            progress.advance(len(batch))
        return output.flush()


def sign_output(path: Path, name: str, key: SigningKey, *, manifest_id: str, method: str,
                source: Path, hashes: tuple[str, str | None]) -> None:
    """Sign an output's Content Credentials (``path``: where it is until its row is down;
    ``name``: the name it will have; ``hashes``: of the source and of the checkpoint)."""
    sign_file(path, key, manifest_id=manifest_id, method=method, source=source,
              source_sha256=hashes[0], checkpoint_sha256=hashes[1], title=name)


def _checkpoint_hash(cfg: VideoConfig, renderer) -> str | None:
    if cfg.method != "model":
        return None
    return sha256_file(renderer.checkpoint.folder / "weights.safetensors")


@dataclass(frozen=True, slots=True)
class Made:
    """One fake as made, before its manifest row: the output on its way, its source, the plan
    it was swapped by, each swapped frame, what was encoded, and the source's and checkpoint's
    hashes (the checkpoint's None for fwa-sim)."""

    output: PendingOutput
    source: Path
    plan: SwapPlan
    swaps: list[SwapFrame]
    encoded: Encoded
    hashes: tuple[str, str | None]


def record(made: Made, cfg: VideoConfig, renderer) -> ManifestRow:
    """Write the per-frame swap records, the manifest row and the data card of one fake, and
    move the fake from its pending name to its place once its row is down."""
    output = made.output
    folder = output.folder
    labels_rel = f"labels/{output.id}.jsonl"
    labels_pending = pending_path(folder / labels_rel)
    try:
        write_swap_frames(labels_pending, made.swaps)
        row = ManifestRow.new(
            output=output, label="fake", method=cfg.method, split=cfg.split, source=made.source,
            checkpoint=cfg.model or None, source_sha256=made.hashes[0],
            checkpoint_sha256=made.hashes[1],
            source_identity=_source_identity(made.plan, renderer, cfg, made.source),
            target_identity=_target_identity(renderer, cfg), knobs=_knobs(cfg, renderer),
            encoded=made.encoded, watermark=cfg.watermark, labels=labels_rel,
        )
        commit(folder, row, [(labels_pending, folder / labels_rel), (output.pending, output.path)])
    finally:
        labels_pending.unlink(missing_ok=True)
    write_data_card(folder)
    return row


def _target_identity(renderer, cfg: VideoConfig) -> str | None:
    if cfg.method == "model":
        return renderer.checkpoint.identities[cfg.to]
    return None  # fwa-sim keeps the person's own identity


def _source_identity(plan: SwapPlan, renderer, cfg: VideoConfig, source: Path) -> str:
    """Who is in the source video: the reference's name, else the model's other identity, else
    the source's folder name (as forge extract labels faces)."""
    if plan.reference is not None:
        return plan.reference.name
    if cfg.method == "model":
        return renderer.checkpoint.identities["a" if cfg.to == "b" else "b"]
    return source.parent.name


class MarkedOutput:
    """Watermarks and writes batches of frames, in order. A batch goes to the watermark's thread
    when it is put, and is written when the next one is put (or at ``flush``), so one batch is
    marked while the last is encoded and the next swapped."""

    def __init__(self, writer: VideoWriter, watermark: Watermarker | None,
                 faces: dict[int, list[np.ndarray]], timer: StageTimer) -> None:
        self.writer, self.watermark, self.faces, self.timer = writer, watermark, faces, timer
        self.pending: list[tuple] = []  # (frame, future or image) of the batch being marked
        self.written = 0

    def put(self, frames: list, images: list[np.ndarray]) -> None:
        with self.timer("watermark"):
            marked = (self.watermark.submit(images, [self.faces.get(f.index, []) for f in frames])
                      if self.watermark is not None else images)
        self.flush()
        self.pending = list(zip(frames, marked))

    def flush(self) -> int:
        for frame, item in self.pending:
            if self.watermark is not None:
                with self.timer("watermark"):  # the time spent waiting for its thread
                    item = item.result()
            with self.timer("encode"):
                self.writer.write(item, frame.time)
            self.written += 1
        self.pending = []
        return self.written


def _swap_batch(
    batch: list[Frame],
    plan: dict,
    renderer,
    cfg: VideoConfig,
    labels: list[SwapFrame],
    timer: StageTimer,
    mesher=None,
) -> list[np.ndarray]:
    """The swapped images of a batch of frames; one renderer call for all their faces. With a
    ``mesher`` (``--mask mesh``) each face's 3D mesh gives its mask and its yaw."""
    aligned = []
    for frame in batch:
        todo = plan.get(frame.index, [])
        meshes = [None] * len(todo)
        if mesher is not None:
            with timer("mesh"):
                meshes = [mesher.points(frame.image, np.r_[lms.min(0), lms.max(0)])
                          for _, lms in todo]
        with timer("align"):
            affines, crops = align_faces(frame.image, [lms for _, lms in todo], renderer, meshes)
        aligned.append((todo, affines, crops, meshes))
    all_crops = [c for _, _, crops, _ in aligned for c in crops]
    rendered, learned = (None, None)
    if all_crops:
        with timer("render"):
            rendered, learned = renderer.render(np.stack(all_crops))
    start = 0
    images = []
    for frame, (todo, affines, crops, meshes) in zip(batch, aligned):
        image = frame.image
        if todo:
            n = len(todo)
            with timer("blend"):
                image, results = blend_faces(image, [lms for _, lms in todo], affines, crops,
                                             rendered[start:start + n],
                                             None if learned is None else learned[start:start + n],
                                             renderer.size, cfg.composite, meshes)
            start += n
            with timer("labels"):
                labels.append(
                    SwapFrame(
                        frame=frame.index,
                        time=round(frame.time, 4),
                        faces=tuple(
                            SwappedFace.new(
                                track=tid,
                                box=r["box"],
                                mask=_shift(mask_polygons(r["mask"]), r["box"]),
                                landmarks=lms,
                            )
                            for (tid, lms), r in zip(todo, results)
                        ),
                    )
                )
        images.append(image)
    return images


def _shift(polygons: list, box: tuple[int, int, int, int]) -> list:
    x1, y1 = box[0], box[1]
    return [[[x + x1, y + y1] for x, y in polygon] for polygon in polygons]


def _knobs(cfg: VideoConfig, renderer) -> dict:
    knobs = {"method": cfg.method, **asdict(cfg.composite), "smooth": cfg.smooth, "crf": cfg.crf,
             "min_size": cfg.min_size, "seed": cfg.seed}
    if cfg.method == "model":
        model = renderer.checkpoint
        knobs.update({"to": cfg.to, "model_size": model.size, "model_padding": model.padding,
                      "model_arch": model.arch, "model_step": model.step,
                      "model_align": model.align})
    else:
        knobs.update({"fwa_size": cfg.fwa_size, "mask": cfg.composite.mask})
    return knobs
