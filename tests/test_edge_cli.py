"""The device CLI (`python -m edge_runtime ...`) in real subprocesses: no TensorFlow needed,
one-line errors for every bad input, the files it writes, the gallery, bench and check.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from siamface.edge_runtime.bundle import load_bundle
from siamface.edge_runtime.crop import crop_image
from siamface.edge_runtime.params import ParamLayout
from siamface.edge_runtime.reconstructor import Reconstructor, ReconstructorOptions

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "default"
VARIANTS = ("fp32", "fp16", "dynamic-int8", "int8-ptq", "int8-qat")
# The astronaut's face region (rows, cols) in skimage.data.astronaut(); BlazeFace finds it.
FACE_REGION = (slice(20, 260), slice(110, 350))
BLOCKER = '''"""Test device: importing the training stack fails, and every attempt is logged."""
import os, sys

BLOCKED = {"tensorflow", "tf_keras", "keras", "training", "export", "tensorflow_model_optimization"}


class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(os.environ["IMPORT_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is not installed on this device")
        return None


sys.meta_path.insert(0, _NoTensorFlow())
'''


SIAMFACE = Path(sys.executable).with_name("siamface")  # the console script of this environment


def run(*args, env: dict | None = None, program: list | None = None) -> subprocess.CompletedProcess:
    """``python -m edge_runtime ARGS`` (or ``program ARGS``) in the repository root."""
    command = [*(program or [sys.executable, "-m", "edge_runtime"]), *map(str, args)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=120)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def user_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 3 (bad input) and exactly one stderr line, 'error: ...', naming the given files; no traceback."""
    assert result.returncode == 3, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def box_arg(box) -> str:
    return ",".join(f"{v:.3f}" for v in box)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Real photos: the astronaut (one face), two copies of her face side by side (two faces),
    gray and RGBA versions, noise (no face) and bad files."""
    root = tmp_path_factory.mktemp("photos")
    astronaut = data.astronaut()
    face = astronaut[FACE_REGION]
    small = cv2.resize(face, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    two = np.full((240, 260 + small.shape[1] + 20, 3), 90, np.uint8)
    two[:, :240], two[20:20 + small.shape[0], 260:260 + small.shape[1]] = face, small
    images = {"astronaut.jpg": astronaut, "two_faces.png": two, "gray.png": cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY),
              "noise.png": np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)}
    for name, rgb in images.items():
        assert cv2.imwrite(str(root / name), rgb[..., ::-1] if rgb.ndim == 3 else rgb)
    rgba = np.dstack([astronaut[..., ::-1], np.full(astronaut.shape[:2], 200, np.uint8)])
    assert cv2.imwrite(str(root / "rgba.png"), rgba)
    (root / "empty.jpg").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    (root / "notes.txt").write_text("not a photo\n")
    return root


@pytest.fixture(scope="module")
def synthetic(tiny_bundles, tmp_path_factory) -> dict:
    """Test-split images of the tiny dataset as PNG files, with their identities and face boxes."""
    from siamface.training.data.dataset import Dataset

    split = Dataset.open(tiny_bundles / "data").split("test")
    root = tmp_path_factory.mktemp("synthetic")
    paths = []
    for k, image in enumerate(split.images(np.arange(len(split)))):
        paths.append(root / f"img{k:02d}.png")
        assert cv2.imwrite(str(paths[-1]), image[..., ::-1])
    return {"paths": paths, "identity": split.identity, "boxes": split.face_box.astype(np.float64), "root": root}


def bundle(tiny_bundles, variant: str = "fp32") -> Path:
    return tiny_bundles / "bundles" / variant


# -- no TensorFlow on the device -----------------------------------------------------------------


def test_device_commands_run_without_tensorflow(tiny_bundles, photos, tmp_path):
    """With tensorflow/keras/training/export unimportable (and every attempt logged), the device
    commands work: reconstruct with --box, and enroll, verify, identify with BlazeFace detection."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "imports.log"
    env = {"PYTHONPATH": str(tmp_path / "site"), "IMPORT_LOG": str(log)}
    probe = run("-c", "import tensorflow", env=env, program=[sys.executable])
    assert probe.returncode == 1 and "tensorflow is not installed on this device" in probe.stderr
    log.unlink()
    model, gallery = bundle(tiny_bundles, "int8-ptq"), tmp_path / "gallery.db"
    ok(run("reconstruct", photos / "astronaut.jpg", "--model", model, "--box", "175,70,275,175", "--out",
           tmp_path / "out", "--obj", env=env))
    assert (tmp_path / "out" / "astronaut.obj").is_file()
    ok(run("enroll", "astronaut", photos / "astronaut.jpg", "--model", model, "--gallery", gallery, env=env))
    verdict = json.loads(ok(run("verify", photos / "astronaut.jpg", photos / "two_faces.png", "--model", model, env=env)))
    assert set(verdict) == {"score", "score_kind", "threshold", "threshold_source", "same_person", "far_at_threshold",
                            "faces"}
    found = json.loads(ok(run("identify", photos / "gray.png", "--model", model, "--gallery", gallery, env=env)))
    assert [name for name, _ in found["candidates"]] == ["astronaut"]
    assert not log.exists(), log.read_text()  # nothing even tried to import the training stack


