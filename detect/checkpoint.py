"""Detector checkpoints: a folder with ``weights.safetensors`` and ``config.json``, and the
``Detector`` record that loading one returns (read, hashed and built once; shared by detect
scan, eval report and eval harden).

Nothing here unpickles: weights are safetensors, everything else JSON (see
swapscope.checkpoint). A checkpoint of another kind, or a pickle handed to us, is refused with
one line. Loading never imports the training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detect.models import DataConfig, to_tensor
from swapscope import __version__
from swapscope.checkpoint import load_weights, read_config, replacing
from swapscope.config import check_keys
from swapscope.device import autocast_for
from swapscope.errors import InputError
from swapscope.files import sha256_file, writable_folder
from swapscope.formats.scan import DetectorInfo

DETECTOR_KIND = "swapscope.detector"


def save_detector(folder: Path, model: torch.nn.Module, meta: dict, half: bool = False) -> Path:
    from safetensors.torch import save_file

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
        save_file(tensors, str(tmp / "weights.safetensors"), metadata={"kind": DETECTOR_KIND})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return folder


def read_detector_config(path: str | Path) -> tuple[Path, dict]:
    """Find and check a detector checkpoint: the folder, or its weights file, or its config."""
    folder, config = read_config(path, DETECTOR_KIND, "detector",
                                 {"arch": str, "data_config": dict})
    check_keys(config["data_config"], {"input_size": int, "mean": list, "std": list,
                                       "interpolation": str}, folder / "config.json",
               "detector data_config")
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
        cfg = self.data_config
        for start in range(0, len(rois), batch_size):
            batch = torch.stack(
                [to_tensor(r, cfg.mean, cfg.std) for r in rois[start : start + batch_size]]
            )
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
    """Several detectors scoring as one: a face's fake probability is their mean."""

    members: tuple[Detector, ...]

    @property
    def info(self) -> DetectorInfo:
        if len(self.members) == 1:
            return self.members[0].info
        import hashlib

        digest = hashlib.sha256("+".join(m.sha256 for m in self.members).encode()).hexdigest()
        return DetectorInfo(path=" + ".join(str(m.folder) for m in self.members), sha256=digest,
                            arch=" + ".join(m.arch for m in self.members), val_auc=None)

    @property
    def threshold(self) -> tuple[float, str]:
        if len(self.members) == 1:
            return self.members[0].threshold
        return 0.5, "not calibrated (an ensemble): 0.5, the midpoint of the mean fake probability"

    @property
    def input_sizes(self) -> list[int]:
        return sorted({m.data_config.input_size for m in self.members})

    def probabilities(self, crops: dict[int, list[np.ndarray]], batch_size: int = 32) -> np.ndarray:
        """(N,) mean fake probability over the members, from the same N ROIs cut at each input
        size the members take (``crops``: size -> list of (S, S, 3) uint8 RGB)."""
        per_member = [m.probabilities(crops[m.data_config.input_size], batch_size)
                      for m in self.members]
        return np.mean(per_member, axis=0)


def load_detector(path: str | Path, device: str = "cpu") -> Detector:
    """Read, check, hash and build a detector checkpoint, once."""
    from detect.models import create_detector

    folder, config = read_detector_config(path)
    model, _ = create_detector(config["arch"], pretrained=False)
    load_weights(folder, model, config["arch"])
    return Detector(
        folder=folder, sha256=sha256_file(folder / "weights.safetensors"), arch=config["arch"],
        data_config=DataConfig.from_json(config["data_config"]), module=model.to(device).eval(),
        meta=config, device=device,
    )


def export_detector(source: str | Path, out: str | Path, half: bool = True,
                    overwrite: bool = False) -> Path:
    """Re-save a detector (e.g. as fp16 for release), recording the source weights' hash. An
    existing ``out`` is replaced only with ``overwrite`` and only if it is a detector checkpoint."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError(f"{out}: already exists; choose another --out, or --overwrite to "
                             "replace a detector checkpoint there")
        read_detector_config(out)  # anything but a detector checkpoint is refused, never replaced
        if not out.is_dir():
            raise InputError(f"{out}: not a checkpoint folder; refusing to replace it")
    writable_folder(out.parent)
    detector = load_detector(source)
    meta = {k: v for k, v in detector.meta.items() if k not in ("kind", "code_version", "dtype")}
    meta["exported_from"] = {"sha256": detector.sha256, "dtype": detector.meta.get("dtype")}
    return save_detector(Path(out), detector.module, meta, half=half)
