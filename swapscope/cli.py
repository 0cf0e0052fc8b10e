"""What every swapscope CLI shares (STYLE.md rules 9 and 14): errors as one line + exit 2, one
``Progress`` protocol for long work (a rich bar on stderr), ``logging`` for one-line messages
(to stderr), JSON on stdout, and the options every command declares the same way."""

from __future__ import annotations

import functools
import json
import logging
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from swapscope.errors import InputError
from swapscope.progress import NoProgress, Progress  # noqa: F401  (the CLI kit's bar is one)

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
        previous = _stop_on_sigterm()
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            fail(str(exc))
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM: every clean-up has run
            print("interrupted: re-run the same command to resume", file=sys.stderr)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
        except OSError as exc:  # an output that cannot be written, a disk that is full
            fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that temporary files are removed and worker processes
    stopped on the way out."""


def _stop_on_sigterm():
    """Turn SIGTERM into ``Terminated`` for the length of a command; the previous handler, or
    None where signals cannot be set (not the main thread)."""

    def raise_terminated(signum, frame) -> None:
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:
        return None


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


class _ConsoleHandler(logging.Handler):
    """Log records as plain lines on stderr (rich markup allowed), looked up at each write so
    that a test runner's captured stderr receives them."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(self.format(record), highlight=False, soft_wrap=True)


def setup_logging(level: int = logging.INFO) -> None:
    """Send swapscope's messages (loggers ``swapscope``, ``forge``, ``detect``, ``eval``) to
    stderr."""
    for name in ("swapscope", "forge", "detect", "eval"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
            logger.addHandler(_ConsoleHandler())
        logger.propagate = False


def make_app(name: str, help_text: str) -> typer.Typer:
    app = typer.Typer(name=name, help=help_text, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.callback()
    def _group() -> None:
        # a callback keeps subcommands named even while an app has only one
        setup_logging()

    _group.__doc__ = help_text
    return app


class ProgressBar:
    """One rich progress bar at a time on stderr, drawn only on a terminal.

    ``fields`` are extra columns, each a format string over task fields (e.g.
    "loss {task.fields[loss]:.4f}"); their initial values go to ``start``.
    """

    def __init__(self, enabled: bool, *fields: str, unit: str = "it/s") -> None:
        from rich import progress as rich

        self._unit = unit
        self._fields = [name for f in fields for name in re.findall(r"task\.fields\[(\w+)\]", f)]
        self._progress = rich.Progress(
            rich.TextColumn("{task.description}"), rich.BarColumn(), rich.MofNCompleteColumn(),
            *(rich.TextColumn(f) for f in fields), rich.TextColumn("{task.fields[rate]}"),
            rich.TimeRemainingColumn(), console=err_console, disable=not enabled, transient=True,
        )
        self._task = None

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        self._progress.__exit__(*exc)

    def start(self, label: str, total: int | None, completed: int = 0, **fields) -> None:
        """A new bar in place of the last; extra columns this bar's work does not report show
        nan."""
        self.stop()
        fields = {**dict.fromkeys(self._fields, float("nan")), **fields}
        self._task = self._progress.add_task(
            label, total=total, completed=completed, rate="", **fields
        )

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


# Options every command declares the same way (STYLE.md rule 14); a command gives the default,
# taken from its config dataclass.
DeviceOption = Annotated[str, typer.Option(help="Where models run: auto, cpu, cuda or mps.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
SeedOption = Annotated[int, typer.Option(help="Random seed.")]
MaxFramesOption = Annotated[
    int | None, typer.Option(help="Stop each video after this many frames.")
]
IdentityOption = Annotated[list[Path] | None, typer.Option(
    help="This person only: photo, folder, face set or reference .json (repeatable).")]
IdentityThresholdOption = Annotated[
    float, typer.Option(help="Max embedding distance for --identity.")
]
AUTO = "auto"
EngineOption = Annotated[str, typer.Option(
    help="Where the work runs: single (this process) or ray (a Ray pipeline; needs "
    "pip install 'swapscope[scale]').")]
AddressOption = Annotated[str | None, typer.Option(
    help="--engine ray: join the Ray cluster at this address (default: start a local Ray).")]
CpusOption = Annotated[int | None, typer.Option(
    help="--engine ray without --address: cores the local Ray may use (default: all).")]
