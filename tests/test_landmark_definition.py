"""The project's landmark definition: ICT's brows moved onto the 2D convention (training.face_model)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import load_face_model
from siamface.evaluation.landmark_fit import MIRROR, mirror_vertices
from siamface.training.face_model import (BROWS_2D, BROWS_2D_NAME, ICT_BROWS, check_same_face_model,
                                          project_landmarks, resolve_face_model_path)


def test_ict_brows_move_down_onto_the_2d_brow_line_and_nothing_else_moves(face_model):
    asset = load_face_model(resolve_face_model_path())
    assert tuple(asset.landmarks68[17:27]) == ICT_BROWS and asset.landmark_definition == "asset"
    assert face_model.landmark_definition == BROWS_2D_NAME
    assert tuple(face_model.landmarks68[17:27]) == BROWS_2D
    others = np.r_[0:17, 27:68]
    assert np.array_equal(face_model.landmarks68[others], asset.landmarks68[others])
    move = face_model.mean[list(BROWS_2D)] - asset.mean[list(ICT_BROWS)]
    assert np.all(move[:, 1] < -0.15) and np.all(move[:, 1] > -0.5)          # 1.5-5 mm down (cm)
    assert np.all(np.linalg.norm(move, axis=1) < 0.5)
    # mirror pairs (17-26, 18-25, ...) stay mirror images, so the definition stays symmetric
    mirror = mirror_vertices(face_model)
    for i in range(17, 27):
        assert mirror[face_model.landmarks68[i]] == face_model.landmarks68[MIRROR[i]]


def test_other_assets_keep_their_own_vertices():
    own = np.arange(68, dtype=np.int32) * 3
    landmarks, name = project_landmarks(own)
    assert name == "asset" and np.array_equal(landmarks, own)


def test_artifacts_of_another_definition_are_refused_with_what_to_do(face_model):
    recorded = face_model.describe()
    check_same_face_model(recorded, face_model, "dataset d", "regenerate it")  # same: no error
    older = {k: v for k, v in recorded.items() if k != "landmarks"}           # written before the definition
    with pytest.raises(SiamfaceError, match=r"dataset d was made with landmark definition 'asset'.*regenerate it"):
        check_same_face_model(older, face_model, "dataset d", "regenerate it")
    with pytest.raises(SiamfaceError, match="face model"):
        check_same_face_model({**recorded, "sha256": "0" * 64}, face_model, "dataset d", "regenerate it")
    plain = dataclasses.replace(face_model, landmark_definition="asset")
    with pytest.raises(SiamfaceError, match=BROWS_2D_NAME):
        check_same_face_model(recorded, plain, "checkpoint c", "retrain")


def test_brows_are_painted_along_the_labelled_vertices(face_model):
    """The texture finds the brows from the same vertices the labels project, so a synthetic
    image's brow hair sits where its brow landmarks are."""
    from siamface.training.data.render_model import render_model_path
    from siamface.training.data.texture import _load_v2

    v2 = _load_v2(render_model_path())
    assert np.array_equal(v2["landmarks68"], face_model.landmarks68)


def test_evaluate_refuses_synthetic_labels_of_another_definition(tiny_bundles, tmp_path):
    """Brow labels of another definition would score a correct model as wrong: refused, not scored."""
    import json
    import shutil

    from siamface.evaluation.eval_data import synthetic_split
    from siamface.evaluation.evaluate import evaluate
    from siamface.evaluation.predictors import bundle_predictor

    predictor = bundle_predictor(tiny_bundles / "bundles" / "fp32")
    result, _ = evaluate(predictor, synthetic_split(tiny_bundles / "data", "test"), progress=False)
    assert result["nme"]["mean"] > 0
    data = shutil.copytree(tiny_bundles / "data", tmp_path / "data")
    manifest = json.loads((data / "manifest.json").read_text())
    del manifest["face_model"]["landmarks"]                       # a dataset made before the definition
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SiamfaceError, match=rf"labels landmark definition 'asset'.*trained on '{BROWS_2D_NAME}'"):
        evaluate(predictor, synthetic_split(data, "test"), progress=False)