# -- bad inputs: exit 3, one line naming the file, nothing written --------------------------------

BAD_IMAGES = {
    "missing.jpg": "image not found",
    "empty.jpg": "is empty",
    "corrupt.jpg": "is not a readable image",
    "notes.txt": "is not a readable image",
    "noise.png": "no face found",
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_is_a_one_line_error(tiny_bundles, photos, tmp_path, name):
    out = tmp_path / "out"
    line = user_error(run("reconstruct", photos / name, "--model", bundle(tiny_bundles), "--out", out, "--obj"),
                      photos / name)
    assert BAD_IMAGES[name] in line
    assert not out.exists()


def test_oversized_image_is_refused_by_the_pixel_limit(tiny_bundles, photos, tmp_path):
    out = tmp_path / "out"
    args = ("reconstruct", photos / "astronaut.jpg", "--model", bundle(tiny_bundles), "--out", out)
    line = user_error(run(*args, env={"SIAMFACE_MAX_PIXELS": "100000"}), photos / "astronaut.jpg")
    assert "512x512 = 262144 pixels, over the limit of 100000" in line and not out.exists()
    ok(run(*args, env={"SIAMFACE_MAX_PIXELS": "262144"}))


def test_bad_arguments_and_folders(tiny_bundles, photos, tmp_path):
    model = bundle(tiny_bundles)
    (tmp_path / "empty_folder").mkdir()
    user_error(run("reconstruct", tmp_path / "empty_folder", "--model", model, "--out", tmp_path / "o"),
               tmp_path / "empty_folder")
    (tmp_path / "file").write_text("")
    user_error(run("reconstruct", photos / "astronaut.jpg", "--model", model, "--out", tmp_path / "file"),
               tmp_path / "file")
    assert "--box '10,10,5,20' must be x0,y0,x1,y1" in user_error(
        run("verify", photos / "astronaut.jpg", photos / "gray.png", "--model", model, "--box", "10,10,5,20"))
    shipped = ok(run("check", env={"SIAMFACE_BUNDLE": ""}))  # no --model: the bundle shipped in models/default
    assert shipped.strip() == f"bundle {REPO / 'models' / 'default'}: variant int8-qat, hashes ok, interpreter ai-edge-litert, inference ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_folder", "file"]


