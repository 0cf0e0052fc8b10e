"""Detector checkpoints: a folder with ``weights.safetensors`` and ``config.json``, and the
``Detector`` record that loading one returns (read, hashed and built once; shared by detect
scan, eval report and eval harden).

An ensemble checkpoint (``detect ensemble``) is one folder of the same two files: every member's
weights under ``member<i>.`` in one safetensors file, every member's config in ``members``, and
the ensemble's own calibrated threshold, since the mean of several detectors' probabilities
needs a threshold of its own. ``load_checkpoint`` reads either kind as an ``Ensemble``.

Nothing here unpickles: weights are safetensors, everything else JSON (see
swapscope.checkpoint). A checkpoint of another kind, or a pickle handed to us, is refused with
one line. Loading never imports the training code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detect.models import DataConfig, create_detector
from swapscope import __version__
from swapscope.checkpoint import load_weights, read_config, read_weights, replacing, save_tensors
from swapscope.config import check_keys, read_json_object
from swapscope.device import autocast_for
from swapscope.errors import InputError
from swapscope.files import sha256_file, writable_folder
from swapscope.formats.scan import DetectorInfo

DETECTOR_KIND = "swapscope.detector"
ENSEMBLE_KIND = "swapscope.ensemble"
_OWN_KEYS = ("kind", "code_version", "dtype", "threshold")  # a checkpoint's, not its network's


def save_detector(folder: Path, model: torch.nn.Module, meta: dict, half: bool = False) -> Path:
    folder = Path(folder)
    dtype = torch.float16 if half else torch.float32
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    config = {
        "kind": DETECTOR_KIND, "code_version": __version__,
        "dtype": str(dtype).replace("torch.", ""), **meta,
    }
    with replacing(folder) as tmp:
        save_tensors(tensors, tmp / "weights.safetensors", metadata={"kind": DETECTOR_KIND})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return folder


def read_detector_config(path: str | Path) -> tuple[Path, dict]:
    """Find and check a detector checkpoint: the folder, or its weights file, or its config."""
    folder, config = read_config(path, DETECTOR_KIND, "detector",
                                 {"arch": str, "data_config": dict})
    DataConfig.from_json(config["data_config"], f"{folder / 'config.json'}")
    return folder, config


@dataclass(frozen=True, slots=True, eq=False)
class Detector:
    """A loaded detector: its network in eval mode and what it came with."""

    folder: Path  # the checkpoint folder
    sha256: str  # of weights.safetensors
    arch: str
    data_config: DataConfig  # input size and normalisation the network was trained with
    module: torch.nn.Module  # (B, 3, S, S) normalised -> (B, 2) logits; eval mode, on ``device``
    meta: dict  # the checkpoint's config.json
    device: str

    @property
    def info(self) -> DetectorInfo:
        return DetectorInfo(path=str(self.folder), sha256=self.sha256, arch=self.arch,
                            val_auc=self.meta.get("val_auc"))

    @torch.no_grad()
    def probabilities(self, rois: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """(N,) fake probabilities of (S, S, 3) uint8 RGB ROI crops, ``batch_size`` per call."""
        out = []
        mean, std = (np.asarray(v, np.float32) for v in (self.data_config.mean,
                                                         self.data_config.std))
        for start in range(0, len(rois), batch_size):
            pixels = np.stack(rois[start : start + batch_size]).astype(np.float32) / 255.0
            # (B, S, S, 3) seen as (B, 3, S, S): channels-last, the module's own layout
            batch = torch.from_numpy((pixels - mean) / std).permute(0, 3, 1, 2)
            with autocast_for(self.device):
                logits = self.module(batch.to(self.device))  # (B, 2)
            out.append(logits.float().softmax(-1)[:, 1].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    @property
    def threshold(self) -> tuple[float, str]:
        """(verdict threshold, how it was chosen): the calibrated one (``detect calibrate``), else
        0.5, the probability's midpoint."""
        calibrated = self.meta.get("threshold")
        if isinstance(calibrated, dict) and isinstance(calibrated.get("value"), int | float):
            return float(calibrated["value"]), "calibrated: " + str(calibrated.get("how", ""))
        return 0.5, "not calibrated: 0.5, the midpoint of the fake probability"


