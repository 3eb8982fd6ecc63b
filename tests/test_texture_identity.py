"""Identity from the unwrapped face texture: the unwrap reads each texel where its surface point
projects, the network trains and resumes, `texture-id attach` writes a bundle the device runs with
the same identity vectors as evaluation, and a damaged or mismatched texture model is refused."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from siamface.edge_runtime.bundle import load_bundle
from siamface.edge_runtime.crop import CropTransform
from siamface.edge_runtime.crop_outputs import OutputRules, crop_outputs, encoder_run
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import TFLiteModel
from siamface.edge_runtime.normalise import identity_vector, l2_normalize
from siamface.edge_runtime.reconstructor import Reconstructor
from siamface.edge_runtime.unwrap import Unwrapper, UnwrapTable


@pytest.fixture(scope="module")
def table():
    from siamface.training.data.render_model import render_model_path
    from siamface.training.data.texture import face_unwrap_table

    return face_unwrap_table(render_model_path(), 64)


def test_the_table_covers_the_face_with_vertices_the_device_decoder_has(table, face_model):
    assert table.painted.mean() > 0.8                        # the face box is mostly face
    assert np.allclose(table.weights[table.painted].sum(-1), 1.0, atol=1e-5)
    from siamface.export.bundle import device_vertex_count

    assert table.vertices.max() < device_vertex_count(face_model)  # the bundle's slim decoder reads them


def test_a_saved_table_loads_the_same_and_a_foreign_file_is_one_line(table, tmp_path):
    table.save(tmp_path / "t.npz")
    back = UnwrapTable.load(tmp_path / "t.npz")
    assert np.array_equal(back.vertices, table.vertices) and np.array_equal(back.painted, table.painted)
    np.savez(tmp_path / "other.npz", vertices=np.zeros((2, 2, 3)))
    with pytest.raises(SiamfaceError, match="other.npz: not an unwrap table"):
        UnwrapTable.load(tmp_path / "other.npz")


def test_mirror_partners_sit_at_each_texels_mirror_image_and_expand_reads_them(face_model, tmp_path):
    """Each texel's partner lies within a texel of its point's mirror image on the mean face (the UV
    layout is not symmetric, so a flip of the map would miss by centimetres); the expanded map's
    last four channels are the partner's, zeros where the box has none; the table saves it."""
    from siamface.training.data.render_model import render_model_path
    from siamface.training.data.texture import face_unwrap_table

    table = face_unwrap_table(render_model_path(), 64, mirror=True)
    assert table.channels == 8
    points = np.einsum("hwk,hwkc->hwc", table.weights, face_model.mean[table.vertices]).reshape(-1, 3)
    partner = table.mirror.ravel()
    has = partner >= 0
    assert 0.85 < has.mean() < 1.0                               # the box's far edge has no mirror side
    miss = np.linalg.norm(points[has] * [-1, 1, 1] - points[partner[has]], axis=1)
    assert np.median(miss) < 0.1 and miss.max() < 0.5            # cm; texels are about 0.47 cm apart
    flipped = np.linalg.norm(points.reshape(*table.shape, 3)[:, ::-1] * [-1, 1, 1] - points.reshape(*table.shape, 3), axis=-1)
    assert np.median(flipped) > 1.0                              # a plain flip of the map is far off
    maps = np.random.default_rng(0).random((2, *table.shape, 4), dtype=np.float32)
    wide = table.expand(maps).reshape(2, -1, 8)
    assert np.array_equal(wide[:, has, 4:], maps.reshape(2, -1, 4)[:, partner[has]])
    assert (wide[:, ~has, 4:] == 0).all()
    table.save(tmp_path / "m.npz")
    assert np.array_equal(UnwrapTable.load(tmp_path / "m.npz").mirror, table.mirror)
    np.savez(tmp_path / "bad.npz", vertices=table.vertices, weights=table.weights, painted=table.painted,
             mirror=np.full(table.shape, table.painted.size))
    with pytest.raises(SiamfaceError, match="bad.npz: unwrap table arrays do not fit"):
        UnwrapTable.load(tmp_path / "bad.npz")


