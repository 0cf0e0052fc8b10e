"""detect train: save, reload, resume, input sizes, optimisers, forge fakes, torchrun."""

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detect.checkpoint import load_detector, read_detector_config
from detect.cli import app as detect_app
from detect.models import DEFAULT_ARCH
from swapscope.media.sample import write_clip

runner = CliRunner()


def test_train_save_reload_resume_and_infer(two_facesets, tmp_path):
    out = tmp_path / "run"
    args = [
        "train", *map(str, two_facesets), "--out", str(out), "--epochs", "1", "--batch-size", "4",
        "--steps-per-epoch", "2", "--stride", "2", "--device", "cpu", "--json",
    ]
    first = runner.invoke(detect_app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert len(summary["history"]) == 1 and summary["train_identities"] != summary["val_identities"]
    assert (out / "curves.png").is_file() and (out / "best" / "weights.safetensors").is_file()
    # resume: asking for 2 epochs continues at epoch 2 instead of starting over
    second = runner.invoke(detect_app, args[:6] + ["2"] + args[7:])
    assert second.exit_code == 0, second.output
    history = json.loads(second.stdout)["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == summary["history"][0]
    detector = load_detector(out / "best")
    assert detector.meta["arch"] == DEFAULT_ARCH and detector.data_config.input_size == 224
    with torch.no_grad():
        assert detector.module(torch.zeros(1, 3, 224, 224)).shape == (1, 2)


def test_input_size_is_the_roi_size_in_training_fine_tuning_and_scan(
    two_facesets, tmp_path, face_video, monkeypatch
):
    seen: list[tuple] = []
    forward = torch.nn.Module.__call__

    def spy(module, x, *a, **k):  # the batches the networks see, in training and in scan
        if isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3:
            seen.append(tuple(x.shape[2:]))
        return forward(module, x, *a, **k)

    out, tuned = tmp_path / "run", tmp_path / "tuned"
    common = [*map(str, two_facesets), "--epochs", "1", "--batch-size", "4",
              "--steps-per-epoch", "1", "--stride", "4", "--device", "cpu"]
    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    first = runner.invoke(detect_app, ["train", *common, "--input-size", "96", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert seen and set(seen) == {(96, 96)}  # training and validation batches alike
    assert load_detector(out / "best").data_config.input_size == 96
    # fine-tuning keeps its start's size unless told otherwise
    second = runner.invoke(detect_app, ["train", *common, "--init", str(out / "best"),
                                        "--out", str(tuned)])
    assert second.exit_code == 0, second.output
    assert load_detector(tuned / "best").data_config.input_size == 96
    seen.clear()
    scanned = runner.invoke(detect_app, ["scan", str(face_video), "--model", str(out / "best"),
                                         "--max-frames", "5", "--json"])
    assert scanned.exit_code == 0, scanned.output
    assert seen and set(seen) == {(96, 96)}
    monkeypatch.setattr(torch.nn.Module, "__call__", forward)
    # a run is never resumed at another size, and a size no network can take is refused
    other = runner.invoke(detect_app, ["train", *common, "--epochs", "2", "--input-size", "128",
                                       "--out", str(out)])
    assert other.exit_code == 2 and "different training run" in other.output
    for size in ("8", "5000"):
        bad = runner.invoke(detect_app, ["train", *common, "--input-size", size,
                                         "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and f"--input-size {size}" in bad.stderr
        assert not (tmp_path / "bad").exists()


def test_adamw_runs_resume_and_refuse_changed_optimiser_settings(two_facesets, tmp_path):
    out = tmp_path / "run"
    args = ["train", *map(str, two_facesets), "--out", str(out), "--batch-size", "4",
            "--steps-per-epoch", "2", "--stride", "2", "--device", "cpu", "--json",
            "--optimizer", "adamw", "--lr", "0.0001"]
    first = runner.invoke(detect_app, [*args, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    assert json.loads((out / "resume" / "state.json").read_text())["optimizer"]["param_groups"][0][
        "lr"] == pytest.approx(1e-4 * 0.95)  # AdamW's groups, decayed once
    second = runner.invoke(detect_app, [*args, "--epochs", "2"])
    assert second.exit_code == 0, second.output
    assert [h["epoch"] for h in json.loads(second.stdout)["history"]] == [1, 2]
    for changed in (["--lr", "0.001"], ["--optimizer", "sgd"]):  # never resumed under other ones
        again = runner.invoke(detect_app, [*args, "--epochs", "3", *changed])
        assert again.exit_code == 2 and "different training run" in again.output


def test_train_with_one_identity_is_a_clear_error(two_facesets, tmp_path):
    result = runner.invoke(
        detect_app, ["train", str(two_facesets[0]), "--out", str(tmp_path / "r"), "--device", "cpu"]
    )
    assert result.exit_code == 2 and "at least 2 identities" in result.stderr


def _reals_carry_the_face_mark(folder):
    """watermark = "both": each real counterpart's faces carry its own manifest id."""
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.formats.manifest import read_manifest
    from swapscope.labels.facemark import MarkReader
    from swapscope.timing import StageTimer

    reals = [row for row in read_manifest(folder) if row.label == "real"]
    assert reals and all(row.watermark for row in reals)
    for row in reals:
        reader = MarkReader()
        pipeline = FacePipeline(PipelineConfig(min_size=32, embed=False))
        for item in pipeline.track_frames(folder / row.output, StageTimer()):
            reader.add(item.frame.image, [f.face.landmarks for f in item.faces])
        assert reader.payload()[0] == row.id[:8], row.output


def test_train_with_fakes_from_a_forge_manifest(two_facesets, tmp_path, astronaut):
    from forge.cli import app as forge_app
    from swapscope.media.sample import moving_face_frames

    videos = tmp_path / "videos"
    for person, image in (
        ("eileen", astronaut),
        ("mirror", np.ascontiguousarray(astronaut[:, ::-1])),
    ):
        (videos / person).mkdir(parents=True)
        write_clip(videos / person / "clip.mp4", moving_face_frames(image, 8), fps=25)
    config = tmp_path / "set.toml"
    config.write_text('out = "set"\nvideos = ["videos"]\nwatermark = "both"\nmax_frames = 8\n'
                      '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [48]\n')
    made = runner.invoke(forge_app, ["dataset", str(config)])
    assert made.exit_code == 0, made.output
    _reals_carry_the_face_mark(tmp_path / "set")
    from detect.data import build_manifest_cache

    items = build_manifest_cache(tmp_path / "set" / "manifest.jsonl", tmp_path / "cache", stride=2)
    assert {i.label for i in items} == {0, 1} and {i.identity for i in items} == {
        "eileen",
        "mirror",
    }
    for source in {i.source_id for i in items}:  # a fake and its real counterpart share the source
        assert {i.label for i in items if i.source_id == source} == {0, 1}
    out = tmp_path / "run"
    result = runner.invoke(
        detect_app,
        [
            "train", *map(str, two_facesets), "--fakes", str(tmp_path / "set"), "--out", str(out),
            "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "2", "--stride", "2",
            "--device", "cpu", "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    _, config_json = read_detector_config(out / "best")
    assert config_json["train_fixed_fakes"] > 0 and config_json["config"]["fakes"] == [
        str(tmp_path / "set")
    ]
    bad = runner.invoke(
        detect_app,
        [
            "train", *map(str, two_facesets), "--fakes", str(tmp_path / "nowhere"), "--out",
            str(tmp_path / "r2"), "--device", "cpu",
        ],
    )
    assert bad.exit_code == 2 and "no such manifest" in bad.stderr


@pytest.mark.slow
def test_torchrun_trains_on_two_processes_with_one_checkpoint(two_facesets, tmp_path):
    """Two gloo ranks: each trains on its share, the gradients are averaged, the weights end the
    same on both (the run checks), rank 0 alone writes the run and reports; a rank killed
    between checkpoints leaves the last one as it was, and the next torchrun resumes from it."""
    import subprocess
    import sys

    from swapscope.distributed import weights_digest

    out = tmp_path / "run"

    def torchrun(epochs: int, fault: str = "") -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--standalone", "-m", "detect", "train", *map(str, two_facesets),
                   "--out", str(out), "--epochs", str(epochs), "--batch-size", "4",
                   "--steps-per-epoch", "2", "--device", "cpu", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1",
                                   "SWAPSCOPE_FAULT": fault})
        assert (done.returncode != 0) == bool(fault), done.stderr[-3000:]
        return done

    def kept() -> dict:
        return {p.relative_to(out): p.read_bytes() for folder in ("resume", "best")
                for p in (out / folder).rglob("*") if p.is_file()}

    summary = json.loads(torchrun(2).stdout)  # one report, from rank 0
    assert summary["ranks"] == 2 and len(summary["history"]) == 2
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best", "cache", "curves.png", "history.json", "resume"]
    best = load_detector(out / "best")
    if best.meta["epoch"] == 2:
        assert weights_digest(best.module) == summary["weights_sha256"]
    before = kept()
    torchrun(3, fault="train-epoch3-rank1")  # rank 1 dies in epoch 3: torchrun stops the job
    assert kept() == before and len(json.loads((out / "history.json").read_text())) == 2
    again = torchrun(3)
    assert [h["epoch"] for h in json.loads(again.stdout)["history"]] == [1, 2, 3]  # resumed