def test_wrong_and_tampered_bundles(tiny_bundles, photos, tmp_path):
    image = photos / "astronaut.jpg"
    assert "is not a siamface bundle" in user_error(
        run("reconstruct", image, "--model", tmp_path / "nowhere", "--out", tmp_path / "out"), tmp_path / "nowhere")
    for name in ("model.tflite", "face_model.npz"):
        copy = tmp_path / name.split(".")[0]
        shutil.copytree(bundle(tiny_bundles, "int8-ptq"), copy)
        if name == "model.tflite":
            with open(copy / name, "ab") as f:
                f.write(b"\0")
        else:  # flip one byte inside the decoder
            raw = bytearray((copy / name).read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            (copy / name).write_bytes(bytes(raw))
        line = user_error(run("reconstruct", image, "--model", copy, "--out", tmp_path / "out"), copy / name)
        assert "does not match the sha256" in line
        user_error(run("check", "--model", copy), copy / name)
    assert not (tmp_path / "out").exists()


def test_gallery_of_another_model_and_corrupt_gallery(tiny_bundles, photos, tmp_path):
    gallery, image = tmp_path / "gallery.db", photos / "astronaut.jpg"
    ok(run("enroll", "astronaut", image, "--model", bundle(tiny_bundles, "int8-ptq"), "--gallery", gallery))
    before = gallery.read_bytes()
    line = user_error(run("identify", image, "--model", bundle(tiny_bundles, "fp32"), "--gallery", gallery), gallery)
    assert "holds embeddings of model" in line and load_bundle(bundle(tiny_bundles, "fp32")).model_hash in line
    user_error(run("enroll", "other", image, "--model", bundle(tiny_bundles, "fp32"), "--gallery", gallery), gallery)
    assert gallery.read_bytes() == before
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, np.uint8).tobytes())
    for args in (("identify", image), ("gallery", "list")):
        assert "not an SQLite file" in user_error(
            run(*args, "--model", bundle(tiny_bundles), "--gallery", corrupt), corrupt)


# -- outputs ---------------------------------------------------------------------------------------


def read_obj(path: Path) -> tuple[int, int]:
    lines = path.read_text().splitlines()
    return sum(ln.startswith("v ") for ln in lines), sum(ln.startswith("f ") for ln in lines)


def test_reconstruct_writes_meshes_overlay_and_json(tiny_bundles, photos, tmp_path):
    model = bundle(tiny_bundles, "fp16")
    rec = Reconstructor.from_bundle(model)
    n_v, n_t = rec.decoder.n_vertices, len(rec.decoder.triangles)
    out = tmp_path / "out"
    stdout = ok(run("reconstruct", photos / "astronaut.jpg", "--model", model, "--out", out, "--obj", "--ply", "--overlay",
                    "--embedding"))
    assert stdout.startswith(f"{photos / 'astronaut.jpg'}: 1 face(s), yaw ")
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json", "astronaut.obj", "astronaut.ply",
                                                     "astronaut_overlay.png"]  # and no temp files
    assert read_obj(out / "astronaut.obj") == (n_v, n_t)
    head, body = (out / "astronaut.ply").read_bytes().split(b"end_header\n")
    assert f"element vertex {n_v}\n".encode() in head and f"element face {n_t}\n".encode() in head
    assert len(body) == n_v * 15 + n_t * 13
    overlay = cv2.imread(str(out / "astronaut_overlay.png"))
    assert overlay.shape == (512, 512, 3) and not np.array_equal(overlay[..., ::-1], data.astronaut())
    result = json.loads((out / "astronaut.json").read_text())
    assert result["bundle"] == "fp16" and result["model_sha256"] == rec.bundle.model_hash
    (face,) = result["faces"]
    expected = rec.reconstruct(data.astronaut())[0]  # the same photo through the Python API
    np.testing.assert_allclose(face["landmarks68"], expected.landmarks68, atol=0.3)  # JPEG round trip
    assert set(face["pose_deg"]) == {"yaw", "pitch", "roll"} and len(face["embedding"]) == 32 + (20 if rec.bundle.shape_weight else 0)
    assert np.linalg.norm(face["embedding"]) == pytest.approx(1.0, abs=1e-3)
    # --no-flip: the crop alone, as the Python API's ReconstructorOptions(flip=False)
    ok(run("reconstruct", photos / "astronaut.jpg", "--model", model, "--out", tmp_path / "crop", "--no-flip"))
    (alone,) = json.loads((tmp_path / "crop" / "astronaut.json").read_text())["faces"]
    expected = Reconstructor.from_bundle(model, ReconstructorOptions(flip=False)).reconstruct(data.astronaut())[0]
    np.testing.assert_allclose(alone["landmarks68"], expected.landmarks68, atol=0.3)
    assert np.abs(np.subtract(alone["landmarks68"], face["landmarks68"])).max() > 0.5


