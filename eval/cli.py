"""The ``eval`` command: realism against detectability (metrics and reports arrive with issue 6)."""

from __future__ import annotations

from forge.clikit import make_app

app = make_app("eval", "Score fakes for realism against detectability and write benchmark reports.")


@app.command()
def version() -> None:
    """Print the swapscope version."""
    import typer

    from forge import __version__

    typer.echo(f"swapscope {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
