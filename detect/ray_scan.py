"""``detect scan --engine ray``: the scan of many inputs as a Ray Data pipeline.

    inputs -> [gather: decode, find faces, cut ROIs, read labels; CPU tasks]
           -> [score: the network; an actor pool, one detector per actor]
           -> results, as they finish, to the command (its Parquet table, its report)

An input is one row from start to end, so a task that fails (a worker killed mid-scan) is
retried by Ray (its defaults: a task whose worker dies is run again, a dead actor is restarted
and its call retried) and costs only that input's work. The rules are the single-process engine's:
the same seed per input draws the same ROIs and the same network scores them, so the scores are
the same. A corrupt input is one result with an error, as without Ray.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from detect.scan import Gatherer, ScanConfig, Scanner, error_result
from swapscope.errors import InputError
from swapscope.faults import kill_point
from swapscope.formats.scan import InputScan
from swapscope.ray_engine import Engine, gpus_per_actor, ray_session

_GATHERERS: dict[str, Gatherer] = {}  # per worker process: its face pipeline, made once


def _gather(row: dict, config: ScanConfig, sizes: tuple[int, ...]) -> dict:
    """One input's CPU half (a Ray task). Its result is a ``Gathered`` or, for an input that
    cannot be read, its error result."""
    key = repr((config, sizes))
    if key not in _GATHERERS:
        _GATHERERS[key] = Gatherer(config, sizes)
    path, started = Path(row["path"]), time.perf_counter()
    kill_point("ray-gather")
    try:
        work = _GATHERERS[key].gather(path)
    except InputError as exc:
        work = error_result(path, exc)
    return {"index": row["index"], "work": work, "seconds": time.perf_counter() - started}


class _Score:
    """One scoring actor: holds one detector (on its GPU where it has one)."""

    def __init__(self, config: ScanConfig, device: str, detector_sha256: str) -> None:
        self.scanner = Scanner(config, device, gather=False)
        found = self.scanner.detector.info.sha256
        if found != detector_sha256:  # a worker that sees another file at the same path
            raise InputError(f"a Ray worker loaded a detector with weights {found[:12]}, not "
                             f"{detector_sha256[:12]}: every worker must see the same checkpoint")

    def __call__(self, row: dict) -> dict:
        work, started = row["work"], time.perf_counter()
        kill_point("ray-score")
        item = work if isinstance(work, InputScan) else self.scanner.finish(work)
        item.timings["total"] = round(row["seconds"] + time.perf_counter() - started, 3)
        return {"index": row["index"], "item": item}


def scan_on_ray(scanner: Scanner, paths: list[Path], device: str,
                engine: Engine) -> Iterator[InputScan]:
    """Each input's result as Ray finishes it (not in input order). ``scanner`` is the
    command's own: its config and detector (for the checkpoint's hash) are what workers use."""
    if not paths:
        return
    with ray_session(engine) as ray:
        gpus = gpus_per_actor(ray, device)
        config = scanner.config
        items = ray.data.from_items([{"index": i, "path": str(p)} for i, p in enumerate(paths)],
                                    override_num_blocks=len(paths))
        gathered = items.map(_gather, fn_kwargs={"config": config,
                                                 "sizes": scanner.detector.input_sizes},
                             num_cpus=1)
        # on CPU an actor (one thread) reserves no core: its network calls share the cores with
        # the gather tasks, so --workers about the cores keeps them busy; with a GPU it takes one
        # core to feed it
        scored = gathered.map(
            _Score, fn_constructor_kwargs={"config": config, "device": "cuda" if gpus else "cpu",
                                           "detector_sha256": scanner.detector.info.sha256},
            concurrency=engine.workers, num_gpus=gpus, num_cpus=1 if gpus else 0)
        try:
            for row in scored.iter_rows():
                yield row["item"]
        except ray.exceptions.RayError as exc:  # not an input's fault: the cluster's or ours
            reason = str(exc).strip().splitlines()[-1]
            raise InputError(f"--engine ray: the scan pipeline failed ({reason}); a --results "
                             "table keeps the inputs scored so far") from None
