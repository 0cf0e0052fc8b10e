"""How the face mark's reader reads a heavy re-encode: which frames it reads and how it weighs
the faces, side by side on the same marked clips.

Each clip (first 50 frames) is marked as ``bench/watermark_edits.py`` marks it, once per seed
(the manifest id is drawn from the seed, so a run repeats), re-encoded at ``--crf`` (35), and
read three ways: the faces of every 5th frame alone with equal votes (how scan read before),
of every frame of the label window with equal votes, and of every frame with each face's votes
weighted by its lattice fit squared (today's ``MarkReader``). The same clips unmarked,
re-encoded alike, give the false positives. Prints, per way, how many reads failed to give the
true id.

    python bench/watermark_reads.py [--clips lp_d12_man_glasses_curly,...] [--seeds 0,1,2] \
        [--crf 35] [--json out.json]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402
from watermark_edits import EVERY, METHODS, encode, faces_of, mark  # noqa: E402

WEAK = ("vr_face4_woman_bluebg,vr_face5_woman_glasses,hdtf_WDA_AlexandriaOcasioCortez,"
        "hdtf_WDA_KatieHill,hdtf_WDA_EdMarkey,lp_d12_man_glasses_curly,lp_d19_man_glasses_hoodie")
WAYS = ("every 5th frame, equal votes", "every frame, equal votes",
        "every frame, weighted by fit squared")


def read_ways(path: Path) -> dict[str, str | None]:
    """The id each way reads from one clip."""
    from swapscope.formats import facemark

    frames = faces_of(path, EVERY, scan=True)
    readers = {way: facemark.MarkReader() for way in WAYS}
    for index, image, faces in frames:
        for reads in facemark.votes(image, faces):
            equal = tuple((votes, 1.0) for votes, _ in reads)  # a fit of 1 weighs 1 for all
            if index % EVERY == 0:
                readers[WAYS[0]].add_face(equal)
            readers[WAYS[1]].add_face(equal)
            readers[WAYS[2]].add_face(reads)
    return {way: reader.payload()[0] for way, reader in readers.items()}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--clips", default=WEAK, help="real_videos folders, comma-separated")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="one marked clip per seed")
    parser.add_argument("--crf", type=int, default=35)
    args = parser.parse_args()
    from swapscope.media.video import probe, read_frames

    root = shared_data(args.data) / "real_videos"
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {"machine": machine(), "crf": args.crf, "seeds": seeds, "reads": [],
               "unmarked": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.clips.split(","):
            video = next((root / name).glob("*.mp4"))
            frames, fps = [f.image for f in read_frames(video, limit=50)], probe(video).fps
            source = encode(frames, folder / "source.mp4", 18, fps)
            faces = [boxes for _, _, boxes in faces_of(folder / "source.mp4", 1, scan=False)]
            encode(source, folder / "real.mp4", args.crf, fps)
            unmarked = read_ways(folder / "real.mp4")
            results["unmarked"][name] = {w: unmarked[w] is not None for w in WAYS}
            for seed in seeds:
                manifest_id = np.random.default_rng(seed).bytes(16).hex()
                marked = encode(mark(METHODS[0], source, faces, manifest_id),
                                folder / "marked.mp4", 18, fps)
                encode(marked, folder / "edited.mp4", args.crf, fps)
                found = read_ways(folder / "edited.mp4")
                results["reads"].append({
                    "clip": name, "seed": seed,
                    "recovered": {w: found[w] == manifest_id[:8] for w in WAYS}})
            print(f"{name}: done", file=sys.stderr, flush=True)
    reads, unmarked = results["reads"], results["unmarked"]
    print(f"\n{len(reads)} reads ({len(unmarked)} clips x {len(seeds)} ids) at CRF {args.crf}\n")
    print("| way | reads that failed | unmarked clips read as marked |")
    print("|---|---|---|")
    for way in WAYS:
        failed = sum(not r["recovered"][way] for r in reads)
        false = sum(found[way] for found in unmarked.values())
        print(f"| {way} | {failed} of {len(reads)} | {false} of {len(unmarked)} |")
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
