"""Synthetic dataset engine: labels agree with the model, determinism, splits, manifest, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.errors import SiamfaceError
from training.config_io import load_config
from training.data.dataset import Dataset, shard_paths
from training.data.synth import SynthConfig, synthesize

SMALL = dict(train_identities=4, val_identities=2, test_identities=2, images_per_identity=3, shard_size=6, n_id=40)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "synth"
    return synthesize(out, SynthConfig(**SMALL), workers=1, progress=False)


def test_labels_agree_with_the_face_model(small_dataset, face_model):
    split = small_dataset.split("train")
    layout = small_dataset.layout
    assert layout.n_id == 40 and layout.size == 12 + 40 + 53
    lm = face_model.image_landmarks(split.params, layout)
    np.testing.assert_allclose(lm[..., :2], split.landmarks2d, atol=1e-3)
    np.testing.assert_allclose(lm, split.landmarks3d, atol=1e-3)
    # Faces are placed in the crop by the crop convention: landmarks inside, face box from them.
    assert split.landmarks2d.min() > 0 and split.landmarks2d.max() < 120
    box = split.face_box
    assert np.all(box[:, 2] - box[:, 0] > 25)
    # Images are real renders: the face differs from the background.
    imgs = split.images(np.arange(len(split)))
    assert imgs.shape == (12, 120, 120, 3) and imgs.dtype == np.uint8 and imgs.std() > 10


def test_splits_are_disjoint_and_counted(small_dataset):
    ids = {s: set(small_dataset.split(s).identity.tolist()) for s in ("train", "val", "test")}
    assert ids["train"] == {0, 1, 2, 3} and ids["val"] == {4, 5} and ids["test"] == {6, 7}
    m = small_dataset.manifest
    assert m["splits"]["train"] == {"shards": 2, "images": 12, "identities": 4, "identity_range": [0, 4]}


def test_manifest_records_how_it_was_made(small_dataset, face_model):
    m = json.loads((small_dataset.root / "manifest.json").read_text())
    assert m["generator"]["name"] == "siamface.synth" and m["seed"] == 0
    assert m["config"]["images_per_identity"] == 3 and m["config"]["pose"]["yaw_max_deg"] == 90
    assert m["face_model"]["sha256"] == face_model.sha256
    assert m["param_layout"] == {"n_id": 40, "n_exp": 53, "n_pose": 12}
    assert len(m["whitening"]["mean"]) == 105 and "numpy" in m["versions"]
    assert [c[0] for c in m["columns"]] == ["identity", "params", "landmarks2d", "landmarks3d", "pose_deg", "face_box"]


def test_deterministic_regardless_of_workers_and_shards(small_dataset, tmp_path):
    other = synthesize(tmp_path / "b", SynthConfig(**{**SMALL, "shard_size": 3}), workers=2, progress=False)
    for split in ("train", "test"):
        a, b = small_dataset.split(split), other.split(split)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.images(np.arange(len(a))), b.images(np.arange(len(b))))


def test_held_out_splits_can_have_more_photos_per_person(small_dataset, tmp_path):
    more = synthesize(tmp_path / "more", SynthConfig(**{**SMALL, "held_out_images_per_identity": 5}),
                      workers=1, progress=False)
    train, test = more.split("train"), more.split("test")
    assert len(train) == 4 * 3 and len(test) == 2 * 5 and len(more.split("val")) == 2 * 5
    assert np.bincount(test.identity - test.identity.min()).tolist() == [5, 5]
    np.testing.assert_array_equal(train.labels, small_dataset.split("train").labels)
    # Per-photo seeds: a person's first 3 photos are the ones the 3-per-person dataset has.
    first3 = np.concatenate([np.flatnonzero(test.identity == i)[:3] for i in np.unique(test.identity)])
    np.testing.assert_array_equal(test.labels[first3], small_dataset.split("test").labels)


def test_resume_renders_only_missing_shards(small_dataset, tmp_path):
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(small_dataset.root, out)
    (out / "manifest.json").unlink()
    img, lab = shard_paths(out / "train", 1)
    lab.unlink()                                   # an interrupted shard: images without labels
    (out / "train" / ".shard-00001.labels.npy.x.tmp").write_bytes(b"half")
    ds = synthesize(out, SynthConfig(**SMALL), workers=1, progress=False)
    assert ds.manifest["shards_rendered_this_run"] == 1
    assert not list((out / "train").glob(".*.tmp"))
    np.testing.assert_array_equal(ds.split("train").labels, small_dataset.split("train").labels)
    with pytest.raises(SiamfaceError, match="different config.*--overwrite"):
        synthesize(out, SynthConfig(**{**SMALL, "seed": 1}), workers=1, progress=False)


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_identities: 7\npose:\n  yaw_max_deg: 45\n")
    cfg = load_config(SynthConfig, path, ["pose.roll_max_deg=5", "seed=3"])
    assert (cfg.train_identities, cfg.pose.yaw_max_deg, cfg.pose.roll_max_deg, cfg.seed) == (7, 45, 5, 3)
    with pytest.raises(SiamfaceError, match=r"unknown key\(s\) \['yaw'\]"):
        load_config(SynthConfig, None, ["pose.yaw=3"])


def test_open_rejects_missing_dataset(tmp_path):
    with pytest.raises(SiamfaceError, match="no dataset at .*siamface data synth"):
        Dataset.open(tmp_path)


def test_posed_vertices_are_the_model_shape_through_the_camera(face_model):
    from edge_runtime.camera import CameraPose, compose_camera, project
    from training.data.synth import posed_vertices

    rng = np.random.default_rng(1)
    id_coeffs = rng.standard_normal(40).astype(np.float32)
    exp = np.zeros(len(face_model.exp_names), np.float32)
    exp[[2, 7, 30]] = [0.6, 0.3, 0.9]                    # sparse, as synthetic faces are
    camera = compose_camera(CameraPose(4.0, 0.3, -0.2, 0.1, 60.0, 55.0)).astype(np.float32)
    expected = project(face_model.shape(id_coeffs, exp), camera)
    got = posed_vertices(face_model.shape(id_coeffs), face_model.exp_basis, exp, camera)
    assert got.shape == (face_model.n_vertices, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_shading_a_vertex_subset_matches_shading_all():
    from training.data.appearance import sample_lighting, shade

    rng = np.random.default_rng(2)
    normals = rng.normal(size=(500, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    albedo = rng.uniform(0, 1, (500, 3)).astype(np.float32)
    light = sample_lighting(rng)
    used = rng.uniform(size=500) < 0.5
    full, part = shade(albedo, normals, light), shade(albedo, normals, light, used)
    np.testing.assert_array_equal(part[used], full[used])
    assert not part[~used].any()
    # Blinn-Phong: a normal facing the light gets at least ambient + that light's colour.
    lit = shade(np.ones((1, 3), np.float32), light.directions[:1], light)[0]
    assert np.all(lit >= light.ambient + light.colours[0] - 1e-5)
