"""Pickle-free checkpoint pieces shared by every swapscope model: folders swapped in whole,
optimiser state as safetensors (tensors) + JSON (scalars), one resume state for both trainers
(``write_resume_state`` / ``read_resume_state``), and a refusal to read pickles.

A checkpoint is a folder with ``weights.safetensors`` and ``config.json`` whose ``kind`` says
what it is; ``read_config`` checks both before anything is loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from swapscope.config import check_keys, finite_number, read_json_object
from swapscope.errors import InputError, first_line
from swapscope.faults import kill_point
from swapscope.files import remove_leftovers

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}


def swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by ``tmp`` so that a kill leaves one of the two whole: the old
    folder is set aside as ``final.old`` first, and ``finish_swap_in`` puts it back if the kill came
    between the two renames."""

    finish_swap_in(final)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    kill_point("swap-in")
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def finish_swap_in(final: Path) -> None:
    """Finish what a killed ``swap_in`` left: a missing ``final`` whose old copy is still set
    aside is put back; temporary folders of dead writers beside it are removed."""

    final = Path(final)
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.is_dir():
        os.replace(old, final)
    remove_leftovers(final.parent)


def fresh_folder(final: Path) -> Path:
    """An empty temporary folder beside ``final`` to build it in."""
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


@contextlib.contextmanager
def replacing(final: Path) -> Iterator[Path]:
    """Build folder ``final`` anew: yields an empty temporary folder beside it, swapped in
    (``swap_in``) when the block ends; an exception or Ctrl-C/SIGTERM inside the block removes
    the temporary folder and leaves ``final`` as it was."""
    final = Path(final)
    tmp = fresh_folder(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, final)


