"""Per-face outputs on a Face with known parameters: the JSON record against its schema and the
geometry it states, blendshape names, vertex colours from the photo, coloured meshes and the
face-region overlay."""
from __future__ import annotations

import json

import numpy as np
import pytest

from siamface.edge_runtime.blendshape_names import MEDIAPIPE_NAMES, mediapipe_name
from siamface.edge_runtime.camera import CameraPose, compose_camera
from siamface.edge_runtime.crop import CropTransform
from siamface.edge_runtime.mesh_io import SKIN_GREY, draw_overlay, face_region_triangles, vertex_colours, vertex_normals, \
    write_obj, write_ply
from siamface.edge_runtime.outputs import FACE_SCHEMA, FRAME_SCHEMA
from siamface.edge_runtime.reconstructor import Face

N_ID, W, H = 10, 256, 256
CROP = CropTransform(30.0, 20.0, 240.0, 120)  # crop pixels = image pixels / 2


def conforms(value, schema: dict, where: str = "$") -> list[str]:
    """The JSON-schema keywords FACE_SCHEMA uses, checked by hand (jsonschema is not a dependency)."""
    kind = schema.get("type")
    types = {"object": dict, "array": list, "number": (int, float), "integer": int, "boolean": bool}
    if kind and (not isinstance(value, types[kind]) or (kind in ("number", "integer") and isinstance(value, bool))):
        return [f"{where}: {type(value).__name__} is not {kind}"]
    errors = []
    if kind == "object":
        props = schema.get("properties", {})
        errors += [f"{where}: lacks {k}" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            sub = props.get(k, schema.get("additionalProperties", True))
            if sub is False:
                errors.append(f"{where}: unexpected {k}")
            elif isinstance(sub, dict):
                errors += conforms(v, sub, f"{where}.{k}")
    elif kind == "array":
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            errors.append(f"{where}: {len(value)} items")
        for i, v in enumerate(value):
            errors += conforms(v, schema.get("items", {}), f"{where}[{i}]")
    elif kind in ("number", "integer"):
        if value < schema.get("minimum", -np.inf) or value > schema.get("maximum", np.inf) \
                or value <= schema.get("exclusiveMinimum", -np.inf):
            errors.append(f"{where}: {value} out of range")
    return errors


def make_face(face_model, yaw=20.0, pitch=-5.0, roll=10.0, scale=4.0, exp: dict | None = None) -> Face:
    """A Face whose parameters (in CROP's space) put a known head at a known image pose."""
    layout = face_model.layout(N_ID)
    image_camera = compose_camera(CameraPose(scale, *np.radians([yaw, pitch, roll]), tx=128.0, ty=120.0))
    crop_camera = image_camera * CROP.scale
    crop_camera[:2, 3] -= np.array([CROP.x0, CROP.y0]) * CROP.scale
    weights = np.zeros(layout.n_exp, np.float32)
    for name, w in (exp or {}).items():
        weights[face_model.exp_names.index(name)] = w
    ids = np.random.default_rng(1).standard_normal(N_ID).astype(np.float32)
    params = layout.join(crop_camera, ids, weights)
    return Face((80.0, 60.0, 180.0, 170.0), 0.9, CROP, params, np.ones(8) / np.sqrt(8), face_model, layout)


def test_record_follows_the_schema_and_states_the_geometry(face_model):
    exp = {"jawOpen": 0.4, "browInnerUp_L": 0.2, "browInnerUp_R": 0.6, "cheekPuff_L": 0.3, "mouthSmile_L": 0.7}
    face = make_face(face_model, exp=exp)
    record = json.loads(json.dumps(face.to_dict()))
    assert conforms(record, FACE_SCHEMA) == []
    assert conforms({"frame": 3, "time_s": 0.1, "detected": False, "faces": [record]}, FRAME_SCHEMA) == []
    assert conforms({**record, "landmarks68": record["landmarks68"][:67]}, FACE_SCHEMA)  # the check bites
    assert conforms({**record, "extra": 1}, FACE_SCHEMA) and conforms({"frame": -1}, FRAME_SCHEMA)

    # head_transform maps the model-space landmarks (cm) onto the image landmarks (pixels, depth)
    m, model_lm = np.array(record["head_transform"]), np.array(record["landmarks3d"])
    image_lm = model_lm @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(image_lm, face.landmarks3d, atol=0.01)
    np.testing.assert_allclose(np.array(record["landmarks68"]), image_lm[:, :2], atol=0.02)
    # the 2D convention: at yaw 20 the jaw side turning away (+x, points 10-16) moves outwards onto
    # the contour, by a few pixels; the other points are the same
    contour, fixed = np.array(record["landmarks68_2d"]), np.array(record["landmarks68"])
    np.testing.assert_allclose(contour[17:], fixed[17:], atol=0.011)
    np.testing.assert_allclose(contour[:10], fixed[:10], atol=0.011)
    assert np.linalg.norm(contour[10:17] - fixed[10:17], axis=1).max() > 1.0
    np.testing.assert_allclose(m[3], [0, 0, 0, 1])
    rotation = m[:3, :3] / record["scale_px_per_cm"]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-4)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-4)  # diag(1, -1, -1) @ R is a rotation too
    assert record["scale_px_per_cm"] == pytest.approx(4.0, abs=1e-3)
    assert [record["pose_deg"][k] for k in ("yaw", "pitch", "roll")] == pytest.approx([20.0, -5.0, 10.0], abs=0.01)
    assert np.ptp(model_lm[:, 0]) == pytest.approx(14.7, abs=1.5)  # centimetres, not pixels
    np.testing.assert_allclose(record["shape_code"], face.shape_code, atol=1e-4)

    # every blendshape by the model's (ARKit) names; MediaPipe's 52 categories
    assert list(record["blendshapes"]) == list(face_model.exp_names) and len(record["blendshapes"]) == 53
    mp = record["blendshapes_mediapipe"]
    assert list(mp) == list(MEDIAPIPE_NAMES) and len(mp) == 52
    assert mp["browInnerUp"] == pytest.approx(0.4) and mp["cheekPuff"] == pytest.approx(0.15)
    assert mp["mouthSmileLeft"] == pytest.approx(0.7) and mp["jawOpen"] == pytest.approx(0.4)
    assert mp["_neutral"] == pytest.approx(0.3) and mp["eyeBlinkRight"] == 0.0


