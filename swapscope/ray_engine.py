"""``--engine ray``: the work of ``detect scan`` and ``forge dataset`` as a Ray pipeline.

Ray is an extra (``pip install 'swapscope[scale]'``); the default engine is the command's own
process and never imports it. ``ray_session`` starts a local Ray on this machine, or joins the
cluster at ``--address``; the Ray work itself lives beside each command (``detect.ray_scan``,
``forge.ray_dataset``). Every worker must run the same swapscope and see the same paths as the
command that sends it work (a shared filesystem on a cluster).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass

from swapscope.device import DEVICES
from swapscope.errors import InputError, first_line

ENGINES = ("single", "ray")


@dataclass(frozen=True)
class Engine:
    """Where a command's work runs: ``single`` (this process) or ``ray``."""

    name: str = "single"
    address: str | None = None  # a running cluster ("auto", "HOST:6379", "ray://HOST:10001")
    cpus: int | None = None  # a local Ray's cores (None: all of this machine's)
    workers: int = 1  # Ray: scoring actors, one network each

    def check(self) -> Engine:
        if self.name not in ENGINES:
            raise InputError(f"unknown --engine {self.name!r}; choose from {list(ENGINES)}")
        if self.name == "single" and (self.address or self.cpus or self.workers != 1):
            raise InputError("--address, --cpus and --workers are for --engine ray")
        if self.cpus is not None and self.cpus < 1:
            raise InputError("--cpus must be at least 1")
        if self.address and self.cpus:
            raise InputError("--cpus sizes a local Ray; a cluster at --address has its own size")
        if self.workers < 1:
            raise InputError("--workers must be at least 1")
        return self


def ray_module():
    """The ``ray`` package, or one clear error naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'swapscope[scale]'") from None
    return ray


@contextmanager
def ray_session(engine: Engine) -> Iterator:
    """Start a local Ray (``engine.address`` None) or join the cluster at it, for the block;
    yields ``ray``. A Ray already started in this process is used and left running; one this
    starts is shut down (a local Ray stops, a cluster keeps running). Ray's logs stay in its
    session folder; the command reports its results as it does without Ray. Ray prints what
    its workers' deaths cost on stdout: a command printing JSON sends stdout to stderr while
    Ray runs (``quiet_stdout``)."""
    ray = ray_module()
    started = not ray.is_initialized()
    if started:
        _start(ray, engine)
    try:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        yield ray
    finally:
        if started:
            ray.shutdown()


def _start(ray, engine: Engine) -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    options = {"include_dashboard": False, "log_to_driver": False,
               "logging_level": logging.ERROR, "configure_logging": True}
    try:
        if engine.address:
            ray.init(address=engine.address, **options)
        else:
            ray.init(num_cpus=engine.cpus or os.cpu_count(), **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = engine.address or "a local Ray"
        raise InputError(f"--engine ray: could not start or join {where} "
                         f"({first_line(exc)})") from None


def quiet_stdout(engine: Engine, json_out: bool) -> AbstractContextManager:
    """Where a command prints JSON on stdout, send what Ray prints there to stderr."""
    if engine.name == "ray" and json_out:
        return redirect_stdout(sys.stderr)
    return nullcontext()


def gpus_per_actor(ray, device: str) -> float:
    """1 when the cluster has GPUs and ``device`` allows them (auto or cuda), else 0; a cuda
    device on a cluster without GPUs is an InputError."""

    if device not in ("auto", "cpu", "mps") and not device.startswith("cuda"):
        raise InputError(f"unknown --device {device!r}; choose from {DEVICES}")
    if device in ("cpu", "mps"):  # a Ray worker runs on CUDA or on its CPU
        return 0
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    if device.startswith("cuda") and not gpus:
        raise InputError(f"--device {device}: the Ray cluster has no GPU")
    return gpus
