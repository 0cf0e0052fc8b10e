"""A fuzzed reader for each format a user can hand swapscope (issue 27).

From a valid file of each kind, made here, Hypothesis draws mutations: truncation, a byte
flipped, a key dropped or renamed, a value of another type, huge numbers, NaN, paths with
``..``, a safetensors header claiming a huge length, lines dropped or doubled. Each reader must
either accept the file or raise the one clear error (``InputError``), never a library's
exception. The runs are derandomised (the same examples every time) and bounded: at most
``SWAPSCOPE_FUZZ_EXAMPLES`` (default 40) per format.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swapscope.errors import InputError

EXAMPLES = int(os.environ.get("SWAPSCOPE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

# values of every other type, and the extremes: what a careless or hostile edit puts in
ODD_VALUES = [None, True, False, -1, 0, 2**64, -(2**63), 1e308, float("nan"), float("inf"),
              float("-inf"), "", "x", "../../../etc/passwd", "/etc/passwd", [], [1, "a", None],
              {}, {"k": [1]}, "\u0000", "9" * 400]


# --- mutations ------------------------------------------------------------------------------

def _paths(value, prefix=()):
    """Every place in a JSON value: () is the whole, then keys and indices (8 items per list)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:8]):
            yield from _paths(item, (*prefix, index))


def _at(value, path):
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_value(draw, valid):
    """``valid`` (a JSON value) with one key dropped or renamed, or one value replaced."""
    data = copy.deepcopy(valid)
    path = draw(st.sampled_from(list(_paths(data))))
    op = draw(st.sampled_from(["drop", "rename", "replace"] if path else ["replace"]))
    if op == "replace":
        new = draw(st.sampled_from(ODD_VALUES))
        if not path:
            return new
        _at(data, path[:-1])[path[-1]] = new
        return data
    parent, key = _at(data, path[:-1]), path[-1]
    value = parent.pop(key)
    if op == "rename" and isinstance(parent, dict):
        parent[f"{key}_"] = value
    return data


@st.composite
def damaged_bytes(draw, valid: bytes):
    """``valid`` truncated, with a byte flipped, with junk inserted, or empty."""
    op = draw(st.sampled_from(["truncate", "flip", "insert", "empty"]))
    if op == "empty" or not valid:
        return b""
    at = draw(st.integers(0, len(valid) - 1))
    if op == "truncate":
        return valid[:at]
    if op == "flip":
        return valid[:at] + bytes([valid[at] ^ draw(st.integers(1, 255))]) + valid[at + 1:]
    return valid[:at] + draw(st.binary(min_size=1, max_size=16)) + valid[at:]


def mutated_json(valid) -> st.SearchStrategy[bytes]:
    """A JSON file from ``valid``: one value changed (written as JSON, NaN and all), or its bytes
    damaged."""
    text = json.dumps(valid).encode()
    return st.one_of(mutated_value(valid).map(lambda v: json.dumps(v).encode()),
                     damaged_bytes(text))


@st.composite
def mutated_jsonl(draw, rows: list):
    """A JSON-lines file from ``rows``: one row changed, dropped or doubled, or its bytes
    damaged."""
    op = draw(st.sampled_from(["row", "drop", "double", "bytes"]))
    lines = [json.dumps(r) for r in rows]
    if op == "bytes":
        return draw(damaged_bytes("\n".join(lines).encode() + b"\n"))
    index = draw(st.integers(0, len(rows) - 1))
    if op == "row":
        lines[index] = json.dumps(draw(mutated_value(rows[index])))
    elif op == "drop":
        del lines[index]
    else:
        lines.insert(index, lines[index])
    return ("\n".join(lines) + "\n").encode()


@st.composite
def mutated_text(draw, valid: str):
    """A text file (TOML, CSV, PEM) from ``valid``: a line dropped, doubled or replaced by one of
    the odd values, or its bytes damaged."""
    lines = valid.splitlines()
    op = draw(st.sampled_from(["drop", "double", "replace", "bytes"]))
    if op == "bytes":
        return draw(damaged_bytes(valid.encode()))
    index = draw(st.integers(0, len(lines) - 1))
    if op == "drop":
        del lines[index]
    elif op == "double":
        lines.insert(index, lines[index])
    else:
        lines[index] = str(draw(st.sampled_from(ODD_VALUES)))
    return ("\n".join(lines) + "\n").encode()


