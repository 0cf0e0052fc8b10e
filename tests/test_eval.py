import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from detect.scan import DEFAULT_DETECTOR
from eval.benchmark import SHIPPED_NAME
from eval.cli import app
from eval.metrics import Scores, bootstrap, detectability, point_metrics, video_scores
from eval.realism import expression_vector, frechet_distance, head_pose
from eval.report import pareto_front

runner = CliRunner()

# fwa-sim fakes of the astronaut clips at 40 and 120 px render size must be found by the shipped
# detector: frame AUC 1.0 at both sizes when measured (2026-11-24, fwa_lite0)
FWA_SIM_FRAME_AUC = 0.95
# the default loop's fwa-sim fakes (render size 112 px, the hardest: little resampling) and its
# reals: frame AUC 0.949 when measured (2026-12-02, fwa_lite0)
DEFAULT_LOOP_FWA_SIM_FRAME_AUC = 0.9


def test_metrics_of_a_perfect_and_a_useless_detector():
    labels = np.array([0] * 50 + [1] * 50)
    perfect = point_metrics(labels, labels + np.linspace(0, 0.1, 100))
    assert perfect == {"auc": 1.0, "eer": 0.0, "ap": 1.0, "tpr_at_1fpr": 1.0}
    coin = point_metrics(labels, np.random.default_rng(0).random(100))
    assert 0.3 < coin["auc"] < 0.7 and 0.3 < coin["eer"] < 0.7 and coin["tpr_at_1fpr"] < 0.3


def test_video_scores_follow_ids_not_positions():
    groups = np.array(["r1", "f1", "r1", "f1", "r2", "f2", "r2", "f2", "f2"])
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.1, 0.6, 0.2])
    videos = video_scores(Scores(labels, scores, groups))
    order = np.random.default_rng(1).permutation(len(groups))
    shuffled = video_scores(Scores(labels[order], scores[order], groups[order]))
    assert list(videos.groups) == list(shuffled.groups) == ["f1", "f2", "r1", "r2"]
    np.testing.assert_allclose(videos.scores, shuffled.scores)
    np.testing.assert_allclose(videos.scores, [0.9, 0.7, 0.2, 0.3])  # top third of each video
    with pytest.raises(ValueError, match="both labels"):
        video_scores(Scores(np.array([0, 1]), np.array([0.1, 0.2]), np.array(["v", "v"])))


def test_bootstrap_intervals_hold_the_estimate():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    scores = labels * 0.5 + rng.random(400)
    groups = np.array([f"v{i // 10}" for i in range(400)])
    data = Scores(labels, scores, groups)
    result = detectability(data, rounds=200)
    for level in ("frame", "video"):
        low, high = result[level].ci["auc"]
        assert low <= result[level].auc <= high and high - low < 0.5
    assert result["video"].n == 40 and result["frame"].n == 400
    assert set(bootstrap(data, rounds=20)) == {"auc", "eer", "ap", "tpr_at_1fpr"}


def test_bootstrap_resamples_videos_not_frames():
    """All the detector's misses sit in one of ten fake videos (20 frames each). Resampling
    videos leaves that video out of about a third of the draws (AUC exactly 1 there);
    resampling frames would keep about 20 of its frames in every draw (AUC near 0.9 always)."""
    fakes = np.repeat(np.r_[np.full(9, 0.9), 0.1], 20)  # video 9 is missed
    reals = np.full(200, 0.5)
    data = Scores(np.r_[np.ones(200), np.zeros(200)].astype(int), np.r_[fakes, reals],
                  np.array([f"fake{i // 20}" for i in range(200)] +
                           [f"real{i // 20}" for i in range(200)]))
    assert point_metrics(data.labels, data.scores)["auc"] == pytest.approx(0.9)
    low, high = bootstrap(data, rounds=400)["auc"]
    assert high == 1.0 and low < 0.85


def test_head_pose_and_expression_of_a_face(astronaut, dlib_backend):
    face = dlib_backend.faces(astronaut)[0]
    yaw, pitch, roll = head_pose(face.landmarks, astronaut.shape)
    assert abs(yaw) < 25 and abs(roll) < 15  # she faces the camera, head upright
    mirrored = face.landmarks.copy()
    mirrored[:, 0] = astronaut.shape[1] - mirrored[:, 0]
    assert abs(head_pose(mirrored, astronaut.shape)[0] + yaw) < 5  # a mirror flips the yaw
    scaled = face.landmarks * 1.5
    np.testing.assert_allclose(
        expression_vector(scaled), expression_vector(face.landmarks), atol=1e-4
    )


def test_frechet_distance_is_zero_for_one_sample_and_the_mean_shift_squared_for_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + [2, 0, 0, 0]) == pytest.approx(4, abs=1e-6)


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


@pytest.mark.slow
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
