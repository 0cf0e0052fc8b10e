"""Forgery sets x detectors -> one row per forgery configuration, realism beside detectability.

A configuration is a fake's method and knobs (without the seed). Its fakes are scored against
the real counterparts of the same set encoded at the same CRF. Scan results and realism are
cached under ``cache`` by the output's sha256, the detector's sha256 and the rules, so a re-run
only computes what changed.

Phases: ``collect`` (read the manifests, check every output against its recorded hash),
``scan_all`` (frame scores per detector and output), ``measure`` (realism of every fake, with
identities enrolled from the real counterparts), ``tabulate`` (one ``BenchmarkRow`` per
configuration).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from eval.metrics import Detectability, Scores, detectability, is_count
from eval.realism import RealismMeter
from swapscope.config import check_types, finite_number
from swapscope.errors import InputError
from swapscope.files import sha256_file, write_text_atomic
from swapscope.formats.manifest import (
    ManifestRow,
    manifest_file,
    read_swap_frames,
    verified_outputs,
)

log = logging.getLogger(__name__)

REALISM_FIELDS = ("identity_to_target", "identity_to_source", "top1_target", "pose_error_deg",
                  "expression_error", "frechet", "flicker")
SHIPPED_NAME = "shipped genuine_fwa_sbi_lite0"


@dataclass
class BenchmarkConfig:
    sets: list[str] = field(default_factory=list)  # forgery sets (folders with manifest.jsonl)
    # checkpoints; "" = the shipped one; a list of checkpoints = one ensemble (their mean per face)
    detectors: list[str | list[str]] = field(default_factory=lambda: [""])
    mode: str = "fast"  # detect scan preset
    realism_frames: int = 8
    bootstrap: int = 500
    cache: str = ""  # default: OUT/cache
    seed: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    """One output of a forgery set."""

    folder: Path  # the set's folder (outputs and labels are relative to it)
    row: ManifestRow

    @property
    def video(self) -> Path:
        return self.folder / self.row.output


@dataclass(frozen=True, slots=True)
class ScoredDetector:
    """A detector as a benchmark names it: its table name, weights hash and architecture."""

    name: str
    sha256: str
    arch: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True, eq=False)
class BenchmarkRow:
    """One forgery configuration: its realism and, per detector, its detectability."""

    config: str  # the configuration's name
    method: str
    knobs: dict
    fakes: int
    reals: int
    realism: dict[str, float | None]  # REALISM_FIELDS, means over the configuration's fakes
    detectors: dict[str, dict[str, Detectability]]  # detector name -> "frame" / "video" -> metrics
    example: Entry  # one of its fakes
    config_full: str | None = None  # every knob, where ``config`` names only the varying ones

    def to_json(self) -> dict:
        out = {
            "config": self.config, "method": self.method, "knobs": self.knobs, "fakes": self.fakes,
            "reals": self.reals, "realism": self.realism,
            "detectors": {name: {level: m.to_json() for level, m in levels.items()}
                          for name, levels in self.detectors.items()},
            "example": {"folder": str(self.example.folder), "row": self.example.row.to_json()},
        }
        if self.config_full is not None:
            out["config_full"] = self.config_full
        return out

    @classmethod
    def from_json(cls, raw, names: list[str], where: str) -> BenchmarkRow:
        """A row of report.json, every part checked against ``names``, the report's detectors."""
        if not (isinstance(raw, dict) and isinstance(raw.get("config"), str)
                and isinstance(raw.get("method"), str)
                and isinstance(raw.get("config_full", ""), str)
                and isinstance(raw.get("knobs"), dict)
                and all(is_count(raw.get(k)) for k in ("fakes", "reals"))
                and isinstance(raw.get("realism"), dict)
                and set(REALISM_FIELDS) <= set(raw["realism"])
                and all(v is None or finite_number(v) for v in raw["realism"].values())
                and isinstance(raw.get("detectors"), dict)
                and all(isinstance(raw["detectors"].get(n), dict) for n in names)
                and isinstance(raw.get("example"), dict)
                and isinstance(raw["example"].get("folder"), str)):
            raise InputError(f"{where}: a row needs config, method, knobs, fakes, reals, realism "
                             "(numbers), each detector's metrics and an example")
        where = f"{where} row {raw['config'][:60]!r}"
        detectors = {name: {level: Detectability.from_json(raw["detectors"][name].get(level),
                                                           level, f"{where} {name}")
                            for level in ("frame", "video")} for name in names}
        example = Entry(folder=Path(raw["example"]["folder"]),
                        row=ManifestRow.from_json(raw["example"].get("row"), f"{where} example"))
        return cls(config=raw["config"], method=raw["method"], knobs=raw["knobs"],
                   fakes=raw["fakes"], reals=raw["reals"], realism=raw["realism"],
                   detectors=detectors, example=example, config_full=raw.get("config_full"))


