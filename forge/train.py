"""``forge train``: the shared-encoder autoencoder with CycleGAN losses, one readable loop.

Data: the aligned faces of two face sets, re-cropped to the model's size and padding, under
random rotation/scale/shift, flips and colour jitter; the network sees a randomly *warped* copy
(the classic deepfakes augmentation) and must return the unwarped face and its landmark-hull mask.

Losses per step, each weight a knob (0 switches a term off; ``gan=False`` the whole GAN part):
reconstruction (L1 + SSIM) and mask (L1) for both identities; then, on the swaps A->B and
B->A of unwarped faces, the least-squares adversarial loss against the target identity's
PatchGAN, cycle consistency (A->B->A, B->A->B) and the identity loss (B->B returns B). The
generator is updated with the discriminators frozen, then each discriminator on real faces and
a pool of past swaps (Zhu et al. 2017).

A run folder is its checkpoint: ``weights.safetensors`` + ``config.json`` (kind
"swapscope.swap-model"), ``resume/`` (optimisers, image pools, RNG, step), ``history.json``,
``curves.png``, ``preview.png``. Re-running the same command continues from the last checkpoint.

Under ``torchrun --nproc_per_node N -m forge train ...`` each process draws its own batches (one
seed per rank), the gradients are averaged over the processes before every update, and rank 0
alone writes the run folder and previews.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from forge.models import (
    IDENTITIES,
    SIZES,
    SWAP_MODEL_KIND,
    SwapModel,
    create_model,
    model_names,
    read_swap_config,
)
from swapscope import __version__
from swapscope.checkpoint import (
    finish_swap_in,
    load_optimizer,
    load_weights,
    read_resume_state,
    read_tensors,
    replacing,
    restore_rng,
    restoring,
    save_optimizer,
    save_tensors,
    write_resume_state,
)
from swapscope.device import autocast_for
from swapscope.distributed import (
    Ranks,
    average_gradients,
    barrier,
    mean,
    share_weights,
)
from swapscope.errors import InputError, require_at_least_one
from swapscope.faces.align import ALIGNMENTS, face_affine, hflip_affine, recrop_affine
from swapscope.faces.mesh import visible_mask
from swapscope.files import (
    sha256_file,
    write_image_atomic,
)
from swapscope.formats.faceset import FaceSet
from swapscope.progress import NoProgress, Progress
from swapscope.training import agreed_weights, main_rank_first, plot_history, training_run

TRAIN_MASKS = ("auto", "mesh", "hull")


@dataclass
class TrainConfig:
    facesets: tuple[str, str] = ("", "")  # A, B
    out: str = "model"
    arch: str = "swap-ae"
    size: int = 64  # aligned crop side the model works at
    padding: float = 0.125  # model crop margin per side, as a fraction (face sets keep 0.25)
    # frontal (the flat template) | pose (the 3D template turned to each face's yaw): pose helps
    # up to 30 degrees of yaw and not beyond on the sample clips (BENCHMARKS.md, "Turned heads")
    align: str = "frontal"
    train_mask: str = "auto"  # auto (the mesh's visible part where a face has one) | mesh | hull
    batch_size: int = 16
    steps: int = 10000
    # generator (Adam); 5e-5, the classic deepfakes rate, learns slower (BENCHMARKS.md)
    lr: float = 2e-4
    lr_d: float = 2e-4  # discriminators
    rec_weight: float = 1.0  # L1 + ssim_weight * (1 - SSIM) on the unwarped target
    ssim_weight: float = 1.0
    mask_weight: float = 0.5
    gan: bool = True  # the CycleGAN part as a whole
    gan_warmup: int = 1000  # steps of reconstruction only before the CycleGAN part starts
    adv_weight: float = 0.02  # 0.1 prints a checkerboard over blurry early swaps (BENCHMARKS.md)
    cycle_weight: float = 1.0
    identity_weight: float = 0.5
    pool_size: int = 50
    warp: float = 0.025  # std of the random-warp grid offsets, fraction of the crop
    rotate: float = 10.0  # degrees, uniform +-
    zoom: float = 0.05
    shift: float = 0.05
    flip: float = 0.5
    jitter: float = 0.1  # brightness/contrast factors in [1 - jitter, 1 + jitter]
    stride: int = 1  # use every N-th face of each face set
    save_every: int = 500
    preview_every: int = 100
    seed: int = 0

    def check(self) -> None:
        require_at_least_one(self, "batch_size", "steps", "save_every", "preview_every", "stride")
        if self.arch not in model_names():
            raise InputError(f"unknown --arch {self.arch!r}; choose from {model_names()}")
        if self.size not in SIZES:
            raise InputError(f"--size must be one of {list(SIZES)}")
        if not 0 <= self.padding < 0.5:
            raise InputError("--padding must be in [0, 0.5)")
        if self.align not in ALIGNMENTS:
            raise InputError(f"unknown --align {self.align!r}; choose from {list(ALIGNMENTS)}")
        if self.train_mask not in TRAIN_MASKS:
            raise InputError(f"unknown --train-mask {self.train_mask!r}; choose from "
                             f"{list(TRAIN_MASKS)}")
        if self.pool_size < 0:
            raise InputError("--pool-size must not be negative")
        if self.gan_warmup < 0:
            raise InputError("--gan-warmup must not be negative")

    def gan_at(self, step: int) -> bool:
        """Whether the CycleGAN terms are on at (0-based) ``step``."""
        return self.gan and step >= self.gan_warmup


# --- data ---------------------------------------------------------------------------------

class FaceData:
    """One identity's aligned faces in memory, re-cropped to the model's size and padding.

    ``align="pose"`` re-aligns each face with the template turned to its yaw (the mesh's where the
    face set has one, else found from the 68 points); ``mask_source`` says where the training
    mask comes from: ``hull`` (the 68 points' convex hull), ``mesh`` (the visible part of the 3D
    mesh; every row must have one) or ``auto`` (the mesh where a row has one)."""

    def __init__(self, path: str | Path, size: int, padding: float, stride: int = 1,
                 align: str = "frontal", mask_source: str = "hull") -> None:
        faceset = FaceSet.open(path)
        if padding > faceset.padding:
            raise InputError(
                f"{path}: face set padding {faceset.padding} is tighter than the model's {padding}"
            )
        self.path, self.size = str(path), size
        self.hash = sha256_file(Path(path) / "faces.jsonl")
        people = faceset.people()
        self.person = people[0] if len(people) == 1 else Path(path).name
        indices = range(0, len(faceset), stride)
        rows = [faceset.rows[i] for i in indices]
        if mask_source == "mesh" and any(r.mesh is None for r in rows):
            raise InputError(f"{path}: --train-mask mesh needs a 3D mesh on every face: extract "
                             "the face set with forge extract --mesh")
        # store each crop at the scale where the model's crop is `size` px wide
        big, pad = faceset.crop_size, faceset.padding
        stored = round(big * size * (1 - 2 * padding) / (big * (1 - 2 * pad)))
        crop_to_model = np.vstack([recrop_affine(np.eye(2, 3, dtype=np.float32), big, pad, size,
                                                 padding).astype(np.float64), [0, 0, 1]])
        to_crop = np.diag([big / stored, big / stored, 1.0])  # stored px -> face-set crop px
        # (N, 3, 3) stored px -> model px, each face's own where the alignment turns the template
        self.base = np.stack([crop_to_model @ _realign(faceset.crop_landmarks(i), row, big, pad,
                                                       align) @ to_crop
                              for i, row in zip(indices, rows)])
        # (N, D, D, 3) uint8 crops and (N, 68, 2) landmarks in stored px
        self.images = np.stack([cv2.resize(faceset.crop(i), (stored, stored),
                                           interpolation=cv2.INTER_AREA) for i in indices])
        self.landmarks = np.stack([faceset.crop_landmarks(i) * (stored / big) for i in indices])
        # (468, 3) mesh points in stored px (depth scaled alike), or None: the hull is the mask
        use_mesh = mask_source in ("mesh", "auto")
        self.meshes = [_mesh_in_crop(row, stored / big) if use_mesh and row.mesh is not None
                       else None for row in rows]
        self.mesh_masks = sum(m is not None for m in self.meshes)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int, rng: np.random.Generator | None, cfg: TrainConfig
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(warped input, target, mask): (S, S, 3) float32 in [0, 1] twice, (S, S) float32.

        ``rng`` None gives the plain aligned face (previews, evaluation).
        """
        s = self.size
        matrix = self.base[index]
        if rng is not None:
            angle = math.radians(rng.uniform(-cfg.rotate, cfg.rotate))
            zoom = rng.uniform(1 - cfg.zoom, 1 + cfg.zoom)
            shift = rng.uniform(-cfg.shift, cfg.shift, 2) * s
            c = s / 2
            rot = np.array([[zoom * math.cos(angle), -zoom * math.sin(angle), 0],
                            [zoom * math.sin(angle), zoom * math.cos(angle), 0], [0, 0, 1]])
            about = np.array([[1, 0, c + shift[0]], [0, 1, c + shift[1]], [0, 0, 1]]) @ rot @ \
                np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
            matrix = about @ matrix
        affine = matrix[:2].astype(np.float32)
        if rng is not None and rng.random() < cfg.flip:
            affine = hflip_affine(affine, s)
        target = cv2.warpAffine(self.images[index], affine, (s, s), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT101).astype(np.float32) / 255.0
        if self.meshes[index] is not None:
            mask = visible_mask(self.meshes[index], (s, s), affine)
        else:
            points = self.landmarks[index] @ affine[:, :2].T + affine[:, 2]
            mask = np.zeros((s, s), np.uint8)
            cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
        if rng is None:
            return target, target, mask.astype(np.float32)
        brightness, contrast = rng.uniform(1 - cfg.jitter, 1 + cfg.jitter, 2)
        target = np.clip(
            (target - target.mean()) * contrast + target.mean() * brightness, 0, 1
        ).astype(np.float32)
        return random_warp(target, rng, cfg.warp), target, mask.astype(np.float32)

    def batch(
        self, rng: np.random.Generator, cfg: TrainConfig, device: str
    ) -> tuple[torch.Tensor, ...]:
        """(warped (B, 3, S, S), target (B, 3, S, S), mask (B, 1, S, S)) float32 on ``device``."""
        picks = rng.integers(0, len(self), cfg.batch_size)
        warped, target, mask = zip(*(self.sample(int(i), rng, cfg) for i in picks))
        return (_to_tensor(np.stack(warped), device), _to_tensor(np.stack(target), device),
                torch.from_numpy(np.stack(mask))[:, None].to(device))


