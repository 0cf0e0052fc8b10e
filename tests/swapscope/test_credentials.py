"""Labels that can be trusted: Content Credentials (C2PA) on what the forge writes, verified
apart from claimed in detect scan, and labels read from a damaged file before its error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from detect.cli import app as detect_app
from forge.cli import app as forge_app
from swapscope.files import sha256_file
from swapscope.formats.manifest import read_manifest
from swapscope.labels.credentials import config_dir, read_credential
from swapscope.media.video import VideoWriter, probe, read_frames

runner = CliRunner()


@pytest.fixture(scope="module")
def signed_fake(tmp_path_factory, face_video):
    folder = tmp_path_factory.mktemp("signed")
    out = folder / "fake.mp4"
    result = runner.invoke(forge_app, ["video", str(face_video), "--out", str(out), "--fwa-size",
                                       "48", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)["row"]


def test_every_fake_carries_valid_content_credentials(signed_fake, face_video):
    out, row = signed_fake
    found = read_credential(out)
    assert found.present and found.valid and found.state == "Valid" and not found.failures
    assert found.self_signed and not found.trusted  # this installation's own pair, and it says so
    assert found.ai_generated and found.actions == ["c2pa.opened", "c2pa.edited"]
    assert "compositeWithTrainedAlgorithmicMedia" in found.digital_source_types[0]
    assert found.swapscope == {"manifest_id": row["id"], "method": "fwa-sim",
                               "source_sha256": sha256_file(face_video),
                               "checkpoint_sha256": None, "self_signed": True}
    assert row["output_sha256"] == sha256_file(out)  # the manifest hashes the signed file
    assert probe(out).frame_count == 24  # and it still plays whole
    key = config_dir() / "c2pa" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600


def test_one_changed_byte_invalidates_the_credential(signed_fake, tmp_path):
    out, row = signed_fake
    tampered = tmp_path / "tampered.mp4"
    data = bytearray(out.read_bytes())
    data[data.find(b"mdat") + 500] ^= 0x01
    tampered.write_bytes(bytes(data))
    found = read_credential(tampered)
    assert found.present and not found.valid and "assertion.bmffHash.mismatch" in found.failures
    assert "INVALID" in found.summary()


def test_a_real_video_with_a_forged_label_is_only_a_claim(face_video, tmp_path):
    spoof = tmp_path / "spoof.mp4"
    info = probe(face_video)
    with VideoWriter(spoof, info.width, info.height, info.fps, metadata={
            "comment": "swapscope synthetic face swap (model); manifest deadbeef"}) as writer:
        for frame in read_frames(face_video):
            writer.write(frame.image, frame.time)
    result = runner.invoke(detect_app, ["scan", str(spoof), "--json"])
    labels = json.loads(result.stdout)["inputs"][0]["provenance"]
    assert labels["status"] == "claimed" and labels["metadata"]["manifest_id"] == "deadbeef"
    text = runner.invoke(detect_app, ["scan", str(spoof)]).stdout.splitlines()[0]
    assert text.startswith(f"CLAIMS A LABEL (unverified)  {spoof}: claims to be labelled")


def test_a_truncated_fake_reports_its_label_before_its_error(signed_fake, tmp_path):
    out, row = signed_fake
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(out.read_bytes()[: int(out.stat().st_size * 0.75)])
    # every frame: this clip pans 3 px a frame, faster than scan's fast preset tracks faces
    # between detections (the watermark needs landmarks within a pixel or two)
    every = ["--every", "1", "--detect-every", "1"]
    result = runner.invoke(detect_app, ["scan", str(cut), *every, "--json"])
    assert result.exit_code == 2 and "truncated" in result.stderr
    item = json.loads(result.stdout)["inputs"][0]
    assert item["verdict"] == "error" and "truncated" in item["error"]
    labels = item["provenance"]
    assert labels["status"] == "verified" and labels["metadata"]["manifest_id"] == row["id"]
    assert labels["watermark"]["id"] == row["id"][:8]  # read from the frames before the cut
    assert 1 <= labels["watermark"]["frames"] < 24
    assert not labels["credential"]["valid"]  # the file changed after it was signed
    text = runner.invoke(detect_app, ["scan", str(cut), *every])
    assert text.stdout.startswith(f"LABELLED (verified)  {cut}")


def test_disagreeing_labels_are_disputed(signed_fake, tmp_path):
    out, row = signed_fake
    relabelled = tmp_path / "relabelled.mp4"
    info = probe(out)
    other = "ffff" + row["id"][4:]
    with VideoWriter(relabelled, info.width, info.height, info.fps, metadata={
            "comment": f"swapscope synthetic face swap (model); manifest {other}"}) as writer:
        for frame in read_frames(out):
            writer.write(frame.image, frame.time)
    every = ["--every", "1", "--detect-every", "1"]  # as above: a clip that pans fast
    labels = json.loads(runner.invoke(detect_app, ["scan", str(relabelled), *every,
                                                   "--json"]).stdout)
    assert labels["inputs"][0]["provenance"]["status"] == "disputed"


def _user_pair(folder):
    """A CA and a signing certificate of the user's own (not swapscope's self-signed pair)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from swapscope.labels.credentials import _certificate

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_key, ca_key, "Newsroom CA", None, organization="Example Newsroom")
    leaf = _certificate(key, ca_key, "Newsroom forensics", ca, organization="Example Newsroom")
    pem = serialization.Encoding.PEM
    (folder / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    return folder / "key.pem", folder / "chain.pem"


def test_the_users_key_signs_and_a_wrong_pair_is_one_line(face_video, tmp_path):
    key, chain = _user_pair(tmp_path)
    out = tmp_path / "fake.mp4"
    args = ["video", str(face_video), "--out", str(out), "--max-frames", "4"]
    result = runner.invoke(forge_app, [*args, "--sign-key", str(key), "--sign-cert", str(chain)])
    assert result.exit_code == 0, result.output
    found = read_credential(out)
    assert found.valid and not found.self_signed and found.issuer == "Example Newsroom"
    assert found.swapscope["self_signed"] is False
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_chain = _user_pair(other)
    for extra in (["--sign-key", str(key), "--sign-cert", str(wrong_chain)],
                  ["--sign-key", str(key)], ["--sign-key", str(tmp_path / "ca.pem"),
                                             "--sign-cert", str(chain)]):
        bad = runner.invoke(forge_app, [*args[:3], str(tmp_path / "x.mp4"), *args[4:], *extra])
        assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert not (tmp_path / "x.mp4").exists()
    assert [r.output for r in read_manifest(tmp_path)] == ["fake.mp4"]


def test_two_first_uses_agree_on_one_installation_key(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    from swapscope.labels.credentials import local_signing_key

    with ProcessPoolExecutor(2) as pool:
        keys = list(pool.map(local_signing_key, [tmp_path] * 4))
    assert len({k.private_key for k in keys}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2pa"]  # no temporary folder left


def test_a_source_c2pa_cannot_read_is_named_by_its_hash_and_the_fake_signed_as_created(
        face_video, tmp_path):
    import av

    source = tmp_path / "clip.mkv"  # a container c2pa takes no ingredient from
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 320, "yuv420p"
        for frame in read_frames(face_video):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = tmp_path / "fake.mp4"
    result = runner.invoke(forge_app, ["video", str(source), "--out", str(out), "--max-frames",
                                       "6", "--json"])
    assert result.exit_code == 0, result.output
    found = read_credential(out)
    assert found.valid and found.ai_generated and found.actions == ["c2pa.created"]
    assert found.swapscope["source_sha256"] == sha256_file(source)
