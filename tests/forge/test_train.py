import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from forge.cli import app
from forge.models import SIZES, create_model, load_swap_model, model_names
from forge.train import FaceData, TrainConfig, generator_losses, random_warp
from swapscope.errors import InputError

runner = CliRunner()
FAST = ["--arch", "swap-ae-lite", "--batch-size", "2", "--device", "cpu", "--preview-every", "1"]
GAN_NOW = ["--gan-warmup", "0"]  # the CycleGAN terms from the first step


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("size", SIZES)
def test_every_registered_model_maps_faces_to_faces_and_masks(name, size):
    model = create_model(name, size).eval()
    faces = torch.rand(2, 3, size, size)
    with torch.no_grad():
        for side in ("a", "b"):
            rgb, mask = model(faces, side)
            assert rgb.shape == (2, 3, size, size) and mask.shape == (2, 1, size, size)
            assert 0 <= rgb.min() and rgb.max() <= 1 and 0 <= mask.min() and mask.max() <= 1
            patches = model.discriminators[side](faces)
            assert patches.shape[:2] == (2, 1) and patches.shape[2] >= 4


def test_unknown_model_and_size_list_the_choices():
    with pytest.raises(
        ValueError, match=r"unknown model 'x'; choose from \['swap-ae', 'swap-ae-lite'\]"
    ):
        create_model("x")
    with pytest.raises(ValueError, match=r"choose from \[64, 128, 256\]"):
        create_model("swap-ae", 96)


def test_training_samples_are_aligned_faces_with_their_hull_mask(two_facesets):
    data = FaceData(two_facesets[0], 64, 0.125)
    warped, target, mask = data.sample(0, None, TrainConfig())
    assert warped.shape == target.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert 0.3 < mask.mean() < 0.8  # the face fills most of a tight crop
    rng = np.random.default_rng(0)
    warped, target, mask = data.sample(0, rng, TrainConfig())
    assert warped.dtype == target.dtype == np.float32 and np.abs(warped - target).mean() > 0.005
    flat = np.full((64, 64, 3), 0.5, np.float32)
    assert np.allclose(
        random_warp(flat, rng, 0.05), 0.5
    )  # a warp moves pixels, never changes values


