"""Detector checkpoints: a folder with ``weights.safetensors`` and ``config.json``.

Nothing here unpickles: weights are safetensors, everything else JSON. Optimiser state for
resuming is split the same way (tensors in safetensors, scalars in JSON). A checkpoint of
another kind, or a pickle handed to us, is refused with one line.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from forge import __version__
from forge.errors import InputError

DETECTOR_KIND = "swapscope.detector"
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by ``tmp`` so that a kill leaves one of the two whole."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def save_detector(folder: Path, model: torch.nn.Module, meta: dict, half: bool = False) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "weights.safetensors"), metadata={"kind": DETECTOR_KIND})
    config = {"kind": DETECTOR_KIND, "code_version": __version__, "dtype": str(dtype).replace("torch.", ""), **meta}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    _swap_in(tmp, folder)
    return folder


def read_detector_config(path: str | Path) -> tuple[Path, dict]:
    """Find and check a detector checkpoint: the folder, or its weights file, or its config."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint")
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(f"{path}: refusing to load a pickle checkpoint (it could run code); "
                         "swapscope checkpoints are safetensors + config.json")
    folder = path if path.is_dir() else path.parent
    config_path = folder / "config.json"
    if not config_path.is_file() or not (folder / "weights.safetensors").is_file():
        raise InputError(f"{path}: not a swapscope checkpoint (needs weights.safetensors and config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{config_path}: checkpoint config does not parse") from None
    if config.get("kind") != DETECTOR_KIND:
        raise InputError(f"{path}: checkpoint is a {config.get('kind')!r}, not a detector ({DETECTOR_KIND!r})")
    return folder, config


def load_detector(path: str | Path, device: str = "cpu"):
    """(model in eval mode, DataConfig, config dict) of a detector checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from detect.models import DataConfig, create_detector

    folder, config = read_detector_config(path)
    model, _ = create_detector(config["arch"], pretrained=False)
    try:
        weights = load_file(str(folder / "weights.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{folder}: weights do not load ({exc})") from None
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    except RuntimeError as exc:
        raise InputError(f"{folder}: weights do not fit a {config['arch']} ({str(exc).splitlines()[0]})") from None
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

    tmp = Path(out) / f"resume.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in opt["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}/{name}"] = value
    save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp / "optimizer.safetensors"))
    state = {"epoch": epoch, "history": history, "identity": identity, "param_groups": opt["param_groups"],
             "optimizer_scalars": scalars, "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state().tolist()}
    (tmp / "state.json").write_text(json.dumps(state, default=float))
    _swap_in(tmp, Path(out) / "resume")


def load_resume_state(out: Path, model, optimizer, scheduler, expected: dict) -> dict | None:
    from safetensors.torch import load_file

    folder = Path(out) / "resume"
    if not (folder / "state.json").is_file():
        return None
    state = json.loads((folder / "state.json").read_text())
    if state["identity"] != expected:
        raise InputError(f"{out}: holds a different training run ({state['identity']}); use another --out")
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    tensors = load_file(str(folder / "optimizer.safetensors"))
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key == "_empty":
            continue
        index, name = key.split("/", 1)
        slots.setdefault(int(index), {})[name] = value
    for key, value in state["optimizer_scalars"].items():
        index, name = key.split("/", 1)
        slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    return state