def _realign(crop_landmarks: np.ndarray, row, size: int, padding: float, align: str
             ) -> np.ndarray:
    """(3, 3) face-set crop px -> the same crop aligned by ``align`` (identity for frontal, the
    face sets' own alignment)."""
    if align == "frontal":
        return np.eye(3)
    yaw = row.pose[0] if row.pose is not None else None
    return np.vstack([face_affine(crop_landmarks, size, padding, align, yaw).astype(np.float64),
                      [0, 0, 1]])


def _mesh_in_crop(row, scale: float) -> np.ndarray:
    """(468, 3) float32 mesh of a face-set row in its crop's px times ``scale``."""
    xy = row.mesh[:, :2] @ row.affine[:, :2].T.astype(np.float64) + row.affine[:, 2]
    depth = row.mesh[:, 2:] * float(np.sqrt(abs(np.linalg.det(row.affine[:, :2]))))
    return (np.hstack([xy, depth]) * scale).astype(np.float32)


def random_warp(
    image: np.ndarray, rng: np.random.Generator, strength: float, grid: int = 5
) -> np.ndarray:
    """Bend (S, S, C) float32 by a smooth random displacement: normal offsets with std
    ``strength * S`` on a ``grid`` x ``grid`` lattice, interpolated to every pixel."""
    s = image.shape[0]
    offsets = rng.normal(0.0, strength * s, (grid, grid, 2)).astype(np.float32)
    field = cv2.resize(offsets, (s, s), interpolation=cv2.INTER_CUBIC)  # (S, S, 2)
    xs, ys = np.meshgrid(np.arange(s, dtype=np.float32), np.arange(s, dtype=np.float32))
    return cv2.remap(image, xs + field[..., 0], ys + field[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT101)


def _to_tensor(images: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


# --- losses -------------------------------------------------------------------------------

def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of (B, C, H, W) images in [0, 1], Gaussian window."""
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum())[None, :]
    kernel = (g.T @ g).expand(x.shape[1], 1, window, window)

    def blur(t):
        return F.conv2d(t, kernel, padding=window // 2, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


def _lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))


def generator_losses(model: SwapModel, batch: dict, cfg: TrainConfig,
                     gan: bool | None = None) -> tuple[torch.Tensor, dict, dict]:
    """(total loss, {term: value}, {"a": A->B swaps, "b": B->A swaps} for the discriminators).

    batch: {"a": (warped, target, mask), "b": ...}; the discriminators are expected frozen.
    gan: whether to add the CycleGAN terms (default: ``cfg.gan``).
    """
    parts: dict[str, torch.Tensor] = {}
    for side in IDENTITIES:
        warped, target, mask = batch[side]
        rgb, predicted_mask = model(warped, side)
        rgb, predicted_mask = rgb.float(), predicted_mask.float()
        parts[f"rec_{side}"] = F.l1_loss(rgb, target) + cfg.ssim_weight * (1 - ssim(rgb, target))
        parts[f"mask_{side}"] = F.l1_loss(predicted_mask, mask)
    total = cfg.rec_weight * (parts["rec_a"] + parts["rec_b"]) + cfg.mask_weight * (
        parts["mask_a"] + parts["mask_b"]
    )
    swaps = {}
    if gan is None:
        gan = cfg.gan
    if gan:
        for side, other in (("a", "b"), ("b", "a")):
            target = batch[side][1]
            swapped, _ = model(target, other)  # side's face with the other identity
            swapped = swapped.float()
            swaps[side] = swapped.detach()
            parts[f"adv_{side}2{other}"] = _lsgan(
                model.discriminators[other](swapped).float(), real=True
            )
            back, _ = model(swapped, side)
            parts[f"cycle_{side}"] = F.l1_loss(back.float(), target)
            same, _ = model(target, side)
            parts[f"identity_{side}"] = F.l1_loss(same.float(), target)
        total = total + cfg.adv_weight * (parts["adv_a2b"] + parts["adv_b2a"]) \
            + cfg.cycle_weight * (parts["cycle_a"] + parts["cycle_b"]) \
            + cfg.identity_weight * (parts["identity_a"] + parts["identity_b"])
    return total, {k: float(v.detach()) for k, v in parts.items()}, swaps


class ImagePool:
    """Past generated images (Shrivastava et al. 2017): the discriminator sees a mix of new and
    old swaps, so it cannot chase only the generator's latest mode."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.detach().cpu()
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif rng.random() < 0.5:
                i = int(rng.integers(len(self.images)))
                out.append(self.images[i])
                self.images[i] = image
            else:
                out.append(image)
        return torch.stack(out).to(images.device)


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


# --- the loop -----------------------------------------------------------------------------

@dataclass
class _Run:
    """Everything one training run holds: data, networks, optimisers, image pools, and the
    metadata saved into every checkpoint."""

    data: dict[str, FaceData]
    model: SwapModel
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    pools: dict[str, ImagePool]
    meta: dict


def _setup(config: TrainConfig, device: str) -> _Run:
    data = {side: FaceData(path, config.size, config.padding, config.stride, config.align,
                           config.train_mask)
            for side, path in zip(IDENTITIES, config.facesets)}
    if data["a"].hash == data["b"].hash:
        raise InputError("FACESET_A and FACESET_B are the same face set; give one per identity")
    model = create_model(config.arch, config.size).to(device)
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminators.parameters(), lr=config.lr_d, betas=(0.5, 0.999))
    meta = {
        "arch": config.arch,
        "size": config.size,
        "padding": config.padding,
        "align": config.align,
        "identities": {side: data[side].person for side in IDENTITIES},
        "facesets": {
            side: {"path": data[side].path, "sha256": data[side].hash, "faces": len(data[side]),
                   "mesh_masks": data[side].mesh_masks}
            for side in IDENTITIES
        },
        "spec": model.describe()["spec"],
        "config": asdict(config),
    }
    return _Run(
        data, model, opt_g, opt_d, {side: ImagePool(config.pool_size) for side in IDENTITIES}, meta
    )


@dataclass(frozen=True, slots=True)
class SwapTrained:
    """What a swap-model training run made (``forge train --json`` prints it)."""

    out: str  # the checkpoint folder
    step: int  # steps trained, all runs of OUT
    identities: dict[str, str]  # side (a, b) -> person
    faces: dict[str, int]  # side -> faces trained on
    last: dict | None  # the last history record: mean losses since the one before
    ranks: int  # processes that trained (torchrun)
    weights_sha256: str  # of the final weights, the same on every rank

    def to_json(self) -> dict:
        return asdict(self)


def train(config: TrainConfig, device: str, progress: Progress | None = None) -> SwapTrained:
    """Train (or resume) a swap model; returns the summary. One run writes ``out`` at a time.
    Under torchrun every rank runs this; rank 0 writes."""
    config.check()
    out = Path(config.out)
    lock = out.with_name(f".{out.name}.lock")  # beside OUT: OUT itself is swapped in whole
    with training_run(device, out.parent, lock, out, "forge train") as (ranks, device):
        return _train(config, device, progress if ranks.main else NoProgress(), ranks)


def _train(config: TrainConfig, device: str, progress: Progress | None,
           ranks: Ranks = Ranks()) -> SwapTrained:
    progress = progress or NoProgress()
    out = Path(config.out)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    run = _setup(config, device)
    with main_rank_first(ranks):  # rank 0 settles a killed run's checkpoint swap first
        state = _load_resume(out, run, finish_first=ranks.main)
    step = state["step"] if state else 0
    history: list[dict] = state["history"] if state else []
    if state:
        restore_rng(state, out / "resume" / "state.json", rng)
    if ranks.world > 1:  # the same weights everywhere, each rank its own batches
        share_weights(run.model, ranks)
        rng = np.random.default_rng([config.seed, ranks.rank, step])
        torch.manual_seed(config.seed * 1000 + ranks.rank * 100 + step)
    ids = run.meta["identities"]
    progress.start(f"{ids['a']} <-> {ids['b']}", config.steps, completed=step, loss=float("nan"))
    window: list[dict] = []
    started = time.perf_counter()
    while step < config.steps:
        window.append(train_step(run, config, rng, device, gan=config.gan_at(step), ranks=ranks))
        step += 1
        progress.advance(1, loss=window[-1]["total"])
        if step % config.preview_every == 0 or step == config.steps:
            history.append(_summary(window, step, started, ranks))
            window = []
            if ranks.main:
                write_image_atomic(out.with_name(out.name + ".previews") / "preview.png",
                                   preview_grid(run.model, run.data, config, device))
        if step % config.save_every == 0 or step == config.steps:
            if ranks.main:
                _save(out, run, step, history, rng)
            barrier(ranks)
    progress.stop()
    digest = agreed_weights(run.model, ranks)
    if ranks.main:  # the last preview is in OUT
        shutil.rmtree(out.with_name(out.name + ".previews"), ignore_errors=True)
    return SwapTrained(out=str(out), step=step, identities=ids,
                       faces={side: len(run.data[side]) for side in IDENTITIES},
                       last=history[-1] if history else None, ranks=ranks.world,
                       weights_sha256=digest)


def train_step(
    run: _Run, config: TrainConfig, rng: np.random.Generator, device: str, gan: bool,
    ranks: Ranks = Ranks(),
) -> dict:
    """One step: the generator with the discriminators frozen, then (with ``gan``) each
    discriminator on real faces of its identity against a pool of past swaps into it.
    Under torchrun each rank draws its own batch and the gradients are averaged before each
    update (the data-parallel step of DistributedDataParallel, for a step that calls several
    sub-networks and updates two optimisers). Returns the step's losses."""
    model = run.model
    model.train()
    batch = {side: run.data[side].batch(rng, config, device) for side in IDENTITIES}

    _set_requires_grad(model.discriminators, False)
    with autocast_for(device):
        loss_g, parts, swaps = generator_losses(model, batch, config, gan)
    run.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    average_gradients(model.generator_parameters(), ranks)
    torch.nn.utils.clip_grad_norm_(model.generator_parameters(), 5.0)
    run.opt_g.step()

    if gan:
        _set_requires_grad(model.discriminators, True)
        with autocast_for(device):
            loss_d = 0.0
            for side, other in (("a", "b"), ("b", "a")):
                fake = run.pools[other].query(swaps[side], rng)  # swaps into `other`
                disc = model.discriminators[other]
                d = 0.5 * (
                    _lsgan(disc(batch[other][1]).float(), True) + _lsgan(disc(fake).float(), False)
                )
                parts[f"d_{other}"] = float(d.detach())
                loss_d = loss_d + d
        run.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        average_gradients(model.discriminators.parameters(), ranks)
        run.opt_d.step()
    return {"total": float(loss_g.detach()), **parts}


def _summary(window: list[dict], step: int, started: float, ranks: Ranks = Ranks()) -> dict:
    """The mean of each loss over the steps since the last record (and over the ranks)."""
    terms = dict.fromkeys(k for w in window for k in w)  # the GAN terms may start mid-window
    return {"step": step,
            **{k: mean(np.mean([w[k] for w in window if k in w]), ranks) for k in terms},
            "seconds": round(time.perf_counter() - started, 2)}


@torch.no_grad()
def preview_grid(model: SwapModel, data: dict[str, FaceData], cfg: TrainConfig, device: str,
                 rows: int = 4) -> np.ndarray:
    """(rows * S', 6 * S', 3) uint8 RGB: A, A->A, A->B, B, B->B, B->A per row (S' >= 128)."""
    model.eval()
    columns = []
    for side, other in (("a", "b"), ("b", "a")):
        picks = np.linspace(0, len(data[side]) - 1, rows).round().astype(int)
        faces = _to_tensor(
            np.stack([data[side].sample(int(i), None, cfg)[1] for i in picks]), device
        )
        columns += [faces, model(faces, side)[0].float(), model(faces, other)[0].float()]
    grid = torch.cat([torch.cat(list(col), dim=1) for col in columns], dim=2)  # (3, rows*S, 6*S)
    image = (grid.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    scale = max(1, 128 // cfg.size)
    return (
        cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        if scale > 1
        else image
    )


def plot_curves(history: list[dict], path: Path) -> None:
    """The losses by step, four panels (the GAN terms start after the warm-up)."""
    plot_history(history, "step", [
        ("reconstruction", {k: k for k in ("rec_a", "rec_b")}),
        ("mask", {k: k for k in ("mask_a", "mask_b")}),
        ("cycle / identity", {k: k for k in ("cycle_a", "cycle_b", "identity_a", "identity_b")}),
        ("adversarial (G) / discriminators", {k: k for k in ("adv_a2b", "adv_b2a", "d_a", "d_b")}),
    ], path, dpi=80)


# --- checkpoints --------------------------------------------------------------------------

def _run_identity(meta: dict) -> dict:
    """What must match for a resume to continue the same run."""
    c = meta["config"]
    # (the alignment and mask source join it only when not the ones every earlier run used, so
    # those runs still resume with --align frontal --train-mask hull)
    later = {k: v for k, v, before in (("align", meta.get("align", "frontal"), "frontal"),
                                       ("train_mask", c.get("train_mask", "hull"), "hull"))
             if v != before}
    return {
        **later,
        "arch": meta["arch"], "size": meta["size"], "padding": meta["padding"],
        "facesets": {k: v["sha256"] for k, v in meta["facesets"].items()},
        "batch_size": c["batch_size"], "seed": c["seed"], "stride": c["stride"], "gan": c["gan"],
    }


def _save(out: Path, run: _Run, step: int, history: list[dict], rng: np.random.Generator) -> None:
    """Write the whole run folder beside ``out`` and swap it in: a kill leaves the old or the
    new."""
    model, meta, pools = run.model, run.meta, run.pools
    with replacing(out) as tmp:
        save_tensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                     tmp / "weights.safetensors", metadata={"kind": SWAP_MODEL_KIND})
        config = {"kind": SWAP_MODEL_KIND, "code_version": __version__, "step": step, **meta}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        resume = tmp / "resume"
        resume.mkdir()
        pool_tensors = {
            f"{side}/{i}": img.contiguous()
            for side, p in pools.items()
            for i, img in enumerate(p.images)
        }
        save_tensors(pool_tensors or {"_empty": torch.zeros(1)}, resume / "pools.safetensors")
        write_resume_state(resume, "step", step, _run_identity(meta), history,
                           opt_g=save_optimizer(run.opt_g, resume / "opt_g.safetensors"),
                           opt_d=save_optimizer(run.opt_d, resume / "opt_d.safetensors"),
                           numpy_rng=rng.bit_generator.state)
        (tmp / "history.json").write_text(json.dumps(history, indent=2))
        if history:
            plot_curves(history, tmp / "curves.png")
        previews = out.with_name(out.name + ".previews") / "preview.png"
        if previews.is_file():
            shutil.copyfile(previews, tmp / "preview.png")


def _load_resume(out: Path, run: _Run, finish_first: bool = True) -> dict | None:
    if finish_first:
        # a kill half-way through a checkpoint swap leaves the old one set aside
        finish_swap_in(out)
    if not out.exists():
        return None
    folder = read_swap_config(out).folder
    state_path = folder / "resume" / "state.json"
    if not state_path.is_file():
        raise InputError(f"{out}: a finished model without resume state; choose another --out")
    state = read_resume_state(state_path, out, "step",
                              {"opt_g": dict, "opt_d": dict, "numpy_rng": dict},
                              _run_identity(run.meta))
    with restoring(out, "the folder"):
        _restore(folder, run, state)
    return state


def _restore(folder: Path, run: _Run, state: dict) -> None:
    load_weights(folder, run.model, run.meta["arch"])
    load_optimizer(run.opt_g, folder / "resume" / "opt_g.safetensors", state["opt_g"])
    load_optimizer(run.opt_d, folder / "resume" / "opt_d.safetensors", state["opt_d"])
    # the learning rates are this run's options: a resumed run uses (and records) the new ones
    options = run.meta["config"]
    for optimizer, lr in ((run.opt_g, options["lr"]), (run.opt_d, options["lr_d"])):
        for group in optimizer.param_groups:
            group["lr"] = lr
    pools = folder / "resume" / "pools.safetensors"
    pooled = read_tensors(pools)
    pooled.pop("_empty", None)  # the placeholder of a run whose pools were still empty
    size = run.meta["size"]
    for key, image in pooled.items():
        side, _, index = key.partition("/")
        if side not in run.pools or not index.isdigit() or image.shape[-3:] != (3, size, size):
            raise InputError(f"{pools}: {key} {tuple(image.shape)} is not a pooled {size} px "
                             "swap of identity a or b")
    for key, image in sorted(pooled.items(), key=lambda kv: (kv[0].split("/")[0],
                                                             int(kv[0].split("/")[-1]))):
        run.pools[key.split("/")[0]].images.append(image)
