"""swapscope's floor: what forge, detect and eval share (errors, files, config, CLI kit, device,
checkpoints, media, the face toolkit and the typed file formats). It imports none of them.

Imports flow one way: ``eval -> forge, detect -> swapscope``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("swapscope")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
