"""``detect train``: one readable training loop for FWA detectors.

Setup (data, split by identity, model, optimiser), then per epoch: train on real faces and
on-the-fly FWA negatives, validate (AUC on held-out identities), keep the best checkpoint by
validation AUC, save a resume state, redraw the curves. The paper's recipe is the default: SGD,
lr 1e-3 decayed x0.95 per epoch, batch 64, 20 epochs (fewer fit a CPU).

Under ``torchrun --nproc_per_node N -m detect train ...`` the same loop runs data-parallel
(``swapscope.distributed``): DistributedDataParallel over N processes, each drawing its share of
every epoch (``--batch-size`` per process), validation split between them and gathered, and
rank 0 alone writing the run folder.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from detect.artifacts import ARTIFACTS
from detect.checkpoint import read_detector_config, save_detector
from detect.crops import CropReport, collection_items, read_collection
from detect.data import (
    H264_SHARE,
    KINDS,
    ArtifactDataset,
    BalancedSampler,
    Degrade,
    build_context_cache,
    build_manifest_cache,
    faceset_cache_key,
    manifest_cache_key,
    negative_kinds,
    split_by_identity,
)
from detect.models import DEFAULT_ARCH, INPUT_SIZES, create_detector
from swapscope.checkpoint import (
    finish_swap_in,
    load_optimizer,
    load_weights,
    read_resume_state,
    read_tensors,
    replacing,
    restore_rng,
    restore_schedule,
    restoring,
    save_optimizer,
    save_tensors,
    write_resume_state,
)
from swapscope.device import autocast_for
from swapscope.distributed import (
    Ranks,
    barrier,
    gather,
    mean,
    share_buffers,
)
from swapscope.errors import InputError, require_at_least_one
from swapscope.faults import kill_point
from swapscope.files import (
    sha256_file,
    write_text_atomic,
)
from swapscope.formats.faceset import FaceSet
from swapscope.formats.manifest import check_files, manifest_file
from swapscope.progress import NoProgress, Progress
from swapscope.training import agreed_weights, main_rank_first, plot_history, training_run

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    facesets: list[str] = field(default_factory=list)
    fakes: list[str] = field(
        default_factory=list
    )  # forge manifests: forged faces (and their reals)
    crops: list[str] = field(default_factory=list)  # labelled crop collections: genuine fakes
    genuine: bool = True  # train on the collections' fakes (False: on their real faces alone)
    init: str = ""  # start from this detector checkpoint's weights (same arch) instead of ImageNet
    out: str = "detector"
    arch: str = DEFAULT_ARCH
    input_size: int = 0  # side of the square ROI the network sees; 0: --init's, else the backbone's
    artifact: str = "mix"  # the negatives real faces become: fwa, sbi, mix (each draws one), none
    degrade: bool = True  # real-world degradations, applied alike to both classes
    h264_share: float = H264_SHARE  # of the codec round trips, H.264's (the rest JPEG)
    pretrained: bool = True
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd (the paper's, with momentum) or adamw
    lr: float = 1e-3
    lr_decay: float = 0.95  # per epoch
    momentum: float = 0.9
    weight_decay: float = 5e-4
    val_fraction: float = 0.2
    stride: int = 3  # every N-th face of each track: neighbouring frames are near-duplicates
    steps_per_epoch: int | None = None  # cap for quick runs; default: one pass over the data
    workers: int = 0
    keep_every: int = 0  # also keep every N-th epoch's weights (fp16) in OUT/epochs/, for curves
    seed: int = 0
    cache: str | None = None  # context-crop cache folder; default OUT/cache

    def check(self) -> None:
        if not self.facesets and not self.crops:
            raise InputError("give at least one face set or crop collection")
        require_at_least_one(self, "epochs", "batch_size", "stride")
        if not 0 < self.val_fraction < 1:
            raise InputError("--val-fraction must be between 0 and 1")
        if not 0 <= self.h264_share <= 1:
            raise InputError("--h264-share must be between 0 and 1")
        if self.artifact not in (*ARTIFACTS, "none"):
            raise InputError(f"unknown --artifact {self.artifact!r}; choose from "
                             f"{[*ARTIFACTS, 'none']}")
        if self.artifact == "none" and not (self.crops or self.fakes):
            raise InputError("--artifact none trains on real faces alone; give genuine fakes "
                             "(--crops) or forged ones (--fakes)")
        low, high = INPUT_SIZES
        if self.input_size != 0 and not low <= self.input_size <= high:
            raise InputError(f"--input-size {self.input_size}: give 0 (the backbone's own) or a "
                             f"side from {low} to {high}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown --optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
        if self.init:  # read and checked before the run folder is made
            _, init_meta = read_detector_config(self.init)
            if init_meta["arch"] != self.arch:
                raise InputError(f"--init {self.init} is a {init_meta['arch']}, not a {self.arch}")


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(config: TrainConfig, model) -> torch.optim.Optimizer:
    """The paper's SGD with momentum, or AdamW (fine-tuning in fewer epochs, for CPU budgets)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float("nan")