@dataclass(frozen=True, slots=True, eq=False)
class Ensemble:
    """Several detectors scoring as one: a face's fake probability is their mean. A single
    detector is an ensemble of one; an ensemble checkpoint carries its own ``folder`` and
    ``meta`` (its config.json, with its calibrated threshold); detectors put together at scan
    time (``--model A --model B``) have neither."""

    members: tuple[Detector, ...]
    folder: Path | None = None  # the ensemble checkpoint's folder
    sha256: str = ""  # of its weights.safetensors
    meta: dict = field(default_factory=dict)  # its config.json

    @property
    def checkpoint(self) -> Path:
        """The folder it was loaded from: the ensemble's, or its one detector's."""
        return self.folder if self.folder is not None else self.members[0].folder

    @property
    def info(self) -> DetectorInfo:
        archs = " + ".join(m.arch for m in self.members)
        if self.folder is not None:
            return DetectorInfo(path=str(self.folder), sha256=self.sha256, arch=archs,
                                val_auc=None)
        if len(self.members) == 1:
            return self.members[0].info
        digest = hashlib.sha256("+".join(m.sha256 for m in self.members).encode()).hexdigest()
        return DetectorInfo(path=" + ".join(str(m.folder) for m in self.members), sha256=digest,
                            arch=archs, val_auc=None)

    @property
    def threshold(self) -> tuple[float, str]:
        if self.folder is None and len(self.members) == 1:
            return self.members[0].threshold
        calibrated = self.meta.get("threshold")
        if isinstance(calibrated, dict) and isinstance(calibrated.get("value"), int | float):
            return float(calibrated["value"]), "calibrated: " + str(calibrated.get("how", ""))
        return 0.5, ("not calibrated (an ensemble; detect ensemble, then detect calibrate): 0.5, "
                     "the midpoint of the mean fake probability")

    @property
    def identities(self) -> dict[str, list[str]]:
        """The people any member trained on, and the validation people none of them did."""
        trained = sorted({i for m in self.members for i in m.meta.get("train_identities") or []})
        held = {i for m in self.members for i in m.meta.get("val_identities") or []}
        return {"train_identities": trained, "val_identities": sorted(held - set(trained))}

    @property
    def input_sizes(self) -> list[int]:
        return sorted({m.data_config.input_size for m in self.members})

    def probabilities(self, crops: dict[int, list[np.ndarray]], batch_size: int = 32) -> np.ndarray:
        """(N,) mean fake probability over the members, from the same N ROIs cut at each input
        size the members take (``crops``: size -> list of (S, S, 3) uint8 RGB)."""
        per_member = [m.probabilities(crops[m.data_config.input_size], batch_size)
                      for m in self.members]
        return np.mean(per_member, axis=0)


def combine(ensembles: list[Ensemble]) -> Ensemble:
    """Detectors given together (``--model A --model B``) as one: their members, averaged."""
    if len(ensembles) == 1:
        return ensembles[0]
    return Ensemble(tuple(m for e in ensembles for m in e.members))


def _kind(path: str | Path) -> str | None:
    """The ``kind`` a checkpoint's config says, or None where there is no readable config (the
    loader then says what is wrong)."""
    path = Path(path)
    config = (path if path.is_dir() else path.parent) / "config.json"
    try:
        return read_json_object(config, "checkpoint config").get("kind")
    except InputError:
        return None


def checkpoint_folder(path: str | Path) -> Path:
    """The folder of a detector or ensemble checkpoint, checked without loading its networks."""
    if _kind(path) == ENSEMBLE_KIND:
        return read_config(path, ENSEMBLE_KIND, "detector ensemble", {"members": list})[0]
    return read_detector_config(path)[0]


def load_checkpoint(path: str | Path, device: str = "cpu") -> Ensemble:
    """A detector or an ensemble checkpoint, read, checked, hashed and built once."""
    if _kind(path) == ENSEMBLE_KIND:
        return load_ensemble(path, device)
    return Ensemble((load_detector(path, device),))


def load_ensemble(path: str | Path, device: str = "cpu") -> Ensemble:
    folder, config = read_config(path, ENSEMBLE_KIND, "detector ensemble", {"members": list})
    if not config["members"]:
        raise InputError(f"{folder}: the ensemble has no members")
    weights = read_weights(folder)
    members = []
    for index, member in enumerate(config["members"]):
        if not isinstance(member, dict):
            raise InputError(f"{folder}/config.json: member {index} is not an object")
        where = f"{folder}/config.json member {index}"
        check_keys(member, {"arch": str, "data_config": dict, "sha256": str}, where, "detector")
        data_config = DataConfig.from_json(member["data_config"], where)
        model, _ = create_detector(member["arch"], pretrained=False)
        load_weights(folder, model, member["arch"], prefix=f"member{index}.", weights=weights)
        members.append(Detector(
            folder=folder, sha256=member["sha256"], arch=member["arch"],
            data_config=data_config,
            module=_for_inference(model, device), meta=member, device=device))
    return Ensemble(tuple(members), folder=folder,
                    sha256=sha256_file(folder / "weights.safetensors"), meta=config)


