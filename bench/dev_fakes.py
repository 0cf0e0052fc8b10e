"""``detect scan`` on ../shared/data/dev_fakes: scores per input and AUC, fast and paper rules.

A sanity check, not a benchmark: 13 real and 13 fake images (DFDC face crops, MesoNet crops)
and one film clip with its community face swap. The shipped detector, nothing tuned to this set.
Input-level AUC over all 28 inputs (an image's score is its face's; a video's the mean of its
highest third of frames) and over the images alone; frame-level AUC over the video pair.

    python bench/dev_fakes.py [--data ../shared/data] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402


def _auc(labels: list[int], scores: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    from detect.scan import ScanConfig
    from detect.scan_driver import scan
    from swapscope.media.images import is_image

    root = shared_data(args.data) / "dev_fakes"
    results = {"machine": machine(), "modes": {}}
    for mode in ("fast", "paper"):
        report = scan([root / "real", root / "fake"], ScanConfig(mode=mode), "cpu")
        rows = []
        for item in report.inputs:
            label = int("/fake/" in item.path)
            rows.append(
                {
                    "path": str(Path(item.path).relative_to(root)), "label": label,
                    "score": item.score, "verdict": item.verdict, "frames": item.frame_scores,
                    "image": is_image(Path(item.path)),
                }
            )
        scored = [r for r in rows if r["score"] is not None]
        images = [r for r in scored if r["image"]]
        videos = [r for r in scored if not r["image"]]
        frame_labels = [r["label"] for r in videos for _ in r["frames"]]
        frame_scores = [s for r in videos for s in r["frames"]]
        results["modes"][mode] = {
            "rows": rows, "no_face": [r["path"] for r in rows if r["score"] is None],
            "auc_inputs": _auc([r["label"] for r in scored], [r["score"] for r in scored]),
            "auc_images": _auc([r["label"] for r in images], [r["score"] for r in images]),
            "auc_video_frames": _auc(frame_labels, frame_scores),
            "videos": {r["path"]: r["score"] for r in videos},
        }
    print(
        "| rules | AUC, all inputs (n) | AUC, images (n) | frame AUC, film clip vs its swap "
        "(frames) "
        "| video scores real / fake | no face found |"
    )
    print("|---|---|---|---|---|---|")
    for mode, r in results["modes"].items():
        scored = [x for x in r["rows"] if x["score"] is not None]
        n_images = sum(x["image"] for x in scored)
        n_frames = sum(len(x["frames"]) for x in scored if not x["image"])
        videos = " / ".join(
            f"{v:.3f}" for _, v in sorted(r["videos"].items(), key=lambda kv: "fake" in kv[0])
        )
        print(
            f"| {mode} | {r['auc_inputs']:.3f} ({len(scored)}) | {r['auc_images']:.3f} "
            f"({n_images}) "
            f"| {r['auc_video_frames']:.3f} ({n_frames}) | {videos} | {len(r['no_face'])} |"
        )
    for mode, r in results["modes"].items():
        if r["no_face"]:
            print(f"\n{mode}: no face found in {', '.join(r['no_face'])}")
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
