"""Face-swap networks: one encoder shared by both identities, one decoder per identity (each
also predicting a mask), and a PatchGAN discriminator per identity. One registry.

The classic deepfakes autoencoder: strided 5x5 convolutions down to 4x4, a dense bottleneck,
back up to 8x8; each decoder upsamples (conv + pixel shuffle) to the crop size and ends in an
RGB image and a mask. Because the encoder is shared, decoding A's code with B's decoder keeps
A's pose, expression and light and gives B's identity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from swapscope.checkpoint import load_weights, read_config
from swapscope.config import check_keys
from swapscope.errors import InputError
from swapscope.faces.align import ALIGNMENTS

SIZES = (64, 128, 256)
IDENTITIES = ("a", "b")


@dataclass(frozen=True)
class SwapSpec:
    base: int  # channels of the first encoder convolution; doubled per downsampling
    max_channels: int
    latent: int  # width of the dense bottleneck
    disc_base: int  # channels of the discriminator's first convolution


_MODELS: dict[str, SwapSpec] = {
    "swap-ae": SwapSpec(base=64, max_channels=512, latent=512, disc_base=64),
    "swap-ae-lite": SwapSpec(base=32, max_channels=256, latent=256, disc_base=32),  # fast CPU runs
}


def model_names() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, size: int = 64) -> SwapModel:
    """A swap model by name, for ``size`` px aligned crops."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {model_names()}")
    if size not in SIZES:
        raise ValueError(f"unsupported size {size}; choose from {list(SIZES)}")
    return SwapModel(name, size, _MODELS[name])


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)


