"""The ``eval`` command: realism against detectability, as a report, and the closed loop that
hardens a detector against what evades it. Option defaults come from the config dataclasses."""

from __future__ import annotations

from pathlib import Path

import typer

from eval.harden import HardenConfig
from swapscope.cli import AUTO, DeviceOption, JsonOption, handle_errors, make_app, print_json
from swapscope.device import resolve_device

app = make_app("eval", "Score fakes for realism against detectability and write benchmark reports.")
H = HardenConfig  # where the defaults live


@app.command()
@handle_errors
def report(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML/JSON: sets (forgery sets) and detectors to benchmark, or [loop] settings. Default: the whole loop on data it makes."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Folder for report.md/.csv/.html, plots and the cache."),
    sample_data: bool = typer.Option(True, help="Without --config: use ../shared/data when it is there (else clips made from a photo scikit-image ships)."),
    device: DeviceOption = AUTO,
    json_out: JsonOption = False,
) -> None:
    """Benchmark forgery configurations: realism and detectability per detector, as markdown, CSV and HTML
    (the table and the evading configurations with --json)."""
    from eval.benchmark import run_benchmark
    from eval.loop import LoopConfig, load_config, make_default_data
    from eval.report import evaders, write_report

    resolved = resolve_device(device)
    bench, loop = load_config(config) if config else (None, LoopConfig())
    if not sample_data:
        loop.shared_data = "none"
    if bench is None:
        bench = make_default_data(out / "work", loop, resolved)
    result = run_benchmark(bench, out, resolved)
    paths = write_report(result, out)
    if json_out:
        table = result.to_json()
        print_json({"rows": [{k: v for k, v in r.items() if k != "example"} for r in table["rows"]],
                    "evaders": evaders(table), "files": {k: str(v) for k, v in paths.items()}})
    else:
        typer.echo(f"{paths['html']}: {len(result.rows)} forgery configurations x "
                   f"{len(result.detectors)} detectors (also {paths['md'].name}, {paths['csv'].name})")


@app.command()
@handle_errors
def harden(
    out: Path = typer.Option(Path(H.report), "--out", "-o", help="The folder of a finished eval report; results go to OUT/harden."),
    detector: Path | None = typer.Option(None, help="The detector to harden (a checkpoint in the report; default: the shipped one)."),
    top: int = typer.Option(H.top, help="Train on this many of the configurations that evade it most."),
    epochs: int = typer.Option(H.epochs, help="detect train epochs."),
    device: DeviceOption = AUTO,
    json_out: JsonOption = False,
) -> None:
    """Closed loop: detect train --fakes on the evading configurations, then a before/after report on held-out identities
    (the before/after table with --json)."""
    from eval.harden import before_after_markdown
    from eval.harden import harden as run_harden
    from eval.report import write_report

    outcome = run_harden(HardenConfig(report=str(out), detector=str(detector) if detector else "", top=top,
                                      epochs=epochs), resolve_device(device))
    table = before_after_markdown(outcome)
    paths = write_report(outcome["result"], out / "harden", title="swapscope benchmark after hardening",
                         extra_md=table)
    if json_out:
        print_json({k: v for k, v in outcome.items() if k != "result"})
    else:
        typer.echo(table)
        typer.echo(f"\n{paths['html']}")


@app.command()
def version() -> None:
    """Print the swapscope version."""
    from swapscope import __version__

    typer.echo(f"swapscope {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