@dataclass(frozen=True, slots=True, eq=False)
class BenchmarkResult:
    rows: list[BenchmarkRow]
    roc: dict  # detector name -> configuration -> {"labels": [...], "scores": [...]} per frame
    detectors: list[ScoredDetector]
    config: BenchmarkConfig

    def to_json(self) -> dict:
        """What ``report.json`` holds (and ``roc``, which the plots read)."""
        return {
            "rows": [r.to_json() for r in self.rows], "roc": self.roc,
            "detectors": [d.to_json() for d in self.detectors], "config": asdict(self.config),
        }

    @classmethod
    def from_json(cls, raw: dict, where: str) -> BenchmarkResult:
        """An eval report's report.json (its ROC curves, which it does not hold, empty), every
        part checked: a hand-edited file is one InputError naming it."""
        config, detectors, rows = (raw.get(k) for k in ("config", "detectors", "rows"))
        if not isinstance(config, dict) or set(config) - {f.name for f in fields(BenchmarkConfig)}:
            raise InputError(f"{where}: not an eval report (its config is not an eval config)")
        bench = BenchmarkConfig(**check_types(config, BenchmarkConfig, where))
        if not isinstance(detectors, list) or not detectors or not all(
                isinstance(d, dict) and all(isinstance(d.get(k), str) for k in
                                            ("name", "sha256", "arch")) for d in detectors):
            raise InputError(f"{where}: not an eval report (detectors must be a list of objects "
                             "with a name, sha256 and arch)")
        scored = [ScoredDetector(d["name"], d["sha256"], d["arch"]) for d in detectors]
        if not isinstance(rows, list) or not rows:
            raise InputError(f"{where}: not an eval report (rows must be a non-empty list)")
        names = [d.name for d in scored]
        return cls(rows=[BenchmarkRow.from_json(r, names, where) for r in rows], roc={},
                   detectors=scored, config=bench)


def detector_name(path: str, folder: Path) -> str:
    """How a detector is named in tables: the shipped one, else its run folder / checkpoint
    folder."""
    return SHIPPED_NAME if not path else f"{Path(folder).parent.name}/{Path(folder).name}"


def load_detectors(entries: list[str | list[str]], device: str) -> dict:
    """Name -> ``Ensemble`` of each configured detector (a single checkpoint is an ensemble of
    one; a list of checkpoints scores as their mean)."""
    # lazy: eval --help loads no detector code (torch)
    from detect.checkpoint import combine, load_checkpoint
    from detect.scan import DEFAULT_DETECTOR

    out = {}
    for entry in entries:
        paths = entry if isinstance(entry, list) else [entry]
        loaded = [load_checkpoint(path or DEFAULT_DETECTOR, device) for path in paths]
        name = " + ".join(detector_name(p, e.checkpoint) for p, e in zip(paths, loaded))
        out[name] = combine(loaded)
    return out


