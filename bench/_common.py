"""Helpers shared by the benchmark scripts: where the sample data is, machine description."""

from __future__ import annotations

import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data(arg: str | None = None) -> Path:
    from swapscope.shared import find_shared_data

    path = find_shared_data(arg or "")
    if path is None:
        raise SystemExit(
            f"sample data not found (tried {arg or '../shared/data'}); pass --data or set "
            "SWAPSCOPE_SHARED_DATA"
        )
    return path


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    python = platform.python_version()
    return f"{os.cpu_count()} cores, {cpu}, {gpu}, Python {python}, torch {torch.__version__}"


def parser(doc: str, frames: int | None = None):
    """The arguments every benchmark takes: --data, --json (and --frames where it samples)."""
    import argparse

    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--data", help="sample data folder (default ../shared/data)")
    p.add_argument("--json", help="also write the results here")
    if frames is not None:
        p.add_argument("--frames", type=int, default=frames, help="frames per clip")
    return p


def write_json(path: str | None, results: dict) -> None:
    import json

    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2))
