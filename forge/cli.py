"""The ``forge`` command: extract face sets, train swap models, make labelled fake videos and
datasets, and write a sample clip. Option defaults come from each command's config dataclass."""

from __future__ import annotations

from pathlib import Path

import typer

from forge.dataset import DatasetConfig
from forge.extract import ExtractConfig
from forge.swap import CompositeConfig
from forge.swap_video import VideoConfig
from forge.train import TrainConfig
from swapscope.cli import (
    AUTO,
    DeviceOption,
    IdentityOption,
    IdentityThresholdOption,
    JsonOption,
    MaxFramesOption,
    ProgressBar,
    SeedOption,
    err_console,
    fail,
    handle_errors,
    make_app,
    print_json,
)
from swapscope.device import resolve_device

app = make_app("forge", "Make labelled face-swap fakes; start by extracting a face set.")
E, T, V, C = ExtractConfig, TrainConfig, VideoConfig, CompositeConfig  # where the defaults live


@app.command()
@handle_errors
def extract(
    inputs: list[Path] = typer.Argument(..., help="Videos, images, or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Face set folder to create or extend."),
    backend: str = typer.Option(E.backend, help="Face backend: dlib (offline, CPU) or fan."),
    device: DeviceOption = AUTO,
    batch_size: int = typer.Option(E.batch_size, help="Frames per detector call (fan)."),
    crop_size: int = typer.Option(E.crop_size, help="Aligned crop size in px."),
    padding: float = typer.Option(E.padding, help="Crop margin around the mean face, fraction per side."),
    every: int = typer.Option(E.every, help="Process every N-th frame."),
    min_size: int = typer.Option(E.min_size, help="Drop faces smaller than this (px, box side)."),
    detect_size: int = typer.Option(E.detect_size, help="Long side of the frame copy the detector sees (0: the frame as it is)."),
    detect_every: int = typer.Option(E.detect_every, help="Run the detector every N processed frames; track boxes between."),
    embed_every: int = typer.Option(E.embed_every, help="Compute identity embeddings every N processed frames (and for new faces)."),
    identity: IdentityOption = None,
    identity_threshold: IdentityThresholdOption = E.identity_threshold,
    label: str | None = typer.Option(E.label, help="Identity label for the rows (default: the reference's name, else each file's folder)."),
    max_frames: MaxFramesOption = E.max_frames,
    json_out: JsonOption = False,
) -> None:
    """Detect, align and save every face of the inputs as a face set (resumable)."""
    from forge.extract import extract as run_extract

    config = ExtractConfig(
        backend=backend, device=resolve_device(device) if backend == "fan" else "cpu", batch_size=batch_size,
        detect_size=detect_size, detect_every=detect_every, embed_every=embed_every, crop_size=crop_size,
        padding=padding, every=every, min_size=min_size, identity=[str(p) for p in identity or []],
        identity_threshold=identity_threshold, label=label, max_frames=max_frames,
    )
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
        fail(f"{len(failed)} of {len(summary.sources)} inputs failed: " + "; ".join(s.error for s in failed))


