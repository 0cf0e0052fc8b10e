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
    out: Path = typer.Option(Path("detector"), "--out", "-o", help="Run folder: best/, resume/, curves.png."),
    arch: str = typer.Option("efficientnet_lite0", help="efficientnet_lite0 (offline ImageNet weights), resnet50, xception, or a timm name."),
    pretrained: bool = typer.Option(True, help="Start from ImageNet weights."),
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

    config = TrainConfig(facesets=[str(p) for p in facesets], out=str(out), arch=arch, pretrained=pretrained,
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
    model: Path = typer.Option(..., "--model", "-m", help="Detector checkpoint folder (detect train's OUT/best)."),
    rois: int = typer.Option(10, help="Random ROIs per face (the paper: 10)."),
    top_k: int = typer.Option(5, help="A face scores the mean of its top-k ROIs (the paper: 5)."),
    top_fraction: float = typer.Option(1 / 3, help="A video scores the mean of this top share of frames."),
    every: int = typer.Option(1, help="Score every N-th frame."),
    threshold: float = typer.Option(0.5, help="Verdict 'fake' at or above this score."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    json_out: bool = typer.Option(False, "--json", help="Per-frame and per-face scores, rules, timings as JSON."),
) -> None:
    """Score each input for face-warping artifacts: a verdict and a score per input."""
    from detect.scan import ScanConfig
    from detect.scan import scan as run_scan

    config = ScanConfig(model=str(model), rois=rois, top_k=top_k, top_fraction=top_fraction,
                        every=every, threshold=threshold)

    def report(item) -> None:
        if not json_out:
            score = "-" if item.score is None else f"{item.score:.3f}"
            typer.echo(f"{item.verdict:8s} {score:>6s}  {item.path}  ({len(item.frames)} frames scored, "
                       f"{item.timings.get('total', 0):.1f} s)")

    result = run_scan(inputs, config, resolve_device(device), progress=report)
    if json_out:
        print_json(result)
    problems = [i for i in result["inputs"] if i["verdict"] in ("no face", "error")]
    if problems:
        first = problems[0]
        reason = first["timings"].get("error") or f"{first['path']}: no face found to score"
        fail(reason if len(problems) == 1 else f"{len(problems)} inputs could not be scored (first: {reason})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
