"""The ``eval`` command: realism against detectability, as a report, and the closed loop that
hardens a detector against what evades it. Option defaults come from the config dataclasses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eval.harden import HardenConfig
from swapscope import cli as kit
from swapscope.cli import handle_errors, make_app, print_json
from swapscope.device import resolve_device
from swapscope.errors import InputError
from swapscope.files import WriteLock, writable_folder

app = make_app("eval", "Score fakes for realism against detectability and write benchmark reports.")
H = HardenConfig  # where the defaults live


# Options, declared once; each command takes its defaults from its config dataclass.
Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML/JSON: sets (forgery sets) and detectors to benchmark, or [loop] settings. "
        "Default: the whole loop on data it makes.",
    ),
]
Out = Annotated[
    Path, typer.Option("--out", "-o", help="Folder for report.md/.csv/.html, plots and the cache.")
]
SampleData = Annotated[
    bool,
    typer.Option(
        help="Without --config: use ../shared/data when it is there (else clips made from a photo "
        "scikit-image ships)."
    ),
]
HardenOut = Annotated[
    Path,
    typer.Option(
        "--out", "-o", help="The folder of a finished eval report; results go to OUT/harden."
    ),
]
Detector = Annotated[
    Path | None,
    typer.Option(
        help="The detector to harden (a checkpoint in the report; default: the shipped one)."
    ),
]
Top = Annotated[
    int, typer.Option(help="Train on this many of the configurations that evade it most.")
]
Epochs = Annotated[int, typer.Option(help="detect train epochs.")]


@app.command()
@handle_errors
def report(
    config: Config = None,
    out: Out = Path("report"),
    sample_data: SampleData = True,
    device: kit.DeviceOption = kit.AUTO,
    json_out: kit.JsonOption = False,
) -> None:
    """Benchmark forgery configurations: realism and detectability per detector, as markdown,
    CSV and HTML.

    --json prints the table and the configurations that evade each detector most."""
    # lazy: --help and the other commands stay fast
    from eval.benchmark import run_benchmark
    from eval.loop import LoopConfig, load_config, make_default_data
    from eval.report import evaders, write_report

    resolved = resolve_device(device)
    bench, loop = load_config(config) if config else (None, LoopConfig())
    if not sample_data:
        loop.shared_data = "none"
    with WriteLock(writable_folder(out) / ".lock", out, "eval report or harden"):
        if bench is None:
            bench = make_default_data(out / "work", loop, resolved)
        result = run_benchmark(bench, out, resolved)
        paths = write_report(result, out)
    if json_out:
        print_json(
            {
                "rows": [{k: v for k, v in r.to_json().items() if k != "example"}
                         for r in result.rows],
                "evaders": evaders(result),
                "files": {k: str(v) for k, v in paths.items()},
            }
        )
    else:
        typer.echo(
            f"{paths['html']}: {len(result.rows)} forgery configurations x "
            f"{len(result.detectors)} detectors (also {paths['md'].name}, {paths['csv'].name})"
        )


@app.command()
@handle_errors
def harden(
    out: HardenOut = Path(H.report),
    detector: Detector = None,
    top: Top = H.top,
    epochs: Epochs = H.epochs,
    device: kit.DeviceOption = kit.AUTO,
    json_out: kit.JsonOption = False,
) -> None:
    """Closed loop: detect train --fakes on the evading configurations, then a before/after
    report on held-out identities.

    --json prints the before/after table."""
    # lazy: --help and the other commands stay fast
    from eval.harden import before_after_markdown
    from eval.harden import harden as run_harden
    from eval.report import write_report

    config = HardenConfig(report=str(out), detector=str(detector) if detector else "", top=top,
                          epochs=epochs)
    if not out.is_dir():
        raise InputError(f"{out}: no such report folder; run eval report --out {out} first")
    with WriteLock(writable_folder(out) / ".lock", out, "eval report or harden"):
        outcome = run_harden(config, resolve_device(device))
        table = before_after_markdown(outcome)
        paths = write_report(outcome.result, out / "harden",
                             title="swapscope benchmark after hardening", extra_md=table)
    if json_out:
        print_json(outcome.to_json())
    else:
        typer.echo(table)
        typer.echo(f"\n{paths['html']}")


@app.command()
def version() -> None:
    """Print the swapscope version."""
    # lazy: --help and the other commands stay fast
    from swapscope import __version__

    typer.echo(f"swapscope {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
