"""Pickle-free checkpoint pieces shared by every swapscope model: folders swapped in whole,
optimiser state as safetensors (tensors) + JSON (scalars), and a refusal to read pickles.

A checkpoint is a folder with ``weights.safetensors`` and ``config.json`` whose ``kind`` says
what it is; ``read_config`` checks both before anything is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from swapscope.errors import InputError

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}


def swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by ``tmp`` so that a kill leaves one of the two whole."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def fresh_folder(final: Path) -> Path:
    """An empty temporary folder beside ``final`` to build it in."""
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def read_config(path: str | Path, kind: str, what: str) -> tuple[Path, dict]:
    """Find and check a checkpoint of ``kind``: the folder, its weights file, or its config."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint")
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(f"{path}: refusing to load a pickle checkpoint (it could run code); "
                         "swapscope checkpoints are safetensors + config.json")
    folder = path if path.is_dir() else path.parent
    config_path = folder / "config.json"
    if not config_path.is_file() or not (folder / "weights.safetensors").is_file():
        raise InputError(
            f"{path}: not a swapscope checkpoint (needs weights.safetensors and config.json)"
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{config_path}: checkpoint config does not parse") from None
    if config.get("kind") != kind:
        raise InputError(f"{path}: checkpoint is a {config.get('kind')!r}, not a {what} ({kind!r})")
    return folder, config


def load_weights(folder: Path, module: torch.nn.Module, what: str) -> None:
    """Load ``folder/weights.safetensors`` into ``module`` (any float dtype is cast to the
    module's)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(folder / "weights.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{folder}: weights do not load ({exc})") from None
    try:
        module.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
        )
    except RuntimeError as exc:
        raise InputError(
            f"{folder}: weights do not fit a {what} ({str(exc).splitlines()[0]})"
        ) from None


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> dict:
    """Write the optimiser's tensors to ``path`` (safetensors); returns the JSON-able rest."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}/{name}"] = value
    save_file(tensors or {"_empty": torch.zeros(1)}, str(path))
    return {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path, rest: dict) -> None:
    from safetensors.torch import load_file

    slots: dict[int, dict] = {}
    for key, value in load_file(str(path)).items():
        if key == "_empty":
            continue
        index, name = key.split("/", 1)
        slots.setdefault(int(index), {})[name] = value
    for key, value in rest["scalars"].items():
        index, name = key.split("/", 1)
        slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": rest["param_groups"]})
