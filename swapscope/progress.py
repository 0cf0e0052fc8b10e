"""How long work reports how far it is, as a plain protocol: the library reports through it and
never imports the CLI kit (typer, rich); ``swapscope.cli.ProgressBar`` is the terminal's one."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    """How long work reports how far it is: one bar at a time. Messages (an input finished, an
    epoch's losses) go to ``logging`` instead; results go to the caller."""

    def start(self, label: str, total: int | None, completed: int = 0, **fields: Any) -> None: ...

    def advance(self, n: int = 1, **fields: Any) -> None: ...

    def stop(self) -> None: ...


class NoProgress:
    """The Progress of a caller that does not want one."""

    def start(self, label: str, total: int | None, completed: int = 0, **fields: Any) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def stop(self) -> None:
        pass
