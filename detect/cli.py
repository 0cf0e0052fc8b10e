"""The ``detect`` command: train face-warping-artifact classifiers and scan media with them.
Option defaults come from each command's config dataclass."""

from __future__ import annotations

from pathlib import Path

import typer

from detect.scan import ScanConfig
from detect.train import TrainConfig
from swapscope.cli import (
    AUTO,
    DeviceOption,
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

app = make_app("detect", "Train face-warping-artifact detectors and scan media for face swaps.")
T, S = TrainConfig, ScanConfig  # where the defaults live


@app.command()
@handle_errors
def train(
    facesets: list[Path] = typer.Argument(..., help="Face sets of real faces (forge extract)."),
    fakes: list[Path] | None = typer.Option(None, help="A forge manifest (file or folder): its swapped faces train as fakes, its real counterparts as reals (repeatable)."),
    out: Path = typer.Option(Path("detector"), "--out", "-o", help="Run folder: best/, resume/, curves.png."),
    arch: str = typer.Option(T.arch, help="efficientnet_lite0 (offline ImageNet weights), resnet50, xception, or a timm name."),
    pretrained: bool = typer.Option(T.pretrained, help="Start from ImageNet weights."),
    init: Path | None = typer.Option(None, help="Start from this detector checkpoint instead (fine-tuning; same --arch)."),
    epochs: int = typer.Option(T.epochs, help="Epochs (the paper: 20)."),
    batch_size: int = typer.Option(T.batch_size, help="Batch size (the paper: 64)."),
    lr: float = typer.Option(T.lr, help="SGD learning rate, decayed x0.95 per epoch."),
    stride: int = typer.Option(T.stride, help="Use every N-th face of each track."),
    steps_per_epoch: int = typer.Option(T.steps_per_epoch or 0, help="Cap on steps per epoch (0: one pass over the data)."),
    val_fraction: float = typer.Option(T.val_fraction, help="Share of faces (whole identities) held out for validation."),
    workers: int = typer.Option(T.workers, help="Data loader worker processes."),
    device: DeviceOption = AUTO,
    seed: SeedOption = T.seed,
    json_out: JsonOption = False,
) -> None:
    """Train a detector on real faces and simulated face-warping artifacts (resumable)."""
    from detect.train import train as run_train

    config = TrainConfig(facesets=[str(p) for p in facesets], fakes=[str(p) for p in fakes or []],
                         init=str(init) if init else "", out=str(out), arch=arch, pretrained=pretrained,
                         epochs=epochs, batch_size=batch_size, lr=lr, stride=stride,
                         steps_per_epoch=steps_per_epoch or None, val_fraction=val_fraction,
                         workers=workers, seed=seed)
    with ProgressBar(err_console.is_terminal, "loss {task.fields[loss]:.4f}", unit="it/s") as progress:
        summary = run_train(config, resolve_device(device), progress=progress)
    if json_out:
        print_json(summary)
    else:
        typer.echo(f"{summary['best']}: best validation AUC {summary['best_val_auc']:.4f} "
                   f"({summary['train_faces']} training / {summary['val_faces']} validation faces)")


@app.command()
@handle_errors
def scan(
    inputs: list[Path] = typer.Argument(..., help="Videos, images, or folders of them."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Detector checkpoint folder (detect train's OUT/best); default: the detector that ships with swapscope."),
    mode: str = typer.Option(S.mode, help="Preset for the knobs you leave unset: fast, or paper (every frame, full-size detection, 10 ROIs, top 5)."),
    rois: int | None = typer.Option(None, help="Random ROIs per face (fast: 1, paper: 10)."),
    top_k: int | None = typer.Option(None, help="A face scores the mean of its top-k ROIs (fast: 1, paper: 5)."),
    every: int | None = typer.Option(None, help="Score every N-th frame (fast: 5, paper: 1)."),
    detect_every: int | None = typer.Option(None, help="Run the face detector every N scored frames, tracking between (fast: 6, paper: 1)."),
    detect_size: int | None = typer.Option(None, help="Long side of the frame copy the face detector sees; 0 = full size (fast: 480, paper: 0)."),
    top_fraction: float = typer.Option(S.top_fraction, help="A video scores the mean of this top share of its frames."),
    threshold: float = typer.Option(S.threshold, help="Verdict 'fake' at or above this score."),
    batch_size: int = typer.Option(S.batch_size, help="ROIs per network call."),
    max_frames: MaxFramesOption = S.max_frames,
    label_frames: int = typer.Option(S.label_frames, help="Check this many scored frames for swapscope's watermark (the container metadata is always read)."),
    heatmap: Path | None = typer.Option(None, help="Write the scored frames with each face's score and Grad-CAM map (.mp4 for a video, .png for an image)."),
    device: DeviceOption = AUTO,
    json_out: JsonOption = False,
) -> None:
    """Score each input for face-warping artifacts: a verdict and a score per input (per-frame
    and per-face scores, rules and timings with --json)."""
    from detect.scan import scan as run_scan

    config = ScanConfig(model=str(model) if model else "", mode=mode, rois=rois, top_k=top_k, every=every,
                        detect_every=detect_every, detect_size=detect_size, top_fraction=top_fraction,
                        threshold=threshold, batch_size=batch_size, max_frames=max_frames,
                        label_frames=label_frames, heatmap=str(heatmap) if heatmap else None)

    def report(item) -> None:
        if json_out:
            return
        if item.provenance.get("labelled"):
            typer.echo(f"LABELLED  {item.path}: {item.provenance['summary']}")
        if item.verdict not in ("no face", "error"):
            typer.echo(f"{item.verdict:5s} {item.score:.3f}  {item.path}  ({len(item.frames)} frames scored, "
                       f"{item.timings.get('total', 0):.1f} s)")

    result = run_scan(inputs, config, resolve_device(device), on_result=report)
    if json_out:
        print_json(result.to_json())
    problems = [i for i in result.inputs if i.verdict in ("no face", "error")]
    reasons = [i.error or f"{i.path}: no face found to score" for i in problems]
    if len(result.inputs) == 1 and problems:
        fail(reasons[0])
    if problems:
        fail(f"{len(problems)} of {len(result.inputs)} inputs could not be scored: " + "; ".join(reasons))


@app.command()
@handle_errors
def export(
    checkpoint: Path = typer.Argument(..., help="Detector checkpoint folder (detect train's OUT/best)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the exported checkpoint."),
    half: bool = typer.Option(True, help="Store the weights as fp16 (half the size; loaded back as fp32)."),
) -> None:
    """Copy a detector checkpoint for release: fp16 weights, the same config, its source's hash."""
    from detect.checkpoint import export_detector

    folder = export_detector(checkpoint, out, half=half)
    size = (folder / "weights.safetensors").stat().st_size
    typer.echo(f"{folder}: {size / 1e6:.1f} MB")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
