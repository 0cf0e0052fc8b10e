"""Files a user hands over or names (issue 27): each bad one is one clear line and exit 2,
nothing written. Each test failed before its fix."""

import pytest
from typer.testing import CliRunner

from forge.cli import app as forge_app

runner = CliRunner()


@pytest.mark.parametrize("name", ["out.txt", "out.png", "no_suffix", "folder"])
def test_forge_sample_names_a_file_it_cannot_write_in_one_line(tmp_path, name):
    (tmp_path / "folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(forge_app, ["sample", str(tmp_path / name), "--frames", "2"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and name in line
    assert sorted(tmp_path.rglob("*")) == before


def test_forge_sample_replaces_no_file(tmp_path):
    mine = tmp_path / "holiday.mp4"
    mine.write_bytes(b"someone's video")
    result = runner.invoke(forge_app, ["sample", str(mine), "--frames", "2"])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert mine.read_bytes() == b"someone's video"
    fresh = runner.invoke(forge_app, ["sample", str(tmp_path / "new.MP4"), "--frames", "2"])
    assert fresh.exit_code == 0, fresh.output
