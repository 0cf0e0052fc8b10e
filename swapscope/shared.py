"""Where the sample data (``../shared/data``: real videos, identity photos, genuine fakes for
validation; never committed) is: one lookup for eval, the benchmark scripts and the tests."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SWAPSCOPE_SHARED_DATA"
_CHECKOUT = Path(__file__).resolve().parents[1]


def find_shared_data(hint: str | Path = "") -> Path | None:
    """The first of ``hint``, $SWAPSCOPE_SHARED_DATA, ``../shared/data`` beside the checkout and
    beside the working directory that holds a ``CARD.md``; None if none does."""
    candidates = [str(hint), os.environ.get(ENV_VAR, ""), str(_CHECKOUT.parent / "shared" / "data"),
                  str(Path.cwd().parent / "shared" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "CARD.md").is_file():
            return Path(candidate).resolve()
    return None
