"""The ``detect`` command: face-warping-artifact classifiers (train and scan arrive with issue 3)."""

from __future__ import annotations

from forge.clikit import make_app

app = make_app("detect", "Train face-warping-artifact detectors and scan media for face swaps.")


@app.command()
def info() -> None:
    """Show which detector checkpoints this installation has."""
    from pathlib import Path

    import typer

    found = sorted(Path(__file__).parent.glob("weights/*.safetensors"))
    typer.echo("\n".join(str(p) for p in found) if found else "no detector checkpoints installed yet")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