@st.composite
def mutated_safetensors(draw, valid: bytes):
    """A safetensors file with its bytes damaged, a header claiming a huge length, or its JSON
    header changed (names, shapes, dtypes, offsets)."""
    op = draw(st.sampled_from(["bytes", "huge header", "header"]))
    if op == "bytes":
        return draw(damaged_bytes(valid))
    length = int.from_bytes(valid[:8], "little")
    if op == "huge header":
        claim = draw(st.sampled_from([len(valid) * 4, 2**40, 2**63 - 1, 2**64 - 1]))
        return claim.to_bytes(8, "little") + valid[8:]
    header = json.loads(valid[8:8 + length])
    text = json.dumps(draw(mutated_value(header))).encode()
    return len(text).to_bytes(8, "little") + text + valid[8 + length:]


def _either_accepts_or_says_why(read: Callable[[], object]) -> None:
    """The one contract: the reader returns, or raises InputError with one line."""
    try:
        read()
    except InputError as exc:
        assert "\n" not in str(exc).strip(), str(exc)


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz-"))


def _read_alone(name: str, content: bytes, read: Callable[[Path], object]) -> None:
    """``content`` as the file ``name`` in a folder of its own, through ``read``."""
    folder = _folder()
    (folder / name).write_bytes(content)
    _either_accepts_or_says_why(lambda: read(folder / name))
    shutil.rmtree(folder)


# --- forge manifests and their per-frame labels ------------------------------------------

def _manifest_copy(forgery_set: Path) -> Path:
    folder = _folder()
    shutil.copyfile(forgery_set / "manifest.jsonl", folder / "manifest.jsonl")
    shutil.copytree(forgery_set / "labels", folder / "labels")
    return folder


def _read_set(folder: Path) -> None:
    from swapscope.formats.manifest import read_manifest, read_swap_frames

    for row in read_manifest(folder):
        read_swap_frames(folder, row)


@pytest.fixture(scope="module")
def manifest_rows(forgery_set):
    return [json.loads(line) for line in (forgery_set / "manifest.jsonl").read_text().splitlines()]


@FUZZ
@given(data=st.data())
def test_manifest_reader(forgery_set, manifest_rows, data):
    folder = _manifest_copy(forgery_set)
    (folder / "manifest.jsonl").write_bytes(data.draw(mutated_jsonl(manifest_rows)))
    _either_accepts_or_says_why(lambda: _read_set(folder))
    shutil.rmtree(folder)


@FUZZ
@given(data=st.data())
def test_frame_label_reader(forgery_set, manifest_rows, data):
    folder = _manifest_copy(forgery_set)
    labels = folder / next(r["labels"] for r in manifest_rows if r["labels"])
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    labels.write_bytes(data.draw(mutated_jsonl(rows)))
    _either_accepts_or_says_why(lambda: _read_set(folder))
    shutil.rmtree(folder)


# --- face sets ----------------------------------------------------------------------------

@pytest.mark.parametrize("file", ["faceset.json", "faces.jsonl", "sources.jsonl"])
@FUZZ
@given(data=st.data())
def test_face_set_reader(two_facesets, file, data):
    from swapscope.formats.faceset import FaceSet

    source = two_facesets[0]
    folder = _folder() / "set"
    folder.mkdir()
    for name in ("faceset.json", "faces.jsonl", "sources.jsonl"):
        shutil.copyfile(source / name, folder / name)
    text = (source / file).read_text()
    mutation = (mutated_json(json.loads(text)) if file.endswith(".json") else
                mutated_jsonl([json.loads(line) for line in text.splitlines()]))
    (folder / file).write_bytes(data.draw(mutation))
    _either_accepts_or_says_why(lambda: FaceSet.open(folder))
    shutil.rmtree(folder.parent)


# --- config files: forge dataset, eval -----------------------------------------------------

