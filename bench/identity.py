"""Face verification accuracy of the identity embeddings on the sample photos.

Pairs: every same-person pair and every different-person pair within each dataset (deepface
web-photo clusters; ORL's 38 subjects x 10 grey 92x112 photos). Reports accuracy at the fixed
threshold the tools use (0.6, dlib's), ROC AUC, and how many photos had no face found.

    python bench/identity.py [--data ../shared/data] [--json out.json]
"""

from __future__ import annotations

import csv
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402


def embed_dataset(rows, root, backend, embedder):
    from swapscope.media.images import load_image

    labels, vectors, missed = [], [], []
    for file, identity in rows:
        image = load_image(root / file)
        faces = backend.faces(image)
        if not faces:
            missed.append(file)
            continue
        largest = max(faces, key=lambda f: f.size)
        vectors.append(embedder.embed_faces(image, [largest])[0])
        labels.append(identity)
    return np.array(labels), np.stack(vectors), missed


def verify(labels, vectors, threshold):
    from sklearn.metrics import roc_auc_score

    pairs = np.array(list(combinations(range(len(labels)), 2)))
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    dist = np.linalg.norm(vectors[pairs[:, 0]] - vectors[pairs[:, 1]], axis=1)
    pred_same = dist <= threshold
    return {
        "same_pairs": int(same.sum()), "different_pairs": int((~same).sum()),
        "accuracy": float((pred_same == same).mean()),
        "balanced_accuracy": float(0.5 * (pred_same[same].mean() + (~pred_same[~same]).mean())),
        "true_accept_rate": float(pred_same[same].mean()),
        "false_accept_rate": float(pred_same[~same].mean()),
        "roc_auc": float(roc_auc_score(same, -dist)),
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--threshold", type=float, default=0.6)
    args = parser.parse_args()
    root = shared_data(args.data) / "identities"
    from swapscope.faces.backends import create_backend
    from swapscope.faces.identity import Embedder

    backend, embedder = create_backend("dlib"), Embedder()
    with open(root / "labels.csv") as handle:
        rows = [(r["file"], r["identity"]) for r in csv.DictReader(handle)]
    results = {"machine": machine(), "threshold": args.threshold, "datasets": {}}
    for name, prefix in (("deepface clusters", "deepface_"), ("ORL", "orl_")):
        subset = [r for r in rows if r[1].startswith(prefix)]
        labels, vectors, missed = embed_dataset(subset, root, backend, embedder)
        stats = verify(labels, vectors, args.threshold)
        stats.update(
            photos=len(subset), identities=len({r[1] for r in subset}), no_face=len(missed)
        )
        results["datasets"][name] = stats
    print(
        "| dataset | identities | photos (no face) | same / different pairs | accuracy @ "
        f"{args.threshold} "
        "| balanced acc. | TAR | FAR | ROC AUC |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in results["datasets"].items():
        print(
            f"| {name} | {s['identities']} | {s['photos']} ({s['no_face']}) | {s['same_pairs']} / "
            f"{s['different_pairs']} | {s['accuracy']:.3f} | {s['balanced_accuracy']:.3f} | "
            f"{s['true_accept_rate']:.3f} | {s['false_accept_rate']:.4f} | {s['roc_auc']:.3f} |"
        )
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
