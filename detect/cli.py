"""The ``detect`` command: train face-warping-artifact classifiers and scan media with them."""

from __future__ import annotations

from pathlib import Path

import typer

from forge.clikit import ProgressBar, err_console, fail, handle_errors, make_app, print_json, resolve_device

app = make_app("detect", "Train face-warping-artifact detectors and scan media for face swaps.")


class _TrainProgress(ProgressBar):
    """Progress over the steps of each epoch with the running loss, one line per epoch."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled, "loss {task.fields[loss]:.4f}", unit="it/s")

    def start(self, label: str, total: int) -> None:
        super().start(label, total, loss=float("nan"))

    def finish(self, record: dict) -> None:
        self.stop()
        err_console.print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
                          f"val loss {record['val_loss']:.4f}, val AUC {record['val_auc']:.4f} "
                          f"({record['seconds']:.0f} s)", highlight=False)


@app.command()
@handle_errors
def train(
    facesets: list[Path] = typer.Argument(..., help="Face sets of real faces (forge extract)."),
    fakes: list[Path] | None = typer.Option(None, help="A forge manifest (file or folder): its swapped faces train as fakes, its real counterparts as reals (repeatable)."),
    out: Path = typer.Option(Path("detector"), "--out", "-o", help="Run folder: best/, resume/, curves.png."),
    arch: str = typer.Option("efficientnet_lite0", help="efficientnet_lite0 (offline ImageNet weights), resnet50, xception, or a timm name."),
    pretrained: bool = typer.Option(True, help="Start from ImageNet weights."),
    init: Path | None = typer.Option(None, help="Start from this detector checkpoint instead (fine-tuning; same --arch)."),
    epochs: int = typer.Option(20, help="Epochs (the paper: 20)."),
    batch_size: int = typer.Option(64, help="Batch size (the paper: 64)."),
    lr: float = typer.Option(1e-3, help="SGD learning rate, decayed x0.95 per epoch."),
    stride: int = typer.Option(3, help="Use every N-th face of each track."),
    steps_per_epoch: int = typer.Option(0, help="Cap on steps per epoch (0: one pass over the data)."),
    val_fraction: float = typer.Option(0.2, help="Share of faces (whole identities) held out for validation."),
    workers: int = typer.Option(0, help="Data loader worker processes."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Train a detector on real faces and simulated face-warping artifacts (resumable)."""
    from detect.train import TrainConfig
    from detect.train import train as run_train

    config = TrainConfig(facesets=[str(p) for p in facesets], fakes=[str(p) for p in fakes or []], init=str(init) if init else "", out=str(out), arch=arch, pretrained=pretrained,
                         epochs=epochs, batch_size=batch_size, lr=lr, stride=stride,
                         steps_per_epoch=steps_per_epoch or None, val_fraction=val_fraction,
                         workers=workers, device=device, seed=seed)
    with _TrainProgress(enabled=err_console.is_terminal) as progress:
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
    mode: str = typer.Option("fast", help="Preset for the knobs you leave unset: fast, or paper (every frame, full-size detection, 10 ROIs, top 5)."),
    rois: int | None = typer.Option(None, help="Random ROIs per face (fast: 1, paper: 10)."),
    top_k: int | None = typer.Option(None, help="A face scores the mean of its top-k ROIs (fast: 1, paper: 5)."),
    every: int | None = typer.Option(None, help="Score every N-th frame (fast: 5, paper: 1)."),
    detect_every: int | None = typer.Option(None, help="Run the face detector every N scored frames, tracking between (fast: 6, paper: 1)."),
    detect_size: int | None = typer.Option(None, help="Long side of the frame copy the face detector sees; 0 = full size (fast: 480, paper: 0)."),
    top_fraction: float = typer.Option(1 / 3, help="A video scores the mean of this top share of its frames."),
    threshold: float = typer.Option(0.5, help="Verdict 'fake' at or above this score."),
    batch_size: int = typer.Option(32, help="ROIs per network call."),
    max_frames: int | None = typer.Option(None, help="Stop each video after this many frames."),
    label_frames: int = typer.Option(8, help="Check this many scored frames for swapscope's watermark (the container metadata is always read)."),
    heatmap: Path | None = typer.Option(None, help="Write the scored frames with each face's score and Grad-CAM map (.mp4 for a video, .png for an image)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    json_out: bool = typer.Option(False, "--json", help="Per-frame and per-face scores, rules, timings as JSON."),
) -> None:
    """Score each input for face-warping artifacts: a verdict and a score per input."""
    from detect.scan import ScanConfig
    from detect.scan import scan as run_scan

    config = ScanConfig(model=str(model) if model else "", mode=mode, rois=rois, top_k=top_k, every=every,
                        detect_every=detect_every, detect_size=detect_size, top_fraction=top_fraction,
                        threshold=threshold, batch_size=batch_size, max_frames=max_frames, label_frames=label_frames, heatmap=str(heatmap) if heatmap else None)

    def report(item) -> None:
        if json_out:
            return
        if item.provenance.get("labelled"):
            typer.echo(f"LABELLED  {item.path}: {item.provenance['summary']}")
        if item.verdict not in ("no face", "error"):
            typer.echo(f"{item.verdict:5s} {item.score:.3f}  {item.path}  ({len(item.frames)} frames scored, "
                       f"{item.timings.get('total', 0):.1f} s)")

    result = run_scan(inputs, config, resolve_device(device), progress=report)
    if json_out:
        print_json(result)
    problems = [i for i in result["inputs"] if i["verdict"] in ("no face", "error")]
    reasons = [i["error"] or f"{i['path']}: no face found to score" for i in problems]
    if len(result["inputs"]) == 1 and problems:
        fail(reasons[0])
    if problems:
        fail(f"{len(problems)} of {len(result['inputs'])} inputs could not be scored: " + "; ".join(reasons))


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
