"""The one exception type that means "the user handed us something we cannot use"."""


class InputError(Exception):
    """Bad input: unreadable or truncated media, no usable face, a checkpoint of the wrong kind.

    The CLIs print its message as one line on stderr and exit with code 2.
    """


def require_at_least_one(config: object, *names: str) -> None:
    """Raise InputError naming the first of ``config``'s integer options that is below 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A library exception's message as it goes into one InputError line: its first line,
    at most ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