def test_every_model_blendshape_has_a_mediapipe_category(face_model):
    names = face_model.exp_names
    mapped = {mediapipe_name(n) for n in names}
    assert mapped == set(MEDIAPIPE_NAMES) - {"_neutral"}
    assert mediapipe_name("eyeBlink_L") == "eyeBlinkLeft" and mediapipe_name("cheekPuff_R") == "cheekPuff"
    assert [n for n in names if mediapipe_name(n) not in (n, n.replace("_L", "Left").replace("_R", "Right"))] == \
        ["browInnerUp_L", "browInnerUp_R", "cheekPuff_L", "cheekPuff_R"]


def test_vertex_colours_sample_the_photo_where_the_face_shows(face_model):
    """On a photo whose red and green channels are the pixel's x and y, a shown vertex gets its own
    position as colour; vertices turned away, hidden behind the nose, or outside get grey."""
    ys, xs = np.mgrid[0:H, 0:W]
    image = np.dstack([xs, ys, np.full_like(xs, 77)]).astype(np.uint8)
    face = make_face(face_model, yaw=55.0, pitch=0.0, roll=0.0, scale=6.0)
    v, tris = face.vertices, face.triangles
    colours = vertex_colours(image, v, tris)
    shown = np.all(colours != SKIN_GREY, axis=1)
    np.testing.assert_allclose(colours[shown, :2], v[shown, :2], atol=0.51)
    assert (colours[shown, 2] == 77).all()
    away = vertex_normals(v, tris)[:, 2] > 0
    assert away.sum() > 1000 and not shown[away].any()
    outside = np.any((v[:, :2] < 0) | (v[:, :2] > W - 1), axis=1)
    assert not shown[outside].any()
    hidden = ~away & ~outside & ~shown  # facing the viewer but behind other parts (nose, cheek)
    assert hidden.sum() > 50
    face_front = np.arange(len(v)) < int(face_model.extras["narrow_face_vertices"])
    assert shown[face_front].mean() > 0.5


def test_meshes_carry_the_colours(tmp_path, face_model):
    face = make_face(face_model)
    colours = np.random.default_rng(0).integers(0, 256, (len(face.vertices), 3)).astype(np.uint8)
    write_ply(tmp_path / "m.ply", face.vertices, face.triangles, colours)
    data = (tmp_path / "m.ply").read_bytes()
    header, body = data.split(b"end_header\n", 1)
    assert b"property uchar red\nproperty uchar green\nproperty uchar blue\n" in header
    vertices = np.frombuffer(body, dtype=[("xyz", "<f4", (3,)), ("rgb", "u1", (3,))], count=len(colours))
    np.testing.assert_array_equal(vertices["rgb"], colours)
    np.testing.assert_allclose(vertices["xyz"], face.vertices * [1, -1, -1], atol=1e-3)
    write_obj(tmp_path / "m.obj", face.vertices, face.triangles, colours)
    lines = [line.split() for line in (tmp_path / "m.obj").read_text().splitlines() if line.startswith("v ")]
    obj = np.array([[float(x) for x in line[1:]] for line in lines])
    assert obj.shape == (len(colours), 6)
    np.testing.assert_allclose(obj[:, 3:] * 255, colours, atol=0.02)


def test_overlay_draws_the_face_region_only(face_model):
    tris = face_region_triangles(face_model)
    corners = face_model.mean[np.unique(tris)]
    assert len(tris) > 10000 and np.abs(corners[:, 0]).max() < 8.0  # no ears (|x| ~ 9 cm)
    assert corners[:, 1].max() < 10.0  # no scalp (the forehead ends below 10 cm)
    assert np.isin(face_model.landmarks68, tris).all()
    face = make_face(face_model, yaw=0.0, pitch=0.0, roll=0.0, scale=5.0)
    out = draw_overlay(np.zeros((H, W, 3), np.uint8), [face])
    wire = np.argwhere(out[..., 0] > 0)  # the wireframe is the only colour with blue (BGR)
    region = face.vertices[np.unique(tris), :2]
    whole = face.vertices[: 9409, :2]  # face, scalp, ears and neck of the source mesh
    assert len(wire) > 500
    assert (wire[:, ::-1].min(axis=0) >= region.min(axis=0) - 2).all()
    assert (wire[:, ::-1].max(axis=0) <= region.max(axis=0) + 2).all()
    assert np.ptp(whole[:, 0]) > np.ptp(region[:, 0]) + 10  # drawing the whole head would fail the test
