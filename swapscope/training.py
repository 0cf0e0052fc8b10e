"""The scaffold both trainers stand on (``forge train``, ``detect train``): the run around them
(the process group, and on rank 0 the output folder checked and locked), rank 0 first where
it settles or fills what the others read, the ranks' agreement on the weights at the end, and
the history plot. The trainers keep only their data, models and losses; resume states are read
and written by ``swapscope.checkpoint`` (safetensors + JSON, one reader per file)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from swapscope.distributed import Ranks, barrier, gather, process_group, weights_digest
from swapscope.files import WriteLock, writable_folder, write_figure_atomic


@contextlib.contextmanager
def training_run(device: str, folder: Path, lock: Path, out: Path, what: str
                 ) -> Iterator[tuple[Ranks, str]]:
    """The run a trainer works in: (ranks, device) of the process group (one process, or every
    rank under torchrun); on rank 0, ``folder`` made and writable and ``lock`` held for ``out``,
    so one run writes it at a time. The other ranks write nothing and take no lock."""
    with process_group(device) as (ranks, device):
        if not ranks.main:
            yield ranks, device
            return
        writable_folder(folder)
        with WriteLock(lock, out, what):
            yield ranks, device


@contextlib.contextmanager
def main_rank_first(ranks: Ranks) -> Iterator[None]:
    """Rank 0 runs the block first (settling a killed run's checkpoint swap, filling a cache);
    the other ranks wait for it, then run the block themselves and read what it left."""
    if not ranks.main:
        barrier(ranks)
    yield
    if ranks.main:
        barrier(ranks)


def agreed_weights(module, ranks: Ranks) -> str:
    """The sha256 of the weights, the same on every rank (averaged gradients keep them equal: a
    difference is a bug, never a result, and raises)."""
    digests = gather(weights_digest(module), ranks)
    if len(set(digests)) != 1:
        raise RuntimeError(f"the ranks' weights differ after training: {digests}")
    return digests[0]


def plot_history(history: list[dict], counter: str, panels: list[tuple[str, dict[str, str]]],
                 path: Path, ylims: dict[str, tuple[float, float]] | None = None,
                 dpi: int = 100) -> None:
    """One panel per (title, {history key: legend label}) over ``counter`` (step, epoch); keys a
    record lacks (the GAN terms before their warm-up) are left out of it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels) + 1, 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key, label in keys.items():
            points = [(h[counter], h[key]) for h in history if key in h]
            if points:
                ax.plot(*zip(*points), "o-" if len(points) < 30 else "-", label=label,
                        markersize=3)
        ax.set_title(title)
        ax.set_xlabel(counter)
        if len(keys) > 1 and ax.lines:
            ax.legend(fontsize=8)
        if ylims and title in ylims:
            ax.set_ylim(*ylims[title])
    fig.tight_layout()
    write_figure_atomic(path, fig, dpi=dpi)
    plt.close(fig)