@torch.no_grad()
def evaluate(model, loader, device: str,
             kinds: tuple[str, ...] = ("fwa", "sbi", "forged", "genuine"),
             ranks: Ranks = Ranks()) -> tuple[float, float, dict[str, float]]:
    """(mean loss, AUC, AUC per kind of fake) of ``model`` on ``loader``; the fake probability is
    softmax[:, 1]. The AUC counts the real faces against the fakes of ``kinds`` (the artifacts
    the detector trains on); the per-kind AUCs count them against each kind alone. Under
    torchrun each rank's loader holds its share, and the scores of all are gathered first."""
    model.eval()
    losses, labels, scores, codes = [], [], [], []
    for x, y, code in loader:
        x, y = x.to(device), y.to(device)
        with autocast_for(device):
            logits = model(x)
        losses.append(torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum").item())
        scores.append(logits.float().softmax(-1)[:, 1].cpu().numpy())
        labels.append(y.cpu().numpy())
        codes.append(code.numpy())
    shares = gather((sum(losses), *map(_joined, (labels, scores, codes))), ranks)
    labels_np, scores_np, codes_np = (np.concatenate([s[i] for s in shares]) for i in (1, 2, 3))
    real = labels_np == 0
    per_kind = {}
    for name in ("fwa", "sbi", "forged", "genuine"):
        pick = real | (codes_np == KINDS[name])
        if (codes_np[pick] == KINDS[name]).any():
            per_kind[name] = _auc(labels_np[pick], scores_np[pick])
    chosen = real | np.isin(codes_np, [KINDS[k] for k in kinds])
    loss = sum(s[0] for s in shares) / len(labels_np)
    return loss, _auc(labels_np[chosen], scores_np[chosen]), per_kind


class _Keyed(torch.utils.data.Dataset):
    """A dataset seen through a list of its keys (a rank's share of the validation draws)."""

    def __init__(self, dataset, keys) -> None:
        self.dataset, self.keys = dataset, list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int):
        return self.dataset[self.keys[i]]


def _people(items: list) -> list[str]:
    """The people of a split: every face set's person, and how many crop groups besides."""
    named = sorted({i.identity for i in items if i.kind != "genuine"})
    groups = {i.identity for i in items if i.kind == "genuine"}
    return named + ([f"{len(groups)} crop groups"] if groups else [])


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def plot_curves(history: list[dict], path: Path) -> None:
    """Losses and validation AUC by epoch."""
    plot_history(history, "epoch", [
        ("cross-entropy", {"train_loss": "train", "val_loss": "validation"}),
        ("validation AUC", {"val_auc": "validation AUC"}),
    ], path, ylims={"validation AUC": (0.4, 1.0)})


@dataclass(frozen=True, slots=True)
class Trained:
    """What a detector training run made and measured (``detect train --json`` prints it)."""

    out: str  # the run folder
    best: str  # the checkpoint of the best validation AUC (OUT/best)
    best_val_auc: float
    history: list[dict]  # one record per epoch: losses, validation AUCs, learning rate, seconds
    ranks: int  # processes that trained (torchrun)
    weights_sha256: str  # of the final weights, the same on every rank
    crops: list[dict]  # per crop collection: faces, no-face counts, rows held out
    train_faces: int
    val_faces: int
    train_identities: list[str]
    val_identities: list[str]

    def to_json(self) -> dict:
        return asdict(self)


def train(config: TrainConfig, device: str, progress: Progress | None = None) -> Trained:
    """Train a detector; returns the summary. Re-running with the same OUT resumes. Each
    epoch's losses and AUC are logged. Under torchrun, every rank runs this; rank 0 writes."""
    config.check()
    out = Path(config.out)
    with training_run(device, out, out / ".lock", out, "detect train") as (ranks, device):
        shown = (progress or NoProgress()) if ranks.main else NoProgress()
        return _train(config, out, device, shown, ranks)


