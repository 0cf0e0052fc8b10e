"""eval report: the table, the cache, the HTML page, ensembles, bad inputs, the default loop."""

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from eval.benchmark import SHIPPED_NAME
from eval.cli import app
from eval.report import pareto_front

runner = CliRunner()

# fwa-sim fakes of the astronaut clips at 40 and 120 px render size must be found by the shipped
# detector: frame AUC 1.0 at both sizes when measured (2026-11-24, fwa_lite0)
FWA_SIM_FRAME_AUC = 0.95
# the default loop's fwa-sim fakes (render size 112 px, the hardest: little resampling) and its
# reals: frame AUC 0.949 when measured (2026-12-02, fwa_lite0)
DEFAULT_LOOP_FWA_SIM_FRAME_AUC = 0.9


def test_pareto_front_keeps_the_undominated_configurations():
    # (detectability, realism): lower x and higher y are better
    points = [(0.9, 0.9), (0.5, 0.5), (0.6, 0.4), (0.95, 0.95), (0.5, 0.3)]
    assert sorted(pareto_front(points)) == [0, 1, 3]


def test_report_from_a_config_writes_markdown_csv_and_html(forgery_set, tmp_path, monkeypatch):
    config = tmp_path / "eval.toml"
    config.write_text(f'sets = ["{forgery_set}"]\nbootstrap = 50\nrealism_frames = 3\n')
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "--config", str(config), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert len(summary["rows"]) == 2  # two fwa-sim render sizes
    row = summary["rows"][0]
    assert row["fakes"] == 2 and row["reals"] == 2
    for size in (40, 120):  # the shipped detector finds fwa-sim fakes at either render size
        sized = next(r for r in summary["rows"] if r["config"] == f"fwa-sim fwa_size={size}")
        found = sized["detectors"][SHIPPED_NAME]
        assert found["frame"]["auc"] >= FWA_SIM_FRAME_AUC, (size, found["frame"])
        assert len(found["video"]["ci"]["auc"]) == 2
    assert (
        row["realism"]["identity_to_target"] is not None
        and row["realism"]["pose_error_deg"] is not None
    )
    assert set(summary["evaders"]) == {SHIPPED_NAME}
    for name in (
        "report.md", "report.csv", "report.html", "tradeoff.png",
        "roc_" + "".join(c if c.isalnum() else "_" for c in SHIPPED_NAME) + ".png",
    ):
        assert (out / name).is_file(), name
    assert (out / "report.csv").read_text().count("\n") == 3
    # 2 fakes and 2 reals: every AUC, EER and interval is marked, in each format
    marked = "(too few: 2/2 videos, under 10 of a class)"
    for name in ("report.md", "report.csv", "report.html"):
        text = (out / name).read_text()
        assert text.count(marked) == 2 * 5, name  # 2 rows x 5 detectability figures
    assert "not results" in (out / "report.md").read_text()
    assert "id='too-few'" in (out / "report.html").read_text()
    cached = sorted(p.name for p in (out / "cache").iterdir())
    scans = _count_scans(monkeypatch)
    again = runner.invoke(app, ["report", "--config", str(config), "--out", str(out), "--json"])
    assert again.exit_code == 0 and sorted(p.name for p in (out / "cache").iterdir()) == cached
    assert scans == []  # every score came from the cache
    assert json.loads(again.stdout)["rows"] == summary["rows"]  # cached scores: the same table
    (out / "cache" / next(n for n in cached if n.startswith("scan-"))).unlink()
    assert runner.invoke(app, ["report", "--config", str(config), "--out", str(out)]).exit_code == 0
    assert len(scans) == 1  # the one score taken out of the cache was scanned again


