"""Device and precision, decided once at the edge (STYLE.md rule 7) and passed down."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from swapscope.errors import InputError

DEVICES = ["auto", "cpu", "cuda", "mps"]


def resolve_device(device: str) -> str:
    """``auto`` -> cuda, mps or cpu; anything else is checked and passed through."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise InputError(f"unknown --device {device!r}; choose from {DEVICES}")
    return device


def autocast_for(device: str) -> AbstractContextManager:
    """bf16 autocast on CUDA; plain fp32 everywhere else."""
    import torch

    return torch.autocast(
        device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")
    )


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