def _train(config: TrainConfig, out: Path, device: str, progress: Progress,
           ranks: Ranks = Ranks()) -> Trained:
    torch.manual_seed(config.seed + ranks.rank)
    run = _set_up(config, out, device, ranks, progress)
    model, scheduler, history, train_set = run.model, run.scheduler, run.history, run.train_set
    best_auc = max([h["val_auc"] for h in history if not np.isnan(h["val_auc"])], default=-1.0)
    for epoch in range(len(history), config.epochs):
        train_set.epoch = epoch
        loader = _train_loader(train_set, run.loader_args, config.seed * 1000 + epoch, ranks,
                               run.sampler, epoch)
        started = time.perf_counter()
        progress.start(f"epoch {epoch + 1}/{config.epochs}",
                       min(len(loader), config.steps_per_epoch or len(loader)))
        losses = train_epoch(run.network, loader, run.optimizer, device, config.steps_per_epoch,
                             progress)
        progress.stop()
        kill_point(f"train-epoch{epoch + 1}-rank{ranks.rank}")  # a rank dying between checkpoints
        scheduler.step()
        share_buffers(model, ranks)
        val_loss, val_auc, per_kind = evaluate(model, run.val_loader, device,
                                               (*run.trained_on, "forged", "genuine"), ranks)
        record = {"epoch": epoch + 1, "train_loss": mean(np.mean(losses), ranks),
                  "val_loss": val_loss,
                  "val_auc": val_auc, **{f"val_auc_{k}": v for k, v in per_kind.items()},
                  "lr": scheduler.get_last_lr()[0],
                  "seconds": round(time.perf_counter() - started, 2)}
        history.append(record)
        improved = val_auc > best_auc
        best_auc = max(best_auc, val_auc)
        if ranks.main:
            _keep(config, out, run, record, improved)
        barrier(ranks)
    kept = ("train_faces", "val_faces", "train_identities", "val_identities")
    digest = agreed_weights(model, ranks)
    return Trained(out=str(out), best=str(out / "best"), best_val_auc=best_auc, history=history,
                   ranks=ranks.world, weights_sha256=digest, crops=run.meta.get("crops", []),
                   **{k: run.meta[k] for k in kept})


@dataclass
class _Run:
    """What one training run holds between its epochs."""

    model: torch.nn.Module
    network: torch.nn.Module  # ``model``, or it wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_set: ArtifactDataset
    sampler: BalancedSampler | None  # the epoch's balanced draws (runs with crop collections)
    val_loader: torch.utils.data.DataLoader  # this rank's share of the validation faces
    loader_args: dict
    trained_on: tuple[str, ...]  # the artifacts the best epoch is chosen on
    meta: dict  # saved into every checkpoint
    history: list[dict]


def _set_up(config: TrainConfig, out: Path, device: str, ranks: Ranks, progress: Progress
            ) -> _Run:
    """The faces, the split, the network, its optimiser and the resume state; under torchrun
    rank 0 fills the crop cache and settles the run folder before the others read them."""
    with main_rank_first(ranks):  # rank 0 fills the crop cache first
        items, hashes, crops = collect_items(config, out, progress)
    train_items, val_items = split_by_identity(items, config.val_fraction, config.seed)
    model, data_cfg = _create_model(config, device)
    train_set, val_set = _datasets(config, train_items, val_items, data_cfg)
    loader_args = dict(batch_size=config.batch_size, num_workers=config.workers)
    sampler, val_keys = None, range(len(val_set))
    if config.crops:  # balanced per class and spread over groups
        length = (config.steps_per_epoch or 0) * config.batch_size or len(train_items)
        sampler = BalancedSampler(train_items, config.artifact, length, config.seed,
                                  rank=ranks.rank, world=ranks.world)
        val_keys = BalancedSampler(val_items, config.artifact, 0, fixed=True).keys()
    val_share = _Keyed(val_set, val_keys[ranks.rank::ranks.world])
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    with main_rank_first(ranks):  # rank 0 settles a killed run's checkpoint swap first
        state = load_resume_state(out, model, optimizer, scheduler, expected=_identity(config),
                                  finish_first=ranks.main)
    network = model
    if ranks.world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ranks.local] if device.startswith("cuda") else None)
    meta = {"arch": config.arch, "data_config": data_cfg.to_json(), "config": asdict(config),
            "facesets": hashes, "train_faces": len(train_items), "val_faces": len(val_items),
            "train_fixed_fakes": sum(i.label == 1 for i in train_items),
            "train_identities": _people(train_items), "val_identities": _people(val_items),
            "train_genuine_fakes": sum(i.kind == "genuine" and i.label == 1 for i in train_items),
            "crops": [c.to_json() for c in crops], "init_sha256": _init_hash(config)}
    return _Run(
        model=model, network=network, optimizer=optimizer, scheduler=scheduler,
        train_set=train_set, sampler=sampler, loader_args=loader_args, meta=meta,
        val_loader=torch.utils.data.DataLoader(val_share, shuffle=False, **loader_args),
        trained_on=negative_kinds(config.artifact),
        history=state["history"] if state else [])


