"""The ``detect`` command: train face-warping-artifact classifiers and scan media with them.
Option defaults come from each command's config dataclass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detect.scan import ScanConfig
from detect.train import TrainConfig
from swapscope import cli as kit
from swapscope.cli import ProgressBar, err_console, fail, handle_errors, make_app, print_json
from swapscope.device import resolve_device
from swapscope.distributed import launched_rank
from swapscope.formats.scan import UNSCORED
from swapscope.ray_engine import Engine, quiet_stdout

app = make_app("detect", "Train face-warping-artifact detectors and scan media for face swaps.")
T, S = TrainConfig, ScanConfig  # where the defaults live


# Options, declared once; each command takes its defaults from its config dataclass.
Facesets = Annotated[list[Path] | None, typer.Argument(
    help="Face sets of real faces (forge extract); optional with --crops.")]
Crops = Annotated[list[Path] | None, typer.Option(
    help="A labelled crop collection (a folder with labels.csv: file, label, group; e.g. "
    "dfdc_faces): its fakes train as genuine fakes, its reals as real faces; rows of another "
    "split are never used (repeatable).")]
Genuine = Annotated[bool, typer.Option(
    help="Train on the crop collections' fakes (--no-genuine: on their real faces alone).")]
H264Share = Annotated[float, typer.Option(
    help="Of the degradations' codec round trips, the share that is H.264 (the rest JPEG).")]
Fakes = Annotated[
    list[Path] | None,
    typer.Option(
        help="A forge manifest (file or folder): its swapped faces train as fakes, its real "
        "counterparts as reals (repeatable)."
    ),
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder: best/, resume/, curves.png.")]
Arch = Annotated[
    str,
    typer.Option(
        help="tf_efficientnet_lite0, _lite1, _lite2 (offline ImageNet weights), "
        "efficientnet_lite0 (the same lite0 weights fed the PyTorch way, as detectors before "
        "0.2 were), resnet50, xception, or a timm name."
    ),
]
Artifact = Annotated[str, typer.Option(
    help="The negatives real faces become: fwa (face warping), sbi (self-blended), mix, or "
    "none (genuine or forged fakes only).")]
DegradeFlag = Annotated[bool, typer.Option(
    help="Degrade both classes alike as footage arrives (rescale, smoothing, JPEG/H.264, flips).")]
LrDecay = Annotated[float, typer.Option(help="Learning-rate factor per epoch.")]
Pretrained = Annotated[bool, typer.Option(help="Start from ImageNet weights.")]
InputSize = Annotated[int, typer.Option(
    help="Side in px of the square face ROI the network sees, in training and in detect scan "
         "(the FWA paper: 224; SBI: 380). 0: --init's, else the backbone's own (lite0: 224).")]
Init = Annotated[
    Path | None,
    typer.Option(help="Start from this detector checkpoint instead (fine-tuning; same --arch)."),
]
Epochs = Annotated[int, typer.Option(help="Epochs (the paper: 20).")]
BatchSize = Annotated[int, typer.Option(help="Batch size (the paper: 64).")]
Lr = Annotated[float, typer.Option(help="Learning rate, decayed by --lr-decay per epoch.")]
Optimizer = Annotated[str, typer.Option(
    help="sgd (the paper's, momentum 0.9) or adamw (fewer epochs to fine-tune; try lr 1e-4).")]
Stride = Annotated[int, typer.Option(help="Use every N-th face of each track.")]
StepsPerEpoch = Annotated[
    int, typer.Option(help="Cap on steps per epoch (0: one pass over the data).")
]
ValFraction = Annotated[
    float, typer.Option(help="Share of faces (whole identities) held out for validation.")
]
Workers = Annotated[int, typer.Option(help="Data loader worker processes.")]
Cache = Annotated[Path | None, typer.Option(
    help="Folder of the faces' context crops, shareable between runs on the same face sets "
    "(default: OUT/cache).")]
KeepEvery = Annotated[int, typer.Option(
    help="Also keep every N-th epoch's weights (fp16) in OUT/epochs/ (0: only the best).")]
Inputs = Annotated[list[Path], typer.Argument(help="Videos, images, or folders of them.")]
Model = Annotated[list[Path] | None, typer.Option(
    "--model", "-m", help="Detector checkpoint folder (detect train's OUT/best, or an ensemble's "
    "from detect ensemble); repeat it to average several detectors per face. Default: the "
    "detector that ships with swapscope.")]
Mode = Annotated[
    str,
    typer.Option(
        help="Preset for the knobs you leave unset: fast, or paper (every frame, full-size "
        "detection, 10 ROIs, top 5)."
    ),
]
Rois = Annotated[int | None, typer.Option(help="Random ROIs per face (fast: 1, paper: 10).")]
TopK = Annotated[
    int | None, typer.Option(help="A face scores the mean of its top-k ROIs (fast: 1, paper: 5).")
]
Every = Annotated[int | None, typer.Option(help="Score every N-th frame (fast: 5, paper: 1).")]
DetectEvery = Annotated[
    int | None,
    typer.Option(
        help="Run the face detector every N scored frames, tracking between (fast: 6, paper: 1)."
    ),
]
DetectSize = Annotated[
    int | None,
    typer.Option(
        help="Long side of the frame copy the face detector sees; 0 = full size (fast: 640 "
        "with YuNet, paper: 0 with dlib)."
    ),
]
TopFraction = Annotated[
    float, typer.Option(help="A video scores the mean of this top share of its frames.")
]
Threshold = Annotated[float | None, typer.Option(
    help="Verdict 'fake' at or above this score. Default: the detector's calibrated threshold "
    "(detect calibrate), else 0.5.")]
ScanBatchSize = Annotated[int, typer.Option(help="ROIs per network call.")]
LabelFrames = Annotated[
    int,
    typer.Option(
        help="Read swapscope's watermark in the faces of every frame of the first N, scored or "
        "not (the container metadata and Content Credentials are always read)."
    ),
]
Results = Annotated[Path | None, typer.Option(
    help="Also add one row per input to this Parquet table; inputs it already holds for this "
    "detector and these rules are skipped, so a killed scan resumes.")]
ScanWorkers = Annotated[int, typer.Option(
    help="--engine ray: scoring actors, each holding one detector (one GPU each where the "
    "cluster has GPUs).")]
Heatmap = Annotated[
    Path | None,
    typer.Option(
        help="Write the scored frames with each face's score and Grad-CAM map (.mp4 for a video, "
        ".png for an image)."
    ),
]
Checkpoint = Annotated[
    Path, typer.Argument(help="Detector checkpoint folder (detect train's OUT/best), or an "
                         "ensemble's (detect ensemble).")
]
ExportOut = Annotated[Path, typer.Option("--out", "-o", help="Folder for the exported checkpoint.")]
Overwrite = Annotated[bool, typer.Option(
    help="Replace --out if it is a detector checkpoint (anything else is never replaced).")]
Half = Annotated[
    bool, typer.Option(help="Store the weights as fp16 (half the size; loaded back as fp32).")
]


@app.command()
@handle_errors
def train(
    facesets: Facesets = None,
    fakes: Fakes = None,
    crops: Crops = None,
    genuine: Genuine = T.genuine,
    out: Out = Path(T.out),
    arch: Arch = T.arch,
    input_size: InputSize = T.input_size,
    artifact: Artifact = T.artifact,
    degrade: DegradeFlag = T.degrade,
    h264_share: H264Share = T.h264_share,
    pretrained: Pretrained = T.pretrained,
    init: Init = None,
    epochs: Epochs = T.epochs,
    batch_size: BatchSize = T.batch_size,
    optimizer: Optimizer = T.optimizer,
    lr: Lr = T.lr,
    lr_decay: LrDecay = T.lr_decay,
    stride: Stride = T.stride,
    steps_per_epoch: StepsPerEpoch = T.steps_per_epoch or 0,
    val_fraction: ValFraction = T.val_fraction,
    workers: Workers = T.workers,
    keep_every: KeepEvery = T.keep_every,
    cache: Cache = None,
    device: kit.DeviceOption = kit.AUTO,
    seed: kit.SeedOption = T.seed,
    json_out: kit.JsonOption = False,
) -> None:
    """Train a detector on real faces, simulated artifacts (FWA, SBI) and genuine or forged fakes
    (resumable)."""
    # lazy: --help and the other commands stay fast
    from detect.train import train as run_train

    config = TrainConfig(facesets=[str(p) for p in facesets or []],
                         fakes=[str(p) for p in fakes or []], crops=[str(p) for p in crops or []],
                         genuine=genuine,
                         init=str(init) if init else "", out=str(out), arch=arch,
                         input_size=input_size, artifact=artifact,
                         degrade=degrade, h264_share=h264_share, pretrained=pretrained,
                         epochs=epochs,
                         batch_size=batch_size, optimizer=optimizer, lr=lr, lr_decay=lr_decay,
                         stride=stride, steps_per_epoch=steps_per_epoch or None,
                         val_fraction=val_fraction, workers=workers, keep_every=keep_every,
                         cache=str(cache) if cache else None, seed=seed)
    bar = ProgressBar(err_console.is_terminal, "loss {task.fields[loss]:.4f}", unit="it/s")
    with bar as progress:
        summary = run_train(config, resolve_device(device), progress=progress)
    if launched_rank() != 0:  # under torchrun, rank 0 reports for all
        return
    if json_out:
        print_json(summary.to_json())
    else:
        typer.echo(
            f"{summary.best}: best validation AUC {summary.best_val_auc:.4f} "
            f"({summary.train_faces} training / {summary.val_faces} validation faces)"
        )
        for crops in summary.crops:
            typer.echo(f"{crops['collection']}: faces in {crops['faces']}, no face found in "
                       f"{crops['no_face']} (listed in the cache's no_face.jsonl), "
                       f"{crops['held_out']} rows of another split left out")


@app.command()
@handle_errors
def scan(
    inputs: Inputs,
    model: Model = None,
    mode: Mode = S.mode,
    rois: Rois = None,
    top_k: TopK = None,
    every: Every = None,
    detect_every: DetectEvery = None,
    detect_size: DetectSize = None,
    top_fraction: TopFraction = S.top_fraction,
    threshold: Threshold = S.threshold,
    batch_size: ScanBatchSize = S.batch_size,
    max_frames: kit.MaxFramesOption = S.max_frames,
    label_frames: LabelFrames = S.label_frames,
    heatmap: Heatmap = None,
    results: Results = None,
    engine: kit.EngineOption = "single",
    address: kit.AddressOption = None,
    cpus: kit.CpusOption = None,
    workers: ScanWorkers = 1,
    device: kit.DeviceOption = kit.AUTO,
    json_out: kit.JsonOption = False,
) -> None:
    """Score each input for face-swap artifacts: "fake" or "no artifact found", and a score.

    The verdict threshold is the detector's calibrated one (at most 5% of degraded real clips
    called fake). --json prints per-frame and per-face scores, the rules (the threshold and how
    it was chosen) and timings."""
    # lazy: --help and the other commands stay fast
    from detect.scan_driver import scan as run_scan

    config = ScanConfig(models=tuple(str(m) for m in model or []), mode=mode, rois=rois,
                        top_k=top_k, every=every, detect_every=detect_every,
                        detect_size=detect_size, top_fraction=top_fraction,
                        threshold=threshold, batch_size=batch_size,
                        max_frames=max_frames, label_frames=label_frames,
                        heatmap=str(heatmap) if heatmap else None)

    engine = Engine(engine, address, cpus, workers)
    with quiet_stdout(engine, json_out):
        result = run_scan(inputs, config, device, on_result=None if json_out else _report,
                          results=results, engine=engine)
    if json_out:
        print_json(result.to_json())
    elif result.skipped:
        typer.echo(f"{len(result.skipped)} inputs skipped: already in {results} for this "
                   "detector and these rules")
    problems = [i for i in result.inputs if i.verdict in UNSCORED]
    reasons = [i.error for i in problems]
    if len(result.inputs) == 1 and problems and not result.skipped:
        fail(reasons[0])
    if problems:
        fail(f"{len(problems)} of {len(result.inputs)} inputs could not be scored: "
             + "; ".join(reasons))


LABEL_HEADS = {"verified": "LABELLED (verified)", "disputed": "LABEL DISPUTED",
               "claimed": "CLAIMS A LABEL (unverified)"}


def _report(item) -> None:
    """One scanned input, as lines for a reader: its labels, then its verdict."""
    labels = item.provenance
    if labels.status in LABEL_HEADS:
        typer.echo(f"{LABEL_HEADS[labels.status]}  {item.path}: {labels.summary}")
    elif (labels.credential or {}).get("present"):
        typer.echo(f"CREDENTIALS  {item.path}: {labels.summary.split('; ', 1)[-1]}")
    if item.verdict not in UNSCORED:
        typer.echo(f"{item.verdict}  {item.score:.3f}  {item.path}  ({len(item.frames)} "
                   f"frames scored, {item.timings.get('total', 0):.1f} s)")
CalibrationFaces = Annotated[list[Path], typer.Option(
    "--faces", help="The face sets the detector trained on (their validation identities' real "
    "videos are the calibration clips); repeatable.")]
Fpr = Annotated[float, typer.Option(help="Share of degraded real clips allowed to be called fake.")]
CalibrationFrames = Annotated[int, typer.Option(help="Frames of each clip to re-encode and scan.")]
Work = Annotated[Path | None, typer.Option(
    help="Folder for the re-encoded clips (default: beside the checkpoint, calibration/).")]


@app.command()
@handle_errors
def calibrate(
    checkpoint: Checkpoint,
    faces: CalibrationFaces,
    fpr: Fpr = 0.05,
    frames: CalibrationFrames = 60,
    work: Work = None,
    device: kit.DeviceOption = kit.AUTO,
    json_out: kit.JsonOption = False,
) -> None:
    """Choose the detector's verdict threshold on degraded real footage and store it in the
    checkpoint.

    The validation identities' real clips are re-encoded at CRF 23, 30, 35 and 40, at half size
    and smoothed, scanned with the fast rules, and the threshold is set so that at most --fpr of
    them are called fake. detect scan uses it from then on."""
    # lazy: --help and the other commands stay fast
    from detect.calibrate import calibrate as run_calibrate

    with ProgressBar(err_console.is_terminal, unit="clips/s") as progress:
        record = run_calibrate(checkpoint, faces, work, resolve_device(device), fpr=fpr,
                               frames=frames, progress=progress)
    if json_out:
        print_json(record.to_json())
    else:
        share = f"{record.threshold['fpr_measured']:.1%} of {record.threshold['clips']}"
        typer.echo(f"{record.checkpoint}: threshold {record.value:.4f} ({share} degraded "
                   "real clips at or above it)")


@app.command()
@handle_errors
def export(checkpoint: Checkpoint, out: ExportOut, half: Half = True,
           overwrite: Overwrite = False) -> None:
    """Copy a detector checkpoint for release: fp16 weights, the same config, its source's hash."""
    # lazy: --help and the other commands stay fast
    from detect.checkpoint import export_detector

    folder = export_detector(checkpoint, out, half=half, overwrite=overwrite)
    size = (folder / "weights.safetensors").stat().st_size
    typer.echo(f"{folder}: {size / 1e6:.1f} MB")


Members = Annotated[list[Path], typer.Argument(
    help="Detector (or ensemble) checkpoints whose probabilities the ensemble averages per face.")]


@app.command()
@handle_errors
def ensemble(members: Members, out: ExportOut, half: Half = True,
             overwrite: Overwrite = False) -> None:
    """Make one checkpoint of several detectors: detect scan --model OUT averages their fake
    probabilities per face.

    The members' thresholds do not carry over to their mean: run detect calibrate OUT --faces ...
    next (it calibrates on real clips of people none of the members trained on)."""
    # lazy: --help and the other commands stay fast
    from detect.checkpoint import save_ensemble

    if len(members) < 2:
        fail("an ensemble needs at least two checkpoints")
    folder = save_ensemble(members, out, half=half, overwrite=overwrite)
    size = (folder / "weights.safetensors").stat().st_size
    typer.echo(f"{folder}: {len(members)} members, {size / 1e6:.1f} MB; not calibrated yet")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