def test_each_texel_reads_the_crop_where_its_surface_point_projects(table, tiny_data, face_model):
    """A crop whose red and green encode x and y: every visible texel reads back the barycentric mix
    of its triangle's projected corners (the decoder's full projection, computed independently)."""
    from siamface.training.data.dataset import Dataset

    data = Dataset.open(tiny_data)
    split, layout = data.split("train"), data.layout
    size = data.image_size
    y, x = np.mgrid[0:size, 0:size]
    coded = np.stack([x * 4, y * 4, np.zeros_like(x)], -1).astype(np.uint8)   # 64 px: 4 levels per pixel
    params = split.params[:4]
    maps = Unwrapper(table, face_model, layout)(np.repeat(coded[None], 4, 0), params)
    projected = face_model.image_vertices(params, layout)[..., :2]        # (4, V, 2)
    expected = np.einsum("hwk,nhwkc->nhwc", table.weights, projected[:, table.vertices])
    visible = maps[..., 3] > 0
    inside = visible & (expected >= 0).all(-1) & (expected <= size - 1).all(-1)
    read = maps[..., :2] * 255.0 / 4.0
    assert inside.sum() > 2000                                            # thousands of texels checked
    assert np.abs(read[inside] - expected[inside]).max() < 0.3           # within uint8 and bilinear rounding
    assert (maps[..., :3][~visible] == 0).all()


def test_a_turned_face_hides_its_far_cheek(table, tiny_data, face_model):
    from siamface.training.data.dataset import Dataset

    data = Dataset.open(tiny_data)
    split = data.split("train")
    turned = int(np.argmax(np.abs(split.pose_deg[:, 0])))
    assert abs(split.pose_deg[turned, 0]) > 30
    visible = Unwrapper(table, face_model, data.layout)(split.images([turned]), split.params[turned:turned + 1])[0, ..., 3]
    half = table.shape[1] // 2
    left, right = (visible[:, :half][table.painted[:, :half]].mean(), visible[:, half:][table.painted[:, half:]].mean())
    assert abs(left - right) > 0.2, (left, right)


def test_identity_vector_mixes_the_three_cosines_by_their_shares():
    rng = np.random.default_rng(0)
    emb, shape, tex = (rng.normal(size=(2, d)) for d in (8, 5, 6))
    v = identity_vector(emb, shape, 0.2, tex, 0.5)
    cos = lambda a: float(np.dot(*l2_normalize(a)))  # noqa: E731
    assert np.dot(v[0], v[1]) == pytest.approx(0.3 * cos(emb) + 0.2 * cos(shape) + 0.5 * cos(tex))
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert identity_vector(emb, shape, 0.0, tex, 1.0).shape == (2, 6)   # the texture alone


@pytest.fixture(scope="module")
def texture_run(tiny_bundles, tmp_path_factory):
    from siamface.training.texture_id.train import TextureIdConfig, train_texture_id

    out = tmp_path_factory.mktemp("texture") / "run"
    cfg = TextureIdConfig(bundle=str(tiny_bundles / "bundles" / "int8-ptq"), data=[str(tiny_bundles / "data")],
                          steps=6, eval_every=3, n_identities=4, n_images=2, warmup_steps=2, mirror=True)
    train_texture_id(cfg, out, progress=False)
    return out, cfg


def test_training_keeps_the_best_checkpoint_and_resumes_where_it_stopped(texture_run):
    from siamface.training.texture_id.train import train_texture_id

    out, cfg = texture_run
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6]
    best = json.loads((out / "best" / "texture_id.json").read_text())
    assert best["validation"]["eer"] == min(r["validation_eer"] for r in log)
    assert best["bundle"]["model_sha256"] == load_bundle(cfg.bundle).model_hash
    train_texture_id(replace(cfg, steps=9), out, progress=False)          # more steps: resumes at 6
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [3, 6, 9]
    with pytest.raises(SiamfaceError, match="temperature differ"):
        train_texture_id(replace(cfg, temperature=0.5), out, progress=False)
    saved = json.loads((out / "config.json").read_text())
    del saved["face_model"]                                 # a run begun before a setting existed ...
    (out / "config.json").write_text(json.dumps(saved))
    train_texture_id(replace(cfg, steps=9), out, progress=False)          # ... resumes at its default


