"""The benchmark report: markdown, CSV and one self-contained HTML page (plots inlined).

Contents: the table (one row per forgery configuration: realism and, per detector, video and
frame AUC with 95% bootstrap intervals, EER, AP, TPR at 1% FPR), ROC curves per detector,
realism against detectability with the Pareto front marked, the configurations that evade each
detector most, and an example frame (real, fake, mask) per configuration.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from eval.benchmark import BenchmarkResult, Entry
from eval.metrics import MIN_PER_CLASS, TOO_FEW, too_few
from swapscope.files import write_bytes_atomic, write_text_atomic
from swapscope.formats.manifest import fill_polygons, read_swap_frames
from swapscope.media.video import read_frames

# y of the realism/detectability plot: higher = more like the target
REALISM_AXIS = "identity_to_target"


def _fmt(value, digits: int = 3) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else f"{value:.{digits}f}"
    )


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes: lower detectability (x), higher
    realism (y)."""
    front = []
    for i, (x, y) in enumerate(points):
        if any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        ):
            continue
        front.append(i)
    return front


def evaders(result: BenchmarkResult, top: int = 3) -> dict[str, list[dict]]:
    """Per detector, the configurations with the lowest video AUC (they evade it most)."""
    out = {}
    for det in result.detectors:
        ranked = sorted(result.rows, key=lambda r: (r.detectors[det.name]["video"].auc, r.config))
        out[det.name] = [{"config": r.config, "video_auc": r.detectors[det.name]["video"].auc,
                          "knobs": r.knobs} for r in ranked[:top]]
    return out


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def plot_roc(result: BenchmarkResult, detector: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for key, data in result.roc.get(detector, {}).items():
        if len(set(data["labels"])) < 2:
            continue
        fpr, tpr, _ = roc_curve(data["labels"], data["scores"])
        row = next(r for r in result.rows if r.config == key)
        ax.plot(fpr, tpr, label=f"{_short(key)} (AUC {row.detectors[detector]['frame'].auc:.2f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate (real frames called fake)")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC per forgery configuration, frames: {detector}")
    ax.legend(fontsize=6, loc="lower right")
    png = _figure_png(fig)
    plt.close(fig)
    return png


def plot_tradeoff(result: BenchmarkResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for k, det in enumerate(result.detectors):
        name = det.name
        points, labels = [], []
        for row in result.rows:
            y = row.realism.get(REALISM_AXIS)
            if y is None:
                continue
            points.append((row.detectors[name]["video"].auc, y))
            labels.append(_short(row.config))
        if not points:
            continue
        xs, ys = np.array(points).T
        ax.scatter(xs, ys, color=f"C{k}", label=name, zorder=3)
        front = sorted(pareto_front(points), key=lambda i: points[i][0])
        ax.plot(xs[front], ys[front], "--", color=f"C{k}", lw=1.5, label=f"Pareto front ({name})")
        for (x, y), text in zip(points, labels):
            ax.annotate(text, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("detectability: video AUC (lower evades the detector)")
    ax.set_ylabel("realism: identity similarity to the target (cosine)")
    ax.set_title("Realism against detectability")
    ax.legend(fontsize=7)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def example_png(entry: Entry) -> bytes | None:
    """Real frame, fake frame and the labelled mask, side by side, for one configuration."""
    import cv2

    labels = read_swap_frames(entry.folder, entry.row)
    if not labels:
        return None
    label = labels[len(labels) // 2]
    fake = next((f.image for f in read_frames(entry.video) if f.index == label.frame), None)
    real = next(
        (f.image for f in read_frames(Path(entry.row.source)) if f.index == label.frame), None
    )
    if fake is None or real is None or fake.shape != real.shape:
        return None
    mask = fill_polygons([p for face in label.faces for p in face.mask], fake.shape)
    x1, y1, x2, y2 = label.faces[0].box
    pad = int(0.3 * (x2 - x1))
    box = (slice(max(0, y1 - pad), y2 + pad), slice(max(0, x1 - pad), x2 + pad))
    tiles = [real[box], fake[box], np.repeat((mask[box] * 255).astype(np.uint8)[..., None], 3, -1)]
    height = 160
    tiles = [
        cv2.resize(t, (max(1, round(t.shape[1] * height / t.shape[0])), height)) for t in tiles
    ]
    ok, buffer = cv2.imencode(".png", np.hstack(tiles)[..., ::-1])
    return buffer.tobytes() if ok else None


FEW_NOTE = (f"Figures marked \"{TOO_FEW}\" come from fewer than {MIN_PER_CLASS} videos of a "
            "class: shown for the plumbing, they are not results (an AUC of 1.000 from 2 fakes "
            "and 2 reals means little).")


def _short(config: str, width: int = 48) -> str:
    return config if len(config) <= width else config[: width - 1] + "…"


def _table(result: BenchmarkResult) -> tuple[list[str], list[list[str]]]:
    header = [
        "configuration", "fakes", "reals", "id→target", "id→source", "top-1", "pose err °",
        "expr err", "FD", "flicker",
    ]
    for det in result.detectors:
        n = det.name
        header += [
            f"{n}: video AUC [95% CI]", f"{n}: frame AUC", f"{n}: EER", f"{n}: AP",
            f"{n}: TPR@1%FPR",
        ]
    rows = []
    for r in result.rows:
        real = r.realism
        cells = [
            r.config, str(r.fakes), str(r.reals), _fmt(real["identity_to_target"]),
            _fmt(real["identity_to_source"]), _fmt(real["top1_target"], 2),
            _fmt(real["pose_error_deg"], 1), _fmt(real["expression_error"]),
            _fmt(real["frechet"], 2), _fmt(real["flicker"], 2),
        ]
        mark = too_few(r.fakes, r.reals)
        for det in result.detectors:
            video, frame = r.detectors[det.name]["video"], r.detectors[det.name]["frame"]
            low, high = video.ci["auc"]
            cells += [
                f"{_fmt(video.auc)} [{_fmt(low, 2)}, {_fmt(high, 2)}]{mark}",
                *(_fmt(getattr(frame, k)) + mark for k in ("auc", "eer", "ap", "tpr_at_1fpr")),
            ]
        rows.append(cells)
    return header, rows


def write_report(benchmark: BenchmarkResult, out: Path, title: str = "swapscope benchmark",
                 extra_md: str = "") -> dict[str, Path]:
    """Write report.md, report.csv, report.html, report.json and the plot PNGs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    header, rows = _table(benchmark)
    pngs = {"tradeoff.png": plot_tradeoff(benchmark)}
    for det in benchmark.detectors:
        pngs[f"roc_{slug(det.name)}.png"] = plot_roc(benchmark, det.name)
    examples = {}
    for i, row in enumerate(benchmark.rows):
        png = example_png(row.example)
        if png:
            examples[row.config] = png
            pngs[f"example_{i:02d}.png"] = png
    for name, data in pngs.items():
        write_bytes_atomic(out / name, data)
    worst = evaders(benchmark)

    md = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    if any(TOO_FEW in c for row in rows for c in row):
        md += ["", FEW_NOTE]
    md += ["", "## Configurations that evade each detector most (lowest video AUC)", ""]
    for name, items in worst.items():
        md.append(
            f"- **{name}**: "
            + "; ".join(f"`{e['config']}` ({_fmt(e['video_auc'])})" for e in items)
        )
    md += ["", "![realism against detectability](tradeoff.png)", ""]
    md += [f"![ROC {d.name}](roc_{slug(d.name)}.png)" for d in benchmark.detectors]
    if extra_md:
        md += ["", extra_md]
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(out / "report.csv", buffer.getvalue())
    write_text_atomic(out / "report.json", json.dumps(
        {k: v for k, v in benchmark.to_json().items() if k != "roc"}, indent=2))
    write_text_atomic(
        out / "report.html", _html(title, header, rows, pngs, examples, worst,
                                   [d.name for d in benchmark.detectors], extra_md)
    )
    return {"md": out / "report.md", "csv": out / "report.csv", "html": out / "report.html"}


def _html(title, header, rows, pngs, examples, worst, detectors, extra_md) -> str:
    def img(data: bytes, alt: str, cls: str = "plot") -> str:
        encoded = base64.b64encode(data).decode()
        return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'

    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #bbb;padding:3px 6px}th{background:#eee}"
        "img.plot{max-width:48%;margin:4px}"
        "img.example{height:120px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Every fake here was made by swapscope's forge and is labelled (manifest, metadata, "
        "watermark).</p>",
        "<h2>Realism and detectability per forgery configuration</h2>",
        "<table id='results'><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + "</tr></thead><tbody>",
    ]
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    if any(TOO_FEW in c for row in rows for c in row):
        parts.append(f"<p id='too-few'>{html.escape(FEW_NOTE)}</p>")
    parts.append("<h2>Configurations that evade each detector most</h2><ul>")
    for name, items in worst.items():
        parts.append(
            f"<li><b>{html.escape(name)}</b>: "
            + "; ".join(f"{html.escape(e['config'])} ({_fmt(e['video_auc'])})" for e in items)
            + "</li>"
        )
    parts.append("</ul><h2>Plots</h2><div id='plots'>")
    parts.append(img(pngs["tradeoff.png"], "realism against detectability"))
    for name in detectors:
        parts.append(img(pngs[f"roc_{slug(name)}.png"], f"ROC {name}"))
    parts.append("</div><h2>Examples: real, fake, mask</h2><table id='examples'>")
    for config, data in examples.items():
        parts.append(
            f"<tr><td>{html.escape(config)}</td><td>{img(data, config, 'example')}</td></tr>"
        )
    parts.append("</table>")
    if extra_md:
        parts.append(f"<pre>{html.escape(extra_md)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def slug(name: str) -> str:
    """``name`` as a file name: every character but letters and digits an underscore."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")