class Upscale(nn.Sequential):
    """(B, cin, h, w) -> (B, cout, 2h, 2w): conv to 4x the channels, then pixel shuffle.

    ICNR initialisation (Aitken et al. 2017): the four sub-pixel kernels of each output channel
    start equal, so the layer starts as nearest-neighbour upsampling of one convolution instead
    of printing a checkerboard that training must first unlearn.
    """

    def __init__(self, cin: int, cout: int) -> None:
        conv = _conv(cin, cout * 4, 3)
        with torch.no_grad():
            kernel = torch.empty(cout, cin, 3, 3)
            nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))  # nn.Conv2d's own default
            conv.weight.copy_(kernel.repeat_interleave(4, dim=0))  # PixelShuffle reads c*4 .. c*4+3
            conv.bias.copy_(conv.bias.view(cout, 4)[:, :1].expand(cout, 4).reshape(-1))
        super().__init__(conv, nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class Encoder(nn.Module):
    """(B, 3, S, S) in [0, 1] -> (B, C, 8, 8) code."""

    def __init__(self, size: int, spec: SwapSpec) -> None:
        super().__init__()
        layers, cin = [], 3
        for i in range(int(math.log2(size)) - 2):  # S -> 4 px
            cout = min(spec.base * 2**i, spec.max_channels)
            layers += [_conv(cin, cout, 5, 2), nn.LeakyReLU(0.1)]
            cin = cout
        self.down = nn.Sequential(*layers)
        self.channels = cin
        self.bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, spec.latent),
                                        nn.Linear(spec.latent, cin * 16))
        self.up = Upscale(cin, cin // 2)
        self.out_channels = cin // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)  # (B, C, 4, 4)
        x = self.bottleneck(x).view(-1, self.channels, 4, 4)
        return self.up(x)  # (B, C/2, 8, 8)


class Decoder(nn.Module):
    """(B, C, 8, 8) code -> (rgb (B, 3, S, S) in [0, 1], mask (B, 1, S, S) in [0, 1])."""

    def __init__(self, size: int, cin: int) -> None:
        super().__init__()
        layers = []
        for _ in range(int(math.log2(size)) - 3):  # 8 px -> S
            cout = max(cin // 2, 16)
            layers.append(Upscale(cin, cout))
            cin = cout
        self.up = nn.Sequential(*layers)
        self.head = _conv(cin, 4, 5)

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.sigmoid(self.head(self.up(code)))
        return out[:, :3], out[:, 3:]


class PatchDiscriminator(nn.Sequential):
    """PatchGAN (Isola et al. 2017), 3 layers: (B, 3, S, S) -> (B, 1, h, w) real/fake logits
    for overlapping patches; trained with the least-squares loss."""

    def __init__(self, base: int = 64) -> None:
        layers: list[nn.Module] = [nn.Conv2d(3, base, 4, 2, 1), nn.LeakyReLU(0.2)]
        cin = base
        for stride, mult in ((2, 2), (2, 4), (1, 8)):
            layers += [nn.Conv2d(cin, base * mult, 4, stride, 1), nn.InstanceNorm2d(base * mult),
                       nn.LeakyReLU(0.2)]
            cin = base * mult
        layers.append(nn.Conv2d(cin, 1, 4, 1, 1))
        super().__init__(*layers)


class SwapModel(nn.Module):
    """The shared encoder, a decoder per identity ("a", "b"), a discriminator per identity."""

    def __init__(self, name: str, size: int, spec: SwapSpec) -> None:
        super().__init__()
        self.name, self.size, self.spec = name, size, spec
        self.encoder = Encoder(size, spec)
        self.decoders = nn.ModuleDict(
            {k: Decoder(size, self.encoder.out_channels) for k in IDENTITIES}
        )
        self.discriminators = nn.ModuleDict(
            {k: PatchDiscriminator(spec.disc_base) for k in IDENTITIES}
        )

    def forward(self, faces: torch.Tensor, to: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned faces (B, 3, S, S) in [0, 1] -> identity ``to``'s (rgb, mask)."""
        return self.decoders[to](self.encoder(faces))

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.decoders.parameters()]

    def describe(self) -> dict:
        return {"arch": self.name, "size": self.size, "spec": asdict(self.spec)}


# --- checkpoints: loading only (forge train saves them) ------------------------------------

SWAP_MODEL_KIND = "swapscope.swap-model"


@dataclass(frozen=True, slots=True)
class SwapCheckpoint:
    """A checked ``forge train`` checkpoint, as the forge reads it (beside detect's
    ``Detector``): where it is and what its config says."""

    folder: Path
    arch: str
    size: int  # px of the square face crop the model sees and draws
    padding: float  # of the crop around the alignment template
    step: int  # training steps behind these weights
    align: str  # frontal | pose (models before 2026-12-05: frontal)
    identities: dict[str, str]  # "a" / "b" -> the person of each decoder
    config: dict  # the whole config.json (recorded in manifests and credentials)


def read_swap_config(path: str | Path) -> SwapCheckpoint:
    """Find and check a ``forge train`` checkpoint (one InputError naming it otherwise)."""
    folder, config = read_config(path, SWAP_MODEL_KIND, "swap model", {
        "arch": str, "size": int, "padding": (int, float), "step": int, "identities": dict,
    })
    where = folder / "config.json"
    check_keys(config["identities"], {"a": str, "b": str}, where, "swap model identities")
    align = config.get("align", "frontal")
    if align not in ALIGNMENTS:
        raise InputError(f"{where}: swap model align {align!r} is not one of {list(ALIGNMENTS)}")
    return SwapCheckpoint(folder=folder, arch=config["arch"], size=config["size"],
                          padding=float(config["padding"]), step=config["step"], align=align,
                          identities={k: config["identities"][k] for k in ("a", "b")},
                          config=config)


def swap_model_from(checkpoint: SwapCheckpoint, device: str = "cpu") -> SwapModel:
    """The model of a checked checkpoint, in eval mode on ``device``."""
    try:
        model = create_model(checkpoint.arch, checkpoint.size)
    except (KeyError, ValueError) as exc:
        raise InputError(f"{checkpoint.folder}: swap model config is not usable ({exc})") from None
    load_weights(checkpoint.folder, model, checkpoint.arch)
    return model.to(device).eval()


def load_swap_model(path: str | Path, device: str = "cpu") -> tuple[SwapModel, dict]:
    """(model in eval mode, config) of a ``forge train`` checkpoint."""
    checkpoint = read_swap_config(path)
    return swap_model_from(checkpoint, device), checkpoint.config
