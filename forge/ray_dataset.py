"""``forge dataset --engine ray``: one Ray task per output of the set (a real counterpart, or a
fake of one video under one knob combination).

Each task makes its output as the single process would (``forge.dataset.make_output``): under a
pending name, its manifest row appended under the manifest's lock, then moved into place, so the
set's folder must be one every worker sees (this machine, or a shared filesystem). A task whose
worker dies is run again by Ray (up to ``RETRIES`` times); what the dead one left is a pending
file no row names, which the next run of the set removes. A fake made by a swap model takes a
GPU where the cluster has them; everything else takes one CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from forge.dataset import DatasetConfig, Output, make_output
from swapscope.errors import InputError
from swapscope.faults import kill_point
from swapscope.progress import NoProgress, Progress
from swapscope.ray_engine import Engine, gpus_per_actor, ray_session

RETRIES = 3


def _make(output: Output, config: DatasetConfig, root: str, device: str) -> str:
    """One output, made in a Ray task: "" or the reason it could not be made."""
    kill_point("ray-forge")
    try:
        make_output(output, config, Path(root), device)
    except InputError as exc:
        return str(exc)
    return ""


def make_on_ray(todo: list[Output], config: DatasetConfig, root: Path, device: str,
                engine: Engine, progress: Progress | None = None) -> Iterator[tuple[Output, str]]:
    """(output, error or "") for each output, as Ray finishes them."""
    if not todo:
        return
    progress = progress or NoProgress()
    with ray_session(engine) as ray:
        gpus = gpus_per_actor(ray, device)
        task = ray.remote(_make)
        pending = {}
        for output in todo:
            on_gpu = gpus if output.label == "fake" and output.knobs.get("method") == "model" else 0
            ref = task.options(num_cpus=1, num_gpus=on_gpu, max_retries=RETRIES).remote(
                output, config, str(root), "cuda" if on_gpu else "cpu")
            pending[ref] = output
        progress.start("forging on Ray", len(todo))
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    output = pending.pop(ref)
                    try:
                        error = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # retries spent, or a bug's traceback
                        error = f"its Ray task failed ({str(exc).strip().splitlines()[-1]})"
                    progress.advance(1)
                    yield output, error
        finally:
            progress.stop()