DATASET_CONFIG = {"out": "set", "videos": ["videos"], "max_frames": 8, "watermark": "neither",
                  "splits": {"train": 0.5, "test": 0.5}, "sweep": {"fwa_size": [64, 112],
                                                                   "blend": ["alpha"]}}
DATASET_TOML = ('out = "set"\nvideos = ["videos"]\nmax_frames = 8\nwatermark = "neither"\n'
                'splits = {train = 0.5, test = 0.5}\n[sweep]\nfwa_size = [64, 112]\n'
                'blend = ["alpha"]\n')
EVAL_CONFIG = {"sets": ["set"], "bootstrap": 50, "realism_frames": 3,
               "loop": {"max_frames": 30, "steps": 10}}


def _config_file(content: bytes, suffix: str) -> Path:
    folder = _folder()
    (folder / "videos").mkdir()
    path = folder / f"config{suffix}"
    path.write_bytes(content)
    return path


@FUZZ
@given(data=st.data())
def test_dataset_config_reader(data):
    from forge.dataset import DatasetConfig

    suffix = data.draw(st.sampled_from([".json", ".toml"]))
    content = data.draw(mutated_json(DATASET_CONFIG) if suffix == ".json"
                        else mutated_text(DATASET_TOML))
    path = _config_file(content, suffix)
    _either_accepts_or_says_why(lambda: DatasetConfig.load(path))
    shutil.rmtree(path.parent)


@FUZZ
@given(data=st.data())
def test_eval_config_reader(data):
    from eval.loop import load_config

    path = _config_file(data.draw(mutated_json(EVAL_CONFIG)), ".json")
    _either_accepts_or_says_why(lambda: load_config(path))
    shutil.rmtree(path.parent)


# --- checkpoints: detector and swap-model configs, safetensors ----------------------------

def _checkpoint_copy(source: Path, config: bytes) -> Path:
    folder = _folder() / "checkpoint"
    folder.mkdir()
    (folder / "weights.safetensors").symlink_to((source / "weights.safetensors").resolve())
    (folder / "config.json").write_bytes(config)
    return folder


@FUZZ
@given(data=st.data())
def test_detector_config_reader(data):
    from detect.checkpoint import load_checkpoint
    from detect.scan import DEFAULT_DETECTOR

    source = DEFAULT_DETECTOR.parent / "fwa_lite0"
    config = json.loads((source / "config.json").read_text())
    folder = _checkpoint_copy(source, data.draw(mutated_json(config)))
    _either_accepts_or_says_why(lambda: load_checkpoint(folder))
    shutil.rmtree(folder.parent)


@FUZZ
@given(data=st.data())
def test_swap_model_config_reader(saved_runs, data):
    from forge.models import load_swap_model

    source = saved_runs / "model"
    config = json.loads((source / "config.json").read_text())
    folder = _checkpoint_copy(source, data.draw(mutated_json(config)))
    _either_accepts_or_says_why(lambda: load_swap_model(folder))
    shutil.rmtree(folder.parent)


@pytest.fixture(scope="module")
def small_tensors() -> bytes:
    from safetensors.torch import save

    return save({"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.zeros(4),
                 "steps": torch.tensor([3], dtype=torch.int64)})


@FUZZ
@given(data=st.data())
def test_safetensors_reader(small_tensors, data):
    from swapscope.checkpoint import read_tensors

    _read_alone("weights.safetensors", data.draw(mutated_safetensors(small_tensors)),
                read_tensors)


# --- resume states ------------------------------------------------------------------------

