"""Synthetic validation AUC per artifact: real faces against FWA and SBI versions of the same
faces, for detectors (or ensembles) side by side, on people none of them trained on.

    python bench/synthetic.py --detector CKPT [--detector CKPT ...] FACESET ... \
        [--cache DIR] [--json out.json]

The faces are every 3rd face of each track in the face sets, of the identities every detector
held out (an ensemble's: held out by all of its members); each face is drawn once as a real ROI
or as a negative of one artifact, with fixed seeds, so every detector sees the same examples;
once as they are and once through the training degradations (rescale, smoothing, JPEG / H.264,
flips). ``bench/ablation.py`` uses the same measure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

SEED = 12345


def face_items(facesets: list[str], cache: Path) -> list:
    from detect.train import TrainConfig, collect_items
    from swapscope.progress import NoProgress

    items, _ = collect_items(TrainConfig(facesets=facesets, stride=3, cache=str(cache)), cache,
                             NoProgress())
    return items


def synthetic_aucs(detector, items: list) -> dict:
    """{clean, degraded} -> {fwa, sbi} -> AUC of ``detector`` (an ``Ensemble``: its members'
    mean probability) on ``items``."""
    import torch
    from sklearn.metrics import roc_auc_score

    from detect.data import KINDS, ArtifactDataset, Degrade
    from swapscope.device import autocast_for

    cfg = detector.members[0].data_config
    if any(m.data_config != cfg for m in detector.members):
        raise SystemExit("members with different input sizes or normalisation: not supported here")
    out = {}
    for name, degrade in (("clean", None), ("degraded", Degrade())):
        data = ArtifactDataset(items, cfg, "mix", degrade=degrade, seed=SEED,
                               fixed=True)
        loader = torch.utils.data.DataLoader(data, batch_size=32, num_workers=1)
        probs, codes = [], []
        with torch.no_grad():
            for x, _, code in loader:
                per_member = []
                for member in detector.members:
                    with autocast_for(member.device):
                        logits = member.module(x.to(member.device))
                    per_member.append(logits.float().softmax(-1)[:, 1].cpu().numpy())
                probs.append(np.mean(per_member, axis=0))
                codes.append(code.numpy())
        probs, codes = np.concatenate(probs), np.concatenate(codes)
        real = codes == KINDS["real"]
        out[name] = {}
        for kind in ("fwa", "sbi"):
            pick = real | (codes == KINDS[kind])
            out[name][kind] = float(roc_auc_score(codes[pick] == KINDS[kind], probs[pick]))
        out[name]["faces"] = {"real": int(real.sum()), "fwa": int((codes == KINDS["fwa"]).sum()),
                              "sbi": int((codes == KINDS["sbi"]).sum())}
    return out


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("facesets", nargs="+", help="face sets of real faces (forge extract)")
    parser.add_argument("--detector", action="append", required=True,
                        help="a detector or ensemble checkpoint; repeatable")
    parser.add_argument("--cache", help="the faces' crop cache (detect train --cache)")
    args = parser.parse_args()
    from detect.checkpoint import load_checkpoint

    detectors = {path: load_checkpoint(path) for path in args.detector}
    trained = set().union(*(d.identities["train_identities"] for d in detectors.values()))
    cache = Path(args.cache) if args.cache else Path("bench/out/synthetic_cache")
    items = [i for i in face_items(args.facesets, cache) if i.identity not in trained]
    if not items:
        raise SystemExit("no faces of people none of these detectors trained on")
    results = {"machine": machine(), "identities": sorted({i.identity for i in items}),
               "detectors": {path: synthetic_aucs(d, items) for path, d in detectors.items()}}
    faces = next(iter(results["detectors"].values()))["clean"]["faces"]
    print(f"\nsynthetic AUC on {len(results['identities'])} people none of them trained on "
          f"({faces['real']} real, {faces['fwa']} FWA, {faces['sbi']} SBI faces)\n")
    print("| detector | FWA clean | FWA degraded | SBI clean | SBI degraded |")
    print("|---|---|---|---|---|")
    for path, r in results["detectors"].items():
        print(f"| {path} | {r['clean']['fwa']:.3f} | {r['degraded']['fwa']:.3f} "
              f"| {r['clean']['sbi']:.3f} | {r['degraded']['sbi']:.3f} |")
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