def test_several_faces_largest_first_or_all(tiny_bundles, photos, tmp_path):
    model, image = bundle(tiny_bundles), photos / "two_faces.png"
    ok(run("reconstruct", image, "--model", model, "--out", tmp_path / "one", "--obj"))
    (face,) = json.loads((tmp_path / "one" / "two_faces.json").read_text())["faces"]
    assert face["box"][2] < 240  # the larger copy, on the left
    ok(run("reconstruct", image, "--model", model, "--out", tmp_path / "all", "--obj", "--all-faces"))
    faces = json.loads((tmp_path / "all" / "two_faces.json").read_text())["faces"]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (f["box"] for f in faces)]
    assert len(faces) == 2 and areas[0] > areas[1] and faces[1]["box"][0] > 240
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["two_faces.json", "two_faces_0.obj",
                                                                    "two_faces_1.obj"]


def test_gray_and_rgba_photos_succeed(tiny_bundles, photos, tmp_path):
    out = tmp_path / "out"
    ok(run("reconstruct", photos / "gray.png", photos / "rgba.png", "--model", bundle(tiny_bundles), "--out", out))
    for name in ("gray", "rgba"):
        (face,) = json.loads((out / f"{name}.json").read_text())["faces"]
        assert 150 < face["box"][0] < 200 and 60 < face["box"][1] < 100  # the astronaut's face


def test_batch_mode_on_a_folder(tiny_bundles, synthetic, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in synthetic["paths"][:3]:
        shutil.copy(path, folder / path.name)
    (folder / "readme.txt").write_text("ignored: not an image\n")
    out = tmp_path / "out"
    stdout = ok(run("reconstruct", folder, "--model", bundle(tiny_bundles, "int8-qat"), "--out", out,
                    "--box", "8,8,56,56", "--overlay"))
    assert len(stdout.strip().splitlines()) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"img0{k}{suffix}" for k in range(3) for suffix in (".json", "_overlay.png"))
    for k in range(3):
        result = json.loads((out / f"img0{k}.json").read_text())
        assert result["bundle"] == "int8-qat" and result["faces"][0]["box"] == [8.0, 8.0, 56.0, 56.0]
        assert cv2.imread(str(out / f"img0{k}_overlay.png")).shape == (64, 64, 3)


# -- the gallery through the runtime ---------------------------------------------------------------

COLOUR_THRESHOLD = 0.9


@pytest.fixture(scope="module")
def colour_bundle(tiny_bundles, face_model, tmp_path_factory) -> Path:
    """A bundle (same layout, whitening and input as the tiny ones) whose identity embedding is the
    crop's mean normalised colour and whose params are the whitening mean. The tiny trained models'
    embeddings are collapsed (cosines > 0.9999 between any two photos), so scores and rankings
    are checked on this model, where photos differ."""
    import tf_keras as keras
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    meta = load_bundle(bundle(tiny_bundles)).meta
    layout = ParamLayout.from_dict(meta["param_layout"])
    pixels = keras.Input((64, 64, 3))
    colour = keras.layers.GlobalAveragePooling2D()(pixels)
    params = keras.layers.Dense(layout.size, kernel_initializer="zeros")(colour)
    meta = {"variant": "fp32", "input": meta["input"], "param_layout": meta["param_layout"],
            "whitening": meta["whitening"], "verification": {"threshold": COLOUR_THRESHOLD, "far": 0.05}}
    return write_bundle(tmp_path_factory.mktemp("colour") / "bundle", convert(keras.Model(pixels, [params, colour]), "fp32"),
                        meta, face_model, layout)


