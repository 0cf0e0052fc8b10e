import json

import cv2
import numpy as np
import pytest

from swapscope.errors import InputError
from swapscope.faces.identity import (
    REFERENCE_KIND,
    Embedder,
    Reference,
    distance,
    enrol,
    match_track,
)
from swapscope.faces.records import FaceTrack


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def test_embedding_is_stable_under_resize_and_differs_between_people(
    astronaut, dlib_backend, embedder, shared_data
):
    from swapscope.media.images import load_image

    face = dlib_backend.faces(astronaut)[0]
    a = embedder.embed_faces(astronaut, [face])[0]
    assert a.shape == (128,) and a.dtype == np.float32
    big = cv2.resize(astronaut, (1024, 1024))
    b = embedder.embed_faces(big, dlib_backend.faces(big))[0]
    assert distance(a, b) < 0.3
    other = load_image(shared_data / "identities" / "fr_obama" / "obama.jpg")
    c = embedder.embed_faces(other, dlib_backend.faces(other))[0]
    assert distance(a, c) > 0.6


def test_reference_round_trips_and_matches_its_person(tmp_path, astronaut, dlib_backend, embedder):
    photo = tmp_path / "eileen" / "astronaut.png"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    ref = enrol([photo], dlib_backend, embedder)
    assert ref.name == "eileen" and ref.embeddings.shape == (1, 128)
    saved = tmp_path / "ref.json"
    saved.write_text(
        json.dumps(
            {
                "kind": REFERENCE_KIND, "name": ref.name, "sources": list(ref.sources),
                "embeddings": ref.embeddings.tolist(),
            }
        )
    )
    loaded = Reference.load(saved)
    np.testing.assert_allclose(loaded.embeddings, ref.embeddings, atol=1e-5)
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    faces = dlib_backend.faces(flipped)
    emb = embedder.embed_faces(flipped, faces)[0]
    from dataclasses import replace

    track = FaceTrack(track_id=0, faces=(replace(faces[0], embedding=emb),))
    ok, dist = match_track(track, loaded)
    assert ok and dist < 0.4


def test_a_photo_without_a_face_cannot_be_enrolled(tmp_path, dlib_backend, embedder):
    from skimage import data

    photo = tmp_path / "coffee.png"
    cv2.imwrite(str(photo), data.coffee()[..., ::-1])
    with pytest.raises(InputError, match="no face found"):
        enrol([photo], dlib_backend, embedder)


def test_a_json_of_another_kind_is_not_a_reference(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(InputError, match="not an identity reference"):
        Reference.load(path)