@pytest.fixture(scope="module")
def textured_bundle(texture_run, tmp_path_factory):
    from siamface.export.texture_id import attach_texture_identity

    out = tmp_path_factory.mktemp("textured") / "bundle"
    return attach_texture_identity(texture_run[0], out, weight=0.5)


def test_attach_writes_a_sealed_bundle_with_the_texture_model(textured_bundle, texture_run):
    bundle = load_bundle(textured_bundle)
    plain = load_bundle(texture_run[1].bundle)
    block = bundle.texture
    assert block["weight"] == 0.5 and block["model"]["dtype"] == "int8"          # converted as its bundle is
    assert block["parity"]["embedding_cosine_mean"] > 0.99
    assert block["table"]["channels"] == 8                                    # the run reads mirror partners
    assert bundle.texture_embedder().model.inputs[0].shape[-1] == 8
    assert bundle.meta["verification"]["previous"]["threshold"] == plain.threshold
    assert bundle.identity_space != plain.identity_space                     # galleries of the two never mix
    assert bundle.model_hash == plain.model_hash


def test_the_device_and_evaluation_make_the_same_identity_vector(textured_bundle, tiny_bundles):
    from siamface.training.data.dataset import Dataset

    bundle = load_bundle(textured_bundle)
    crops = Dataset.open(tiny_bundles / "data").split("val").images(np.arange(3))
    rules = OutputRules.of_bundle(bundle)
    _, vectors = crop_outputs(encoder_run(TFLiteModel(bundle.model_path)), crops, rules)
    rec = Reconstructor(bundle)
    size = bundle.input_size
    for crop, expected in zip(crops, vectors):
        face = rec.face_in_crop(crop, CropTransform(0.0, 0.0, float(size), size), (0, 0, size, size))
        assert np.dot(face.embedding, expected) > 0.9999
    alone = replace(rules, texture_weight=0.0)
    assert not np.allclose(crop_outputs(encoder_run(TFLiteModel(bundle.model_path)), crops, alone)[1][0],
                           vectors[0, :len(vectors[0]) - bundle.texture["dim"]])
    assert "texture" in rec.timings


def test_a_damaged_texture_model_or_another_bundle_is_refused(textured_bundle, texture_run, tiny_bundles, tmp_path):
    from siamface.export.texture_id import attach_texture_identity

    copy = tmp_path / "copy"
    shutil.copytree(textured_bundle, copy)
    (copy / "texture_identity.tflite").write_bytes(b"\0" * 100)
    with pytest.raises(SiamfaceError, match="texture identity model was modified"):
        load_bundle(copy)
    with pytest.raises(SiamfaceError, match="trained on the reconstructions of another model"):
        attach_texture_identity(texture_run[0], tmp_path / "other", tiny_bundles / "bundles" / "fp32")
    with pytest.raises(SiamfaceError, match="exists"):
        attach_texture_identity(texture_run[0], textured_bundle)


def test_calibrate_keeps_the_texture_share_and_refuses_a_new_shape_share(textured_bundle, tiny_bundles, tmp_path):
    from siamface.evaluation.calibrate import calibrate_bundle

    done = calibrate_bundle(textured_bundle, tiny_bundles / "data", 0.25, out=tmp_path / "calibrated", progress=False)
    calibrated = load_bundle(done.bundle)
    assert calibrated.texture == load_bundle(textured_bundle).texture
    assert "split of" in calibrated.meta["verification"]["data"]            # its held-out people, through the texture too
    with pytest.raises(SiamfaceError, match="has a texture identity model"):
        calibrate_bundle(textured_bundle, tiny_bundles / "data", 0.25, out=tmp_path / "again", progress=False,
                         shape_weight=0.1)
    assert not (tmp_path / "again").exists()


def test_the_cli_attach_refuses_an_existing_folder_in_one_line(texture_run, textured_bundle):
    import subprocess
    import sys
    from pathlib import Path

    siamface = str(Path(sys.executable).parent / "siamface")
    r = subprocess.run([siamface, "texture-id", "attach", str(texture_run[0]), "--out", str(textured_bundle)],
                       capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 3 and len(errors) == 1 and "exists" in errors[0] and "Traceback" not in r.stderr, r.stderr