def test_colour_bundle_embeds_the_mean_colour_of_the_refined_crop(colour_bundle, synthetic):
    image = cv2.imread(str(synthetic["paths"][0]))[..., ::-1]
    face = Reconstructor.from_bundle(colour_bundle).reconstruct(image, [synthetic["boxes"][0]])[0]
    colour = ((crop_image(image, face.crop).astype(np.float64) - 127.5) / 128).mean(axis=(0, 1))
    np.testing.assert_allclose(face.embedding, colour / np.linalg.norm(colour), atol=1e-5)


def test_enroll_verify_identify_list_remove(colour_bundle, synthetic, tmp_path):
    """Scores printed by the CLI are the cosines of the Python API's embeddings; templates are
    running means; decisions use the bundle's threshold."""
    model, gallery = colour_bundle, tmp_path / "people.db"
    paths, ids, boxes = synthetic["paths"], synthetic["identity"], synthetic["boxes"]
    a, b = np.flatnonzero(ids == ids[0]), np.flatnonzero(ids == ids[-1])
    rec = Reconstructor.from_bundle(model)

    def embedding(k: int, box) -> np.ndarray:
        return rec.reconstruct(cv2.imread(str(paths[k]))[..., ::-1], boxes=[box])[0].embedding

    # Alice: two images, one command each (--update keeps the running mean). Bob: two images, one shared box.
    first = run("enroll", "alice", paths[a[0]], "--box", box_arg(boxes[a[0]]), "--model", model, "--gallery", gallery)
    assert ok(first) and "alice's template holds 1 photo(s): enrol 3-4" in first.stderr  # the advice, not an error
    stdout = ok(run("enroll", "alice", paths[a[1]], "--box", box_arg(boxes[a[1]]), "--update", "--model", model,
                    "--gallery", gallery))
    assert stdout.strip() == f"enrolled alice from 2 image(s) into {gallery}"
    bob_box = box_arg(boxes[b[:2]].mean(axis=0))
    ok(run("enroll", "bob", paths[b[0]], paths[b[1]], "--box", bob_box, "--model", model, "--gallery", gallery))
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    alice = unit(embedding(a[0], boxes[a[0]]) + embedding(a[1], boxes[a[1]]))
    bob = unit(sum(embedding(k, [float(v) for v in bob_box.split(",")]) for k in b[:2]))

    for k in (a[2], b[2]):
        probe = embedding(k, boxes[k])
        found = json.loads(ok(run("identify", paths[k], "--box", box_arg(boxes[k]), "--model", model,
                                  "--gallery", gallery)))
        expected = sorted([("alice", float(probe @ alice)), ("bob", float(probe @ bob))], key=lambda c: -c[1])
        assert expected[0][1] - expected[1][1] > 1e-3  # a clear ranking to check
        assert [n for n, _ in found["candidates"]] == [n for n, _ in expected]
        np.testing.assert_allclose([s for _, s in found["candidates"]], [s for _, s in expected], atol=2e-4)
        assert found["best"] == (expected[0][0] if expected[0][1] >= COLOUR_THRESHOLD else None)
        assert found["threshold"] == COLOUR_THRESHOLD and found["score_kind"] == "cosine"
        assert found["threshold_source"] == "bundle: source not recorded"  # the hand-made block has none
        assert found["far_at_threshold"] == 0.05                           # the FAR the bundle states, as verify

    # verify PHOTO --person NAME: the 1:1 check against one template, the same cosine identify ranks by
    for k in (a[2], b[2]):
        probe = embedding(k, boxes[k])
        for name, template in (("alice", alice), ("bob", bob)):
            verdict = json.loads(ok(run("verify", paths[k], "--person", name, "--box", box_arg(boxes[k]),
                                        "--model", model, "--gallery", gallery)))
            score = float(probe @ template)
            assert verdict == {"score": pytest.approx(score, abs=2e-4), "score_kind": "cosine", "person": name,
                               "gallery": str(gallery), "threshold": COLOUR_THRESHOLD,
                               "threshold_source": "bundle: source not recorded",
                               "same_person": score >= COLOUR_THRESHOLD, "far_at_threshold": 0.05,
                               "faces": [{"image": str(paths[k]), "face": 0, "faces_found": 1,
                                          "box": [round(float(v), 1) for v in box_arg(boxes[k]).split(",")]}]}
    assert "'carol' is not enrolled" in user_error(run("verify", paths[a[2]], "--person", "carol", "--model", model,
                                                       "--gallery", gallery), gallery)
    missing = tmp_path / "typo.db"
    user_error(run("verify", paths[a[2]], "--person", "alice", "--model", model, "--gallery", missing), missing)
    assert not missing.exists()  # verify never creates a gallery

    box = "10,8,54,52"
    for i, j in ((a[2], a[2]), (a[2], b[2])):
        verdict = json.loads(ok(run("verify", paths[i], paths[j], "--box", box, "--model", model)))
        score = float(embedding(i, (10, 8, 54, 52)) @ embedding(j, (10, 8, 54, 52)))
        assert verdict == {"score": pytest.approx(score, abs=2e-4), "score_kind": "cosine",
                           "threshold": COLOUR_THRESHOLD, "threshold_source": "bundle: source not recorded",
                           "same_person": score >= COLOUR_THRESHOLD, "far_at_threshold": 0.05,
                           "faces": [{"image": str(p), "face": 0, "faces_found": 1, "box": [10.0, 8.0, 54.0, 52.0]}
                                     for p in (paths[i], paths[j])]}
        assert i != j or verdict["same_person"]

    listing = ok(run("gallery", "list", "--model", model, "--gallery", gallery)).strip().splitlines()
    assert [ln.split("\t")[:2] for ln in listing] == [["alice", "2 image(s)"], ["bob", "2 image(s)"]]
    assert ok(run("gallery", "remove", "bob", "--model", model, "--gallery", gallery)).strip() == "removed bob"
    listing = ok(run("gallery", "list", "--model", model, "--gallery", gallery)).strip().splitlines()
    assert [ln.split("\t")[0] for ln in listing] == ["alice"]
    assert "'bob' is not enrolled" in user_error(run("gallery", "remove", "bob", "--model", model, "--gallery", gallery),
                                                 gallery)


