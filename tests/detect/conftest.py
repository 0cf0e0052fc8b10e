"""The detectors the detect tests share: trained once for the package."""


import pytest
import torch
from typer.testing import CliRunner

from detect.checkpoint import load_detector
from detect.cli import app as detect_app

runner = CliRunner()


@pytest.fixture(scope="package")
def tiny_detector(two_facesets, tmp_path_factory):
    """A detector trained for one step: its scores mean nothing, its plumbing is real."""
    out = tmp_path_factory.mktemp("detector") / "run"
    trained = runner.invoke(
        detect_app,
        [
            "train", *map(str, two_facesets), "--out", str(out), "--epochs", "1", "--batch-size",
            "4", "--steps-per-epoch", "1", "--device", "cpu",
        ],
    )
    assert trained.exit_code == 0, trained.output
    return out / "best"


@pytest.fixture(scope="package")
def other_detector(tiny_detector, tmp_path_factory):
    """The tiny detector with its classifier moved: a second member that scores differently."""
    from detect.checkpoint import save_detector

    detector = load_detector(tiny_detector)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in detector.module.get_classifier().parameters():
            param.add_(torch.randn_like(param))
    meta = {k: v for k, v in detector.meta.items() if k not in ("kind", "code_version", "dtype")}
    return save_detector(tmp_path_factory.mktemp("other") / "best", detector.module, meta)
