"""`siamface evaluate` on photos annotated with iBUG .pts files: crops from the landmark box or as the
device crops (detector + each model's refine pass), NME and signed offsets per landmark group, the
report, the device-identical embedding, and the landmark-convention fit (`evaluate-fit`).

Annotations are the face model's own landmarks under known parameters, written as 1-based .pts
files, so a predictor that returns those parameters is perfect and a known shift gives known offsets.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from siamface.edge_runtime.camera import CameraPose, compose_camera
from siamface.edge_runtime.crop import CropTransform, crop_from_box, crop_image, landmark_box
from siamface.edge_runtime.crop_outputs import OutputRules
from siamface.edge_runtime.detector import make_detector
from siamface.edge_runtime.image_io import read_image
from siamface.edge_runtime.params import Whitening
from siamface.edge_runtime.reconstructor import refined_crop
from siamface.evaluation.eval_data import NO_FACE, NOT_ANNOTATED_FACE, open_eval_set
from siamface.evaluation.evaluate import evaluate, predict, reframe, write_reports
from siamface.evaluation.predictors import Predictor
from siamface.training.data.fitting import camera_to_crop

SIZE, N_ID = 64, 10
SIAMFACE = str(Path(sys.executable).with_name("siamface"))


def write_pts(path: Path, landmarks: np.ndarray) -> None:
    """300-W's text format, 1-based."""
    path.parent.mkdir(parents=True, exist_ok=True)
    points = "\n".join(f"{x + 1:.6f} {y + 1:.6f}" for x, y in landmarks[:, :2])
    path.write_text(f"version: 1\nn_points:  68\n{{\n{points}\n}}\n")


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


def face_params(face_model, rng: np.random.Generator, scale: float, tx: float, ty: float) -> np.ndarray:
    """Image-space parameters of a person at a near-frontal pose (an annotation's truth)."""
    layout = face_model.layout(N_ID)
    exp = np.zeros(len(face_model.exp_names))
    exp[rng.choice(len(exp), 2, replace=False)] = rng.uniform(0.1, 0.5, 2)
    pose = CameraPose(scale=scale, yaw=np.radians(rng.uniform(-25, 25)), pitch=np.radians(rng.uniform(-10, 10)),
                      roll=np.radians(rng.uniform(-10, 10)), tx=tx, ty=ty)
    return layout.join(compose_camera(pose), 0.7 * rng.standard_normal(N_ID), exp)


@pytest.fixture(scope="module")
def annotated(face_model, tmp_path_factory) -> dict:
    """Three noise photos (PNG, JPEG, PNG in a sub-folder) with .pts annotations of known faces."""
    root = tmp_path_factory.mktemp("pts")
    rng = np.random.default_rng(3)
    layout = face_model.layout(N_ID)
    truth = {}
    for name in ("a.png", "b.jpg", "indoor/c.png"):
        params = face_params(face_model, rng, rng.uniform(5, 7), rng.uniform(100, 120), rng.uniform(110, 130))
        path = write_rgb(root / name, rng.integers(0, 256, (240, 220, 3), np.uint8))
        write_pts(path.with_suffix(".pts"), face_model.image_landmarks(params, layout, "2d"))  # as 300-W annotates
        truth[path] = params
    return {"root": root, "truth": truth, "layout": layout}


def gt_crop(path: Path, annotated, face_model) -> CropTransform:
    """The crop evaluation cuts from the annotation: the .pts as written (2D convention, 6 decimals),
    else (AFLW2000-3D) the fixed vertices."""
    from siamface.training.data.real_formats import read_pts

    pts = path.with_suffix(".pts")
    lm = read_pts(pts) if pts.exists() else face_model.image_landmarks(annotated["truth"][path], annotated["layout"])
    return crop_from_box(landmark_box(lm), SIZE)


def predictor(name: str, layout, face_model, answer) -> Predictor:
    """A predictor whose parameters are ``answer(crop pixels)`` and whose embedding is constant."""

    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = np.stack([answer(c) for c in crops])
        return params, np.ones((len(crops), 2), np.float32)

    identity = Whitening(np.zeros(layout.size, np.float32), np.ones(layout.size, np.float32))
    return Predictor(name, name, SIZE, OutputRules(layout, identity, face_model), run, {})