def test_threshold_option_changes_the_decision_and_says_so(colour_bundle, synthetic, tmp_path):
    """--threshold just below a score accepts, just above rejects, for verify and identify, in both CLIs;
    the output names the option as the threshold's source and claims no FAR for it."""
    model, gallery, paths = colour_bundle, tmp_path / "people.db", synthetic["paths"]
    box = ["--box", "10,8,54,52"]
    enrolled = run("enroll", "alice", *paths[:3], *box, "--model", model, "--gallery", gallery)
    assert ok(enrolled) and "template holds" not in enrolled.stderr     # three photos: no advice to add more
    plain = json.loads(ok(run("verify", paths[0], paths[-1], *box, "--model", model)))
    score = plain["score"]
    for program in (None, [str(SIAMFACE)]):
        for threshold, same in ((score - 1e-3, True), (score + 1e-3, False)):
            verdict = json.loads(ok(run("verify", paths[0], paths[-1], *box, "--model", model,
                                        "--threshold", f"{threshold:.4f}", program=program)))
            assert verdict == {**plain, "threshold": round(threshold, 4), "threshold_source": "--threshold",
                               "same_person": same, "far_at_threshold": None}
    best = json.loads(ok(run("identify", paths[-1], *box, "--model", model, "--gallery", gallery)))
    top = best["candidates"][0][1]
    for threshold, name in ((top - 1e-3, "alice"), (top + 1e-3, None)):
        found = json.loads(ok(run("identify", paths[-1], *box, "--model", model, "--gallery", gallery,
                                  "--threshold", f"{threshold:.4f}")))
        assert found == {**best, "best": name, "threshold": round(threshold, 4), "threshold_source": "--threshold",
                         "far_at_threshold": None}