def _keep(config: TrainConfig, out: Path, run: _Run, record: dict, improved: bool) -> None:
    """Rank 0's writing after an epoch: the best and kept epochs, the resume state, the curves
    and the history."""
    model, history = run.model, run.history
    epoch, val_auc = record["epoch"], record["val_auc"]
    if improved:
        save_detector(out / "best", model, {**run.meta, "epoch": epoch, "val_auc": val_auc})
    if config.keep_every and epoch % config.keep_every == 0:
        save_detector(out / "epochs" / f"{epoch:03d}", model,
                      {**run.meta, "epoch": epoch, "val_auc": val_auc}, half=True)
    save_resume_state(out, model, run.optimizer, run.scheduler, epoch, history,
                      _identity(config))
    plot_curves(history, out / "curves.png")
    write_text_atomic(out / "history.json", json.dumps(history, indent=2))
    log.info("epoch %d: train loss %.4f, val loss %.4f, val AUC %.4f (%.0f s)", epoch,
             record["train_loss"], record["val_loss"], val_auc, record["seconds"])


def _train_loader(train_set, loader_args: dict, seed: int, ranks: Ranks,
                  balanced: BalancedSampler | None = None, epoch: int = 0):
    """This epoch's shuffled training batches: all of them, or under torchrun this rank's
    share (each rank a different one, the same order on every rank's sampler); with crop
    collections, the balanced sampler's draws for the epoch."""
    if balanced is not None:
        balanced.epoch = epoch
        return torch.utils.data.DataLoader(train_set, sampler=balanced, **loader_args)
    if ranks.world == 1:
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(train_set, shuffle=True, generator=generator,
                                           **loader_args)
    sampler = torch.utils.data.distributed.DistributedSampler(
        train_set, num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=seed)
    return torch.utils.data.DataLoader(train_set, sampler=sampler, **loader_args)


def collect_items(config: TrainConfig, out: Path, progress: Progress
                  ) -> tuple[list, list[str], list[CropReport]]:
    """The training faces: context crops of each face set's real faces and of each manifest's
    fakes and reals, and the faces of each crop collection, cached under ``config.cache``
    (default OUT/cache).

    Returns (items, cache keys, what each crop collection gave)."""
    items, hashes, reports = [], [], []
    cache = Path(config.cache or out / "cache")
    facesets = [FaceSet.open(path) for path in config.facesets]
    for manifest in config.fakes:  # each read (and refused) before any face is cut
        check_files(manifest)
    collections = [read_collection(folder) for folder in config.crops]
    for faceset in facesets:
        key = faceset_cache_key(faceset, config.stride)
        items += build_context_cache(faceset, cache / key, config.stride, progress)
        hashes.append(key)
    for manifest in config.fakes:
        key = manifest_cache_key(manifest_file(manifest), config.stride)
        items += build_manifest_cache(manifest_file(manifest), cache / key, config.stride, progress)
        hashes.append(key)
    for collection in collections:
        found, report = collection_items(collection, cache, progress)
        log.info("%s: faces in %s; no face found in %s (listed in the cache's no_face.jsonl); "
                 "%d rows of another split left out", collection.root, report.faces,
                 report.no_face,
                 report.held_out)
        items += found if config.genuine else [i for i in found if i.label is None]
        reports.append(report)
        hashes.append(report.key)
    return items, hashes, reports


