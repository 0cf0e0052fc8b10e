"""Forgery sets x detectors -> one row per forgery configuration, realism beside detectability.

A configuration is a fake's method and knobs (without the seed). Its fakes are scored against
the real counterparts of the same set encoded at the same CRF. Scan results and realism are
cached under ``cache`` by the output's sha256, the detector's sha256 and the rules, so a re-run
only computes what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from eval.metrics import Scores, detectability
from eval.realism import RealismMeter
from forge.errors import InputError
from forge.label import read_labels, read_manifest

REALISM_FIELDS = ("identity_to_target", "identity_to_source", "top1_target", "pose_error_deg",
                  "expression_error", "frechet", "flicker")


@dataclass
class BenchmarkConfig:
    sets: list[str] = field(default_factory=list)  # forgery sets (folders with manifest.jsonl)
    detectors: list[str] = field(default_factory=lambda: [""])  # checkpoints; "" = the shipped one
    mode: str = "fast"  # detect scan preset
    realism_frames: int = 8
    bootstrap: int = 500
    cache: str = ""  # default: OUT/cache
    seed: int = 0


def detector_name(path: str, folder: Path) -> str:
    """How a detector is named in tables: the shipped one, else its run folder / checkpoint folder."""
    return "shipped fwa_lite0" if not path else f"{Path(folder).parent.name}/{Path(folder).name}"


def config_key(row: dict) -> str:
    knobs = {k: v for k, v in sorted(row.get("knobs", {}).items()) if k not in ("seed",)}
    return f"{row['method']} " + " ".join(f"{k}={v}" for k, v in knobs.items() if k != "method")


def _cached(cache: Path, key: str, compute):
    path = cache / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
    return value


def _rules_key(mode: str) -> str:
    return hashlib.sha256(mode.encode()).hexdigest()[:8]


def run_benchmark(config: BenchmarkConfig, out: Path, device: str = "cpu", progress=None) -> dict:
    """Scan and measure every output; returns {"rows": [...], "roc": {...}, "examples": [...]}."""
    from detect.checkpoint import read_detector_config
    from detect.scan import DEFAULT_DETECTOR, ScanConfig, Scanner
    from forge.media import sha256_file

    cache = Path(config.cache or out / "cache")
    entries = []  # (folder, row)
    for location in config.sets:
        location = Path(location)
        folder = location.parent if location.is_file() else location  # a set folder or one of its manifests
        rows = read_manifest(location)
        if not rows:
            raise InputError(f"{folder}: manifest has no rows")
        for row in rows:
            video = folder / row.get("output", "")
            if not video.is_file():
                raise InputError(f"{video}: output listed in {folder / 'manifest.jsonl'} is missing")
            row["output_sha256"] = sha256_file(video)  # cache by what is on disk, not what was written
        entries += [(folder, row) for row in rows]
    if not any(r["label"] == "fake" for _, r in entries) or not any(r["label"] == "real" for _, r in entries):
        raise InputError("the forgery sets need both fakes and real counterparts")
    detectors = {}
    for path in config.detectors:
        folder, meta = read_detector_config(path or DEFAULT_DETECTOR)
        detectors[str(folder)] = {"name": detector_name(path, folder),
                                  "sha256": sha256_file(folder / "weights.safetensors"), "arch": meta["arch"]}

    # detector scores per output, cached
    frame_scores: dict[tuple[str, str], list[float]] = {}
    for det_path, det in detectors.items():
        scanner = None
        for folder, row in entries:
            key = f"scan-{row['output_sha256'][:20]}-{det['sha256'][:12]}-{_rules_key(config.mode)}"

            def compute(folder=folder, row=row, det_path=det_path):
                nonlocal scanner
                if scanner is None:
                    scanner = Scanner(ScanConfig(model=det_path, mode=config.mode), device)
                result = scanner.scan(folder / row["output"])
                return {"frames": [f["score"] for f in result.frames]}

            frame_scores[(det_path, row["id"])] = _cached(cache, key, compute)["frames"]
            if progress:
                progress(f"scanned {row['output']} with {det['name']}")

    for folder in {f for f, _ in entries}:
        if not any(frame_scores[(d, r["id"])] for d in detectors for f, r in entries if f == folder):
            raise InputError(f"{folder}: no faces found in any of its outputs")

    # realism per fake, cached; identities are enrolled from the real counterparts first
    meter = RealismMeter()
    for folder, row in entries:
        if row["label"] == "real":
            key = f"enrol-{row['output_sha256'][:20]}"
            embeddings = _cached(cache, key, lambda folder=folder, row=row: meter.real_embeddings(
                folder / row["output"]).tolist())
            meter.enrol(row.get("source_identity") or Path(row["source"]).parent.name, np.array(embeddings))
    run_id = hashlib.sha256(json.dumps(sorted(meter.identities)).encode()).hexdigest()[:8]
    realism: dict[str, dict] = {}
    for folder, row in entries:
        if row["label"] != "fake":
            continue
        key = f"realism-{row['output_sha256'][:20]}-{config.realism_frames}-{run_id}"

        def compute(folder=folder, row=row):
            found, _, _ = meter.measure(folder / row["output"], Path(row["source"]), read_labels(folder, row),
                                        row.get("target_identity"), row.get("source_identity") or "source",
                                        frames=config.realism_frames)
            return found.to_json()

        realism[row["id"]] = _cached(cache, key, compute)
        if progress:
            progress(f"measured realism of {row['output']}")

    # one row per configuration
    reals_by_crf: dict[int, list[dict]] = {}
    for _, row in entries:
        if row["label"] == "real":
            reals_by_crf.setdefault(row["knobs"].get("crf", 18), []).append(row)
    all_reals = [r for _, r in entries if r["label"] == "real"]
    groups: dict[str, list[tuple[Path, dict]]] = {}
    for folder, row in entries:
        if row["label"] == "fake":
            groups.setdefault(config_key(row), []).append((folder, row))
    table, roc = [], {}
    for key, fakes in sorted(groups.items()):
        crf = fakes[0][1]["knobs"].get("crf", 18)
        reals = reals_by_crf.get(crf, all_reals)
        measured = [realism[r["id"]] for _, r in fakes if r["id"] in realism]
        entry = {"config": key, "method": fakes[0][1]["method"], "knobs": fakes[0][1]["knobs"],
                 "fakes": len(fakes), "reals": len(reals),
                 "realism": {f: _mean([m.get(f) for m in measured]) for f in REALISM_FIELDS},
                 "detectors": {}, "example": {"folder": str(fakes[0][0]), "row": fakes[0][1]}}
        for det_path, det in detectors.items():
            labels, scores, groups_ = [], [], []
            for label, rows in ((1, [r for _, r in fakes]), (0, reals)):
                for r in rows:
                    values = frame_scores[(det_path, r["id"])]
                    labels += [label] * len(values)
                    scores += values
                    groups_ += [r["id"]] * len(values)
            data = Scores(np.array(labels), np.array(scores, float), np.array(groups_))
            metrics = detectability(data, rounds=config.bootstrap, seed=config.seed)
            entry["detectors"][det["name"]] = {level: m.to_json() for level, m in metrics.items()}
            roc.setdefault(det["name"], {})[key] = {"labels": labels, "scores": scores}
        table.append(entry)
    _name_by_varying_knobs(table, roc)
    return {"rows": table, "roc": roc, "detectors": list(detectors.values()), "config": asdict(config)}


def _name_by_varying_knobs(table: list[dict], roc: dict) -> None:
    """Rename each configuration by its method and only the knobs that differ between rows."""
    keys = {k for row in table for k in row["knobs"]} - {"seed", "method"}
    varying = sorted(k for k in keys if len({json.dumps(row["knobs"].get(k)) for row in table}) > 1)
    names = [" ".join([row["method"]] + [f"{k}={row['knobs'][k]}" for k in varying if k in row["knobs"]])
             for row in table]
    if len(set(names)) < len(names):
        return  # knobs alone do not tell the rows apart: keep the full names
    for row, short in zip(table, names):
        for curves in roc.values():
            curves[short] = curves.pop(row["config"])
        row["config_full"], row["config"] = row["config"], short


def _mean(values: list) -> float | None:
    clean = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    return float(np.mean(clean)) if clean else None