def truth_predictor(annotated, face_model, shift=(0.0, 0.0)) -> Predictor:
    """The true parameters of the photo a crop came from, in crop coordinates, moved by ``shift``
    crop pixels (the crops are recomputed here from the annotation, as evaluation makes them)."""
    layout = annotated["layout"]
    by_crop = {}
    for path, params in annotated["truth"].items():
        crop = gt_crop(path, annotated, face_model)
        camera, id_coeffs, exp = layout.split(params)
        moved = camera_to_crop(camera, crop)
        moved[:2, 3] += shift
        by_crop[crop_image(read_image(path), crop).tobytes()] = layout.join(moved, id_coeffs, exp)
    return predictor("truth", layout, face_model, lambda c: by_crop[c.tobytes()])


def test_pts_folder_crops_from_the_landmark_box_and_scores_in_crop_space(annotated, face_model):
    eval_set = open_eval_set(annotated["root"], SIZE)
    paths = sorted(annotated["truth"])
    assert eval_set.name == f"pts ({annotated['root'].name})" and eval_set.real and eval_set.refine is None
    assert eval_set.truth.pose_deg is None and eval_set.skipped == []
    for crop, lm, path in zip(eval_set.crops, eval_set.truth.landmarks2d, paths):
        transform = gt_crop(path, annotated, face_model)
        assert np.array_equal(crop, crop_image(read_image(path), transform))
        true_lm = face_model.image_landmarks(annotated["truth"][path], annotated["layout"], "2d")[:, :2]
        np.testing.assert_allclose(lm, transform.to_crop(true_lm), atol=1e-5)  # .pts is 1-based: read back 0-based


