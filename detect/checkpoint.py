"""Detector checkpoints: a folder with ``weights.safetensors`` and ``config.json``.

Nothing here unpickles: weights are safetensors, everything else JSON (see forge.checkpoint).
Optimiser state for resuming is split the same way. A checkpoint of another kind, or a pickle
handed to us, is refused with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from forge import __version__
from forge.checkpoint import fresh_folder, load_optimizer, load_weights, read_config, save_optimizer, swap_in
from forge.errors import InputError

DETECTOR_KIND = "swapscope.detector"


def save_detector(folder: Path, model: torch.nn.Module, meta: dict, half: bool = False) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = fresh_folder(folder)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "weights.safetensors"), metadata={"kind": DETECTOR_KIND})
    config = {"kind": DETECTOR_KIND, "code_version": __version__, "dtype": str(dtype).replace("torch.", ""), **meta}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    swap_in(tmp, folder)
    return folder


def read_detector_config(path: str | Path) -> tuple[Path, dict]:
    """Find and check a detector checkpoint: the folder, or its weights file, or its config."""
    return read_config(path, DETECTOR_KIND, "detector")


def load_detector(path: str | Path, device: str = "cpu"):
    """(model in eval mode, DataConfig, config dict) of a detector checkpoint."""
    from detect.models import DataConfig, create_detector

    folder, config = read_detector_config(path)
    model, _ = create_detector(config["arch"], pretrained=False)
    load_weights(folder, model, config["arch"])
    return model.to(device).eval(), DataConfig.from_json(config["data_config"]), config


def export_detector(source: str | Path, out: str | Path, half: bool = True) -> Path:
    """Re-save a detector (e.g. as fp16 for release), recording the source weights' hash."""
    from forge.media import sha256_file

    folder, config = read_detector_config(source)
    model, _, _ = load_detector(folder)
    meta = {k: v for k, v in config.items() if k not in ("kind", "code_version", "dtype")}
    meta["exported_from"] = {"sha256": sha256_file(folder / "weights.safetensors"), "dtype": config.get("dtype")}
    return save_detector(Path(out), model, meta, half=half)


def save_resume_state(out: Path, model, optimizer, scheduler, epoch: int, history: list, identity: dict) -> None:
    from safetensors.torch import save_file

    final = Path(out) / "resume"
    tmp = fresh_folder(final)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    optimizer_rest = save_optimizer(optimizer, tmp / "optimizer.safetensors")
    state = {"epoch": epoch, "history": history, "identity": identity, "optimizer": optimizer_rest,
             "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state().tolist()}
    (tmp / "state.json").write_text(json.dumps(state, default=float))
    swap_in(tmp, final)


def load_resume_state(out: Path, model, optimizer, scheduler, expected: dict) -> dict | None:
    from safetensors.torch import load_file

    folder = Path(out) / "resume"
    if not (folder / "state.json").is_file():
        return None
    state = json.loads((folder / "state.json").read_text())
    if state["identity"] != expected:
        raise InputError(f"{out}: holds a different training run ({state['identity']}); use another --out")
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    load_optimizer(optimizer, folder / "optimizer.safetensors", state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    return state
