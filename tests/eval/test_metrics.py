"""eval.metrics: AUC, EER, video scores by id, bootstrap over videos."""

import numpy as np
import pytest

from eval.metrics import Scores, bootstrap, detectability, point_metrics, video_scores


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
