"""The edge runtime in Python: the decode maths end to end through the real interpreter,
results on every exported variant, image reading and mesh files (the import rules: test_layers.py).
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from siamface.edge_runtime.camera import CameraPose, compose_camera, project
from siamface.edge_runtime.crop import crop_from_box, landmark_box
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.image_io import MAX_PIXELS_ENV, header_size, read_image
from siamface.edge_runtime.mesh_io import write_obj, write_ply
from siamface.edge_runtime.params import Whitening
from siamface.edge_runtime.reconstructor import Reconstructor, ReconstructorOptions, refined_crop

VARIANTS = ("fp32", "fp16", "dynamic-int8", "int8-ptq", "int8-qat")

# The rendered face of the decode test: 200 x 160 photo, pose in degrees, 20 identity modes.
IMAGE_W, IMAGE_H, INPUT_SIZE, N_ID = 200, 160, 120, 20
YAW, PITCH, ROLL = 25.0, -10.0, 8.0


# -- decode path: crop -> model -> uncrop -> decode against a rendered face with known truth ---------


@pytest.fixture(scope="module")
def rendered_face(face_model):
    """A face rendered into a 200x160 photo with known camera, identity and expression."""
    from render_helpers import render
    from siamface.training.data.rasterizer import vertex_normals

    rng = np.random.default_rng(7)
    layout = face_model.layout(N_ID)
    id_coeffs = rng.standard_normal(N_ID).astype(np.float32)
    exp = np.zeros(layout.n_exp, np.float32)
    exp[face_model.exp_names.index("jawOpen")] = 0.4
    exp[face_model.exp_names.index("mouthSmile_L")] = 0.6
    shape = face_model.shape(id_coeffs, exp)
    camera = compose_camera(CameraPose(5.0, *np.radians([YAW, PITCH, ROLL]), tx=96.0, ty=84.0))
    verts = project(shape, camera.astype(np.float32))
    normals = vertex_normals(verts, face_model.triangles)
    colours = np.array([0.85, 0.65, 0.55], np.float32) * (0.25 + 0.75 * np.clip(-normals[:, 2:3], 0, 1))
    background = np.broadcast_to(np.linspace(0.2, 0.5, IMAGE_W, dtype=np.float32)[None, :, None], (IMAGE_H, IMAGE_W, 3))
    image, mask = render(verts, colours, face_model.triangles, background)
    assert 3000 < mask.sum() < IMAGE_W * IMAGE_H / 2  # the face is in the picture, not filling it
    return {"image": (image * 255 + 0.5).astype(np.uint8), "camera": camera, "id": id_coeffs, "exp": exp,
            "vertices": verts.astype(np.float64), "landmarks": verts[face_model.landmarks68].astype(np.float64)}


def _constant_encoder(params: np.ndarray, embedding: np.ndarray):
    """A Keras encoder (120x120 input) whose outputs ignore the pixels: zero kernels, the values as biases."""
    import tf_keras as keras

    x = keras.Input((INPUT_SIZE, INPUT_SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    heads = [keras.layers.Dense(len(v), kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant(v))(pooled) for v in (params, embedding)]
    return keras.Model(x, heads)


def _constant_bundle(out, face_model, params: np.ndarray, whitening: Whitening, embedding: np.ndarray):
    """A real fp32 bundle (exported by export.bundle) of ``_constant_encoder``: it always predicts
    ``params`` (unwhitened) and ``embedding``."""
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    layout = face_model.layout(N_ID)
    tflite = convert(_constant_encoder(whitening.whiten(params), embedding), "fp32")
    meta = {"variant": "fp32", "input": {"name": "pixels", "size": INPUT_SIZE, "dtype": "float32"},
            "param_layout": layout.to_dict(), "whitening": whitening.to_dict(),
            "verification": {"threshold": 0.5, "far": 0.01}}
    return write_bundle(out, tflite, meta, face_model, layout)


@pytest.fixture(scope="module")
def constant_bundle(rendered_face, face_model, tmp_path_factory):
    """A real bundle (exported by export.bundle) whose model outputs the whitened ground truth for
    the crop the Reconstructor takes from the landmark box: its params are exact by construction."""
    layout = face_model.layout(N_ID)
    crop = crop_from_box(landmark_box(rendered_face["landmarks"]), INPUT_SIZE)
    cam = rendered_face["camera"] * crop.scale  # image -> crop: scale everything, then shift x and y
    cam[0, 3] -= crop.x0 * crop.scale
    cam[1, 3] -= crop.y0 * crop.scale
    truth = layout.join(cam, rendered_face["id"], rendered_face["exp"]).astype(np.float64)
    rng = np.random.default_rng(3)
    whitening = Whitening.from_dict(Whitening(truth + rng.normal(0, 2, truth.size), rng.uniform(0.5, 3, truth.size)).to_dict())
    embedding = np.linspace(-1, 1, 16)
    out = _constant_bundle(tmp_path_factory.mktemp("constant") / "bundle", face_model, truth, whitening, embedding)
    return out, crop, embedding


def test_decode_path_recovers_rendered_landmarks_pose_and_mesh(rendered_face, constant_bundle, face_model):
    """Landmarks within 0.05 px, every mesh vertex (x, y, z) the bundle keeps (the leading face-region
    vertices, as bundle.json records) within 0.05 px, pose within 0.1 degree, through crop_from_box ->
    LiteRT invoke -> unwhiten -> uncrop -> float16 bundle decoder."""
    path, crop, embedding = constant_bundle
    rec = Reconstructor.from_bundle(path, ReconstructorOptions(refine=False))
    box = landmark_box(rendered_face["landmarks"])
    (face,) = rec.reconstruct(rendered_face["image"], boxes=[box])
    assert face.crop == crop and face.box == box and face.score == 1.0
    np.testing.assert_allclose(face.landmarks68, rendered_face["landmarks"][:, :2], atol=0.05, rtol=0)
    np.testing.assert_allclose(face.landmarks3d, rendered_face["landmarks"], atol=0.05, rtol=0)
    kept = rec.bundle.meta["face_model"]["decoder"]["n_vertices"]
    assert kept == int(face_model.region_mask("face").sum()) == 9409 and face.vertices.shape == (kept, 3)
    np.testing.assert_allclose(face.vertices, rendered_face["vertices"][:kept], atol=0.05, rtol=0)
    assert face.triangles.max() == kept - 1
    np.testing.assert_allclose(face.pose, (YAW, PITCH, ROLL), atol=0.1, rtol=0)
    np.testing.assert_allclose(face.shape_code, rendered_face["id"], atol=1e-4)
    assert face.expression["jawOpen"] == pytest.approx(0.4, abs=1e-4)
    assert face.expression["mouthSmile_L"] == pytest.approx(0.6, abs=1e-4)
    assert sum(face.expression.values()) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(face.embedding, embedding / np.linalg.norm(embedding), atol=1e-6)


def test_refine_pass_recrops_on_the_first_pass_landmarks(rendered_face, constant_bundle):
    """With refine, the final crop is crop_from_box of the landmarks predicted in the first crop."""
    path, crop, _ = constant_bundle
    box = (60.0, 40.0, 150.0, 130.0)  # a loose box: the first crop differs from the landmark crop
    first = Reconstructor.from_bundle(path, ReconstructorOptions(refine=False)).reconstruct(rendered_face["image"], [box])[0]
    refined = Reconstructor.from_bundle(path).reconstruct(rendered_face["image"], [box])[0]
    assert first.crop == crop_from_box(box, INPUT_SIZE)
    assert refined.crop == crop_from_box(landmark_box(first.landmarks68), INPUT_SIZE)
    assert refined.crop != first.crop and refined.box == box


def test_collapsed_landmarks_keep_the_first_crop_and_a_box_without_area_is_an_error(rendered_face, face_model,
                                                                                    tmp_path):
    """An untrained geometry head (all params 0: the 68 landmarks at one point) gives no refine crop,
    so the face keeps the detector's crop and still gets its embedding; NaN params likewise; a box
    with no area is a one-line SiamfaceError, not a ZeroDivisionError."""
    layout = face_model.layout(N_ID)
    embedding = np.linspace(1, 2, 8)
    zeros = np.zeros(layout.size)
    path = _constant_bundle(tmp_path / "untrained", face_model, zeros, Whitening(zeros, np.ones(layout.size)), embedding)
    rec = Reconstructor.from_bundle(path)
    box = (60.0, 40.0, 150.0, 130.0)
    (face,) = rec.reconstruct(rendered_face["image"], [box])
    first = crop_from_box(box, INPUT_SIZE)
    assert face.crop == first and np.ptp(face.landmarks68, axis=0).max() == 0
    np.testing.assert_allclose(face.embedding, embedding / np.linalg.norm(embedding), atol=1e-6)
    assert refined_crop(first, np.full(layout.size, np.nan), rec.decoder, layout) == first
    for flat in [(50.0, 50.0, 50.0, 50.0), (80.0, 60.0, 40.0, 20.0)]:
        with pytest.raises(SiamfaceError, match=r"crop of side -?\d.* the face box has no area; pass a box") as info:
            rec.reconstruct(rendered_face["image"], [flat])
        assert "\n" not in str(info.value)


# -- every exported variant through the Reconstructor ---------------------------------------------


@pytest.fixture(scope="module")
def test_images(tiny_bundles):
    from siamface.training.data.dataset import Dataset

    split = Dataset.open(tiny_bundles / "data").split("test")
    return split.images(np.arange(4)), split.face_box[:4]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_gives_complete_faces(tiny_bundles, test_images, variant):
    images, boxes = test_images
    rec = Reconstructor.from_bundle(tiny_bundles / "bundles" / variant)
    small, big = (8.0, 8.0, 30.0, 30.0), tuple(boxes[0])
    faces = rec.reconstruct(images[0], boxes=[small, big])
    assert [f.box for f in faces] == [big, small]  # largest first
    for face in faces:
        assert face.landmarks68.shape == (68, 2) and face.landmarks3d.shape == (68, 3)
        assert face.vertices.shape == (rec.decoder.n_vertices, 3) and face.triangles.shape[1] == 3
        assert face.shape_code.shape == (20,) and len(face.expression) == 53
        assert all(0.0 <= w <= 1.0 for w in face.expression.values())
        # the identity vector: the embedding, joined with the shape code when export chose a share for it
        assert face.embedding.shape == (32 + (20 if rec.bundle.shape_weight else 0),)
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0)
        assert np.isfinite(face.vertices).all() and all(np.isfinite(face.pose))
        d = json.loads(json.dumps(face.to_dict()))
        assert set(d) >= {"box", "pose_deg", "landmarks68", "embedding", "crop_box"} and len(d["landmarks68"]) == 68
    # Pass one: box crop; pass two: the landmark crop. Both are timed per stage.
    assert {len(rec.timings[s]) for s in ("crop", "invoke", "embed")} == {4}
    assert "detect" not in rec.timings


def test_gray_and_rgba_inputs_match_rgb(tiny_bundles, test_images):
    images, boxes = test_images
    rec = Reconstructor.from_bundle(tiny_bundles / "bundles" / "fp32")
    gray = cv2.cvtColor(images[1], cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([images[1], np.full(images[1].shape[:2], 7, np.uint8)])
    ref = rec.reconstruct(np.dstack([gray] * 3), [boxes[1]])[0]
    np.testing.assert_allclose(rec.reconstruct(gray, [boxes[1]])[0].landmarks68, ref.landmarks68, atol=1e-5)
    np.testing.assert_allclose(rec.reconstruct(rgba, [boxes[1]])[0].embedding,
                               rec.reconstruct(images[1], [boxes[1]])[0].embedding, atol=1e-6)


def test_parameters_and_embedding_fuse_the_mirrored_crop(tiny_bundles, test_images):
    """Exported bundles say reconstruction.flip and embedding.flip: the device runs the final crop's
    mirror image once, fuses the parameters with its own (mapped back, mirror_params) and the
    embedding (the unit mean of both, each normalised), all from the real interpreter. With the
    flip off in the options, a reconstruction without identity pays no mirror, and the embedding
    runs it on first use."""
    from siamface.edge_runtime.crop import crop_image
    from siamface.edge_runtime.normalise import l2_normalize

    images, boxes = test_images

    def watched(rec: Reconstructor) -> list[np.ndarray]:
        seen, run = [], rec.model.run
        rec.model.run = lambda pixels: seen.append(pixels.copy()) or run(pixels)  # the real interpreter, watched
        return seen

    for variant in ("fp32", "int8-qat"):
        rec = Reconstructor.from_bundle(tiny_bundles / "bundles" / variant)
        assert rec.bundle.meta["embedding"]["flip"] is True and rec.bundle.meta["reconstruction"]["flip"] is True
        run = rec.model.run
        seen = watched(rec)
        face = rec.reconstruct(images[2], [boxes[2]])[0]
        pixels = crop_image(images[2], face.crop)
        # box crop, refined crop, the refined crop's mirror image
        assert len(seen) == 3 and np.array_equal(seen[1][0], pixels) and np.array_equal(seen[2][0], pixels[:, ::-1])
        face.embedding
        assert len(seen) == 3 and len(rec.timings["mirror"]) == 1
        plain, flipped = run(pixels[None]), run(np.ascontiguousarray(pixels[None, :, ::-1]))
        unwhiten = rec.whitening.unwhiten
        np.testing.assert_allclose(face.params, rec.mirror.fuse(unwhiten(plain["params"][0]), unwhiten(
            flipped["params"][0]), rec.layout, rec.size), atol=1e-5)
        expected = l2_normalize(l2_normalize(plain["embedding"][0]) + l2_normalize(flipped["embedding"][0]))
        assert float(face.embedding @ expected) > 0.99999
    rec = Reconstructor.from_bundle(tiny_bundles / "bundles" / "fp32", ReconstructorOptions(flip=False))
    seen = watched(rec)
    face = rec.reconstruct(images[2], [boxes[2]])[0]
    face.to_dict(embedding=False)
    assert len(seen) == 2 and "mirror" not in rec.timings
    face.embedding
    assert len(seen) == 3 and np.array_equal(seen[2][0], seen[1][0][:, ::-1])


def test_evaluation_fuses_the_mirrored_crop_whichever_way_round(tiny_bundles, test_images):
    """A bundle with reconstruction.flip (as exported) predicts on a crop and on its mirror image
    two faces that are each other's mirror image: the landmarks no longer depend on which way
    round the crop is. The crop alone (as before) does not have that symmetry."""
    from siamface.edge_runtime.crop import crop_image
    from siamface.evaluation.landmark_fit import MIRROR
    from siamface.evaluation.predictors import bundle_predictor

    images, boxes = test_images
    predictor = bundle_predictor(tiny_bundles / "bundles" / "fp32")
    side = predictor.size
    crops = np.stack([crop_image(image, crop_from_box(box, side)) for image, box in zip(images, boxes)])
    assert predictor.rules.flip_params and predictor.meta["reconstruction"]["flip"] is True
    model, layout = predictor.decoder, predictor.layout

    def asymmetry(mirrored: bool) -> float:
        """Largest distance (pixels) between the landmarks of the crops and the mirror image of the
        landmarks of the mirrored crops."""
        plain = model.image_landmarks(predictor.predict(crops, mirrored)[0], layout)[..., :2]
        flipped = model.image_landmarks(predictor.predict(crops[:, :, ::-1].copy(), mirrored)[0], layout)[..., :2]
        flipped = flipped[:, MIRROR]
        flipped[..., 0] = side - 1 - flipped[..., 0]
        return float(np.abs(plain - flipped).max())

    assert asymmetry(True) < 0.05
    assert asymmetry(False) > 0.5


# -- image reading ---------------------------------------------------------------------------------


def test_read_image_converts_every_layout_to_rgb(tmp_path):
    bgr = np.zeros((3, 5, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30
    files = {"rgb.png": bgr, "gray.png": np.full((3, 5), 77, np.uint8),
             "rgba.png": np.dstack([bgr, np.zeros((3, 5), np.uint8)]), "deep.png": np.full((3, 5, 3), 257 * 40, np.uint16)}
    for name, array in files.items():
        assert cv2.imwrite(str(tmp_path / name), array)
    assert (read_image(tmp_path / "rgb.png") == (30, 20, 10)).all()
    assert (read_image(tmp_path / "rgba.png") == (30, 20, 10)).all()      # alpha dropped, order RGB
    assert (read_image(tmp_path / "gray.png") == 77).all() and read_image(tmp_path / "gray.png").shape == (3, 5, 3)
    assert (read_image(tmp_path / "deep.png") == 40).all() and read_image(tmp_path / "deep.png").dtype == np.uint8


def test_pixel_limit_is_read_from_the_environment_and_checked_before_decoding(tmp_path, monkeypatch):
    image = np.zeros((100, 120, 3), np.uint8)
    for suffix in (".png", ".jpg"):
        ok, buf = cv2.imencode(suffix, image)
        assert header_size(buf.tobytes()) == (120, 100)
        buf.tofile(tmp_path / f"photo{suffix}")
    monkeypatch.setenv(MAX_PIXELS_ENV, "12000")
    assert read_image(tmp_path / "photo.png").shape == (100, 120, 3)     # exactly at the limit
    monkeypatch.setenv(MAX_PIXELS_ENV, "11999")
    for suffix in (".png", ".jpg"):
        with pytest.raises(SiamfaceError, match=rf"photo\{suffix} is 120x100 = 12000 pixels, over the limit of 11999"):
            read_image(tmp_path / f"photo{suffix}")
    # A PNG header announcing 50000 x 50000 with no pixel data: refused by size, never decoded.
    header = (tmp_path / "photo.png").read_bytes()[:16] + (50000).to_bytes(4, "big") * 2
    (tmp_path / "bomb.png").write_bytes(header + b"\0" * 64)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    with pytest.raises(SiamfaceError, match=r"bomb.png is 50000x50000 = 2500000000 pixels, over the limit of 80000000"):
        read_image(tmp_path / "bomb.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(SiamfaceError, match="SIAMFACE_MAX_PIXELS='lots' must be a positive whole number"):
        read_image(tmp_path / "photo.png")


# -- mesh files ------------------------------------------------------------------------------------

TETRA = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 2.0], [0.0, 20.0, -4.0], [5.0, 5.0, 8.5]])
TETRA_FACES = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]], np.int32)


def test_obj_and_ply_hold_the_mesh_in_viewer_space(tmp_path):
    """Image space (y down, z away) is written as y up, z towards the viewer: (x, -y, -z)."""
    write_obj(tmp_path / "m.obj", TETRA, TETRA_FACES)
    write_ply(tmp_path / "m.ply", TETRA, TETRA_FACES)
    lines = (tmp_path / "m.obj").read_text().splitlines()
    v = np.array([[float(t) for t in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    f = np.array([[int(t) for t in ln.split()[1:]] for ln in lines if ln.startswith("f ")])
    np.testing.assert_allclose(v, TETRA * (1, -1, -1))
    np.testing.assert_array_equal(f, TETRA_FACES + 1)                       # OBJ counts from 1
    data = (tmp_path / "m.ply").read_bytes()
    head, body = data.split(b"end_header\n")
    assert b"element vertex 4\n" in head and b"element face 4\n" in head and head.startswith(b"ply\nformat binary_little_endian")
    assert len(body) == 4 * 3 * 4 + 4 * (1 + 3 * 4)
    np.testing.assert_allclose(np.frombuffer(body[:48], "<f4").reshape(4, 3), TETRA * (1, -1, -1))
    faces = np.frombuffer(body[48:], [("n", "u1"), ("idx", "<i4", (3,))])
    assert (faces["n"] == 3).all() and (faces["idx"] == TETRA_FACES).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.obj", "m.ply"]  # no temp files left
