"""The ``eval`` command: realism against detectability, as a report."""

from __future__ import annotations

from pathlib import Path

import typer

from forge.clikit import err_console, handle_errors, make_app, print_json, resolve_device

app = make_app("eval", "Score fakes for realism against detectability and write benchmark reports.")


@app.command()
@handle_errors
def report(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML/JSON: sets (forgery sets) and detectors to benchmark, or [loop] settings. Default: the whole loop on data it makes."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Folder for report.md/.csv/.html, plots and the cache."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    json_out: bool = typer.Option(False, "--json", help="Print the table as JSON."),
) -> None:
    """Benchmark forgery configurations: realism and detectability per detector, as markdown, CSV and HTML."""
    from eval.benchmark import run_benchmark
    from eval.loop import LoopConfig, load_config, make_default_data
    from eval.report import evaders, write_report

    resolved = resolve_device(device)
    bench, loop = load_config(config) if config else (None, LoopConfig())

    def say(line: str) -> None:
        err_console.print(line, highlight=False, soft_wrap=True)

    if bench is None:
        bench = make_default_data(out / "work", loop, resolved, say=say)
    result = run_benchmark(bench, out, resolved, progress=say)
    paths = write_report(result, out)
    if json_out:
        print_json({"rows": [{k: v for k, v in r.items() if k != "example"} for r in result["rows"]],
                    "evaders": evaders(result), "files": {k: str(v) for k, v in paths.items()}})
    else:
        typer.echo(f"{paths['html']}: {len(result['rows'])} forgery configurations x "
                   f"{len(result['detectors'])} detectors (also {paths['md'].name}, {paths['csv'].name})")


@app.command()
def version() -> None:
    """Print the swapscope version."""
    from forge import __version__

    typer.echo(f"swapscope {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
