"""Folders of people without 3D labels -> the project's dataset format, identity only.

``PEOPLE_DIR/<person>/*.jpg`` (the layout of LFW, CASIA-WebFace and VGGFace2) becomes
``DATASET/<split>/shard-NNNNN.{images,labels}.npy``. Each photo is cropped as the device crops
it: the edge runtime's detector, its largest face, then (with a model bundle) the
Reconstructor's refine pass. A sample's label record holds its person's global identity id;
every geometry column is NaN, which is how training knows to mask its geometry losses.
A person goes to val or test by a hash of the folder name, so people keep their split when
the folder grows.

Work is planned before it is done, append-only: ``shard-NNNNN.sources.jsonl`` lists a shard's
photos ([identity id, path under PEOPLE_DIR] per line), ``shard-NNNNN.done.json`` (written after its
.npy files) marks it complete. A rerun, after a kill or on a folder with new people or photos,
redoes incomplete shards and plans only photos no plan lists yet. A shard depends only on
its plan, so an interrupted run ends with the bytes an uninterrupted one writes.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from siamface.edge_runtime import image_io
from siamface.edge_runtime.atomic import atomic_write, atomic_write_json
from siamface.edge_runtime.crop import crop_from_box, crop_image
from siamface.edge_runtime.detector import DEFAULT_DETECTOR, make_detector
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.provenance import package_versions, utc_now
from siamface.edge_runtime.reconstructor import Reconstructor, refined_crop
from siamface.training.config_io import config_to_dict
from siamface.training.data.dataset import (LABELS_IDENTITY_ONLY, MANIFEST, SPLITS, Dataset, column_slices, label_columns,
                                   manifest_header, record_width, shard_is_complete, start_output, write_shard)
from siamface.training.data.real_formats import IMAGE_SUFFIXES, image_files
from siamface.training.face_model import load_training_face_model

GENERATOR = "siamface.import"
GENERATOR_VERSION = 1
CONFIG_FILE = "import_config.json"
IDENTITIES_FILE = "identities.json"
FAILURES_FILE = "failures.tsv"
UNREADABLE = "unreadable image"
NO_FACE = "no face detected"


@dataclass
class ImportConfig:
    """What determines an imported dataset; a rerun into the same folder must use the same."""

    image_size: int = 120
    shard_size: int = 1000       # photos planned per shard (a shard holds fewer crops when some fail)
    n_id: int = 100              # width of the (NaN) params column: match the datasets it is mixed with
    val_fraction: float = 0.05   # of the people, by name hash
    test_fraction: float = 0.05
    detector: str = DEFAULT_DETECTOR

    def check(self) -> None:
        if self.image_size < 16 or self.shard_size < 1:
            raise SiamfaceError(f"image_size must be >= 16 and shard_size >= 1 (got {self.image_size}, {self.shard_size})")
        if min(self.val_fraction, self.test_fraction) < 0 or self.val_fraction + self.test_fraction > 1:
            raise SiamfaceError(f"val_fraction and test_fraction must be >= 0 and sum to at most 1 "
                                f"(got {self.val_fraction}, {self.test_fraction})")


def split_of(person: str, cfg: ImportConfig) -> str:
    """val, test or train from a hash of the person's name: independent of every other person,
    so extending or reordering the folder never moves anyone to another split."""
    u = int.from_bytes(hashlib.sha256(person.encode()).digest()[:8], "big") / 2.0 ** 64
    if u < cfg.val_fraction:
        return "val"
    return "test" if u < cfg.val_fraction + cfg.test_fraction else "train"


def list_people(root: Path) -> list[str]:
    """Person folder names in name order; a one-line error when the folder is missing or holds no photo."""
    if not root.is_dir():
        raise SiamfaceError(f"people folder {root} does not exist: pass a folder with one sub-folder per person")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if next(photos(root, names), None) is None:
        raise SiamfaceError(f"no photos in {root}: expected {root}/<person>/<photo> (one folder per person; "
                            f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return names


def photos(root: Path, names: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(person, photo path relative to ``root``), person by person, streamed from the listing."""
    for name in names:
        for path in image_files(root / name):
            yield name, f"{name}/{path.name}"


# -- the device's crop ----------------------------------------------------------------------------