def test_a_changed_scan_preset_is_never_answered_from_the_cache(forgery_set, tmp_path,
                                                                 monkeypatch):
    """Cached scores were keyed by the mode's name alone: after the fast preset changed, the
    report gave the old preset's scores (issue 28)."""
    from detect import scan

    config = tmp_path / "eval.toml"
    config.write_text(f'sets = ["{forgery_set}"]\nbootstrap = 10\nrealism_frames = 2\n')
    out = tmp_path / "report"
    scans = _count_scans(monkeypatch)
    assert runner.invoke(app, ["report", "--config", str(config), "--out", str(out)]).exit_code == 0
    first = len(scans)
    monkeypatch.setitem(scan.MODES, "fast", {**scan.MODES["fast"], "every": 2})
    again = runner.invoke(app, ["report", "--config", str(config), "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert first > 0 and len(scans) == 2 * first  # every output scanned anew


def _count_scans(monkeypatch) -> list:
    """Record every video the benchmark's scanner decodes."""
    from detect.scan import Scanner

    scans: list = []
    original = Scanner.scan

    def counted(self, path, *args, **kwargs):
        scans.append(path)
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Scanner, "scan", counted)
    return scans


def test_the_html_report_renders_in_headless_chromium(forgery_set, tmp_path):
    import os

    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is missing; .ci/run installs the Debian packages chromium and "
                "chromium-driver"
            )
        pytest.skip("chromium is not installed (.ci/run installs it)")
    config = tmp_path / "eval.toml"
    config.write_text(f'sets = ["{forgery_set}"]\nbootstrap = 20\nrealism_frames = 2\n')
    out = tmp_path / "report"
    assert runner.invoke(app, ["report", "--config", str(config), "--out", str(out)]).exit_code == 0
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
         "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<table id=\"results\">" in dom and dom.count("<tr>") >= 3
    assert dom.count('class="plot"') == 2  # realism/detectability and one ROC
    assert dom.count('class="example"') == 2
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
            "--window-size=1200,900", (out / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    import cv2

    picture = cv2.imread(str(shot))
    assert picture is not None and picture.std() > 10  # something was drawn, not a blank page


def test_an_ensemble_is_benchmarked_as_one_detector(forgery_set, tmp_path):
    config = tmp_path / "eval.toml"
    config.write_text(f'sets = ["{forgery_set}"]\ndetectors = ["", ["", ""]]\nbootstrap = 20\n'
                      'realism_frames = 2\n')
    result = runner.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    single, pair = row["detectors"][SHIPPED_NAME], row["detectors"][
        f"{SHIPPED_NAME} + {SHIPPED_NAME}"]
    assert pair["frame"]["auc"] == pytest.approx(single["frame"]["auc"])  # the mean of equals


def test_bad_inputs_exit_2(forgery_set, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.jsonl").write_text('{"id": "x", "label": "fake"\n')
    config = tmp_path / "a.toml"
    config.write_text(f'sets = ["{broken}"]\n')
    result = runner.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "manifest line does not parse" in result.stderr
    config.write_text(f'sets = ["{forgery_set}"]\ndetectors = ["{tmp_path / "nowhere"}"]\n')
    result = runner.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no such checkpoint" in result.stderr
    empty = tmp_path / "noface"
    shutil.copytree(forgery_set, empty)
    from skimage import data

    from swapscope.files import sha256_file
    from swapscope.media.sample import write_clip

    rows = [json.loads(line) for line in (empty / "manifest.jsonl").read_text().splitlines()]
    for row in rows:
        write_clip(empty / row["output"], [data.coffee()[:320, :320]] * 4, fps=25)  # faces gone
    config.write_text(f'sets = ["{empty}"]\n')
    result = runner.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert (
        result.exit_code == 2 and "does not match the sha256" in result.stderr
    )  # tampered outputs
    for row in rows:  # the same outputs, honestly recorded
        row["output_sha256"] = sha256_file(empty / row["output"])
    (empty / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no faces" in result.stderr
    config.write_text('sets = ["x"]\ncolour = 1\n')
    result = runner.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unknown config keys ['colour']" in result.stderr


def test_the_default_loop_runs_twice_on_a_fresh_install_without_sample_data(tmp_path, monkeypatch):
    """The README's main job on what a fresh install has (clips made from scikit-image's photo),
    run twice in the same folder: the second run reuses what the first made and finishes."""
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "--no-sample-data", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    methods = sorted(row["method"] for row in summary["rows"])
    assert methods == ["fwa-sim", "fwa-sim", "model", "model"]
    for row in summary["rows"]:
        assert row["fakes"] == 2 and row["reals"] == 2
        found = row["detectors"][SHIPPED_NAME]["frame"]
        low, high = found["ci"]["auc"]
        assert low <= found["auc"] <= high
        if row["method"] == "fwa-sim":
            assert found["auc"] >= DEFAULT_LOOP_FWA_SIM_FRAME_AUC, (row["config"], found)
    assert (out / "report.html").stat().st_size > 10_000
    weights = out / "work" / "model" / "weights.safetensors"
    trained = weights.stat().st_mtime_ns
    scans = _count_scans(monkeypatch)
    again = runner.invoke(app, ["report", "--no-sample-data", "--out", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["rows"] == summary["rows"]
    assert scans == [] and weights.stat().st_mtime_ns == trained  # nothing redone
