import json

import numpy as np
import pytest
from typer.testing import CliRunner

from forge.cli import app
from swapscope.formats.manifest import fill_polygons, read_manifest
from swapscope.labels.provenance import ProvenanceReader, read_provenance, read_tags
from swapscope.media.video import VideoWriter, probe, read_frames

runner = CliRunner()


def _frames(path):
    return [f.image for f in read_frames(path)]


def _labels(path, limit=None) -> ProvenanceReader:
    """The watermark evidence of a video's frames and their faces, as detect scan gathers it."""
    from swapscope.faces.pipeline import FacePipeline, PipelineConfig
    from swapscope.timing import StageTimer

    reader = ProvenanceReader()
    pipeline = FacePipeline(PipelineConfig(min_size=32, embed=False, max_frames=limit))
    for item in pipeline.track_frames(path, StageTimer()):
        reader.add(item.frame.image, [f.face.landmarks for f in item.faces])
    return reader


@pytest.fixture(scope="module")
def fwa_fake(tmp_path_factory, face_video):
    """``forge video`` with no model (fwa-sim) on the astronaut clip, and its folder."""
    folder = tmp_path_factory.mktemp("fake")
    out = folder / "fake.mp4"
    result = runner.invoke(
        app, ["video", str(face_video), "--out", str(out), "--fwa-size", "48", "--json"]
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_output_keeps_frame_count_rate_size_and_audio(fwa_fake, face_video):
    out, report = fwa_fake
    src, dst = probe(face_video), probe(out)
    assert (dst.frame_count, dst.fps, dst.width, dst.height) == (
        src.frame_count, src.fps, src.width, src.height,
    )
    assert dst.has_audio and src.has_audio
    assert [round(f.time, 3) for f in read_frames(out)] == [
        round(f.time, 3) for f in read_frames(face_video)
    ]
    row = report["row"]
    assert row["method"] == "fwa-sim" and row["frames"] == 24 and row["swapped_frames"] == 24
    assert {"decode", "detect", "align", "render", "blend", "watermark", "encode"} <= set(
        report["timings"]
    )


def _audio_end(path) -> float:
    import av

    with av.open(str(path)) as container:
        return max(float((p.pts + p.duration) * p.time_base)
                   for p in container.demux(container.streams.audio[0]) if p.size)


def test_odd_sized_video_cut_to_its_first_frames_keeps_size_and_matching_audio(
    tmp_path, face_video
):
    odd = tmp_path / "odd.mp4"
    with VideoWriter(odd, 319, 317, 25, audio_from=face_video) as writer:
        for frame in read_frames(face_video):
            writer.write(frame.image[:317, :319], frame.time)
    out = tmp_path / "fake.mp4"
    result = runner.invoke(
        app, ["video", str(odd), "--out", str(out), "--max-frames", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (319, 317, 10, True)
    assert (
        _audio_end(odd) > 0.9 and abs(_audio_end(out) - 10 / 25) < 0.03
    )  # audio cut with the video


def test_pixels_outside_the_manifest_masks_are_unchanged_up_to_codec_noise(
    fwa_fake, face_video, tmp_path
):
    import cv2

    out, report = fwa_fake
    folder = out.parent
    row = read_manifest(folder)[-1]
    labels = [json.loads(line) for line in (folder / row.labels).read_text().splitlines()]
    # the watermark lives in the swapped face, inside the masks; measure the codec's own noise
    # by encoding the original at the forge's CRF
    expected = _frames(face_video)
    info = probe(face_video)
    with VideoWriter(tmp_path / "codec.mp4", info.width, info.height, info.fps, crf=18) as writer:
        for image in expected:
            writer.write(image)
    codec_only = _frames(tmp_path / "codec.mp4")
    changed_outside, changed_total, noise, codec_noise = 0, 0, [], []
    for want, fake, plain, label in zip(expected, _frames(out), codec_only, labels):
        masks = fill_polygons([p for face in label["faces"] for p in face["mask"]], want.shape)
        # H.264 codes 8x8 blocks: a change at the mask's edge rings up to a block beyond it
        outside = ~cv2.dilate(masks.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
        diff = np.abs(fake.astype(int) - want.astype(int)).max(-1)
        # a swap changes areas; codec noise flips isolated pixels: open 3x3
        changed = (
            cv2.morphologyEx(
                (diff > 25).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
            )
            > 0
        )
        changed_total += int(changed.sum())
        changed_outside += int((changed & outside)[4:-4, 4:-4].sum())  # frame edges: codec only
        noise.append(diff[outside].mean())
        codec_noise.append(np.abs(plain.astype(int) - want.astype(int)).max(-1)[outside].mean())
    assert changed_total > 300  # the face really was re-rendered
    assert changed_outside <= 0.02 * changed_total  # what changed is inside the labelled masks
    assert np.mean(noise) <= 1.2 * np.mean(codec_noise) + 0.2  # elsewhere: the codec's own noise


def test_the_fake_carries_watermark_and_metadata_and_scan_reports_them(fwa_fake, tmp_path):
    out, report = fwa_fake
    manifest_id = report["row"]["id"]
    found = read_provenance(out, _labels(out))
    assert found.mark_id == manifest_id[:8] and not found.mark_mirrored
    assert found.frames_checked == 24 and found.faces_read == 24
    # the metadata survives a re-encode that keeps the container tags (the watermark's survival
    # of re-encodes and edits is tested on a clip with a fixed payload: test_watermark.py)
    again = tmp_path / "reencoded.mp4"
    info = probe(out)
    with VideoWriter(
        again, info.width, info.height, info.fps, crf=23, metadata=read_tags(out)
    ) as writer:
        for frame in read_frames(out):
            writer.write(frame.image, frame.time)
    kept = read_provenance(again).metadata
    assert kept["manifest_id"] == manifest_id
    assert "compositeWithTrainedAlgorithmicMedia" in kept["digital_source_type"]

    from detect.cli import app as detect_app

    # scan's default rules: every 5th frame scored, and the label read in every frame of the
    # first 150, whose faces are followed between detections (this clip pans 3 px a frame)
    scan = runner.invoke(detect_app, ["scan", str(out), "--json"])
    assert scan.exit_code == 0, scan.output
    provenance = json.loads(scan.stdout)["inputs"][0]["provenance"]
    assert provenance["labelled"] and provenance["metadata"]["manifest_id"] == manifest_id
    assert provenance["watermark"]["id"] == manifest_id[:8]
    assert provenance["status"] == "verified" and provenance["watermark"]["frames"] == 24
    text = runner.invoke(detect_app, ["scan", str(out)])
    assert text.stdout.splitlines()[0].startswith(
        f"LABELLED (verified)  {out}: labelled by swapscope (verified): watermark")


def test_real_video_carries_no_label(face_video):
    found = read_provenance(face_video, _labels(face_video, limit=4))
    assert not found.labelled and found.frames_checked == 4 and found.mark_id is None


def test_data_card_and_manifest_beside_the_output(fwa_fake, face_video):
    out, report = fwa_fake
    card = (out.parent / "data_card.md").read_text()
    assert "compositeWithTrainedAlgorithmicMedia" in card and report["row"]["id"][:8] in card
    row = read_manifest(out.parent)[-1]
    assert row.label == "fake" and row.output == "fake.mp4" and len(row.source_sha256) == 64
    assert row.knobs["mask"] == "hull" and row.knobs["fwa_size"] == 48


def test_model_method_swaps_with_a_trained_model(two_facesets, face_video, tmp_path):
    from forge.cli import app as forge_app

    model = tmp_path / "model"
    trained = runner.invoke(
        forge_app,
        [
            "train", *map(str, two_facesets), "--out", str(model), "--steps", "1", "--arch",
            "swap-ae-lite", "--batch-size", "2", "--device", "cpu",
        ],
    )
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "swapped.mp4"
    result = runner.invoke(
        forge_app,
        [
            # the hull mask (a one-step model's learned mask is still empty) and no colour
            # transfer or seamless cloning, which would pull its grey render back to the face
            "video", str(face_video), "--model", str(model), "--out", str(out), "--blend",
            "alpha", "--colour", "none", "--mask", "hull", "--batch-size", "5", "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["row"]
    assert (
        row["method"] == "model"
        and row["target_identity"] == "mirror"
        and row["source_identity"] == "eileen"
    )
    assert len(row["checkpoint_sha256"]) == 64 and row["knobs"]["blend"] == "alpha"
    assert row["knobs"]["model_step"] == 1 and probe(out).frame_count == 24
    inside, outside = _change_inside_and_outside_the_swap(face_video, out, tmp_path)
    assert len(inside) == row["swapped_frames"] >= 20
    assert np.mean(inside) > 5 * np.mean(outside)  # the face was replaced, the rest re-encoded


def _change_inside_and_outside_the_swap(source, fake, folder) -> tuple[list, list]:
    """Per swapped frame: the mean absolute change (0-255) of the pixels the labels' masks
    cover, and of all the others."""
    from swapscope.formats.manifest import read_swap_frames

    labels = {label.frame: label for label in read_swap_frames(folder, read_manifest(folder)[-1])}
    inside, outside = [], []
    for before, after in zip(read_frames(source), read_frames(fake)):
        if before.index not in labels:
            continue
        change = np.abs(after.image.astype(int) - before.image.astype(int)).mean(-1)
        mask = fill_polygons([p for f in labels[before.index].faces for p in f.mask], change.shape)
        inside.append(change[mask].mean())
        outside.append(change[~mask].mean())
    return inside, outside


def test_bad_inputs_exit_2_and_leave_nothing(tmp_path, face_video, astronaut):
    import cv2
    from skimage import data

    from swapscope.media.sample import write_clip

    def run(*args):
        result = runner.invoke(app, ["video", *map(str, args)])
        assert result.exit_code == 2, result.output
        return result.stderr.strip().splitlines()

    out = tmp_path / "o.mp4"
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    assert "takes a video" in run(photo, "--out", out)[-1]
    cut = tmp_path / "cut.mp4"
    raw = face_video.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    assert len(run(cut, "--out", out)) == 1
    cup = write_clip(tmp_path / "cup.mp4", [data.coffee()[:320, :320]] * 6, fps=25)
    assert run(cup, "--out", out) == [f"error: {cup}: no face found"]
    detector = tmp_path / "det"
    detector.mkdir()
    (detector / "weights.safetensors").write_bytes(b"")
    (detector / "config.json").write_text(json.dumps({"kind": "swapscope.detector"}))
    assert "not a swap model" in run(face_video, "--model", detector, "--out", out)[0]
    assert "unknown --blend" in run(face_video, "--blend", "smudge", "--out", out)[0]
    leftovers = {p.name for p in tmp_path.iterdir()} - {
        "a.png", "cut.mp4", "cup.mp4", "det",
    }
    assert leftovers == set()


def test_dataset_sweeps_knobs_with_real_counterparts_and_one_watermark_policy(
    tmp_path, face_video, astronaut
):
    from swapscope.media.sample import moving_face_frames, write_clip

    videos = tmp_path / "videos"
    for person, image in (
        ("eileen", astronaut),
        ("mirror", np.ascontiguousarray(astronaut[:, ::-1])),
    ):
        (videos / person).mkdir(parents=True)
        write_clip(
            videos / person / "clip.mp4", moving_face_frames(image, 8), fps=25, audio_seconds=0.4
        )
    config = tmp_path / "set.toml"
    config.write_text('out = "set"\nvideos = ["videos"]\nwatermark = "neither"\nmax_frames = 6\n'
                      '[splits]\ntrain = 0.5\ntest = 0.5\n'
                      '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [64, 100]\ncrf = [18, 28]\n')
    result = runner.invoke(app, ["dataset", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["fakes"], summary["reals"]) == (
        2 * 4,
        2 * 2,
    )  # 2 videos x 4 knob sets; x 2 CRFs
    assert sorted(summary["splits"].values()) == ["test", "train"]
    rows = read_manifest(tmp_path / "set")
    splits_per_source = {
        src: {r.split for r in rows if r.source == src} for src in {r.source for r in rows}
    }
    assert all(
        len(s) == 1 for s in splits_per_source.values()
    )  # a video's fakes and reals share a split
    assert all(not r.watermark for r in rows)  # the policy covers reals and fakes alike
    for r in rows:
        assert probe(tmp_path / "set" / r.output).frame_count == 6
        assert (
            abs(_audio_end(tmp_path / "set" / r.output) - 6 / 25) < 0.03
        )  # not the source's 0.4 s
    real = next(r for r in rows if r.label == "real")
    found = read_provenance(tmp_path / "set" / real.output, _labels(tmp_path / "set" / real.output))
    assert (
        found.metadata["manifest_id"] == real.id and found.metadata["digital_source_type"] is None
    )
    assert found.mark_id is None and found.faces_read > 0
    signed = found.credential  # a real counterpart is signed as a transcode, not as synthetic
    assert signed.valid and signed.swapscope["manifest_id"] == real.id
    assert "c2pa.transcoded" in signed.actions and not signed.ai_generated
    again = runner.invoke(app, ["dataset", str(config), "--json"])
    assert json.loads(again.stdout)["made"] == 0 and json.loads(again.stdout)["skipped"] == 12
    bad = tmp_path / "bad.toml"
    bad.write_text('videos = ["videos"]\n[sweep]\nsharpness = [1]\n')
    result = runner.invoke(app, ["dataset", str(bad)])
    assert result.exit_code == 2 and "unknown sweep knobs ['sharpness']" in result.stderr


@pytest.mark.slow
def test_dataset_on_ray_makes_the_same_set_and_survives_a_killed_task(tmp_path, astronaut,
                                                                      local_ray):
    """forge dataset --engine ray on a local Ray with 2 CPUs: one task per output, the same
    outputs and rows as the single process, a worker killed once costs nothing, a corrupt video
    is one failed line per output it was to make, a second run makes nothing."""
    from swapscope.media.sample import moving_face_frames, write_clip

    videos = tmp_path / "videos"
    mirror = np.ascontiguousarray(astronaut[:, ::-1])
    for person, image in (("eileen", astronaut), ("mirror", mirror)):
        (videos / person).mkdir(parents=True)
        write_clip(videos / person / "clip.mp4", moving_face_frames(image, 8), fps=25)
    (videos / "broken").mkdir()
    (videos / "broken" / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    sets = {}
    for engine in ("single", "ray"):
        config = tmp_path / f"{engine}.toml"
        config.write_text(f'out = "{engine}"\nvideos = ["videos"]\nmax_frames = 6\n'
                          '[splits]\ntrain = 0.5\ntest = 0.5\n'
                          '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [64, 100]\n')
        sets[engine] = config
    single = runner.invoke(app, ["dataset", str(sets["single"]), "--json"])
    assert single.exit_code == 2, single.output
    command = ["dataset", str(sets["ray"]), "--engine", "ray", "--json"]
    first = runner.invoke(app, command)
    assert (local_ray / "ray-forge").exists()  # a task's worker did die
    assert first.exit_code == 2 and "3 outputs failed" in first.stderr  # the broken video's
    summary = json.loads(first.stdout)
    assert (summary["made"], summary["fakes"], summary["reals"]) == (6, 4, 2)
    assert len(summary["failed"]) == 3 and all("broken" in f for f in summary["failed"])

    def kept(rows) -> set:
        return {(r.output, r.label, r.frames, r.split) for r in rows}

    rows = read_manifest(tmp_path / "ray")
    assert kept(rows) == kept(read_manifest(tmp_path / "single"))
    for r in rows:
        assert probe(tmp_path / "ray" / r.output).frame_count == 6
    again = json.loads(runner.invoke(app, command).stdout)
    assert again["made"] == 0 and again["skipped"] == 6
    assert not list((tmp_path / "ray").rglob(".*.pending-*"))  # the dead task's leftovers


def test_fake_and_real_rows_of_video_and_dataset_are_one_record_and_round_trip(
    fwa_fake, tmp_path, astronaut
):
    from swapscope.errors import InputError
    from swapscope.formats.manifest import ManifestRow, read_swap_frames
    from swapscope.media.sample import moving_face_frames, write_clip

    out, report = fwa_fake
    (tmp_path / "videos" / "eileen").mkdir(parents=True)
    write_clip(
        tmp_path / "videos" / "eileen" / "clip.mp4", moving_face_frames(astronaut, 4), fps=25
    )
    config = tmp_path / "set.toml"
    config.write_text('out = "set"\nvideos = ["videos"]\nmax_frames = 4\nsplits = {test = 1.0}\n'
                      '[sweep]\nmethod = ["fwa-sim"]\nfwa_size = [64]\n')
    assert runner.invoke(app, ["dataset", str(config)]).exit_code == 0
    for folder in (out.parent, tmp_path / "set"):
        lines = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
        rows = read_manifest(folder)
        assert all(isinstance(r, ManifestRow) for r in rows)
        assert [r.to_json() for r in rows] == lines  # what was written is what is read
        assert [ManifestRow.from_json(r.to_json(), "x") for r in rows] == rows
        for row in rows:
            labels = read_swap_frames(folder, row)
            assert (len(labels) == row.swapped_frames > 0) if row.label == "fake" else labels == []
    kinds = {(r.label, r.method) for r in read_manifest(tmp_path / "set")}
    assert kinds == {("fake", "fwa-sim"), ("real", "real")}
    assert (
        read_manifest(out.parent)[-1].to_json() == report["row"]
    )  # forge video --json prints the row
    edited = tmp_path / "edited" / "manifest.jsonl"
    edited.parent.mkdir()
    edited.write_text(json.dumps({**report["row"], "frames": "many"}) + "\n")
    with pytest.raises(InputError, match="'frames' has the wrong type"):
        read_manifest(edited)
    edited.write_text(json.dumps({**report["row"], "extra": 1}) + "\n")
    with pytest.raises(InputError, match="unknown keys \\['extra'\\]"):
        read_manifest(edited)
