"""The fixed CPU training run of BENCHMARKS.md: lp_d6 <-> lp_d9, then an identity check, a
swapped clip and a contact sheet.

1. ``forge extract`` each person's clip into a face set (reused if present);
2. ``forge train`` with the given settings (the command line is printed and recorded);
3. identity check on every 4th face of each set: the share of swapped faces A->B whose dlib
   embedding is closer to B's centroid than to A's (and B->A likewise). Controls: the real faces
   and the reconstructions A->A at the same 64 px resolution, which should stay with their own
   identity. Centroids come from the real faces at that resolution too;
4. ``forge video`` on the first frames of A's clip with the model (A's face becomes B), and a
   contact sheet of original vs swapped frames;
5. the clip measured as eval measures a fake (identity at full resolution against both people's
   centroids from their real clips, head pose and expression kept, flicker), and a plot of
   each frame's identity similarity to A and to B, original against swapped.

Everything goes to --out (default bench/out/swap_run, not committed: the sample data's card
forbids publishing swaps of its people). Only the plots, which show no face, are reports and
may be copied to bench/figures.

    python bench/swap_run.py [--data ../shared/data] [--steps 4000] [--gan-warmup 3400] \
        [--json out.json]
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

PEOPLE = {"a": "real_videos/lp_d6_woman_hairbun", "b": "real_videos/lp_d9_man_glasses"}


def faces_at_model_size(data, every: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 aligned faces and (N, 68, 2) landmarks in their px, every
    ``every``-th face."""
    from forge.train import TrainConfig

    cfg = TrainConfig()
    picks = range(0, len(data), every)
    faces = np.stack([(data.sample(i, None, cfg)[1] * 255).round().astype(np.uint8) for i in picks])
    base = data.base[:2]
    points = np.stack([data.landmarks[i] @ base[:, :2].T + base[:, 2] for i in picks]).astype(
        np.float32
    )
    return faces, points