def test_two_steps_train_save_reload_and_infer(two_facesets, tmp_path):
    out = tmp_path / "model"
    result = runner.invoke(
        app,
        [
            "train", *map(str, two_facesets), "--out", str(out), "--steps", "2", *FAST, *GAN_NOW,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["step"] == 2 and summary["identities"] == {"a": "eileen", "b": "mirror"}
    for name in ("weights.safetensors", "config.json", "preview.png", "curves.png", "history.json"):
        assert (out / name).is_file(), name
    model, config = load_swap_model(out)
    assert config["kind"] == "swapscope.swap-model" and config["step"] == 2 and config["size"] == 64
    assert len(config["facesets"]["a"]["sha256"]) == 64
    with torch.no_grad():
        rgb, mask = model(torch.rand(1, 3, 64, 64), "b")
    assert rgb.shape == (1, 3, 64, 64) and mask.shape == (1, 1, 64, 64)
    import cv2

    grid = cv2.imread(str(out / "preview.png"))
    assert grid.shape == (
        4 * 128,
        6 * 128,
        3,
    )  # A, A->A, A->B, B, B->B, B->A; 4 rows, tiles >= 128 px


def test_resume_continues_the_same_run(two_facesets, tmp_path):
    from safetensors.torch import load_file

    whole, split = tmp_path / "whole", tmp_path / "split"
    args = [*map(str, two_facesets), *FAST, "--save-every", "2", "--gan-warmup", "1"]
    assert runner.invoke(app, ["train", *args, "--out", str(whole), "--steps", "4"]).exit_code == 0
    assert runner.invoke(app, ["train", *args, "--out", str(split), "--steps", "2"]).exit_code == 0
    resumed = runner.invoke(app, ["train", *args, "--out", str(split), "--steps", "4", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["step"] == 4
    history = json.loads((split / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert ["adv_a2b" in h for h in history] == [
        False, True, True, True,
    ]  # the warm-up is reconstruction only
    a, b = (
        load_file(str(whole / "weights.safetensors")),
        load_file(str(split / "weights.safetensors")),
    )
    for key in a:  # same data draws, optimiser moments and pools: the same weights
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_upsampling_starts_without_a_checkerboard():
    from forge.models import Upscale

    out = Upscale(8, 4)(torch.randn(2, 8, 5, 5))  # ICNR: the 4 sub-pixels of a 2x2 cell start equal
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        torch.testing.assert_close(out[..., dy::2, dx::2], out[..., 0::2, 0::2])


def _encoder_grad(model, batch, **weights) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    for p in model.discriminators.parameters():
        p.requires_grad_(False)
    total, parts, _ = generator_losses(model, batch, TrainConfig(**weights))
    total.backward()
    return torch.cat([p.grad.flatten() for p in model.encoder.parameters()]), parts


def test_cycle_and_adversarial_terms_change_the_gradients(two_facesets):
    torch.manual_seed(0)
    model = create_model("swap-ae-lite", 64)
    rng = np.random.default_rng(0)
    cfg = TrainConfig(batch_size=2)
    batch = {
        side: FaceData(path, 64, 0.125).batch(rng, cfg, "cpu")
        for side, path in zip("ab", two_facesets)
    }
    base = dict(adv_weight=0.0, cycle_weight=0.0, identity_weight=0.0)
    plain, parts = _encoder_grad(model, batch, gan=False)
    assert not any(k.startswith(("adv", "cycle")) for k in parts)
    off, _ = _encoder_grad(model, batch, **base)
    torch.testing.assert_close(off, plain)  # all GAN weights at 0 = the plain autoencoder
    with_cycle, _ = _encoder_grad(model, batch, **{**base, "cycle_weight": 1.0})
    with_adv, _ = _encoder_grad(model, batch, **{**base, "adv_weight": 0.1})
    assert (with_cycle - off).abs().max() > 1e-6
    assert (with_adv - off).abs().max() > 1e-6


def test_bad_inputs_exit_2(two_facesets, tmp_path):
    out = str(tmp_path / "m")
    same = runner.invoke(
        app, ["train", str(two_facesets[0]), str(two_facesets[0]), "--out", out, *FAST]
    )
    assert same.exit_code == 2 and "same face set" in same.stderr
    missing = runner.invoke(
        app, ["train", str(tmp_path), str(two_facesets[1]), "--out", out, *FAST]
    )
    assert missing.exit_code == 2 and "not a face set" in missing.stderr
    other = tmp_path / "detector"
    other.mkdir()
    (other / "weights.safetensors").write_bytes(b"")
    (other / "config.json").write_text(json.dumps({"kind": "swapscope.detector"}))
    wrong = runner.invoke(app, ["train", *map(str, two_facesets), "--out", str(other), *FAST])
    assert wrong.exit_code == 2 and "not a swap model" in wrong.stderr
    with pytest.raises(InputError, match="not a swap model"):
        load_swap_model(other)
    size = runner.invoke(
        app, ["train", *map(str, two_facesets), "--out", out, "--size", "96", *FAST]
    )
    assert size.exit_code == 2 and "--size" in size.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.previews").exists()


@pytest.mark.slow
def test_torchrun_trains_a_swap_model_on_two_processes(two_facesets, tmp_path):
    """Two gloo ranks, each its own batches, averaged gradients: the weights end the same on
    both (the run checks), one run folder, one report; a second run resumes it."""
    import os
    import subprocess
    import sys

    from swapscope.distributed import weights_digest

    out = tmp_path / "model"

    def torchrun(steps: int) -> dict:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--standalone", "-m", "forge", "train", *map(str, two_facesets),
                   "--out", str(out), "--steps", str(steps), *FAST, *GAN_NOW, "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)  # one report, from rank 0

    summary = torchrun(2)
    assert summary["ranks"] == 2 and summary["step"] == 2
    assert weights_digest(load_swap_model(out)[0]) == summary["weights_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]
    assert torchrun(3)["step"] == 3