def config_key(row: ManifestRow) -> str:
    knobs = {k: v for k, v in sorted(row.knobs.items()) if k not in ("seed",)}
    return f"{row.method} " + " ".join(f"{k}={v}" for k, v in knobs.items() if k != "method")


def _cached(cache: Path, key: str, compute):
    path = cache / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    write_text_atomic(path, json.dumps(value))
    return value


def _rules_key(mode: str) -> str:
    """Every knob the mode's preset resolves to, hashed as detect scan's results table hashes
    them (the mode's name alone returned stale scores after a preset changed)."""
    # lazy: eval --help loads no detector code (torch)
    from detect.results import rules_key
    from detect.scan import ScanConfig, scoring_rules

    return rules_key(scoring_rules(ScanConfig(mode=mode)))[:12]


def run_benchmark(config: BenchmarkConfig, out: Path, device: str = "cpu") -> BenchmarkResult:
    """Scan and measure every output of the forgery sets with every detector; progress is logged."""
    cache = Path(config.cache or out / "cache")
    entries = collect(config.sets)
    detectors = load_detectors(config.detectors, device)
    frame_scores = scan_all(entries, detectors, config.mode, cache, device)
    realism = measure(entries, config.realism_frames, cache)
    rows, roc = tabulate(entries, list(detectors), frame_scores, realism, config)
    infos = [ScoredDetector(name, d.info.sha256, d.info.arch) for name, d in detectors.items()]
    return BenchmarkResult(rows=rows, roc=roc, detectors=infos, config=config)


def collect(sets: list[str]) -> list[Entry]:
    """Every row of every forgery set, with its output checked against the recorded hash."""
    entries: list[Entry] = []
    for location in sets:
        path = manifest_file(location)
        outputs = verified_outputs(path)
        if not outputs:
            raise InputError(f"{path.parent}: manifest has no rows")
        entries += [Entry(folder=path.parent, row=row) for row, _ in outputs]
    if not any(e.row.label == "fake" for e in entries) or not any(
        e.row.label == "real" for e in entries
    ):
        raise InputError("the forgery sets need both fakes and real counterparts")
    return entries


def scan_all(entries: list[Entry], detectors: dict, mode: str, cache: Path, device: str
             ) -> dict[tuple[str, str], list[float]]:
    """(detector name, row id) -> frame scores; cached by output, detector and rules."""
    # lazy: eval --help loads no detector code (torch)
    from detect.scan import ScanConfig, Scanner

    scores: dict[tuple[str, str], list[float]] = {}
    for name, detector in detectors.items():
        scanner = None
        for entry in entries:
            detector_key = detector.info.sha256[:12]
            key = f"scan-{entry.row.output_sha256[:20]}-{detector_key}-{_rules_key(mode)}"

            def compute(entry=entry, detector=detector):
                nonlocal scanner
                if scanner is None:
                    scanner = Scanner(ScanConfig(mode=mode), device, detector)
                return {"frames": scanner.scan(entry.video).frame_scores}

            scores[(name, entry.row.id)] = _cached(cache, key, compute)["frames"]
            log.info("scanned %s with %s", entry.row.output, name)
    for folder in {e.folder for e in entries}:
        if not any(scores[(d, e.row.id)] for d in detectors for e in entries if e.folder == folder):
            raise InputError(f"{folder}: no faces found in any of its outputs")
    return scores


