"""Identity descriptors of a face recognizer trained on real people, for each training photo.

The generator's people differ in procedural skin, hair and shape; an embedding that learns only
from them reads those (README, identity). dlib's ResNet face descriptor (Davis King, public
domain; trained on about 3 million photos of 7,485 real people) has learnt what tells real faces
apart. Its descriptors of the synthetic photos are the targets of ``loss.teacher``: the embedding
learns to place photos as that network does. Training-only: the device never runs dlib.

One ``shard-NNNNN.teacher.npy`` (unit rows, float32) beside each shard's labels, written
atomically, so an interrupted run resumes shard by shard and merged datasets without
descriptors read as NaN rows.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.data.dataset import (TEACHER_SIZE, Dataset, atomic_save_npy, atomic_write_json,
                                            teacher_path)

RECORD = "teacher.json"


@dataclass
class TeacherConfig:
    """How each photo is aligned for the recognizer (dlib's face chip from the 68 landmarks)."""

    chip_size: int = 150       # the recognizer's input
    padding: float = 0.25      # dlib's default margin around the aligned face


def _recognizer():
    try:
        import dlib
        import face_recognition_models
    except ImportError as e:
        raise SiamfaceError(f"the teacher needs dlib and its models ({e.name} is missing): "
                            "pip install -r requirements-train.txt") from e
    return dlib, dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def describe(images: np.ndarray, landmarks: np.ndarray, cfg: TeacherConfig) -> np.ndarray:
    """(N, 128) unit descriptors of RGB uint8 ``images`` aligned by their (N, 68, 2) landmarks."""
    dlib, recognizer = _recognizer()
    out = np.empty((len(images), TEACHER_SIZE), np.float32)
    for i, (image, points) in enumerate(zip(images, landmarks)):
        (x0, y0), (x1, y1) = points.min(0), points.max(0)
        shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in points])
        chip = dlib.get_face_chip(np.ascontiguousarray(image), shape, cfg.chip_size, cfg.padding)
        out[i] = np.asarray(recognizer.compute_face_descriptor(chip), np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _describe_shard(job: tuple[Path, Path, dict]) -> int:
    images_file, labels_file, cfg = job
    images = np.load(images_file, mmap_mode="r")
    landmarks = np.load(labels_file, mmap_mode="r")[:, cfg["landmarks"]].reshape(-1, 68, 2)
    atomic_save_npy(teacher_path(labels_file), describe(images, landmarks, TeacherConfig(**cfg["teacher"])))
    return len(images)


def write_teacher(root: str | os.PathLike, split: str = "train", cfg: TeacherConfig | None = None,
                  workers: int = 0) -> dict:
    """Describe every photo of ``split`` (resumes: shards already described are kept); returns and
    writes the record of what made the descriptors (``SPLIT/teacher.json``)."""
    cfg = cfg or TeacherConfig()
    dataset = Dataset.open(root)
    data = dataset.split(split)
    lm = data.columns["landmarks2d"]
    if np.isnan(data.landmarks2d).any():
        raise SiamfaceError(f"{root}: split {split} has photos without 2D landmarks (an identity-only import?): "
                            "the teacher aligns by landmarks; describe a synthetic or fitted dataset")
    jobs = [(img, lab, {"landmarks": lm, "teacher": asdict(cfg)})
            for img, lab in zip(data.image_files, data.label_files) if not teacher_path(lab).is_file()]
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if jobs:
        with tqdm(total=sum(np.load(j[0], mmap_mode="r").shape[0] for j in jobs), desc="teacher", unit="img") as bar:
            if workers > 1:
                with mp.get_context("spawn").Pool(workers) as pool:
                    for n in pool.imap_unordered(_describe_shard, jobs):
                        bar.update(n)
            else:
                for job in jobs:
                    bar.update(_describe_shard(job))
    dlib, _ = _recognizer()
    import face_recognition_models
    model_file = Path(face_recognition_models.face_recognition_model_location())
    record = {"teacher": f"{model_file.name} (dlib's ResNet, public domain)", "dlib": dlib.__version__,
              "model_sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(), "config": asdict(cfg),
              "split": split, "images": len(data), "shards": len(data.label_files)}
    atomic_write_json(Path(root) / split / RECORD, record)
    return record