@app.command()
@handle_errors
def train(
    faceset_a: Path = typer.Argument(..., help="Face set of identity A (forge extract)."),
    faceset_b: Path = typer.Argument(..., help="Face set of identity B."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder (checkpoint; re-run to resume)."),
    arch: str = typer.Option(T.arch, help="swap-ae, or swap-ae-lite for fast CPU runs."),
    size: int = typer.Option(T.size, help="Aligned face size: 64, 128 or 256."),
    padding: float = typer.Option(T.padding, help="Model crop margin per side (fraction)."),
    batch_size: int = typer.Option(T.batch_size, help="Faces of each identity per step."),
    steps: int = typer.Option(T.steps, help="Total training steps (a resumed run continues to this)."),
    lr: float = typer.Option(T.lr, help="Generator learning rate (Adam)."),
    lr_d: float = typer.Option(T.lr_d, help="Discriminator learning rate (Adam)."),
    gan: bool = typer.Option(T.gan, help="The CycleGAN part (adversarial, cycle, identity losses)."),
    gan_warmup: int = typer.Option(T.gan_warmup, help="Steps of reconstruction only before the CycleGAN part starts."),
    rec_weight: float = typer.Option(T.rec_weight, help="Reconstruction (L1 + SSIM) weight."),
    ssim_weight: float = typer.Option(T.ssim_weight, help="SSIM share of the reconstruction loss."),
    mask_weight: float = typer.Option(T.mask_weight, help="Mask loss weight."),
    adv_weight: float = typer.Option(T.adv_weight, help="Least-squares adversarial loss weight."),
    cycle_weight: float = typer.Option(T.cycle_weight, help="Cycle-consistency weight (A->B->A, B->A->B)."),
    identity_weight: float = typer.Option(T.identity_weight, help="Identity loss weight (B->B returns B)."),
    stride: int = typer.Option(T.stride, help="Use every N-th face of each face set."),
    save_every: int = typer.Option(T.save_every, help="Checkpoint every N steps (and at the end)."),
    preview_every: int = typer.Option(T.preview_every, help="Preview grid and loss record every N steps."),
    device: DeviceOption = AUTO,
    seed: SeedOption = T.seed,
    json_out: JsonOption = False,
) -> None:
    """Train a shared-encoder face-swap autoencoder with CycleGAN losses (resumable)."""
    from forge.train import train as run_train

    config = TrainConfig(
        facesets=(str(faceset_a), str(faceset_b)), out=str(out), arch=arch, size=size, padding=padding,
        batch_size=batch_size, steps=steps, lr=lr, lr_d=lr_d, gan=gan, gan_warmup=gan_warmup, rec_weight=rec_weight,
        ssim_weight=ssim_weight, mask_weight=mask_weight, adv_weight=adv_weight, cycle_weight=cycle_weight,
        identity_weight=identity_weight, stride=stride, save_every=save_every, preview_every=preview_every,
        seed=seed)
    with ProgressBar(err_console.is_terminal, "loss {task.fields[loss]:.4f}") as progress:
        summary = run_train(config, resolve_device(device), progress=progress)
    if json_out:
        print_json(summary)
    else:
        ids = summary["identities"]
        typer.echo(f"{summary['out']}: {ids['a']} <-> {ids['b']}, step {summary['step']}")


@app.command()
@handle_errors
def video(
    source: Path = typer.Argument(..., help="The real video to swap a face in."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .mp4 (default: SOURCE-STEM.fake.mp4 here). Labels go beside it."),
    model: Path | None = typer.Option(None, "--model", "-m", help="forge train checkpoint; without it the method is fwa-sim."),
    method: str = typer.Option(V.method, help="model or fwa-sim (default: model if --model is given, else fwa-sim)."),
    to: str = typer.Option(V.to, help="The model identity (a or b) the target face becomes."),
    identity: IdentityOption = None,
    identity_threshold: IdentityThresholdOption = V.identity_threshold,
    mask: str = typer.Option(C.mask, help="learned (the model's mask) or hull (landmark hull; always for fwa-sim)."),
    erode: float = typer.Option(C.erode, help="Mask erosion, fraction of the face crop."),
    feather: float = typer.Option(C.feather, help="Mask feathering, fraction of the face crop."),
    colour: str = typer.Option(C.colour, help="Colour transfer: none, reinhard or histogram."),
    blend: str = typer.Option(C.blend, help="alpha (feathered) or poisson (seamless cloning)."),
    smooth: bool = typer.Option(V.smooth, help="Smooth the target's landmarks over time (One-Euro)."),
    fwa_size: int = typer.Option(V.fwa_size, help="fwa-sim render size in px (0: drawn from 64-127 by --seed)."),
    crf: int = typer.Option(V.crf, help="Output H.264 CRF."),
    batch_size: int = typer.Option(V.batch_size, help="Frames per model call."),
    min_size: int = typer.Option(V.min_size, help="Do not swap faces smaller than this (px)."),
    max_frames: MaxFramesOption = V.max_frames,
    workers: int = typer.Option(V.workers, help="Processes that embed the watermark (0: one per CPU core)."),
    seed: SeedOption = V.seed,
    device: DeviceOption = AUTO,
    json_out: JsonOption = False,
) -> None:
    """Swap one person's face in a video and label the result (manifest, metadata, watermark).
    Without --identity the largest face's person is swapped; the audio is cut with --max-frames."""
    from forge.swap_video import forge_video

    config = VideoConfig(
        method=method, model=str(model) if model else "", to=to, identity=[str(p) for p in identity or []],
        identity_threshold=identity_threshold, smooth=smooth, fwa_size=fwa_size, crf=crf, batch_size=batch_size,
        min_size=min_size, max_frames=max_frames, workers=workers, seed=seed,
        composite=CompositeConfig(mask=mask, erode=erode, feather=feather, colour=colour, blend=blend))
    target = out or Path(f"{source.stem}.fake.mp4")
    with ProgressBar(err_console.is_terminal, unit="fps") as progress:
        result = forge_video(source, target, config, resolve_device(device), progress=progress)
    if json_out:
        print_json({"row": result.row.to_json(), "timings": result.timings, "target_tracks": result.target_tracks})
    else:
        typer.echo(f"{result.output}: {result.swapped_frames}/{result.frames} frames swapped "
                   f"({result.row.method}), labelled {result.id}")


@app.command()
@handle_errors
def dataset(
    config: Path = typer.Argument(..., help="Dataset config (.toml or .json): videos, sweep of knobs, watermark policy, splits."),
    device: DeviceOption = AUTO,
    json_out: JsonOption = False,
) -> None:
    """Sweep realism knobs over real videos into one labelled forgery set with real counterparts (resumable)."""
    from forge.dataset import build_dataset

    settings = DatasetConfig.load(config)
    with ProgressBar(err_console.is_terminal, unit="fps") as progress:
        summary = build_dataset(settings, resolve_device(device), progress=progress)
    if json_out:
        print_json(summary)
    else:
        typer.echo(f"{summary['out']}: {summary['fakes']} fakes, {summary['reals']} reals "
                   f"({summary['made']} made, {summary['skipped']} already there)")
    if summary["failed"]:
        fail(f"{len(summary['failed'])} outputs failed: " + "; ".join(summary["failed"]))


@app.command()
@handle_errors
def sample(
    out: Path = typer.Argument(Path("sample.mp4"), help="Where to write the clip."),
    frames: int = typer.Option(48, help="Number of frames."),
) -> None:
    """Write a short real-face test clip (scikit-image's astronaut, panned, with a tone)."""
    from swapscope.media.sample import write_sample

    if frames < 1:
        fail("--frames must be at least 1")
    typer.echo(write_sample(out, frames=frames))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