def measure(entries: list[Entry], frames: int, cache: Path) -> dict[str, dict]:
    """Row id -> realism of each fake; identities are enrolled from the real counterparts first."""
    meter = RealismMeter()
    for entry in entries:
        if entry.row.label == "real":
            embeddings = _cached(cache, f"enrol-{entry.row.output_sha256[:20]}",
                                 lambda entry=entry: meter.real_embeddings(entry.video).tolist())
            meter.enrol(entry.row.identity, np.array(embeddings))
    run_id = hashlib.sha256(json.dumps(sorted(meter.identities)).encode()).hexdigest()[:8]
    realism: dict[str, dict] = {}
    for entry in entries:
        row = entry.row
        if row.label != "fake":
            continue

        def compute(entry=entry, row=row):
            _check_source(row)
            found, _, _ = meter.measure(
                entry.video, Path(row.source), read_swap_frames(entry.folder, row),
                row.target_identity, row.source_identity or "source", frames=frames,
            )
            return found.to_json()

        realism[row.id] = _cached(
            cache, f"realism-{row.output_sha256[:20]}-{frames}-{run_id}", compute
        )
        log.info("measured realism of %s", row.output)
    return realism


def _check_source(row: ManifestRow) -> None:
    """Realism reads a fake's source video: only the very file the forge made it from."""
    source = Path(row.source)
    if not source.is_file():
        raise InputError(f"{source}: the source of manifest row {row.id[:8]} is missing")
    if sha256_file(source) != row.source_sha256:
        raise InputError(f"{source}: does not match the sha256 manifest row {row.id[:8]} recorded "
                         "for its source")


def tabulate(entries: list[Entry], detectors: list[str], frame_scores: dict, realism: dict,
             config: BenchmarkConfig) -> tuple[list[BenchmarkRow], dict]:
    """One row per configuration; its fakes against the reals encoded at the same CRF."""
    reals_by_crf: dict[int, list[ManifestRow]] = {}
    for e in entries:
        if e.row.label == "real":
            reals_by_crf.setdefault(e.row.knobs.get("crf", 18), []).append(e.row)
    all_reals = [e.row for e in entries if e.row.label == "real"]
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        if e.row.label == "fake":
            groups.setdefault(config_key(e.row), []).append(e)
    table, roc = [], {}
    for key, fakes in sorted(groups.items()):
        first = fakes[0].row
        reals = reals_by_crf.get(first.knobs.get("crf", 18), all_reals)
        measured = [realism[e.row.id] for e in fakes if e.row.id in realism]
        per_detector = {}
        for name in detectors:
            labels, scores, videos = [], [], []
            for label, rows in ((1, [e.row for e in fakes]), (0, reals)):
                for r in rows:
                    values = frame_scores[(name, r.id)]
                    labels += [label] * len(values)
                    scores += values
                    videos += [r.id] * len(values)
            data = Scores(np.array(labels), np.array(scores, float), np.array(videos))
            metrics = detectability(data, rounds=config.bootstrap, seed=config.seed)
            per_detector[name] = metrics
            roc.setdefault(name, {})[key] = {"labels": labels, "scores": scores}
        table.append(
            BenchmarkRow(
                config=key, method=first.method, knobs=first.knobs, fakes=len(fakes),
                reals=len(reals),
                realism={f: _mean([m.get(f) for m in measured]) for f in REALISM_FIELDS},
                detectors=per_detector, example=fakes[0],
            )
        )
    return _name_by_varying_knobs(table, roc), roc


def _name_by_varying_knobs(table: list[BenchmarkRow], roc: dict) -> list[BenchmarkRow]:
    """Rename each configuration by its method and only the knobs that differ between rows."""
    keys = {k for row in table for k in row.knobs} - {"seed", "method"}
    varying = sorted(k for k in keys if len({json.dumps(row.knobs.get(k)) for row in table}) > 1)
    names = [
        " ".join([row.method] + [f"{k}={row.knobs[k]}" for k in varying if k in row.knobs])
        for row in table
    ]
    if len(set(names)) < len(names):
        return table  # knobs alone do not tell the rows apart: keep the full names
    for row, short in zip(table, names):
        for curves in roc.values():
            curves[short] = curves.pop(row.config)
    return [replace(row, config=short, config_full=row.config) for row, short in zip(table, names)]


def _mean(values: list) -> float | None:
    clean = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    return float(np.mean(clean)) if clean else None
