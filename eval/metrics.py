"""Detectability metrics: AUC, EER, AP, TPR at 1% FPR, frame and video level, with bootstrap
confidence intervals. Labels: 1 = fake. Scores: higher = more likely fake.

Video-level figures aggregate frame scores by an explicit video id, never by position, and the
bootstrap resamples whole videos (frames of one video are not independent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from swapscope.errors import InputError
from swapscope.formats.scan import TOP_FRACTION, video_score

METRICS = ("auc", "eer", "ap", "tpr_at_1fpr")
# Below this many videos (or inputs) of either class an AUC, EER or interval is not a result:
# reports print it marked (``too_few``), never bare.
MIN_PER_CLASS = 10
TOO_FEW = "too few"  # the mark's words


def too_few(fakes: int, reals: int) -> str:
    """The mark for a figure from ``fakes`` and ``reals`` videos: empty when both are enough."""
    if min(fakes, reals) >= MIN_PER_CLASS:
        return ""
    return f" ({TOO_FEW}: {fakes}/{reals} videos, under {MIN_PER_CLASS} of a class)"


@dataclass
class Scores:
    """Detector scores at one level. Arrays are (N,) and aligned."""

    labels: np.ndarray  # int 0 real / 1 fake
    scores: np.ndarray  # float
    groups: np.ndarray  # str: the video each score belongs to (bootstrap unit)


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where the false positive rate meets the false negative rate."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, target: float = 0.01) -> float:
    """True positive rate at the largest threshold whose false positive rate is <= ``target``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0


def point_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    labels, scores = np.asarray(labels, int), np.asarray(scores, float)
    if len(set(labels.tolist())) < 2:
        return {m: float("nan") for m in METRICS}
    return {
        "auc": float(roc_auc_score(labels, scores)), "eer": eer(labels, scores),
        "ap": float(average_precision_score(labels, scores)),
        "tpr_at_1fpr": tpr_at_fpr(labels, scores),
    }


def bootstrap(
    data: Scores, rounds: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile intervals of every metric, resampling whole groups (videos) with replacement."""
    rng = np.random.default_rng(seed)
    groups = np.unique(data.groups)
    index = {g: np.flatnonzero(data.groups == g) for g in groups}
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(rounds):
        picked = np.concatenate(
            [index[g] for g in rng.choice(groups, size=len(groups), replace=True)]
        )
        values = point_metrics(data.labels[picked], data.scores[picked])
        for m in METRICS:
            if not np.isnan(values[m]):
                draws[m].append(values[m])
    low, high = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {
        m: (
            [float(np.percentile(v, low)), float(np.percentile(v, high))]
            if v
            else [float("nan")] * 2
        )
        for m, v in draws.items()
    }


def video_scores(frame: Scores, top_fraction: float = TOP_FRACTION) -> Scores:
    """One score per video id: the mean of its highest ``top_fraction`` of frame scores."""
    ids = np.unique(frame.groups)
    labels, scores = [], []
    for vid in ids:
        mask = frame.groups == vid
        scores.append(video_score(frame.scores[mask], top_fraction))  # detect scan's rule
        video_labels = set(frame.labels[mask].tolist())
        if len(video_labels) != 1:
            raise ValueError(f"video {vid!r} has frames of both labels")
        labels.append(video_labels.pop())
    return Scores(labels=np.array(labels), scores=np.array(scores), groups=ids)


def is_count(value) -> bool:
    """A JSON count: an int (not a bool), zero or more."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass
class Detectability:
    level: str  # frame | video
    n: int
    fakes: int
    auc: float
    eer: float
    ap: float
    tpr_at_1fpr: float
    ci: dict  # metric -> [low, high] (95% bootstrap over videos)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw, level: str, where: str) -> Detectability:
        """One level's metrics as ``to_json`` wrote them, checked: counts, and each metric and
        its interval a number in [0, 1] or NaN (a metric of one class only); InputError."""
        def rate(value) -> bool:
            return (isinstance(value, int | float) and not isinstance(value, bool)
                    and (value != value or 0 <= value <= 1))

        ci = raw.get("ci") if isinstance(raw, dict) else None
        if not (isinstance(raw, dict) and raw.get("level") == level
                and is_count(raw.get("n")) and is_count(raw.get("fakes"))
                and all(rate(raw.get(m)) for m in METRICS) and isinstance(ci, dict)
                and all(isinstance(ci.get(m), list) and len(ci[m]) == 2
                        and all(map(rate, ci[m])) for m in METRICS)):
            raise InputError(f"{where}: {level} metrics need n, fakes, {', '.join(METRICS)} "
                             "(numbers in [0, 1] or NaN) and their intervals")
        return cls(level=level, n=raw["n"], fakes=raw["fakes"], ci={m: ci[m] for m in METRICS},
                   **{m: float(raw[m]) for m in METRICS})


def detectability(frame: Scores, rounds: int = 1000, seed: int = 0) -> dict[str, Detectability]:
    """Frame- and video-level metrics with bootstrap intervals."""
    out = {}
    for level, data in (("frame", frame), ("video", video_scores(frame))):
        values = point_metrics(data.labels, data.scores)
        out[level] = Detectability(level=level, n=len(data.labels), fakes=int(data.labels.sum()),
                                   ci=bootstrap(data, rounds, seed), **values)
    return out
