"""eval harden: the closed loop."""

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from detect.scan import DEFAULT_DETECTOR
from eval.benchmark import SHIPPED_NAME
from eval.cli import app

runner = CliRunner()


def test_closed_loop_hardens_a_detector_and_reports_before_and_after(tmp_path, astronaut):
    import cv2

    from forge.cli import app as forge_app
    from swapscope.media.sample import moving_face_frames, write_clip

    grey = np.repeat(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[..., None], 3, -1)
    people = {"eileen": astronaut, "mirror": np.ascontiguousarray(astronaut[:, ::-1]), "grey": grey}
    for person, image in people.items():
        (tmp_path / "videos" / person).mkdir(parents=True)
        write_clip(tmp_path / "videos" / person / "clip.mp4", moving_face_frames(image, 9), fps=25)
    (tmp_path / "set.toml").write_text('out = "set"\nvideos = ["videos"]\nmax_frames = 9\n'
                                       '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [40, 120]\n')
    assert runner.invoke(forge_app, ["dataset", str(tmp_path / "set.toml")]).exit_code == 0
    (tmp_path / "eval.toml").write_text(
        f'sets = ["{tmp_path / "set"}"]\nbootstrap = 20\nrealism_frames = 2\n'
    )
    out = tmp_path / "report"
    first = runner.invoke(
        app, ["report", "--config", str(tmp_path / "eval.toml"), "--out", str(out)]
    )
    assert first.exit_code == 0, first.output
    result = runner.invoke(
        app, ["harden", "--out", str(out), "--top", "1", "--epochs", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert len(outcome["trained_on"]) == 1 and outcome["detector"] == SHIPPED_NAME
    assert {r["config"] for r in outcome["rows"]} == {"fwa-sim fwa_size=40", "fwa-sim fwa_size=120"}
    assert sum(r["trained_on"] for r in outcome["rows"]) == 1
    for r in outcome["rows"]:  # test identity only: one fake and one real video per configuration
        assert (r["fakes"], r["reals"]) == (1, 1)
    _assert_fine_tuned_from(outcome["hardened"], DEFAULT_DETECTOR)
    # the training reals are labelled by person, so a person is trained on or validated on,
    # never both (one person is the test identity)
    member = json.loads((out / "harden" / "detectors" / "0" / "best" / "config.json").read_text())
    assert set(member["train_identities"]) | set(member["val_identities"]) < set(people)
    assert member["train_identities"] and member["val_identities"]
    assert not set(member["train_identities"]) & set(member["val_identities"])
    html = (out / "harden" / "report.html").read_text()
    assert f"Hardening {SHIPPED_NAME}" in html and "detector/best" in html
    table = (out / "harden" / "report.md").read_text().split("## Hardening")[1]
    # one fake and one real: every AUC of the before/after table marked
    assert table.count("(too few: 1/1 videos, under 10 of a class)") == 2 * 4, table


def _assert_fine_tuned_from(hardened_path, shipped_path) -> None:
    """Each hardened member started from the shipped member's weights (recorded by hash, through
    the member's own copy) and moved away from them, but stayed far closer to them than to a
    fresh ImageNet start."""
    import torch

    from detect.checkpoint import load_checkpoint, load_detector
    from detect.models import create_detector
    from swapscope.files import sha256_file

    hardened, shipped = load_checkpoint(hardened_path), load_checkpoint(shipped_path)
    assert len(hardened.members) == len(shipped.members)
    for index, (after, before) in enumerate(zip(hardened.members, shipped.members)):
        start = Path(after.meta["config"]["init"])
        assert after.meta["init_sha256"] == sha256_file(start / "weights.safetensors")
        copied = load_detector(start)
        if shipped.folder is not None:  # an ensemble's member went through its own copy
            assert copied.meta["ensemble_member"]["ensemble_sha256"] == shipped.sha256
            assert copied.meta["ensemble_member"]["index"] == index
        fresh, _ = create_detector(before.arch)

        def distance(a, b) -> float:
            b = b.state_dict()
            return sum(float((v.float() - b[k].float()).pow(2).sum())
                       for k, v in a.state_dict().items() if v.is_floating_point()) ** 0.5

        assert distance(copied.module, before.module) < 1e-3 * distance(before.module, fresh)
        moved = distance(after.module, before.module)
        assert 0 < moved < distance(after.module, fresh) / 10
        assert not torch.equal(after.module.get_classifier().weight,
                               before.module.get_classifier().weight.to(torch.float32))