@pytest.mark.parametrize("value", ["1.0001", "-1.5", "nan", "inf", "high"])
def test_threshold_outside_the_cosine_range_is_refused(colour_bundle, synthetic, tmp_path, value):
    image, model = synthetic["paths"][0], colour_bundle
    for args in (("verify", image, image), ("identify", image, "--gallery", tmp_path / "g.db")):
        line = user_error(run(*args, "--model", model, "--threshold", value))
        assert f"--threshold: threshold '{value}' is not a cosine in [-1, 1]" in line
    assert not (tmp_path / "g.db").exists()


# -- bench and check -------------------------------------------------------------------------------

CELL = r"(\d+\.\d\d)/(\d+\.\d\d)"


def test_bench_prints_stage_percentiles_per_bundle_and_thread_count(tiny_bundles, photos):
    stdout = ok(run("bench", bundle(tiny_bundles, "fp32"), bundle(tiny_bundles, "int8-ptq"), "--threads", "1", "2",
                    "--runs", "3"))
    header, *rows, footer = stdout.strip().splitlines()
    assert header.split()[:9] == ["bundle", "threads", "detect", "crop", "invoke", "decode", "embed", "mirror", "texture"]
    assert "p50/p90" in header and footer.startswith("* per face")
    assert [r.split()[:2] for r in rows] == [["fp32", "1"], ["fp32", "2"], ["int8-ptq", "1"], ["int8-ptq", "2"]]
    for row in rows:
        cells = row.split()[2:]
        assert cells[0] == "-" and len(cells) == 8  # no detection on the default synthetic input
        assert cells[6] == "-"                      # no texture identity model in these bundles
        for cell in cells[1:6] + cells[7:]:
            p50, p90 = map(float, re.fullmatch(CELL, cell).groups())
            assert 0 <= p50 <= p90
    textured = ok(run("bench", SHIPPED, "--threads", "1", "--runs", "2"))  # models/default has a texture model
    assert re.fullmatch(CELL, textured.splitlines()[1].split()[8])  # an identity check runs it
    detected = ok(run("bench", bundle(tiny_bundles), "--threads", "1", "--runs", "2", "--image", photos / "astronaut.jpg"))
    assert re.fullmatch(CELL, detected.splitlines()[1].split()[2])  # the detect stage is timed on a photo


def test_check_passes_on_every_variant(tiny_bundles):
    for variant in VARIANTS:
        line = ok(run("check", "--model", bundle(tiny_bundles, variant))).strip()
        assert line == f"bundle {bundle(tiny_bundles, variant)}: variant {variant}, hashes ok, " \
                       "interpreter ai-edge-litert, inference ok"


def test_siamface_forwards_to_the_device_cli(tiny_bundles, photos, tmp_path):
    assert "variant fp32, hashes ok" in ok(run("check", "--model", bundle(tiny_bundles), program=[SIAMFACE]))
    user_error(run("reconstruct", photos / "empty.jpg", "--model", bundle(tiny_bundles), "--out", tmp_path / "o",
                   program=[SIAMFACE]), photos / "empty.jpg")
    assert not (tmp_path / "o").exists()
