"""Kill points: the places where a run killed at the wrong moment could lose or mislabel data.

The fault tests set ``SWAPSCOPE_FAULT`` to a point's name and the process kills itself there
(SIGKILL: no clean-up runs), so the next run must cope with exactly what is left on disk; or to
``stop:NAME``, and the process stops itself there (SIGSTOP) until the test sends SIGCONT, so a
second process can be started at a chosen moment of the first; or to ``once:NAME``, and the
first process to reach the point kills itself there and the rest pass (the first creates the
file NAME in the folder ``SWAPSCOPE_FAULT_MARK``): a worker that dies once, as a retried Ray
task would see. Several faults are separated by commas. Unset, a kill point costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def kill_point(name: str) -> None:
    """SIGKILL (or, for ``stop:NAME``, SIGSTOP) this process here if ``SWAPSCOPE_FAULT`` names
    this point."""
    faults = os.environ.get("SWAPSCOPE_FAULT")
    if not faults:
        return
    for fault in faults.split(","):
        if fault == name:
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault == f"stop:{name}":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif fault == f"once:{name}":
            mark = os.path.join(os.environ["SWAPSCOPE_FAULT_MARK"], name)
            try:
                os.close(os.open(mark, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                continue
            os.kill(os.getpid(), signal.SIGKILL)
