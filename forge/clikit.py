"""What every swapscope CLI shares: errors as one line + exit 2, progress on stderr, JSON out."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from forge.errors import InputError

err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    """Print one clear line on stderr and exit with code 2."""
    # plain print: rich would wrap a long path over several lines
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def handle_errors(func: Callable) -> Callable:
    """Turn the user's mistakes (InputError, bad values) into one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            print("interrupted: re-run the same command to resume", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


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
        raise InputError(f"unknown --device {device!r}; choose from ['auto', 'cpu', 'cuda', 'mps']")
    return device


def make_app(name: str, help_text: str) -> typer.Typer:
    app = typer.Typer(name=name, help=help_text, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.callback()
    def _group() -> None:
        # a callback keeps subcommands named even while an app has only one
        pass

    _group.__doc__ = help_text
    return app


class ProgressBar:
    """One rich progress bar at a time on stderr, drawn only on a terminal.

    ``fields`` are extra columns, each a format string over task fields (e.g. "loss {task.fields[loss]:.4f}");
    their initial values go to ``start``.
    """

    def __init__(self, enabled: bool, *fields: str, unit: str = "it/s") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._unit = unit
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            *(TextColumn(f) for f in fields), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=err_console, disable=not enabled, transient=True,
        )
        self._task = None

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        self._progress.__exit__(*exc)

    def start(self, label: str, total: int | None, completed: int = 0, **fields) -> None:
        self._task = self._progress.add_task(label, total=total, completed=completed, rate="", **fields)

    def advance(self, n: int = 1, **fields) -> None:
        if self._task is None:
            return
        speed = self._progress.tasks[-1].speed
        rate = f"{speed:.1f} {self._unit}" if speed else ""
        self._progress.update(self._task, advance=n, rate=rate, **fields)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
