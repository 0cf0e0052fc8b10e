"""Pack what ``bench/gpu_runs.sh`` trains on, to carry to a GPU machine (64 MiB a call).

    python bench/gpu_pack.py --cache runs/cache --out gpu [--part-mb 38 22] [--seed 0]

The GPU machine has torch, timm and OpenCV but no dlib, no PyAV and none of the ImageNet weight
packages, and each call carries at most 64 MiB with the repository. So this writes:

- ``OUT/a/dfdc.zip``, ``OUT/b/dfdc.zip``: two crop collections of ``dfdc_faces/train`` (never
  ``val``), each a whole number of groups (an original video with its real and fake crops)
  chosen at random among the groups that hold both a real and a fake, up to the part's size;
  zipped (stored, not compressed: they are JPEGs), since what travels is counted in disk blocks
  and a crop is a few kB (a tar's 512-byte blocks would add a third); the first part
  travels in a call of its own before the run;
- ``OUT/a/cache.tgz``, ``OUT/b/cache.tgz``: the landmarks ``detect train --crops`` found on
  each part's crops here (its collection's cache, cut from ``--cache``, where ``detect train``
  or ``detect.crops.collection_items`` made it; gzipped, as the JSON is most of a part's bytes),
  so no face finder is needed there;
- ``OUT/b/init/ARCH``: ImageNet-initialised detectors (fp16, fresh two-way head) of
  ``tf_efficientnet_lite0``, ``efficientnet_lite0`` (the same file, linked) and
  ``tf_efficientnet_lite2``, started from with ``detect train --init`` there.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser as bench_parser  # noqa: E402
from _common import shared_data  # noqa: E402


def groups_with_both(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["original"], []).append(row)
    return {g: r for g, r in groups.items() if {x["label"] for x in r} == {"real", "fake"}}


def write_part(root: Path, source: Path, groups: list[list[dict]], cache_rows: dict,
               cache_out: Path) -> int:
    """A collection of ``groups`` under ``root`` and its landmark cache, gzipped to
    ``cache_out``; returns the collection's bytes."""
    import tempfile

    from detect.crops import read_collection
    from swapscope.files import write_jsonl_atomic

    root.mkdir(parents=True)
    size = 0
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "group"])
        for rows in groups:
            for row in rows:
                (root / row["file"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / row["file"], root / row["file"])
                size += (root / row["file"]).stat().st_size
                writer.writerow([row["file"], row["label"], row["original"]])
    key = read_collection(root).key
    files = {row["file"] for rows in groups for row in rows}
    found = [r for r in cache_rows["found"] if r["file"] in files]
    missing = [r for r in cache_rows["missing"] if r["file"] in files]
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl_atomic(Path(tmp) / key / "no_face.jsonl", missing)
        write_jsonl_atomic(Path(tmp) / key / "items.jsonl", found)
        with tarfile.open(cache_out, "w:gz") as tar:
            tar.add(Path(tmp) / key, arcname=key)
    return size


def write_inits(out: Path) -> None:
    from detect.checkpoint import save_detector
    from detect.models import create_detector

    for arch in ("tf_efficientnet_lite0", "tf_efficientnet_lite2"):
        model, data = create_detector(arch, pretrained=True)
        save_detector(out / arch, model, {"arch": arch, "data_config": data.to_json(),
                                          "note": "ImageNet start, fresh two-way head"}, half=True)
    legacy = out / "efficientnet_lite0"
    legacy.mkdir()
    os.symlink("../tf_efficientnet_lite0/weights.safetensors", legacy / "weights.safetensors")
    _, data = create_detector("efficientnet_lite0", pretrained=False)
    config = json.loads((out / "tf_efficientnet_lite0" / "config.json").read_text())
    config.update(arch="efficientnet_lite0", data_config=data.to_json())
    (legacy / "config.json").write_text(json.dumps(config, indent=2))


def main() -> None:
    from detect.crops import collection_items, read_collection

    parser = bench_parser(__doc__)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--part-mb", type=float, nargs=2, default=(38.0, 22.0))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = shared_data() / "dfdc_faces"
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; move it away first")
    whole = read_collection(source)
    collection_items(source, args.cache)  # the landmarks, found once (cached)
    cache = args.cache / whole.key
    cache_rows = {"found": [json.loads(x) for x in (cache / "items.jsonl").open()],
                  "missing": [json.loads(x) for x in (cache / "no_face.jsonl").open()]}
    with open(source / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    groups = list(groups_with_both(rows).values())
    order = np.random.default_rng(args.seed).permutation(len(groups))
    budgets = [mb * 2**20 for mb in args.part_mb]
    parts: list[list[list[dict]]] = [[], []]
    used = [0.0, 0.0]
    for index in order:
        group = groups[index]
        size = sum((source / r["file"]).stat().st_size for r in group)
        part = next((p for p in (0, 1) if used[p] + size <= budgets[p]), None)
        if part is None:
            break
        parts[part].append(group)
        used[part] += size
    for name, part in zip("ab", parts):
        size = write_part(args.out / name / "dfdc", source, part, cache_rows,
                          args.out / name / "cache.tgz")
        with zipfile.ZipFile(args.out / name / "dfdc.zip", "w", zipfile.ZIP_STORED) as bundle:
            for path in sorted((args.out / name / "dfdc").rglob("*")):
                bundle.write(path, path.relative_to(args.out / name))
        shutil.rmtree(args.out / name / "dfdc")
        crops = sum(len(g) for g in part)
        print(f"{name}: {len(part)} groups, {crops} crops, {size / 2**20:.1f} MiB")
    write_inits(args.out / "b" / "init")


if __name__ == "__main__":
    main()