def read_config(
    path: str | Path, kind: str, what: str, required: dict[str, type | tuple] | None = None
) -> tuple[Path, dict]:
    """Find and check a checkpoint of ``kind``: the folder, its weights file, or its config.
    ``required``: keys the config must hold, with their types (a hand-edited config is one
    InputError, never a traceback later)."""
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
    config = read_json_object(config_path, "checkpoint config")
    if config.get("kind") != kind:
        raise InputError(f"{path}: checkpoint is a {config.get('kind')!r}, not a {what} ({kind!r})")
    check_keys(config, required or {}, config_path, f"{what} config")
    return folder, config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/weights.safetensors``, or one InputError."""
    return read_tensors(Path(folder) / "weights.safetensors")


def load_weights(folder: Path, module: torch.nn.Module, what: str, prefix: str = "",
                 weights: dict[str, torch.Tensor] | None = None) -> None:
    """Load ``folder/weights.safetensors`` (or its ``weights``, read once by the caller) into
    ``module`` (any float dtype is cast to the module's); with ``prefix``, only the tensors
    named so, the prefix taken off."""
    weights = read_weights(folder) if weights is None else weights
    if prefix:
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
        )
    except RuntimeError as exc:
        raise InputError(
            f"{folder}: weights do not fit a {what} ({first_line(exc)})"
        ) from None


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to the safetensors file ``path``: the one writer of the format. A write
    that fails (a full disk) is one InputError, never the library's exception; inside
    ``replacing`` the previous checkpoint stays as it was."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except (SafetensorError, OSError) as exc:
        detail = str(exc).split("I/O error: ")[-1]
        raise InputError(f"{Path(path).name}: cannot be written ({detail}); the previous "
                         "checkpoint, if any, is kept") from None


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> dict:
    """Write the optimiser's tensors to ``path`` (safetensors); returns the JSON-able rest."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}/{name}"] = value
    save_tensors(tensors or {"_empty": torch.zeros(1)}, path)
    return {"param_groups": state["param_groups"], "scalars": scalars}


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or one InputError naming it (a header that lies about
    its length, a truncated file, not safetensors at all)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path, rest: dict) -> None:
    """Restore what ``save_optimizer`` wrote: the slots training filled (every tensor of its
    parameter's shape, each parameter with the same slots) and each group's learning rate, as
    the schedule left it. What the run's options set (betas, eps, weight decay) stays the run's:
    an edited resume state cannot break a step. One InputError naming the file otherwise."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    slots: dict[int, dict] = {}
    for key, value in read_tensors(path).items():
        if key == "_empty":
            continue
        index, _, name = key.partition("/")
        if not index.isdigit() or not 0 <= int(index) < len(params) or (
                value.ndim and value.shape != params[int(index)].shape
                ) or not value.is_floating_point() or (  # a step count: not negative
                value.ndim == 0 and not 0 <= float(value) <= 1e9):
            raise InputError(f"{path}: optimiser state {key} {tuple(value.shape)} "
                             f"{str(value.dtype).removeprefix('torch.')} does not fit the model")
        slots.setdefault(int(index), {})[name] = (
            value.to(params[int(index)].dtype) if value.ndim else value)
    scalars = rest.get("scalars")
    if not isinstance(scalars, dict):
        raise InputError(f"{path}: its resume state has no optimiser scalars")
    for key, value in scalars.items():
        index, _, name = key.partition("/")
        if not index.isdigit() or not 0 <= int(index) < len(params) or not finite_number(value):
            raise InputError(f"{path}: optimiser scalar {key} {value!r:.40} does not fit the model")
        slots.setdefault(int(index), {})[name] = value
    if len({tuple(sorted(s)) for s in slots.values()}) > 1:
        raise InputError(f"{path}: its parameters hold different optimiser slots (edited)")
    groups = [dict(g) for g in optimizer.state_dict()["param_groups"]]  # the run's options
    saved = rest.get("param_groups")
    if not isinstance(saved, list) or len(saved) != len(groups) or not all(
            isinstance(g, dict) for g in saved):
        raise InputError(f"{path}: its resume state has {len(groups)} optimiser group(s)' "
                         "settings missing or of another kind")
    for group, old in zip(groups, saved):
        for key in ("lr", "initial_lr"):
            if key in group and key in old:
                if not finite_number(old[key]) or old[key] <= 0:
                    raise InputError(f"{path}: resume state's learning rate {old[key]!r:.40} is "
                                     "not a positive number")
                group[key] = float(old[key])
    optimizer.load_state_dict({"state": slots, "param_groups": groups})


def restore_schedule(scheduler, saved, where: Path) -> None:
    """Put back how far a learning-rate schedule got (its step counts and last rates); what the
    run's options set (decay, base rates) stays the run's. One InputError naming ``where``."""
    state = scheduler.state_dict()
    if not isinstance(saved, dict):
        raise InputError(f"{where}: scheduler state is not an object")
    for key in ("last_epoch", "_step_count"):
        value = saved.get(key, state.get(key))
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**7:
            raise InputError(f"{where}: scheduler {key} {value!r:.40} is not a step count")
        state[key] = value
    last = saved.get("_last_lr", state.get("_last_lr"))
    if not isinstance(last, list) or len(last) != len(state.get("_last_lr", last)) or not all(
            finite_number(v) and v > 0 for v in last):
        raise InputError(f"{where}: scheduler _last_lr is not {len(state['_last_lr'])} rates")
    state["_last_lr"] = [float(v) for v in last]
    scheduler.load_state_dict(state)


def check_history(history: list, counter: str, done: int, where: Path,
                  required: tuple[str, ...] = (), every: bool = False) -> None:
    """A resume state's history, as the run plots and ranks it: records whose ``counter`` (step,
    epoch) rises to at most ``done`` (with ``every``: 1, 2, ... ``done``, one per epoch), each
    value a number (NaN allowed: an AUC of a one-class set) and the ``required`` ones there."""
    previous = 0
    for number, record in enumerate(history, 1):
        count = record.get(counter) if isinstance(record, dict) else None
        if (not isinstance(count, int) or isinstance(count, bool)
                or not previous < count <= done or (every and count != number)
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in record.values())
                or any(k not in record for k in required)):
            raise InputError(f"{where}: history record {number} is not a {counter}'s numbers")
        previous = count
    if every and len(history) != done:
        raise InputError(f"{where}: resume state has {len(history)} records of history for "
                         f"{done} {counter}s done")


def restore_rng(state: dict, where: Path, rng: np.random.Generator | None = None) -> None:
    """Put back the random states a resume state recorded (``torch_rng``, and ``numpy_rng``
    into ``rng``); states of the wrong length or type are one InputError naming ``where``."""
    current = torch.get_rng_state()
    saved = state["torch_rng"]
    if len(saved) != current.numel() or not all(
            isinstance(v, int) and 0 <= v < 256 for v in saved):
        raise InputError(f"{where}: torch_rng is not a random state of this torch "
                         f"({current.numel()} bytes)")
    if rng is not None:
        try:
            rng.bit_generator.state = state["numpy_rng"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: numpy_rng is not a random state ({exc})") from None
    torch.set_rng_state(torch.tensor(saved, dtype=torch.uint8))


# --- one resume state: ``resume/state.json`` beside the tensors, as both trainers keep it ---

def write_resume_state(folder: Path, counter: str, done: int, identity: dict, history: list,
                       **rest) -> None:
    """``folder/state.json``: how far the run got (``counter``: step, epoch), what must match to
    continue it (``identity``), its ``history``, torch's random state and the trainer's ``rest``
    (the JSON halves of its optimisers, its scheduler, other random states)."""
    state = {counter: done, "identity": identity, "history": history, **rest,
             "torch_rng": torch.get_rng_state().tolist()}
    (Path(folder) / "state.json").write_text(json.dumps(state, default=float))


def read_resume_state(path: Path, out: Path, counter: str, rest: dict, expected: dict,
                      required: tuple[str, ...] = (), every: bool = False) -> dict:
    """A ``state.json`` that ``write_resume_state`` wrote, as untrusted as any file: every key
    typed (``rest``: the trainer's own, name -> type), the identity the one this run
    ``expected`` (else: another run, named by what differs), the history counted up to it
    (``check_history``). One InputError otherwise; the tensors are loaded under ``restoring``."""
    state = read_json_object(path, "resume state")
    check_keys(state, {counter: int, "identity": dict, "history": list, "torch_rng": list,
                       **rest}, path, "resume state")
    if state["identity"] != expected:
        # named by this run's keys only: the file's own may be anything, newlines included
        differ = [k for k in sorted(expected) if state["identity"].get(k) != expected[k]]
        raise InputError(f"{out}: holds a different training run (other "
                         f"{', '.join(differ) or 'settings'}); choose another --out")
    check_history(state["history"], counter, state[counter], path, required, every)
    return state


@contextlib.contextmanager
def restoring(out: Path, start_over: str) -> Iterator[None]:
    """Loading a checked resume state into the run's model, optimisers and the rest: what still
    does not fit (a tensor of another shape, a missing group) is one InputError that says to
    move ``start_over`` away to start over."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
        raise InputError(f"{out}: resume state does not load ({first_line(exc)}); move "
                         f"{start_over} away to start over") from None