def save_ensemble(sources: list[str | Path], out: str | Path, half: bool = True,
                  overwrite: bool = False, threshold: dict | None = None) -> Path:
    """One checkpoint of the detectors (or ensembles, their members taken) at ``sources``:
    each member's weights and config, and the people any member trained on. Its threshold is
    chosen afterwards (``detect calibrate``): the members' own do not carry over to their mean
    (``threshold``: an ensemble's own record, kept when one ensemble is re-saved)."""
    out = _replaceable(out, overwrite)
    ensemble = combine([load_checkpoint(source) for source in sources])
    dtype = torch.float16 if half else torch.float32
    tensors, members = {}, []
    for index, member in enumerate(ensemble.members):
        for key, value in member.module.state_dict().items():
            value = value.detach().cpu()
            tensors[f"member{index}.{key}"] = (value.to(dtype) if value.is_floating_point()
                                               else value).contiguous()
        members.append({**{k: v for k, v in member.meta.items() if k not in _OWN_KEYS},
                        "sha256": member.sha256,
                        "source": member.meta.get("source", str(member.folder))})
    config = {"kind": ENSEMBLE_KIND, "code_version": __version__,
              "dtype": str(dtype).replace("torch.", ""), "members": members,
              **ensemble.identities, **({"threshold": threshold} if threshold else {})}
    with replacing(out) as tmp:
        save_tensors(tensors, tmp / "weights.safetensors", metadata={"kind": ENSEMBLE_KIND})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return out


def split_members(path: str | Path, out: Path) -> list[Path]:
    """Each member of a detector or ensemble checkpoint as a detector checkpoint of its own
    under ``out`` (``out/<i>``; for training one with ``--init``); a detector is its own one
    member, not copied. Each records which ensemble it came from."""
    if _kind(path) != ENSEMBLE_KIND:
        folder, _ = read_detector_config(path)
        return [folder]
    ensemble = load_ensemble(path)
    folders = []
    for index, member in enumerate(ensemble.members):
        meta = {k: v for k, v in member.meta.items() if k not in _OWN_KEYS}
        meta["ensemble_member"] = {"ensemble": str(ensemble.folder),
                                   "ensemble_sha256": ensemble.sha256, "index": index}
        folder = Path(out) / str(index)
        if not (folder / "config.json").is_file():
            save_detector(folder, member.module, meta, half=ensemble.meta.get("dtype") == "float16")
        folders.append(folder)
    return folders


def _replaceable(out: str | Path, overwrite: bool) -> Path:
    """``out`` if a checkpoint may be written there: new, or (with ``overwrite``) a detector or
    ensemble checkpoint folder; anything else is never replaced."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError(f"{out}: already exists; choose another --out, or --overwrite to "
                             "replace a detector checkpoint there")
        if _kind(out) not in (DETECTOR_KIND, ENSEMBLE_KIND) or not out.is_dir() or out.is_symlink():
            raise InputError(f"{out}: not a detector checkpoint folder; refusing to replace it")
    writable_folder(out.parent)
    return out


def _for_inference(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """``model`` in eval mode on ``device``, channels-last: the layout the CPU's and CUDA's
    convolutions run fastest in (efficientnet_lite0 on 2 cores: 1.6x the default layout;
    ``bench/scan.py``). Scores are the same to float rounding."""
    return model.to(device).eval().to(memory_format=torch.channels_last)


def load_detector(path: str | Path, device: str = "cpu") -> Detector:
    """Read, check, hash and build a detector checkpoint, once."""

    folder, config = read_detector_config(path)
    model, _ = create_detector(config["arch"], pretrained=False)
    load_weights(folder, model, config["arch"])
    return Detector(
        folder=folder, sha256=sha256_file(folder / "weights.safetensors"), arch=config["arch"],
        data_config=DataConfig.from_json(config["data_config"]),
        module=_for_inference(model, device),
        meta=config, device=device,
    )


def export_detector(source: str | Path, out: str | Path, half: bool = True,
                    overwrite: bool = False) -> Path:
    """Re-save a detector (e.g. as fp16 for release), recording the source weights' hash. An
    existing ``out`` is replaced only with ``overwrite`` and only if it is a detector checkpoint.
    An ensemble is re-saved whole, its threshold kept."""
    if _kind(source) == ENSEMBLE_KIND:
        _, config = read_config(source, ENSEMBLE_KIND, "detector ensemble")
        return save_ensemble([source], out, half=half, overwrite=overwrite,
                             threshold=config.get("threshold"))
    out = _replaceable(out, overwrite)
    detector = load_detector(source)
    meta = {k: v for k, v in detector.meta.items() if k not in ("kind", "code_version", "dtype")}
    meta["exported_from"] = {"sha256": detector.sha256, "dtype": detector.meta.get("dtype")}
    return save_detector(Path(out), detector.module, meta, half=half)