class DeviceCropper:
    """Photo -> the crop the device takes of its largest face (None when no face is found).

    Largest by detector box area, as the detector and the Reconstructor order faces: in a photo
    of a named person (LFW, VGGFace2) the person is the main subject. With a bundle, the
    Reconstructor's first pass on that crop and its refine step (``refined_crop``: the 3DDFA crop
    of the predicted landmarks) give the crop, resampled at the dataset's size.
    """

    def __init__(self, size: int, detector: str = DEFAULT_DETECTOR, bundle: str | os.PathLike | None = None):
        self.size, self.detector_name = size, detector
        self.reconstructor = Reconstructor.from_bundle(bundle) if bundle is not None else None
        self.detector = make_detector(detector)

    def describe(self) -> dict:
        """How the crops are made (manifest "crop"); with a bundle, which model refines them."""
        out = {"method": "detector" if self.reconstructor is None else "detector+refine",
               "detector": self.detector_name, "face": "largest detector box"}
        if self.reconstructor is not None:
            bundle = self.reconstructor.bundle
            out["model_bundle"] = {"path": str(bundle.root.resolve()), "variant": bundle.variant,
                                   "model_sha256": bundle.model_hash}
        return out

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        found = self.detector.detect(image)
        if not found:
            return None
        rec = self.reconstructor
        if rec is None:
            return crop_image(image, crop_from_box(found[0].box, self.size))
        first = crop_from_box(found[0].box, rec.size)
        params, _ = rec.predict_crop(image, first)
        rec.timings.clear()  # per-stage timings would grow with every photo
        return crop_image(image, replace(refined_crop(first, params, rec.decoder, rec.layout), size=self.size))


# -- planning: which photos go into which shard -------------------------------------------------


def plan_path(split_dir: Path, index: int) -> Path:
    return split_dir / f"shard-{index:05d}.sources.jsonl"


def done_path(split_dir: Path, index: int) -> Path:
    return split_dir / f"shard-{index:05d}.done.json"


def read_plan(split_dir: Path, index: int) -> list[tuple[int, str]]:
    return [tuple(json.loads(line)) for line in plan_path(split_dir, index).read_text().splitlines()]


def plans(split_dir: Path) -> int:
    """Number of planned shards of a split (they are numbered from 0 without gaps)."""
    count = 0
    while plan_path(split_dir, count).is_file():
        count += 1
    return count


def _register(out: Path, names: list[str]) -> dict[str, int]:
    """Identity ids: the recorded list extended by new people in name order (ids never change)."""
    path = out / IDENTITIES_FILE
    known = json.loads(path.read_text()) if path.is_file() else []
    ids = {name: i for i, name in enumerate(known)}
    new = [n for n in names if n not in ids]
    if new:
        ids.update((n, len(ids)) for n in new)
        atomic_write_json(path, known + new)
    return ids


def plan(out: Path, root: Path, names: list[str], cfg: ImportConfig) -> None:
    """Write plans for every photo of ``root`` that no plan lists yet, in new shards after the old."""
    ids = _register(out, names)
    counts = {split: plans(out / split) for split in SPLITS}
    planned = {rel for split in SPLITS for i in range(counts[split]) for _, rel in read_plan(out / split, i)}
    pending: dict[str, list[str]] = {split: [] for split in SPLITS}

    def flush(split: str) -> None:
        with atomic_write(plan_path(out / split, counts[split]), "w") as f:
            f.write("".join(line + "\n" for line in pending[split]))
        counts[split] += 1
        pending[split] = []

    for person, rel in photos(root, names):
        if rel in planned:
            continue
        split = split_of(person, cfg)
        pending[split].append(json.dumps([ids[person], rel]))
        if len(pending[split]) == cfg.shard_size:
            flush(split)
    for split in SPLITS:
        if pending[split]:
            flush(split)


# -- doing: one shard at a time ------------------------------------------------------------------


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    photos: int


def identity_only_labels(identities: list[int], columns: dict[str, slice]) -> np.ndarray:
    """Label records holding only the identity: NaN in every geometry column."""
    labels = np.full((len(identities), record_width(columns)), np.nan, np.float32)
    labels[:, columns["identity"]] = np.asarray(identities, np.float32)[:, None]
    return labels


def import_shard(task: ShardTask, root: Path, out: Path, crop: Callable[[np.ndarray], np.ndarray | None],
                 columns: dict[str, slice], size: int, on_photo: Callable[[int], object] = lambda n: None) -> dict:
    """Crop a shard's planned photos, write its .npy files, then its done record (returned)."""
    split_dir = out / task.split
    crops, identities, failures = [], [], []
    for identity, rel in read_plan(split_dir, task.index):
        on_photo(1)
        try:
            image = image_io.read_image(root / rel)
        except (SiamfaceError, cv2.error) as exc:
            failures.append([rel, UNREADABLE, str(exc).splitlines()[0]])
            continue
        pixels = crop(image)
        if pixels is None:
            failures.append([rel, NO_FACE, ""])
            continue
        crops.append(pixels)
        identities.append(identity)
    images = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    write_shard(split_dir, task.index, images, identity_only_labels(identities, columns))
    done = {"images": len(crops), "identities": sorted(set(identities)), "failures": failures}
    atomic_write_json(done_path(split_dir, task.index), done)
    return done


def read_done(split_dir: Path, index: int) -> dict | None:
    """The done record of a complete shard, None for a shard still to do."""
    path = done_path(split_dir, index)
    try:
        done = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return done if shard_is_complete(split_dir, index, done["images"]) else None


_WORKER: dict = {}


