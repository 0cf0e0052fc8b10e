"""swapscope forge: make labelled face-swap fakes. The face toolkit lives in swapscope.faces."""