def _create_model(config: TrainConfig, device: str):
    """The network: ImageNet-initialised, or ``--init``'s weights (fine-tuning)."""
    size = config.input_size
    if config.init:  # (checked by TrainConfig.check)
        folder, init_meta = read_detector_config(config.init)
        size = size or init_meta["data_config"]["input_size"]
    model, data_cfg = create_detector(config.arch, pretrained=config.pretrained and not config.init,
                                      input_size=size)
    if config.init:
        load_weights(folder, model, config.arch)
    return model.to(device), data_cfg


def _init_hash(config: TrainConfig) -> str | None:
    """The sha256 of the weights a fine-tuned run started from (None: from ImageNet)."""
    if not config.init:
        return None
    folder, _ = read_detector_config(config.init)
    return sha256_file(folder / "weights.safetensors")


def _datasets(config: TrainConfig, train_items: list, val_items: list, data_cfg
              ) -> tuple[ArtifactDataset, ArtifactDataset]:
    """Training examples of the configured artifact; validation examples of both artifacts, so
    every run reports both (and chooses its best epoch on its own kinds)."""
    degrade = Degrade(h264=config.h264_share) if config.degrade else None
    train_set = ArtifactDataset(train_items, data_cfg, config.artifact,
                                degrade=degrade, seed=config.seed)
    val_set = ArtifactDataset(val_items, data_cfg, "mix", degrade=degrade,
                              seed=config.seed + 1, fixed=True)
    return train_set, val_set


def train_epoch(
    model, loader, optimizer, device: str, max_steps: int | None, progress: Progress
) -> list[float]:
    """One pass (or ``max_steps`` steps) over ``loader``; returns the step losses."""
    model.train()
    losses: list[float] = []
    for step, (x, y, _) in enumerate(loader):
        if max_steps and step >= max_steps:
            break
        x, y = x.to(device), y.to(device)  # (B, 3, S, S) float32, (B,) int64
        with autocast_for(device):
            logits = model(x)  # (B, 2)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
        progress.advance(1, loss=float(np.mean(losses[-20:])))
    return losses


def _identity(config: TrainConfig) -> dict:
    """What must match for a resume to continue the same run."""
    return {"arch": config.arch, "init": config.init, "artifact": config.artifact,
            "degrade": config.degrade,
            "facesets": sorted(str(Path(p).resolve()) for p in config.facesets),
            "fakes": sorted(str(Path(p).resolve()) for p in config.fakes),
            "seed": config.seed, "batch_size": config.batch_size, "stride": config.stride,
            "optimizer": config.optimizer, "lr": config.lr, "lr_decay": config.lr_decay,
            # only where set, so runs from before the option still resume
            **({"input_size": config.input_size} if config.input_size else {}),
            **({"crops": sorted(str(Path(p).resolve()) for p in config.crops),
                "genuine": config.genuine} if config.crops else {}),
            **({"h264_share": config.h264_share} if config.h264_share != H264_SHARE else {})}


# --- resume state: weights, optimiser and scheduler as safetensors + JSON, never a pickle ---

def save_resume_state(
    out: Path, model, optimizer, scheduler, epoch: int, history: list, identity: dict
) -> None:
    with replacing(Path(out) / "resume") as tmp:
        save_tensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                     tmp / "model.safetensors")
        write_resume_state(tmp, "epoch", epoch, identity, history,
                           optimizer=save_optimizer(optimizer, tmp / "optimizer.safetensors"),
                           scheduler=scheduler.state_dict())


def load_resume_state(out: Path, model, optimizer, scheduler, expected: dict,
                      finish_first: bool = True) -> dict | None:
    folder = Path(out) / "resume"
    if finish_first:
        finish_swap_in(folder)
    if not (folder / "state.json").is_file():
        return None
    state = read_resume_state(folder / "state.json", out, "epoch",
                              {"optimizer": dict, "scheduler": dict}, expected,
                              ("train_loss", "val_loss", "val_auc"), every=True)
    with restoring(out, "resume/"):
        _restore(folder, state, model, optimizer, scheduler)
    return state


def _restore(folder: Path, state: dict, model, optimizer, scheduler) -> None:
    model.load_state_dict(read_tensors(folder / "model.safetensors"))
    load_optimizer(optimizer, folder / "optimizer.safetensors", state["optimizer"])
    restore_schedule(scheduler, state["scheduler"], folder / "state.json")
    restore_rng(state, folder / "state.json")