def test_perfect_predictor_scores_zero_and_a_shift_gives_its_signed_offset(annotated, face_model):
    eval_set = open_eval_set(annotated["root"], SIZE)
    result, curves = evaluate(truth_predictor(annotated, face_model), eval_set, progress=False)
    assert result["n_images"] == 3 and result["nme"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert "pose_mae" not in result and "0-30" not in result["nme"]  # no pose truth in .pts: no yaw bins
    for group in result["landmark_groups"].values():
        assert group == pytest.approx({"nme": 0.0, "dx": 0.0, "dy": 0.0}, abs=1e-4)
    np.testing.assert_allclose(curves["nme"], 0.0, atol=1e-6)

    shifted, _ = evaluate(truth_predictor(annotated, face_model, shift=(3.0, -4.0)), eval_set, progress=False)
    boxes = np.ptp(eval_set.truth.landmarks2d, axis=1)
    per_px = 100.0 / np.sqrt(boxes[:, 0] * boxes[:, 1])      # percent of each image's box per crop pixel
    assert shifted["nme"]["mean"] == pytest.approx(5.0 * per_px.mean(), rel=1e-5)
    for group in shifted["landmark_groups"].values():
        assert group == pytest.approx({"nme": 5.0 * per_px.mean(), "dx": 3.0 * per_px.mean(),
                                       "dy": -4.0 * per_px.mean()}, rel=1e-5)


def test_report_gives_the_count_the_groups_and_the_measure_only_note(annotated, face_model, tmp_path):
    eval_set = open_eval_set(annotated["root"], SIZE)
    results, curves = {}, {}
    for name, shift in (("truth", (0.0, 0.0)), ("shifted", (3.0, -4.0))):
        results[name], curves[name] = evaluate(truth_predictor(annotated, face_model, shift), eval_set, progress=False)
    summary = write_reports(results, curves, tmp_path, "truth")
    text = (tmp_path / "report.md").read_text()
    data_line = (f"pts ({annotated['root'].name}): 3 faces, cropped from the ground-truth landmark box; real photos "
                 f"for measuring only: never train or tune on them")
    assert data_line in summary and data_line in text
    assert "| truth | 3 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 |" in text
    shifted = results["shifted"]["landmark_groups"]["jaw"]
    assert f"| shifted | 3 | {shifted['nme']:.2f} |" in text and f"{shifted['dx']:+.2f}, {shifted['dy']:+.2f} |" in text
    assert "| truth | 3 |" in summary                              # main table: the image count beside the figures
    delta = 100 * float(np.mean(curves["shifted"]["nme"] - curves["truth"]["nme"]))
    assert f"| shifted | {delta:+.2f} (too few to tell) | 0 / 3 of 3 | - |" in summary  # 3 faces: no interval
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["shifted"]["landmark_groups"]["eyes"] == pytest.approx(shifted)
    assert saved["shifted"]["versus_reference"]["nme"]["worse"] == 3 and "versus_reference" not in saved["truth"]
    assert (tmp_path / "ced.png").is_file() and not (tmp_path / "nme_yaw.png").exists()
    assert not (tmp_path / "roc.png").exists()                 # no pairs, no ROC


def test_aflw2000_results_carry_yaw_bins_pose_and_landmark_groups(annotated, face_model, tmp_path):
    """The same faces as an AFLW2000-3D folder (pt3d_68 + Pose_Para): cropped from the landmark box,
    scored per yaw bin and per landmark group."""
    import scipy.io

    layout = annotated["layout"]
    moved = {}
    for k, (path, params) in enumerate(sorted(annotated["truth"].items())):
        name = tmp_path / f"image{k:05d}.png"
        name.write_bytes(path.read_bytes()) if path.suffix == ".png" else write_rgb(name, read_image(path))
        lm = face_model.image_landmarks(params, layout).astype(np.float64)
        scipy.io.savemat(str(name.with_suffix(".mat")), {"pt3d_68": (lm * [1, 1, -1]).T,
                                                         "Pose_Para": np.array([[0.0, 0.0, 0.0, 0, 0, 0, 1.0]])})
        moved[path] = name
    truth = {moved[p]: v for p, v in annotated["truth"].items()}
    eval_set = open_eval_set(tmp_path, SIZE)
    assert eval_set.name == f"AFLW2000-3D ({tmp_path.name})" and eval_set.real
    assert eval_set.truth.pose_deg.shape == (3, 3)
    result, _ = evaluate(truth_predictor({**annotated, "truth": truth}, face_model), eval_set, progress=False)
    assert result["nme"]["n_0-30"] == 3 and result["nme"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert "pose_mae" in result
    for group in result["landmark_groups"].values():
        assert group == pytest.approx({"nme": 0.0, "dx": 0.0, "dy": 0.0}, abs=1e-4)


def test_reframe_moves_landmarks_between_crops_of_one_image(face_model):
    layout = face_model.layout(N_ID)
    params = face_params(face_model, np.random.default_rng(0), 0.8, 30.0, 35.0)  # in crop ``src``
    src, dst = CropTransform(40.0, 50.0, 90.0, SIZE), CropTransform(31.0, 62.5, 120.0, SIZE)
    moved = reframe(params, layout, src, dst)
    expected = dst.to_crop(src.to_image(face_model.image_landmarks(params, layout)))
    np.testing.assert_allclose(face_model.image_landmarks(moved, layout), expected, atol=1e-4)
    np.testing.assert_array_equal(moved[layout.identity], params[layout.identity])


@pytest.fixture(scope="module")
def astronaut_set(face_model, tmp_path_factory) -> dict:
    """Real photos for the detector: the astronaut annotated with a face placed on her detected face,
    the same photo annotated on the background (another face than the detected one), and noise."""
    root = tmp_path_factory.mktemp("pts-detect")
    photo = data.astronaut()
    box = make_detector().detect(photo)[0].box
    layout = face_model.layout(N_ID)
    frontal = compose_camera(CameraPose(scale=1.0, yaw=0.0, pitch=0.0, roll=0.0, tx=0.0, ty=0.0))
    neutral = layout.join(frontal, np.zeros(N_ID), np.zeros(len(face_model.exp_names)))
    scale = (box[2] - box[0]) / np.ptp(face_model.image_landmarks(neutral, layout)[:, 0])

    def params_at(x0: float, y0: float) -> np.ndarray:
        """The mean face, frontal, its landmark box's top-left corner at (x0, y0) and as wide as the detection."""
        camera = frontal * scale
        origin = face_model.image_landmarks(layout.join(camera, np.zeros(N_ID), neutral[layout.expression]), layout)
        camera[:2, 3] = [x0, y0] - origin[:, :2].min(axis=0)
        return layout.join(camera, np.zeros(N_ID), neutral[layout.expression])

    on_face, elsewhere = params_at(box[0], box[1]), params_at(350.0, 300.0)
    noise = np.random.default_rng(1).integers(0, 256, photo.shape, np.uint8)
    for name, params, pixels in (("face.png", on_face, photo), ("background.png", elsewhere, photo),
                                 ("noise.png", on_face, noise)):
        write_rgb(root / name, pixels)
        write_pts(root / name.replace(".png", ".pts"), face_model.image_landmarks(params, layout))
    return {"root": root, "layout": layout, "on_face": on_face, "box": box}


def test_detector_crops_refine_per_model_and_score_in_the_first_crop(astronaut_set, face_model):
    root, layout = astronaut_set["root"], astronaut_set["layout"]
    eval_set = open_eval_set(root, SIZE, detector="blazeface")
    assert eval_set.skipped == [(root / "background.png", NOT_ANNOTATED_FACE), (root / "noise.png", NO_FACE)]
    first = crop_from_box(astronaut_set["box"], SIZE)
    assert eval_set.refine.paths == [root / "face.png"] and eval_set.refine.crops == [first]
    assert np.array_equal(eval_set.crops[0], crop_image(read_image(root / "face.png"), first))

    # A model that always answers the same crop-space parameters; it sees the first crop, then the
    # second crop the device would cut from the landmarks of that answer.
    answer = face_params(face_model, np.random.default_rng(5), 2.5, SIZE / 2, SIZE / 2 + 2)
    seen = []
    model = predictor("constant", layout, face_model, lambda c: seen.append(c) or answer)
    params, _ = predict(model, eval_set, progress=False)
    second = refined_crop(first, answer, face_model, layout)
    assert second != first and len(seen) == 2
    assert np.array_equal(seen[0], eval_set.crops[0])
    assert np.array_equal(seen[1], crop_image(read_image(root / "face.png"), second))
    # Scored where the truth is: the second crop's landmarks, expressed in the first crop.
    expected = first.to_crop(second.to_image(face_model.image_landmarks(answer, layout)))
    np.testing.assert_allclose(face_model.image_landmarks(params[0], layout), expected, atol=1e-3)

    result, _ = evaluate(model, eval_set, progress=False)
    assert result["refined"] and result["n_images"] == 1 and result["skipped"] == 2


def test_device_and_evaluate_give_the_same_embedding_for_a_photo(tiny_bundles, tmp_path):
    """The edge runtime's Reconstructor and `evaluate` on the same photos (a folder of people and a
    .pts folder with --detector) through the same bundle: same crops, refine pass included."""
    from siamface.edge_runtime.reconstructor import Reconstructor
    from siamface.evaluation.predictors import bundle_predictor

    photo = data.astronaut()
    people = {"alice/a.jpg": photo, "alice/b.jpg": photo[:, ::-1], "bob/c.jpg": photo[20:300, 60:400]}
    for name, rgb in people.items():
        write_rgb(tmp_path / "people" / name, rgb)
    for variant in ("fp32", "int8-qat"):
        bundle = tiny_bundles / "bundles" / variant
        device = Reconstructor.from_bundle(bundle)
        eval_set = open_eval_set(tmp_path / "people", device.size)
        params, embeddings = predict(bundle_predictor(bundle), eval_set, progress=False)
        for k, name in enumerate(people):
            face = device.reconstruct(read_image(tmp_path / "people" / name))[0]
            assert float(embeddings[k] @ face.embedding) >= 0.9999, (variant, name)
            landmarks = eval_set.refine.crops[k].to_image(device.decoder.image_landmarks(params[k], device.layout))
            np.testing.assert_allclose(landmarks[:, :2], face.landmarks68, atol=0.05)


def test_cli_evaluates_a_bundle_on_a_pts_folder_both_ways(tiny_bundles, astronaut_set, tmp_path):
    bundle = tiny_bundles / "bundles" / "int8-qat"
    for extra, crop in (([], "cropped from the ground-truth landmark box"),
                        (["--detector", "blazeface"], "cropped as the device crops them")):
        out = tmp_path / ("detector" if extra else "box")
        r = subprocess.run([SIAMFACE, "evaluate", "--model", str(bundle), "--data", str(astronaut_set["root"]),
                            "--out", str(out), "--baseline", *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        n = 1 if extra else 3
        assert f": {n} face{'s' if n > 1 else ''}" in r.stdout and crop in r.stdout and "never train or tune" in r.stdout
        report = json.loads((out / "report.json").read_text())
        assert set(report) == {"int8-qat", "mean-face"}
        for result in report.values():
            assert result["n_images"] == n and result["refined"] == bool(extra)
            assert set(result["landmark_groups"]) == {"jaw", "brows", "nose", "eyes", "mouth"}
        assert "NME jaw" in (out / "report.md").read_text()


# ----------------------------------------------------------------------------- landmark convention fit

def raised_brows(face_model) -> np.ndarray:
    """A definition whose brow points sit on the highest face vertex within 8 mm of the model's
    (brows annotated on their upper edge), mirrored so it stays symmetric."""
    from siamface.evaluation.landmark_fit import MIRROR, candidates, mirror_vertices

    mirror, definition = mirror_vertices(face_model), face_model.landmarks68.copy()
    for i in range(17, 22):
        pool = candidates(face_model, int(definition[i]), 0.8)
        best = pool[mirror[pool] >= 0][np.argmax(face_model.mean[pool[mirror[pool] >= 0], 1])]
        definition[i], definition[MIRROR[i]] = best, mirror[best]
    return definition


def annotations(face_model, definition: np.ndarray, n: int = 4) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """({name: (68, 2) landmarks of ``definition``}, true parameters) of ``n`` random near-frontal people."""
    from siamface.evaluation.landmark_fit import with_landmarks

    model, layout, rng = with_landmarks(face_model, definition), face_model.layout(N_ID), np.random.default_rng(0)
    params = [face_params(face_model, rng, 6.0, 120.0, 130.0) for _ in range(n)]
    faces = {f"face{k}": model.image_landmarks(p, layout)[:, :2].astype(np.float64) for k, p in enumerate(params)}
    return faces, params


def test_the_models_own_landmarks_fit_with_no_residual(face_model):
    from siamface.evaluation.landmark_fit import fit_faces, residuals
    from siamface.training.data.fitting import FitConfig

    faces, _ = annotations(face_model, face_model.landmarks68)
    fits = fit_faces(face_model, faces, FitConfig(n_id=N_ID))
    assert [f.name for f in fits] == list(faces) and all(abs(f.pose_deg[0]) < 26 for f in fits)
    for group in residuals(fits).values():
        assert group["nme"] < 0.1 and abs(group["dx"]) < 0.05 and abs(group["dy"]) < 0.05


def test_search_finds_the_vertices_annotations_were_drawn_on(face_model):
    """Given each face's true parameters, the search moves exactly the brows, onto the vertices the
    annotations came from (mirrored pairs together); groups not searched keep their vertices."""
    from siamface.evaluation.landmark_fit import FaceFit, LandmarkFitConfig, search_vertices
    from siamface.training.data.fitting import FitConfig

    truth = raised_brows(face_model)
    assert (truth != face_model.landmarks68).sum() == 10
    faces, params = annotations(face_model, truth)
    fits = [FaceFit(name, p, target, target, (0.0, 0.0, 0.0)) for (name, target), p in zip(faces.items(), params)]
    config = LandmarkFitConfig(fit=FitConfig(n_id=N_ID), search_groups=("jaw", "brows"), radius_cm=1.0)
    np.testing.assert_array_equal(search_vertices(face_model, fits, config), truth)
    only_jaw = LandmarkFitConfig(fit=FitConfig(n_id=N_ID), search_groups=("jaw",), radius_cm=1.0)
    np.testing.assert_array_equal(search_vertices(face_model, fits, only_jaw), face_model.landmarks68)


def test_evaluate_fit_reports_residuals_and_a_leave_one_out_proposal(face_model, tmp_path):
    from click.testing import CliRunner

    from siamface.cli.evaluate import evaluate_fit

    faces, _ = annotations(face_model, raised_brows(face_model))
    for name, landmarks in faces.items():
        write_rgb(tmp_path / "faces" / f"{name}.png", np.zeros((8, 8, 3), np.uint8))  # the fit reads only the .pts
        write_pts((tmp_path / "faces" / f"{name}.png").with_suffix(".pts"), landmarks)
    r = CliRunner().invoke(evaluate_fit, ["--data", str(tmp_path / "faces"), "--out", str(tmp_path / "fit"),
                                          f"fit.n_id={N_ID}", "search_groups=[brows]", "radius_cm=1.0"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "fit" / "landmark_fit.json").read_text())
    assert report["faces"] == 4 and len(report["current"]["per_face"]) == 4 and report["skipped"] == []
    current, proposal = report["current"]["groups"], report["proposal"]
    assert current["brows"]["nme"] > 0.5 and current["eyes"]["nme"] < 0.5   # the brows are off, the rest fits
    assert set(proposal["changed"]) <= {str(i) for i in range(17, 27)}
    # Vertices chosen on the other faces only still fit the held-out face's brows better.
    assert proposal["groups_leave_one_out"]["brows"]["nme"] < 0.8 * current["brows"]["nme"]
    text = (tmp_path / "fit" / "landmark_fit.md").read_text()
    assert "(4 faces)" in text and "never train or tune" in text and "| proposal, leave one out | 4 |" in text
    assert text in r.output
