"""`siamface data face-model`: an ICT-FaceKit-like checkout written by the test (a few vertices, two
identity OBJs, two expressions, vertex_indices.json) becomes the asset's keys, dtypes and exact deltas."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import load_face_model
from siamface.training.data.face_model_convert import FaceKitLayout, convert_facekit, write_face_model
from siamface.training.face_model import WORKSPACE_ASSET

# The asset's keys and dtypes (shared/assets/ict-face-model/README.md).
ASSET_DTYPES = {"mean": "float32", "id_basis": "float16", "exp_basis": "float16", "exp_names": "U",
                "triangles": "int32", "vertex_region": "uint8", "region_names": "U", "landmarks68": "int32",
                "jawline_right": "int32", "jawline_left": "int32", "fitting_vertices": "int32",
                "rigid_vertices": "int32", "narrow_face_vertices": "int32"}
# 9 source vertices: 0-3 face, 4 head (dropped), 5-6 mouth socket, 7 teeth (dropped), 8 eyeball.
LAYOUT = FaceKitLayout(regions=(("face", 0, 4), ("mouth_socket", 5, 7), ("sclera_left", 8, 9)),
                       narrow_face_vertices=3, jawline_right=(0, 1), jawline_left=(2, 3))
NEUTRAL = np.array([[0, 0, 10], [1, 0, 10], [1, 1, 10], [0, 1, 10], [5, 5, 0],
                    [0.25, 0.5, 9], [0.75, 0.5, 9], [0.5, 0.2, 8], [2, 2, 8]], np.float64)
FACES = [(1, 2, 3, 4), (1, 4, 5), (6, 7, 8), (6, 7, 9)]  # 1-based; the second and third touch dropped vertices
EXPRESSIONS = ["jawOpen", "eyeBlink_L"]


def write_obj(path: Path, verts: np.ndarray, faces=FACES) -> None:
    lines = ["mtllib ICTFaceModelMaterial.mtl"] + [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in verts]
    lines += ["vt 0.5 0.5"] + [f"f {' '.join(f'{i}/1' for i in face)}" for face in faces]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def checkout(tmp_path) -> tuple[Path, dict]:
    """A tiny ICT-FaceKit checkout and the target meshes it holds."""
    rng = np.random.default_rng(0)
    src = tmp_path / "ICT-FaceKit" / "FaceXModel"
    src.mkdir(parents=True)
    write_obj(src / "generic_neutral_mesh.obj", NEUTRAL)
    targets = {name: NEUTRAL + rng.normal(0, 0.3, NEUTRAL.shape)
               for name in ["identity000", "identity001", *EXPRESSIONS]}
    for name, verts in targets.items():
        write_obj(src / f"{name}.obj", verts)
    indices = {"expressions": EXPRESSIONS, "idx_to_landmark_verts": [0, 1, 2, 3, 5, 6, 8] * 9 + [0] * 5,
               "idx_to_fitting_verts": [3, 1, 0], "idx_to_rigid_verts": [4, 6, 2, 7, 8]}
    (src / "vertex_indices.json").write_text(json.dumps(indices))
    (src.parent / "LICENSE").write_text("MIT License\nCopyright (c) 2020 USC Institute for Creative Technologies\n")
    return src.parent, targets


def test_tiny_checkout_becomes_the_asset_format(checkout, tmp_path):
    root, targets = checkout
    out = tmp_path / "asset" / "ict_face_model.npz"
    write_face_model(root, out, LAYOUT)
    with np.load(out, allow_pickle=False) as data:
        a = {k: data[k] for k in data.files}
    assert {k: (v.dtype.kind if v.dtype.kind == "U" else v.dtype.name) for k, v in a.items()} == ASSET_DTYPES
    kept = [0, 1, 2, 3, 5, 6, 8]
    np.testing.assert_array_equal(a["mean"], NEUTRAL[kept].astype(np.float32))
    for k, name in enumerate(["identity000", "identity001"]):  # exact deltas, rounded once to float16
        np.testing.assert_array_equal(a["id_basis"][k], (targets[name] - NEUTRAL)[kept].astype(np.float16))
    for k, name in enumerate(EXPRESSIONS):
        np.testing.assert_array_equal(a["exp_basis"][k], (targets[name] - NEUTRAL)[kept].astype(np.float16))
    assert a["exp_names"].tolist() == EXPRESSIONS
    assert a["region_names"].tolist() == ["face", "mouth_socket", "sclera_left"]
    assert a["vertex_region"].tolist() == [0, 0, 0, 0, 1, 1, 2]
    # the quad splits into (a, b, c), (a, c, d); polygons touching a dropped vertex go; ids follow the new order
    assert a["triangles"].tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6]]
    assert a["landmarks68"].shape == (68,) and a["landmarks68"][:7].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert a["fitting_vertices"].tolist() == [3, 1, 0]          # order kept
    assert a["rigid_vertices"].tolist() == [5, 2, 6]            # dropped vertices leave the set
    assert a["jawline_right"].tolist() == [0, 1] and int(a["narrow_face_vertices"]) == 3
    assert (out.parent / "LICENSE").read_text().startswith("MIT License")
    model = load_face_model(out)  # the device/training loader accepts it
    assert model.n_vertices == 7 and model.n_id_total == 2 and model.region_mask("face").sum() == 4


@pytest.mark.skipif(not WORKSPACE_ASSET.is_file(), reason="the shared asset is not beside the project")
def test_dtypes_match_the_shared_asset():
    with np.load(WORKSPACE_ASSET, allow_pickle=False) as data:
        assert {k: (data[k].dtype.kind if data[k].dtype.kind == "U" else data[k].dtype.name)
                for k in data.files} == ASSET_DTYPES


def test_default_layout_matches_the_shared_asset_sizes():
    """The ICT-FaceKit README ranges give the asset's 15363 vertices and its region sizes."""
    layout = FaceKitLayout()
    sizes = [stop - start for _, start, stop in layout.regions]
    assert sum(sizes) == 15363 and sizes == [9409, 2046, 384, 384, 770, 800, 770, 800]


def test_incomplete_checkouts_are_one_line_errors(checkout, tmp_path):
    root, _ = checkout
    with pytest.raises(SiamfaceError, match="not an ICT-FaceKit checkout"):
        convert_facekit(tmp_path / "nothing-here", LAYOUT)
    (root / "FaceXModel" / "eyeBlink_L.obj").unlink()
    with pytest.raises(SiamfaceError, match="eyeBlink_L.obj is missing"):
        convert_facekit(root, LAYOUT)
    write_obj(root / "FaceXModel" / "eyeBlink_L.obj", NEUTRAL[:5])
    with pytest.raises(SiamfaceError, match="has 5 vertices"):
        convert_facekit(root, LAYOUT)


def test_cli_reports_what_is_wrong_in_one_line(checkout, tmp_path):
    """The command converts with ICT-FaceKit's real layout, so the tiny checkout is too small for it."""
    root, _ = checkout
    siamface = Path(sys.executable).with_name("siamface")
    for folder, words in ((root, "generic_neutral_mesh.obj has 9 vertices, fewer than"),
                          (tmp_path, "not an ICT-FaceKit checkout")):
        r = subprocess.run([str(siamface), "data", "face-model", str(folder), "--out", str(tmp_path / "x.npz")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 3 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.npz").exists()