def _small_run():
    """A model, optimiser and scheduler as a detector run has them, one step taken."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


IDENTITY = {"facesets": ["a"], "seed": 0}


@pytest.fixture(scope="module")
def saved_resume(tmp_path_factory) -> Path:
    from detect.train import save_resume_state

    out = tmp_path_factory.mktemp("resume")
    model, optimizer, scheduler = _small_run()
    history = [{"epoch": 1, "train_loss": 0.6, "val_loss": 0.7, "val_auc": 0.5, "lr": 9e-4}]
    save_resume_state(out, model, optimizer, scheduler, 1, history, IDENTITY)
    return out


@pytest.mark.parametrize("file", ["state.json", "model.safetensors", "optimizer.safetensors"])
@FUZZ
@given(data=st.data())
def test_detector_resume_state_reader(saved_resume, file, data):
    """The state, read into the run it belongs to; what it accepts must also train on."""
    from detect.train import load_resume_state

    out = _folder()
    shutil.copytree(saved_resume / "resume", out / "resume")
    valid = (out / "resume" / file).read_bytes()
    (out / "resume" / file).write_bytes(data.draw(
        mutated_json(json.loads(valid)) if file.endswith(".json")
        else mutated_safetensors(valid)))
    model, optimizer, scheduler = _small_run()

    def read_and_step():
        load_resume_state(out, model, optimizer, scheduler, IDENTITY, finish_first=False)
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        optimizer.step()
        scheduler.step()

    _either_accepts_or_says_why(read_and_step)
    shutil.rmtree(out)


@pytest.fixture(scope="module")
def swap_run(saved_runs):
    """The saved swap-model run's networks, optimisers and pools, built once from the options it
    was trained with (its resume state checks them); each example empties the pools again."""
    from forge.train import TrainConfig, _setup

    saved = json.loads((saved_runs / "model" / "config.json").read_text())["config"]
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    return _setup(config, "cpu")


@pytest.mark.parametrize("file", ["resume/state.json", "resume/opt_g.safetensors",
                                  "resume/pools.safetensors"])
@FUZZ
@given(data=st.data())
def test_swap_model_resume_state_reader(saved_runs, swap_run, file, data):
    """Read into the run it belongs to; what it accepts must also plot its history."""
    from forge.train import ImagePool, _load_resume, plot_curves

    out = _folder() / "model"
    shutil.copytree(saved_runs / "model", out)
    valid = (out / file).read_bytes()
    (out / file).write_bytes(data.draw(
        mutated_json(json.loads(valid)) if file.endswith(".json")
        else mutated_safetensors(valid)))
    swap_run.pools = {side: ImagePool(pool.size) for side, pool in swap_run.pools.items()}

    def read_and_plot():
        state = _load_resume(out, swap_run, finish_first=False)
        plot_curves(state["history"], out.parent / "curves.png")

    _either_accepts_or_says_why(read_and_plot)
    shutil.rmtree(out.parent)


# --- identity references, crop collections, results tables ---------------------------------

REFERENCE = {"kind": "swapscope.identity-reference", "name": "eileen", "sources": ["a.png"],
             "embeddings": [[0.01] * 128, [0.02] * 128]}


@FUZZ
@given(data=st.data())
def test_identity_reference_reader(data):
    from swapscope.faces.identity import Reference

    _read_alone("eileen.json", data.draw(mutated_json(REFERENCE)), Reference.load)


COLLECTION_CSV = ("file,label,group,split\nreal/a.png,real,g1,train\nfake/b.png,fake,g1,train\n"
                  "real/c.png,real,g2,val\nfake/d.png,fake,g2,train\n")


@FUZZ
@given(data=st.data())
def test_crop_collection_reader(data):
    from detect.crops import read_collection

    _read_alone("labels.csv", data.draw(mutated_text(COLLECTION_CSV)),
                lambda path: read_collection(path.parent))


@pytest.fixture(scope="module")
def results_table(tmp_path_factory) -> bytes:
    from detect.results import ResultsTable, read_results
    from swapscope.formats.scan import InputScan

    folder = tmp_path_factory.mktemp("results")
    video = folder / "clip.mp4"
    video.write_bytes(b"0" * 64)
    path = folder / "results.parquet"
    with ResultsTable(path, "detector", "ab" * 32, {"mode": "fast"}) as table:
        table.add(InputScan(path=str(video), sha256="cd" * 32, score=0.7, verdict="fake"), 0.5)
        table.add(InputScan(path=str(folder / "gone.mp4"), sha256="", score=None,
                            verdict="error", error="unreadable"), 0.5)
    assert len(read_results(path)) == 2
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_results_table_reader(results_table, data):
    from detect.results import read_results

    _read_alone("results.parquet", data.draw(damaged_bytes(results_table)), read_results)


@pytest.fixture(scope="module")
def eval_report(forgery_set, tmp_path_factory) -> dict:
    """The report.json of a real eval report of the forgery set (what eval harden reads)."""
    from typer.testing import CliRunner

    from eval.cli import app as eval_app

    folder = tmp_path_factory.mktemp("report")
    (folder / "eval.toml").write_text(f'sets = ["{forgery_set}"]\nbootstrap = 10\n'
                                      'realism_frames = 2\n')
    made = CliRunner().invoke(eval_app, ["report", "--config", str(folder / "eval.toml"),
                                         "--out", str(folder / "report")])
    assert made.exit_code == 0, made.output
    return json.loads((folder / "report" / "report.json").read_text())


def test_an_eval_report_reads_back_as_the_record_it_was_written_from(eval_report):
    from eval.benchmark import BenchmarkResult

    again = BenchmarkResult.from_json(eval_report, "report.json").to_json()
    assert json.dumps({k: v for k, v in again.items() if k != "roc"}, sort_keys=True) == \
        json.dumps(eval_report, sort_keys=True)


@FUZZ
@given(data=st.data())
def test_eval_report_reader(eval_report, data):
    """eval harden's reading of a report folder: the report, then the configurations it would
    harden against."""
    from eval.harden import HardenConfig, _choose, _read_report

    folder = _folder()
    (folder / "report.json").write_bytes(data.draw(mutated_json(eval_report)))

    def read_and_choose():
        _choose(_read_report(folder), HardenConfig(report=str(folder)))

    _either_accepts_or_says_why(read_and_choose)
    shutil.rmtree(folder)


# --- Content Credentials key and certificate; watermark payloads ---------------------------

@pytest.fixture(scope="module")
def signing_pair(tmp_path_factory) -> dict[str, str]:
    from swapscope.labels.credentials import _make_local_pair

    folder = tmp_path_factory.mktemp("pair") / "c2pa"
    _make_local_pair(folder)
    return {name: (folder / name).read_text() for name in ("key.pem", "chain.pem")}


@pytest.mark.parametrize("file", ["key.pem", "chain.pem"])
@FUZZ
@given(data=st.data())
def test_signing_key_and_certificate_reader(signing_pair, file, data):
    from swapscope.labels.credentials import signing_key

    folder = _folder()
    for name, text in signing_pair.items():
        (folder / name).write_text(text)
    (folder / file).write_bytes(data.draw(mutated_text(signing_pair[file])))
    _either_accepts_or_says_why(lambda: signing_key(folder / "key.pem", folder / "chain.pem"))
    shutil.rmtree(folder)


@FUZZ
@given(bits=st.one_of(st.lists(st.integers(0, 1), min_size=64, max_size=64),
                      st.lists(st.integers(0, 1), max_size=300)))
def test_watermark_payload_reader(bits):
    """Any bits a frame yields (a 64-bit word, or a word of another length) decode to a manifest
    id, or to nothing, never an exception."""
    from swapscope.labels.facemark import BITS, decode_near, decode_payload

    assert BITS == 64

    array = np.asarray(bits, np.uint8)
    found, _ = decode_payload(array)
    assert found is None or isinstance(found, str)
    assert decode_near(array) is None or isinstance(decode_near(array), str)


# --- the commands that read each format: exit 2, one line, nothing left behind --------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


def _case_manifest(ctx):
    folder = ctx.copy(ctx.forgery_set, "set")
    _truncate(folder / "manifest.jsonl")
    (folder / "manifest.jsonl").write_text((folder / "manifest.jsonl").read_text() + "{\n")
    return "detect", ["train", str(ctx.two_facesets[0]), "--fakes", str(folder), "--out",
                      str(ctx.out / "run"), "--device", "cpu"]


def _case_face_set(ctx):
    folder = ctx.copy(ctx.two_facesets[0], "faces")
    rows = (folder / "faces.jsonl").read_text().splitlines()
    (folder / "faces.jsonl").write_text("\n".join([rows[0].replace('"box"', '"bx"'), *rows[1:]])
                                        + "\n")
    return "forge", ["train", str(folder), str(ctx.two_facesets[1]), "--out",
                     str(ctx.out / "model"), "--device", "cpu", "--steps", "1"]


def _case_dataset_config(ctx):
    path = ctx.tmp / "set.toml"
    path.write_text('out = "out/set"\nvideos = ["videos"]\nmax_frames = "many"\n')
    return "forge", ["dataset", str(path)]


def _case_eval_config(ctx):
    path = ctx.tmp / "eval.json"
    path.write_text(json.dumps({"sets": [str(ctx.forgery_set)], "bootstrap": float("nan")}))
    return "eval", ["report", "--config", str(path), "--out", str(ctx.out / "report")]


def _case_detector_config(ctx):
    from detect.scan import DEFAULT_DETECTOR

    folder = ctx.copy(DEFAULT_DETECTOR.parent / "fwa_lite0", "detector")
    config = json.loads((folder / "config.json").read_text())
    config["data_config"]["std"] = [0.2, 0.0, 0.2]
    (folder / "config.json").write_text(json.dumps(config))
    return "detect", ["scan", str(ctx.face_video), "-m", str(folder), "--results",
                      str(ctx.out / "results.parquet"), "--device", "cpu"]


def _case_swap_model(ctx):
    folder = ctx.copy(ctx.saved_runs / "model", "model")
    _flip_middle(folder / "weights.safetensors")
    _truncate(folder / "weights.safetensors")
    return "forge", ["video", str(ctx.face_video), "-m", str(folder), "--out",
                     str(ctx.out / "fake.mp4"), "--device", "cpu"]


def _case_crop_collection(ctx):
    folder = ctx.tmp / "crops"
    folder.mkdir()
    (folder / "labels.csv").write_text("file,label,group\n../../etc/passwd,fake,g1\n")
    return "detect", ["train", str(ctx.two_facesets[0]), "--crops", str(folder), "--out",
                      str(ctx.out / "run"), "--device", "cpu"]


def _case_results_table(ctx):
    path = ctx.tmp / "results.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    ctx.keep(path)
    return "detect", ["scan", str(ctx.face_video), "--results", str(path), "--device", "cpu"]


def _case_signing_pair(ctx):
    from swapscope.labels.credentials import _make_local_pair

    _make_local_pair(ctx.tmp / "pair")
    chain = ctx.tmp / "pair" / "chain.pem"
    lines = chain.read_text().splitlines()
    chain.write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # a line of the leaf certificate
    return "forge", ["video", str(ctx.face_video), "--out", str(ctx.out / "fake.mp4"),
                     "--sign-key", str(ctx.tmp / "pair" / "key.pem"), "--sign-cert",
                     str(ctx.tmp / "pair" / "chain.pem"), "--max-frames", "2"]


class _Context:
    def __init__(self, tmp, **fixtures):
        self.tmp, self.out, self._kept = tmp, tmp / "out", {}
        self.out.mkdir()
        self.__dict__.update(fixtures)

    def copy(self, source: Path, name: str) -> Path:
        shutil.copytree(source, self.tmp / name, symlinks=False)
        return self.tmp / name

    def keep(self, path: Path) -> None:
        self._kept[path] = path.read_bytes()

    def untouched(self) -> bool:
        return all(p.read_bytes() == data for p, data in self._kept.items())


@pytest.mark.parametrize("case", [
    _case_manifest, _case_face_set, _case_dataset_config, _case_eval_config,
    _case_detector_config, _case_swap_model, _case_crop_collection, _case_results_table,
    _case_signing_pair,
], ids=lambda case: case.__name__.removeprefix("_case_"))
def test_the_command_reading_a_bad_file_exits_2_with_one_line_and_writes_nothing(
        tmp_path, forgery_set, two_facesets, saved_runs, face_video, case):
    import subprocess
    import sys

    ctx = _Context(tmp_path, forgery_set=forgery_set, two_facesets=two_facesets,
                   saved_runs=saved_runs, face_video=face_video)
    (tmp_path / "videos").mkdir()
    program, argv = case(ctx)
    done = subprocess.run([sys.executable, "-m", program, *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    left = [p for p in ctx.out.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert left == [], left
    assert ctx.untouched()
