"""The identity vector: the embedding joined with the 3D shape code at a bundle's shape weight. Its
cosine mixes the two codes' cosines; export and `siamface calibrate` choose the weight on
validation people; the device, `evaluate` and the gallery all compare the same vector.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.identity import Gallery
from siamface.edge_runtime.image_io import read_image
from siamface.edge_runtime.normalise import identity_vector, l2_normalize
from siamface.edge_runtime.params import ParamLayout
from siamface.edge_runtime.reconstructor import Reconstructor
from siamface.evaluation.calibrate import calibrate_bundle
from siamface.evaluation.eval_data import open_eval_set
from siamface.evaluation.evaluate import predict
from siamface.evaluation.predictors import bundle_predictor
from siamface.export.calibration import SHAPE_WEIGHTS, choose_shape_weight
from test_edge_cli import user_error
from test_eval_landmarks import write_rgb

SIAMFACE = str(Path(sys.executable).with_name("siamface"))


def test_identity_vector_cosine_mixes_the_two_codes():
    rng = np.random.default_rng(0)
    emb, shape = rng.normal(size=(2, 32)), rng.normal(size=(2, 20)) * 5.0
    for w in (0.2, 0.5):
        v = identity_vector(emb, shape, w)
        assert v.shape == (2, 52)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
        e, s = l2_normalize(emb), l2_normalize(shape)
        assert v[0] @ v[1] == pytest.approx((1 - w) * (e[0] @ e[1]) + w * (s[0] @ s[1]))
    plain = identity_vector(emb, shape, 0.0)  # bundles without the weight: the unit embedding, as before
    np.testing.assert_allclose(plain, l2_normalize(emb))


def test_choose_shape_weight_follows_the_code_that_separates_people():
    """12 people x 4 photos: when only the shape code tells people apart the largest share wins; when
    only the embedding does, none (ties go to the smaller share)."""
    rng = np.random.default_rng(1)
    layout = ParamLayout(n_id=20, n_exp=5)
    ids = np.repeat(np.arange(12), 4)
    person_shape, person_emb = rng.normal(size=(12, 20)), rng.normal(size=(12, 16))
    params = rng.normal(size=(len(ids), layout.size))
    noise_emb = rng.normal(size=(len(ids), 16))
    params[:, layout.identity] = person_shape[ids] + 0.05 * rng.normal(size=(len(ids), 20))
    weight, record = choose_shape_weight(params, noise_emb, ids, layout)
    eers = record["eer_by_weight"]
    assert weight == SHAPE_WEIGHTS[-1] and eers["0"] > 0.2 and eers[f"{weight:g}"] < eers["0"]
    assert record["gain"] == pytest.approx(eers["0"] - eers[f"{weight:g}"]) and record["gain"] > 2 * record["gain_noise"]
    params[:, layout.identity] = rng.normal(size=(len(ids), 20))
    weight, record = choose_shape_weight(params, person_emb[ids], ids, layout)
    assert weight == 0.0 and record["eer_by_weight"]["0"] == 0.0 and record["lowest"] == 0.0


def test_a_share_that_wins_by_chance_is_not_kept():
    """When neither code tells people apart, some share still has the lowest EER; its gain is within
    the noise of the people drawn, so the share stays 0 (the demo budget's shape code, docs/results.md)."""
    rng = np.random.default_rng(3)
    layout = ParamLayout(n_id=20, n_exp=5)
    ids = np.repeat(np.arange(30), 4)
    params, emb = rng.normal(size=(len(ids), layout.size)), rng.normal(size=(len(ids), 16))
    weight, record = choose_shape_weight(params, emb, ids, layout)
    assert record["lowest"] > 0 and record["gain"] > 0  # a share did win on these pairs, by chance
    assert record["gain"] <= 2 * record["gain_noise"] and weight == 0.0


def _chosen_by_rule(chosen: dict) -> float:
    """The share the recorded EERs and noise call for (calibration.choose_shape_weight's rule)."""
    eers = chosen["eer_by_weight"]
    lowest = min(SHAPE_WEIGHTS, key=lambda w: (round(eers[f"{w:g}"], 6), w))
    assert chosen["lowest"] == lowest and chosen["gain"] == pytest.approx(eers["0"] - eers[f"{lowest:g}"])
    return lowest if chosen["gain"] > 2 * chosen["gain_noise"] else 0.0


def test_calibrate_on_a_dataset_sets_the_shape_weight_and_the_device_uses_it(tiny_bundles, tmp_path):
    """`siamface calibrate BUNDLE --data DATASET --shape-weight auto|W` rewrites bundle.json with the
    weight and a threshold on the held-out people; the device's identity vectors then carry the
    shape code, `evaluate` computes the same vectors for the same photos, and a gallery stores them."""
    bundle = tiny_bundles / "bundles" / "int8-qat"
    out = tmp_path / "auto"
    r = subprocess.run([SIAMFACE, "calibrate", str(bundle), "--data", str(tiny_bundles / "data"), "--shape-weight",
                        "auto", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "bundle.json").read_text())
    chosen = meta["embedding"]["shape_weight_from"]
    assert chosen["source"] == "EER on validation people" and chosen["data"].startswith("val split of ")
    assert meta["embedding"]["shape_weight"] == _chosen_by_rule(chosen)
    v = meta["verification"]
    assert v["source"] == "synthetic" and v["data"].startswith("test split of ") and v["images"] == 16
    assert v["previous"]["threshold"] == json.loads((bundle / "bundle.json").read_text())["verification"]["threshold"]
    assert f"shape weight {meta['embedding']['shape_weight']:g}" in r.stdout and "16 held-out images" in r.stdout

    fixed = calibrate_bundle(bundle, tiny_bundles / "data", 0.05, tmp_path / "fixed", shape_weight=0.3, progress=False)
    assert fixed.shape_weight == 0.3 and fixed.verification["far_target"] == 0.05 and not fixed.was_edited
    again = calibrate_bundle(out, tiny_bundles / "data", 0.05, progress=False)  # no share given: the bundle's stays
    assert json.loads((out / "bundle.json").read_text())["embedding"] == meta["embedding"]
    assert again.shape_weight == meta["embedding"]["shape_weight"] and again.verification["far_target"] == 0.05
    photo = data.astronaut()
    people = {"alice/a.jpg": photo, "alice/b.jpg": photo[:, ::-1], "bob/c.jpg": photo[20:300, 60:400]}
    for name, rgb in people.items():
        write_rgb(tmp_path / "people" / name, rgb)
    device = Reconstructor.from_bundle(fixed.bundle)
    eval_set = open_eval_set(tmp_path / "people", device.size)
    params, vectors = predict(bundle_predictor(fixed.bundle), eval_set, progress=False)
    assert vectors.shape == (3, 32 + 20)
    for k, name in enumerate(people):
        face = device.reconstruct(read_image(tmp_path / "people" / name))[0]
        assert float(vectors[k] @ face.embedding) >= 0.9999, name
        np.testing.assert_allclose(face.embedding[32:], np.sqrt(0.3) * l2_normalize(face.params[device.layout.identity]))
    # a gallery holds one identity space: the model and its shape weight (a gallery of the same model's
    # embeddings alone is refused with a line naming both)
    plain = Reconstructor.from_bundle(bundle).bundle
    assert device.bundle.identity_space == f"{plain.model_hash} with shape weight 0.3"
    Gallery(tmp_path / "people.db", plain.identity_space, 0.5, create=True).enroll("alice", vectors[:2, :32])
    with pytest.raises(SiamfaceError, match=f"holds embeddings of model {plain.model_hash}, not of this bundle's "
                                            f"model {plain.model_hash} with shape weight 0.3"):
        Gallery(tmp_path / "people.db", device.bundle.identity_space, 0.5)


def test_shape_weight_requests_that_cannot_work(tiny_bundles, tmp_path):
    bundle = shutil.copytree(tiny_bundles / "bundles" / "fp32", tmp_path / "fp32")
    people = tmp_path / "people"
    for name in ("a/1.jpg", "a/2.jpg", "b/1.jpg"):
        write_rgb(people / name, data.astronaut())
    r = subprocess.run([SIAMFACE, "calibrate", str(bundle), "--data", str(people), "--shape-weight", "auto"],
                       capture_output=True, text=True, timeout=300)
    assert "--shape-weight auto chooses on a siamface dataset's validation people" in user_error(r, people)
    r = subprocess.run([SIAMFACE, "calibrate", str(bundle), "--data", str(people), "--shape-weight", "1.5"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "'1.5' is not a number from 0 to below 1, nor 'auto'" in r.stderr
    assert json.loads((bundle / "bundle.json").read_text()) == json.loads(
        (tiny_bundles / "bundles" / "fp32" / "bundle.json").read_text())  # nothing written
    # a share given by hand works with photos too, and is no hand edit of the bundle
    done = calibrate_bundle(bundle, people, 0.5, shape_weight=0.1, progress=False)
    assert done.shape_weight == 0.1 and not done.was_edited and done.verification["source"] == "calibrated"
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["embedding"]["shape_weight"] == 0.1 and meta["embedding"]["shape_weight_from"]["source"] == "calibrate"