def _init_worker(root: str, out: str, cfg: ImportConfig, bundle: str | None, columns: dict) -> None:
    cv2.setNumThreads(1)  # one photo per process at a time; the processes fill the cores
    _WORKER.update(root=Path(root), out=Path(out), crop=DeviceCropper(cfg.image_size, cfg.detector, bundle),
                   columns=columns, size=cfg.image_size)


def _run_task(task: ShardTask) -> ShardTask:
    w = _WORKER
    import_shard(task, w["root"], w["out"], w["crop"], w["columns"], w["size"])
    return task


# -- the whole import ----------------------------------------------------------------------------


def import_people(root: str | os.PathLike, out: str | os.PathLike, cfg: ImportConfig = ImportConfig(),
                  bundle: str | os.PathLike | None = None, face_model: str | None = None, workers: int = 0,
                  progress: bool = True) -> Dataset:
    """Import (or finish, or extend) ``out`` from the people folder ``root``; returns the dataset."""
    root, out = Path(root).resolve(), Path(out)
    cfg.check()
    names = list_people(root)  # a missing or empty folder, a bad detector or bundle: before anything is written
    model = load_training_face_model(face_model)
    layout = model.layout(cfg.n_id)
    cropper = DeviceCropper(cfg.image_size, cfg.detector, bundle)
    crop = cropper.describe()
    settings = {"import": config_to_dict(cfg), "source": str(root), "face_model_sha256": model.sha256,
                "refine_model_sha256": crop.get("model_bundle", {}).get("model_sha256"),
                "generator_version": GENERATOR_VERSION}
    start_output(out, CONFIG_FILE, settings, "rerun with those settings, or delete the folder, or choose another --out")
    plan(out, root, names, cfg)
    tasks = [ShardTask(split, i, len(read_plan(out / split, i))) for split in SPLITS for i in range(plans(out / split))]
    todo = [t for t in tasks if read_done(out / t.split, t.index) is None]
    columns = column_slices(label_columns(layout))
    total = sum(t.photos for t in tasks)
    started = time.perf_counter()
    with tqdm(total=total, initial=total - sum(t.photos for t in todo), unit="photo", desc=f"import {out.name}",
              disable=not progress, smoothing=0.05) as bar:
        workers = min(workers or os.cpu_count() or 1, len(todo))
        if workers == 1:
            for task in todo:
                import_shard(task, root, out, cropper, columns, cfg.image_size, bar.update)
        elif workers > 1:
            args = (str(root), str(out), cfg, None if bundle is None else str(bundle), columns)
            with multiprocessing.get_context("spawn").Pool(workers, _init_worker, args) as pool:
                for task in pool.imap_unordered(_run_task, todo):
                    bar.update(task.photos)
    return _finish(out, root, cfg, model, crop, tasks, time.perf_counter() - started, len(todo))


def _finish(out: Path, root: Path, cfg: ImportConfig, model, crop: dict, tasks: list[ShardTask],
            elapsed: float, imported: int) -> Dataset:
    """Failures file and manifest, from the done records of every shard."""
    splits = {split: {"shards": 0, "images": 0, "identities": 0, "failures": 0} for split in SPLITS}
    present: dict[str, set] = {split: set() for split in SPLITS}
    failures, reasons = [], {}
    for task in tasks:
        done = read_done(out / task.split, task.index)
        info = splits[task.split]
        info["shards"] += 1
        info["images"] += done["images"]
        info["failures"] += len(done["failures"])
        present[task.split].update(done["identities"])
        for rel, reason, detail in done["failures"]:
            failures.append(f"{root / rel}\t{reason}\t{detail}\n")
            reasons[reason] = reasons.get(reason, 0) + 1
    for split in SPLITS:
        splits[split]["identities"] = len(present[split])
    with atomic_write(out / FAILURES_FILE, "w") as f:
        f.write("path\treason\tdetail\n" + "".join(failures))
    manifest = manifest_header(model.layout(cfg.n_id), model.describe(), cfg.image_size) | {
        "generator": {"name": GENERATOR, "version": GENERATOR_VERSION},
        "created": utc_now(),
        "labels": LABELS_IDENTITY_ONLY,
        "config": config_to_dict(cfg),
        "source": {"kind": "people folder", "root": str(root), "photos": sum(t.photos for t in tasks)},
        "crop": crop,
        "splits": splits,
        "identity_names": json.loads((out / IDENTITIES_FILE).read_text()),
        "failures": {"count": len(failures), "by_reason": reasons, "file": FAILURES_FILE},
        "whitening": {},  # no parameters to whiten: take whitening from a dataset with 3D labels
        "import_seconds": round(elapsed, 2),
        "shards_imported_this_run": imported,
        "versions": package_versions("numpy", "opencv-python-headless", "ai-edge-litert"),
    }
    atomic_write_json(out / MANIFEST, manifest)
    return Dataset(out, manifest)
