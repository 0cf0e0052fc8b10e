"""swapscope forge: make labelled face-swap fakes. The face toolkit lives in forge.faces."""

__version__ = "0.1.0"
