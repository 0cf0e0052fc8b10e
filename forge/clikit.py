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
