"""The real-face teacher: dlib's descriptors of a dataset's photos (aligned as dlib aligns them,
written beside the shards, resumable), the relational loss on them, and training that uses them."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siamface import training  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.data.dataset import Dataset, teacher_path
from siamface.training.face_model import load_training_face_model
from siamface.training.losses import LossConfig, TrainingLosses, teacher_relation_loss
from siamface.training.pairs import PKSampler
from siamface.training.pipeline import PKBatches

SIAMFACE = str(Path(sys.executable).parent / "siamface")


def describe(root: Path) -> str:
    """`siamface data teacher` on ``root`` with one worker; its output."""
    result = subprocess.run([SIAMFACE, "data", "teacher", str(root), "--workers", "1"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout

@pytest.fixture(scope="module")
def described(tiny_data, tmp_path_factory):
    """A copy of the tiny training set with its train split described by `siamface data teacher`."""
    root = tmp_path_factory.mktemp("teacher") / "data"
    shutil.copytree(tiny_data, root)
    assert "photos described" in describe(root)
    return root


def test_descriptors_are_dlibs_own_for_each_photo_and_sit_beside_each_shard(described):
    import dlib
    import face_recognition_models

    split = Dataset.open(described).split("train")
    teacher = split.teacher
    assert teacher.shape == (len(split), 128) and np.isfinite(teacher).all()
    np.testing.assert_allclose(np.linalg.norm(teacher, axis=1), 1.0, atol=1e-5)
    assert all(teacher_path(p).is_file() for p in split.label_files)
    record = json.loads((described / "train" / "teacher.json").read_text())
    assert record["images"] == len(split) and record["dlib"] == dlib.__version__
    # photo 5 through dlib's own alignment (its chip from the 68 landmarks, padding 0.25)
    recognizer = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    points = split.landmarks2d[5]
    box = dlib.rectangle(*(int(v) for v in (*points.min(0), *points.max(0))))
    shape = dlib.full_object_detection(box, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
    own = np.asarray(recognizer.compute_face_descriptor(split.images(np.array([5]))[0], shape, 0, 0.25))
    np.testing.assert_allclose(teacher[5], own / np.linalg.norm(own), atol=1e-5)


def test_a_rerun_describes_only_the_shards_left_undone(described):
    split = Dataset.open(described).split("train")
    done, undone = teacher_path(split.label_files[0]), teacher_path(split.label_files[-1])
    before = done.stat().st_mtime_ns, done.read_bytes()
    kept = np.load(undone)
    undone.unlink()
    assert np.isnan(Dataset.open(described).split("train").teacher[-len(kept):]).all()  # missing: NaN rows
    describe(described)
    assert (done.stat().st_mtime_ns, done.read_bytes()) == before
    np.testing.assert_allclose(np.load(undone), kept, atol=1e-6)


def test_relation_loss_is_zero_for_the_teachers_geometry_and_ignores_photos_without_descriptors():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(6, 128)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.normal(size=(128, 128)))
    same_geometry = 3.0 * (teacher / np.linalg.norm(teacher, axis=1, keepdims=True)) @ rotation.astype(np.float32)
    assert float(teacher_relation_loss(same_geometry, teacher)) == pytest.approx(0.0, abs=1e-6)
    other = rng.normal(size=(6, 128)).astype(np.float32)
    assert float(teacher_relation_loss(other, teacher)) > 1e-3
    partial = teacher.copy()
    partial[2] = np.nan
    x = tf.Variable(other)
    with tf.GradientTape() as tape:
        loss = teacher_relation_loss(x, partial)
    grad = tape.gradient(loss, x).numpy()
    assert np.isfinite(grad).all() and np.all(grad[2] == 0) and np.abs(grad[[0, 1, 3]]).max() > 0
    keep = [0, 1, 3, 4, 5]
    assert float(loss) == pytest.approx(float(teacher_relation_loss(other[keep], teacher[keep])), rel=1e-5)
    assert float(teacher_relation_loss(other, np.full_like(teacher, np.nan))) == 0.0


def test_batches_carry_the_descriptors_and_the_loss_needs_them(described, tiny_data):
    ds = Dataset.open(described)
    split = ds.split("train")
    batches = PKBatches(split, ds.whitening, PKSampler(split.identity, split.pose_deg[:, 0], 3, 2, seed=1))
    batch = next(iter(batches.dataset(augment_images=False)))
    match = np.argmax(batch["teacher"].numpy() @ split.teacher.T, axis=1)     # each row is a photo's own
    np.testing.assert_allclose(split.teacher[match], batch["teacher"].numpy(), atol=1e-6)
    assert np.array_equal(batches.classes[match], batch["class"].numpy())
    cfg = LossConfig(n_sample_vertices=50, identity="supcon", teacher=1.0)
    losses = TrainingLosses(cfg, load_training_face_model(), ds.layout, ds.whitening, batches.n_classes, 8,
                            has_teacher=True)
    terms = losses.batch(batch, {"params": batch["params"], "embedding": tf.random.normal((6, 8))},
                         tf.constant(1.0))
    assert float(terms["teacher"]) > 0
    plain = Dataset.open(tiny_data).split("train")
    assert plain.teacher is None
    with pytest.raises(SiamfaceError, match="siamface data teacher"):
        TrainingLosses(cfg, load_training_face_model(), ds.layout, ds.whitening, batches.n_classes, 8)