def embeddings(embedder, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.concatenate([embedder.embed(face, p[None]) for face, p in zip(faces, points)])


def identity_check(model, data: dict, device: str) -> dict:
    import torch

    from swapscope.faces.identity import Embedder

    embedder = Embedder()
    faces = {side: faces_at_model_size(data[side]) for side in "ab"}
    real = {side: embeddings(embedder, *faces[side]) for side in "ab"}
    centroid = {side: real[side].mean(0) for side in "ab"}

    def render(images: np.ndarray, to: str) -> np.ndarray:
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float().div(255).to(device)
        with torch.no_grad():
            out = torch.cat([model(x[i:i + 32], to)[0] for i in range(0, len(x), 32)])
        return (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def share_closer_to(emb: np.ndarray, side: str, other: str) -> float:
        return float(np.mean(np.linalg.norm(emb - centroid[side], axis=1)
                             < np.linalg.norm(emb - centroid[other], axis=1)))

    out = {}
    for side, other in (("a", "b"), ("b", "a")):
        images, points = faces[side]
        swapped_images = render(images, other)
        swapped = embeddings(embedder, swapped_images, points)
        recon = embeddings(embedder, render(images, side), points)
        out[f"{side}->{other}"] = {
            "faces": len(images),
            "swapped_closer_to_target": share_closer_to(swapped, other, side),
            "control_real_closer_to_own": share_closer_to(real[side], side, other),
            "control_reconstruction_closer_to_own": share_closer_to(recon, side, other),
            "mean_distance_swapped_to_target": float(
                np.linalg.norm(swapped - centroid[other], axis=1).mean()
            ),
            "mean_distance_swapped_to_source": float(
                np.linalg.norm(swapped - centroid[side], axis=1).mean()
            ),
            "high_frequency_vs_real_target": high_frequency(swapped_images)
            / high_frequency(faces[other][0]),
        }
    return out


def high_frequency(faces: np.ndarray) -> float:
    """Mean absolute Laplacian of (N, S, S, 3) uint8 faces' grey levels: fine texture, and the
    checkerboard an over-weighted adversarial term prints (above 1 x the real faces' level)."""
    import cv2

    return float(
        np.mean(
            [
                np.abs(cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean()
                for f in faces
            ]
        )
    )


def contact_sheet(
    original: Path, swapped: Path, out: Path, count: int = 4, width: int = 192
) -> Path:
    import cv2

    from swapscope.media.video import probe, read_frames

    total = probe(swapped).frame_count
    picks = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
    rows = []
    for path in (original, swapped):
        frames = [f.image for f in read_frames(path, limit=total) if f.index in picks]
        scaled = [
            cv2.resize(
                f, (width, round(f.shape[0] * width / f.shape[1])), interpolation=cv2.INTER_AREA
            )
            for f in frames
        ]
        rows.append(np.hstack(scaled))
    cv2.imwrite(str(out), np.vstack(rows)[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def clip_identity(clip: Path, fake: Path, labels: list, out: Path) -> dict:
    """eval's realism row for the swapped clip, every swapped frame measured, and a plot of each
    frame's cosine similarity to A's and B's centroids (original vs swapped frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval.realism import RealismMeter, cosine
    from swapscope.files import write_figure_atomic

    root = clip.parents[2]
    names = {side: Path(person).name for side, person in PEOPLE.items()}
    meter = RealismMeter()
    for side, person in PEOPLE.items():  # centroids from frames spread over each real clip
        meter.enrol(
            names[side], meter.real_embeddings(next((root / person).glob("*.mp4")), frames=24)
        )
    realism, swapped, original = meter.measure(
        fake, clip, labels, names["b"], names["a"], frames=len(labels)
    )
    centroid = {side: meter.identities[names[side]].mean(0) for side in "ab"}
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    for emb, style, what in ((original, "--", "original"), (swapped, "-", "swapped")):
        for side, colour in (("a", "tab:red"), ("b", "tab:blue")):
            ax.plot(cosine(emb, centroid[side]), style, color=colour, lw=1.2,
                    label=f"{what} frame vs {names[side]}")
    ax.set_xlabel("measured frame")
    ax.set_ylabel("cosine similarity (dlib)")
    ax.set_title(f"{clip.name}: {names['a']} swapped into {names['b']}", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    write_figure_atomic(out, fig)
    plt.close(fig)
    closer_to_b = (
        np.mean(cosine(swapped, centroid["b"]) > cosine(swapped, centroid["a"]))
        if len(swapped)
        else 0.0
    )
    return {**realism.to_json(), "swapped_closer_to_target": float(closer_to_b),
            "original_closer_to_source": float(np.mean(cosine(original, centroid["a"])
                                                       > cosine(original, centroid["b"]))),
            "plot": str(out)}


def _args():
    parser = bench_parser(__doc__)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "swap_run"))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--gan-warmup", type=int, default=3400)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--adv-weight", type=float, default=0.02)
    parser.add_argument("--arch", default="swap-ae-lite")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--video-frames", type=int, default=150)
    parser.add_argument("--device", default="auto")
    return parser.parse_args()


def main() -> None:
    args = _args()
    from forge.extract import ExtractConfig, extract
    from forge.models import load_swap_model
    from forge.swap_video import VideoConfig, forge_video
    from forge.train import FaceData
    from swapscope.device import resolve_device
    from swapscope.formats.manifest import read_swap_frames

    device = resolve_device(args.device)
    root, out = shared_data(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    facesets = {}
    for side, person in PEOPLE.items():
        facesets[side] = out / "facesets" / Path(person).name
        if not facesets[side].exists():
            extract([root / person], facesets[side], ExtractConfig())
    model_dir = out / "model"
    argv = ["forge", "train", str(facesets["a"]), str(facesets["b"]), "--out", str(model_dir),
            "--arch", args.arch, "--size", str(args.size), "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--gan-warmup", str(args.gan_warmup), "--lr", str(args.lr),
            "--lr-d", str(args.lr), "--adv-weight", str(args.adv_weight), "--device", device,
            "--json"]
    command = shlex.join(argv[:-1])
    print(command, file=sys.stderr)
    start = time.perf_counter()  # the command itself, as a user runs it (resumes a run in --out)
    run = subprocess.run([sys.executable, "-m", *argv], stdout=subprocess.PIPE, text=True,
                         check=True)
    train_s = time.perf_counter() - start
    summary = json.loads(run.stdout)
    model, meta = load_swap_model(model_dir, device)
    data = {side: FaceData(facesets[side], meta["size"], meta["padding"]) for side in "ab"}
    results = {"machine": machine(), "command": command, "train_seconds": train_s,
               "step": summary["step"], "last_losses": summary["last"],
               "identity": identity_check(model, data, device)}
    for name in ("curves.png", "preview.png"):
        shutil.copyfile(model_dir / name, out / name)
    clip = next((root / PEOPLE["a"]).glob("*.mp4"))
    fake = out / "video" / f"{clip.stem}_as_{Path(PEOPLE['b']).name}.mp4"
    config = VideoConfig(model=str(model_dir), to="b", max_frames=args.video_frames)
    video = forge_video(clip, fake, config, device)
    results["video"] = {"output": str(fake), "frames": video.frames,
                        "swapped": video.swapped_frames, "timings": video.timings}
    results["contact_sheet"] = str(contact_sheet(clip, fake, out / "contact_sheet.png"))
    results["clip_realism"] = clip_identity(
        clip, fake, read_swap_frames(fake.parent, video.row), out / "clip_identity.png"
    )
    for name in ("curves.png", "clip_identity.png"):  # no faces in these: reports, kept
        shutil.copyfile(out / name, REPO / "bench" / "figures" / f"swap_run_{name}")
    print(json.dumps(results, indent=2))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
