"""The ``forge`` command: extract face sets, train swap models, make labelled fake videos and
datasets, and write a sample clip. Option defaults come from each command's config dataclass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forge.dataset import DatasetConfig
from forge.extract import ExtractConfig
from forge.swap import CompositeConfig
from forge.swap_video import VideoConfig
from forge.train import TrainConfig
from swapscope import cli as kit
from swapscope.cli import ProgressBar, err_console, fail, handle_errors, make_app, print_json
from swapscope.device import resolve_device
from swapscope.distributed import launched_rank
from swapscope.files import output_file
from swapscope.ray_engine import Engine, quiet_stdout

app = make_app("forge", "Make labelled face-swap fakes; start by extracting a face set.")
E, T, V, C = ExtractConfig, TrainConfig, VideoConfig, CompositeConfig  # where the defaults live


# Options, declared once; each command takes its defaults from its config dataclass.
Inputs = Annotated[list[Path], typer.Argument(help="Videos, images, or folders of them.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Face set folder to create or extend.")]
Backend = Annotated[str, typer.Option(
    help="Face backend: yunet (offline, CPU: small and turned faces), dlib (offline, CPU, HOG: "
    "faces of 80 px in its copy), dlib-cnn (offline, slow) or fan.")]
BatchSize = Annotated[int, typer.Option(help="Frames per detector call (fan).")]
CropSize = Annotated[int, typer.Option(help="Aligned crop size in px.")]
Padding = Annotated[
    float, typer.Option(help="Crop margin around the mean face, fraction per side.")
]
Every = Annotated[int, typer.Option(help="Process every N-th frame.")]
MinSize = Annotated[int, typer.Option(help="Drop faces smaller than this (px, box side).")]
DetectSize = Annotated[
    int | None, typer.Option(
        help="Long side of the frame copy the detector sees (0: the frame as it is; default: "
        "the backend's own, yunet 640, dlib 480).")
]
DetectEvery = Annotated[
    int, typer.Option(help="Run the detector every N processed frames; track boxes between.")
]
EmbedEvery = Annotated[
    int,
    typer.Option(help="Compute identity embeddings every N processed frames (and for new faces)."),
]
Label = Annotated[
    str | None,
    typer.Option(
        help="The person the rows are recorded as (default: the reference's name, else each "
        "file's folder)."
    ),
]
Mesh = Annotated[bool, typer.Option(
    "--mesh/--no-mesh",
    help="Also record each face's 468-point 3D mesh and head pose (needs the mesh extra).")]
FacesetA = Annotated[Path, typer.Argument(help="Face set of identity A (forge extract).")]
FacesetB = Annotated[Path, typer.Argument(help="Face set of identity B.")]
TrainOut = Annotated[
    Path, typer.Option("--out", "-o", help="Model folder (checkpoint; re-run to resume).")
]
Arch = Annotated[str, typer.Option(help="swap-ae, or swap-ae-lite for fast CPU runs.")]
Size = Annotated[int, typer.Option(help="Aligned face size: 64, 128 or 256.")]
TrainPadding = Annotated[float, typer.Option(help="Model crop margin per side (fraction).")]
Align = Annotated[str, typer.Option(
    help="pose: each face aligned to the 3D template turned to its yaw, so turned heads keep "
         "their size and centre; frontal: the flat template (models before 2026-12-05).")]
TrainMask = Annotated[str, typer.Option(
    help="Where the learned mask's target comes from: auto (the visible part of the 3D mesh "
         "where a face has one: forge extract --mesh; else the landmark hull), mesh, or hull.")]
TrainBatchSize = Annotated[int, typer.Option(help="Faces of each identity per step.")]
Steps = Annotated[int, typer.Option(help="Total training steps (a resumed run continues to this).")]
Lr = Annotated[float, typer.Option(help="Generator learning rate (Adam).")]
LrD = Annotated[float, typer.Option(help="Discriminator learning rate (Adam).")]
Gan = Annotated[bool, typer.Option(help="The CycleGAN part (adversarial, cycle, identity losses).")]
GanWarmup = Annotated[
    int, typer.Option(help="Steps of reconstruction only before the CycleGAN part starts.")
]
RecWeight = Annotated[float, typer.Option(help="Reconstruction (L1 + SSIM) weight.")]
SsimWeight = Annotated[float, typer.Option(help="SSIM share of the reconstruction loss.")]
MaskWeight = Annotated[float, typer.Option(help="Mask loss weight.")]
AdvWeight = Annotated[float, typer.Option(help="Least-squares adversarial loss weight.")]
CycleWeight = Annotated[float, typer.Option(help="Cycle-consistency weight (A->B->A, B->A->B).")]
IdentityWeight = Annotated[float, typer.Option(help="Identity loss weight (B->B returns B).")]
Stride = Annotated[int, typer.Option(help="Use every N-th face of each face set.")]
SaveEvery = Annotated[int, typer.Option(help="Checkpoint every N steps (and at the end).")]
PreviewEvery = Annotated[int, typer.Option(help="Preview grid and loss record every N steps.")]
Source = Annotated[Path, typer.Argument(help="The real video to swap a face in.")]
VideoOut = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Output .mp4 (default: SOURCE-STEM.fake.mp4 here). Labels go beside it."
    ),
]
Model = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="forge train checkpoint; without it the method is fwa-sim."),
]
Method = Annotated[
    str, typer.Option(help="model or fwa-sim (default: model if --model is given, else fwa-sim).")
]
To = Annotated[str, typer.Option(help="The model identity (a or b) the target face becomes.")]
Mask = Annotated[
    str,
    typer.Option(help="learned (the model's mask), hull (landmark hull; always for fwa-sim) or "
                      "mesh (the visible part of the 3D mesh: the mesh extra)."),
]
Erode = Annotated[float, typer.Option(help="Mask erosion, fraction of the face crop.")]
Feather = Annotated[float, typer.Option(help="Mask feathering, fraction of the face crop.")]
Colour = Annotated[str, typer.Option(help="Colour transfer: none, reinhard or histogram.")]
Blend = Annotated[str, typer.Option(help="alpha (feathered) or poisson (seamless cloning).")]
Smooth = Annotated[bool, typer.Option(help="Smooth the target's landmarks over time (One-Euro).")]
FwaSize = Annotated[
    int, typer.Option(help="fwa-sim render size in px (0: drawn from 64-127 by --seed).")
]
Crf = Annotated[int, typer.Option(help="Output H.264 CRF.")]
VideoBatchSize = Annotated[int, typer.Option(help="Frames per model call.")]
VideoMinSize = Annotated[int, typer.Option(help="Do not swap faces smaller than this (px).")]
SignKey = Annotated[Path | None, typer.Option(
    help="PEM private key that signs the Content Credentials (with --sign-cert; default: this "
    "installation's self-signed pair, made on first use).")]
SignCert = Annotated[Path | None, typer.Option(
    help="PEM certificate chain of --sign-key, the signing certificate first.")]
VideoOverwrite = Annotated[bool, typer.Option(
    help="Replace --out if it is a fake this forge made (its manifest row is replaced too).")]
Config = Annotated[
    Path,
    typer.Argument(
        help="Dataset config (.toml or .json): videos, sweep of knobs, watermark policy, splits."
    ),
]
SampleOut = Annotated[Path, typer.Argument(help="Where to write the clip.")]
Frames = Annotated[int, typer.Option(help="Number of frames.")]


@app.command()
@handle_errors
def extract(
    inputs: Inputs,
    out: Out,
    backend: Backend = E.backend,
    device: kit.DeviceOption = kit.AUTO,
    batch_size: BatchSize = E.batch_size,
    crop_size: CropSize = E.crop_size,
    padding: Padding = E.padding,
    every: Every = E.every,
    min_size: MinSize = E.min_size,
    detect_size: DetectSize = E.detect_size,
    detect_every: DetectEvery = E.detect_every,
    embed_every: EmbedEvery = E.embed_every,
    identity: kit.IdentityOption = None,
    identity_threshold: kit.IdentityThresholdOption = E.identity_threshold,
    label: Label = E.label,
    mesh: Mesh = E.mesh,
    max_frames: kit.MaxFramesOption = E.max_frames,
    json_out: kit.JsonOption = False,
) -> None:
    """Detect, align and save every face of the inputs as a face set (resumable)."""
    # lazy: --help and the other commands stay fast
    from forge.extract import extract as run_extract

    config = ExtractConfig(
        backend=backend, device=resolve_device(device) if backend == "fan" else "cpu",
        batch_size=batch_size, detect_size=detect_size, detect_every=detect_every,
        embed_every=embed_every, crop_size=crop_size, padding=padding, every=every,
        min_size=min_size, identity=[str(p) for p in identity or []],
        identity_threshold=identity_threshold, label=label, mesh=mesh, max_frames=max_frames)
    with ProgressBar(err_console.is_terminal, unit="fps") as progress:
        summary = run_extract(inputs, out, config, progress=progress)
    if json_out:
        print_json(summary.to_json())
    else:
        done = [s for s in summary.sources if s.status != "failed"]
        typer.echo(f"{summary.out}: {summary.faces_total} faces from {len(done)} inputs")
    failed = summary.failed
    if len(summary.sources) == 1 and failed:
        fail(failed[0].error)
    if failed:
        fail(f"{len(failed)} of {len(summary.sources)} inputs failed: "
             + "; ".join(s.error for s in failed))


@app.command()
@handle_errors
def train(
    faceset_a: FacesetA,
    faceset_b: FacesetB,
    out: TrainOut,
    arch: Arch = T.arch,
    size: Size = T.size,
    padding: TrainPadding = T.padding,
    align: Align = T.align,
    train_mask: TrainMask = T.train_mask,
    batch_size: TrainBatchSize = T.batch_size,
    steps: Steps = T.steps,
    lr: Lr = T.lr,
    lr_d: LrD = T.lr_d,
    gan: Gan = T.gan,
    gan_warmup: GanWarmup = T.gan_warmup,
    rec_weight: RecWeight = T.rec_weight,
    ssim_weight: SsimWeight = T.ssim_weight,
    mask_weight: MaskWeight = T.mask_weight,
    adv_weight: AdvWeight = T.adv_weight,
    cycle_weight: CycleWeight = T.cycle_weight,
    identity_weight: IdentityWeight = T.identity_weight,
    stride: Stride = T.stride,
    save_every: SaveEvery = T.save_every,
    preview_every: PreviewEvery = T.preview_every,
    device: kit.DeviceOption = kit.AUTO,
    seed: kit.SeedOption = T.seed,
    json_out: kit.JsonOption = False,
) -> None:
    """Train a shared-encoder face-swap autoencoder with CycleGAN losses (resumable)."""
    # lazy: --help and the other commands stay fast
    from forge.train import train as run_train

    config = TrainConfig(
        facesets=(str(faceset_a), str(faceset_b)), out=str(out), arch=arch, size=size,
        padding=padding, align=align, train_mask=train_mask, batch_size=batch_size, steps=steps,
        lr=lr, lr_d=lr_d, gan=gan,
        gan_warmup=gan_warmup, rec_weight=rec_weight, ssim_weight=ssim_weight,
        mask_weight=mask_weight, adv_weight=adv_weight, cycle_weight=cycle_weight,
        identity_weight=identity_weight, stride=stride, save_every=save_every,
        preview_every=preview_every, seed=seed)
    with ProgressBar(err_console.is_terminal, "loss {task.fields[loss]:.4f}") as progress:
        summary = run_train(config, resolve_device(device), progress=progress)
    if launched_rank() != 0:  # under torchrun, rank 0 reports for all
        return
    if json_out:
        print_json(summary.to_json())
    else:
        ids = summary.identities
        typer.echo(f"{summary.out}: {ids['a']} <-> {ids['b']}, step {summary.step}")


@app.command()
@handle_errors
def video(
    source: Source,
    out: VideoOut = None,
    model: Model = None,
    method: Method = V.method,
    to: To = V.to,
    identity: kit.IdentityOption = None,
    identity_threshold: kit.IdentityThresholdOption = V.identity_threshold,
    mask: Mask = C.mask,
    erode: Erode = C.erode,
    feather: Feather = C.feather,
    colour: Colour = C.colour,
    blend: Blend = C.blend,
    smooth: Smooth = V.smooth,
    fwa_size: FwaSize = V.fwa_size,
    crf: Crf = V.crf,
    batch_size: VideoBatchSize = V.batch_size,
    min_size: VideoMinSize = V.min_size,
    max_frames: kit.MaxFramesOption = V.max_frames,
    overwrite: VideoOverwrite = V.overwrite,
    sign_key: SignKey = None,
    sign_cert: SignCert = None,
    seed: kit.SeedOption = V.seed,
    device: kit.DeviceOption = kit.AUTO,
    json_out: kit.JsonOption = False,
) -> None:
    """Swap one person's face in a video and label it (manifest, Content Credentials, metadata,
    watermark).

    Without --identity the largest face's person is swapped; the audio is cut with --max-frames.
    --json prints the manifest row and timings."""
    # lazy: --help and the other commands stay fast
    from forge.swap_video import forge_video

    config = VideoConfig(
        method=method, model=str(model) if model else "", to=to,
        identity=[str(p) for p in identity or []], identity_threshold=identity_threshold,
        smooth=smooth, fwa_size=fwa_size, crf=crf, batch_size=batch_size, min_size=min_size,
        max_frames=max_frames, seed=seed, overwrite=overwrite,
        sign_key=str(sign_key or ""), sign_cert=str(sign_cert or ""),
        composite=CompositeConfig(mask=mask, erode=erode, feather=feather, colour=colour,
                                  blend=blend))
    target = out or Path(f"{source.stem}.fake.mp4")
    with ProgressBar(err_console.is_terminal, unit="fps") as progress:
        result = forge_video(source, target, config, resolve_device(device), progress=progress)
    if json_out:
        print_json({"row": result.row.to_json(), "timings": result.timings,
                    "target_tracks": result.target_tracks})
    else:
        typer.echo(
            f"{result.output}: {result.swapped_frames}/{result.frames} frames swapped "
            f"({result.row.method}), labelled {result.id}"
        )


@app.command()
@handle_errors
def dataset(
    config: Config,
    engine: kit.EngineOption = "single",
    address: kit.AddressOption = None,
    cpus: kit.CpusOption = None,
    device: kit.DeviceOption = kit.AUTO,
    json_out: kit.JsonOption = False,
) -> None:
    """Sweep realism knobs over real videos into one labelled forgery set with real counterparts
    (resumable)."""
    # lazy: --help and the other commands stay fast
    from forge.dataset_driver import build_dataset

    settings = DatasetConfig.load(config)
    engine = Engine(engine, address, cpus)
    with ProgressBar(err_console.is_terminal, unit="fps") as progress, \
            quiet_stdout(engine, json_out):
        summary = build_dataset(settings, device, progress=progress, engine=engine)
    if json_out:
        print_json(summary.to_json())
    else:
        typer.echo(f"{summary.out}: {summary.fakes} fakes, {summary.reals} reals "
                   f"({summary.made} made, {summary.skipped} already there)")
    if summary.failed:
        fail(f"{len(summary.failed)} outputs failed: " + "; ".join(summary.failed))


@app.command()
@handle_errors
def sample(out: SampleOut = Path("sample.mp4"), frames: Frames = 48) -> None:
    """Write a short real-face test clip (scikit-image's astronaut, panned, with a tone)."""
    # lazy: --help and the other commands stay fast
    from swapscope.media.sample import write_sample

    if frames < 1:
        fail("--frames must be at least 1")
    output_file(out, (".mp4",), new=True, what="forge sample")
    typer.echo(write_sample(out, frames=frames))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
