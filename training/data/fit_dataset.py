"""Real datasets (landmarks, perhaps pose) turned into the project's dataset format: every image's
landmarks fitted by ``training.data.fitting`` (jointly per identity), cropped, labelled in crop
coordinates and written shard by shard with the fit residuals, under the shared manifest header.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Iterable, Mapping

import numpy as np

from siamface.edge_runtime.camera import decompose_camera
from siamface.edge_runtime.crop import crop_from_box, crop_image, landmark_box
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.edge_runtime.provenance import package_versions
from siamface.training.config_io import Range
from siamface.training.data.dataset import (MANIFEST, atomic_save_npy, atomic_write_json, column_slices, label_columns,
                                   manifest_header, record_width, write_shard)
from siamface.training.data.fitting import FitConfig, FitResult, camera_to_crop, fit_identity
from siamface.training.data.real_formats import RealSample


@dataclass(frozen=True)
class RealDatasetConfig:
    """How real samples become a training dataset; written into its manifest."""

    image_size: Annotated[int, Range(ge=16)] = 120
    shard_size: Annotated[int, Range(ge=1)] = 1024
    share_identity: bool = True
    fit: FitConfig = field(default_factory=FitConfig)


@dataclass
class _SplitWriter:
    """Accumulates one split's crops and labels and writes them shard by shard."""

    folder: Path
    shard_size: int
    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    residuals: list = field(default_factory=list)
    all_params: list = field(default_factory=list)
    all_residuals: list = field(default_factory=list)
    identities: set = field(default_factory=set)
    shards: int = 0

    def add(self, image: np.ndarray, label: np.ndarray, residual: float, params: np.ndarray, identity: int) -> None:
        self.images.append(image)
        self.labels.append(label)
        self.residuals.append(residual)
        self.all_params.append(params)
        self.all_residuals.append(residual)
        self.identities.add(identity)
        if len(self.images) == self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.images:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_shard(self.folder, self.shards, np.stack(self.images), np.stack(self.labels))
        atomic_save_npy(self.folder / f"fit_residuals-{self.shards:05d}.npy", np.asarray(self.residuals, np.float32))
        self.shards += 1
        self.images, self.labels, self.residuals = [], [], []

    def info(self) -> dict:
        return {"shards": self.shards, "images": len(self.all_residuals), "identities": len(self.identities)}

    def residual_summary(self) -> dict:
        r = np.asarray(self.all_residuals, np.float64)
        if not len(r):
            return {"images": 0}
        return {"images": int(len(r)), "mean_px": float(r.mean()), "median_px": float(np.median(r)),
                "p95_px": float(np.percentile(r, 95)), "max_px": float(r.max())}


def _landmarked(samples: Iterable[RealSample], skipped: list) -> Iterable[RealSample]:
    for sample in samples:
        if sample.landmarks is None:
            skipped.append((sample.image_path, "no landmarks to fit"))
        else:
            yield sample


def _groups(samples: Iterable[RealSample], share_identity: bool, skipped: list) -> Iterable[list[RealSample]]:
    """Landmarked samples, consecutive ones of one identity together when identity is shared."""
    usable = _landmarked(samples, skipped)
    if not share_identity:
        return ([s] for s in usable)
    return (list(group) for _, group in itertools.groupby(usable, key=lambda s: s.identity))


def _label(sample: RealSample, result: FitResult, identity: int, model: MorphableModel, layout: ParamLayout,
           image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop, crop-space parameters and the label record of one fitted sample."""
    transform = crop_from_box(landmark_box(sample.landmarks), image_size)
    camera, id_coeffs, exp_coeffs = layout.split(result.params)
    params = layout.join(camera_to_crop(camera, transform), id_coeffs, exp_coeffs)
    landmarks = transform.to_crop(sample.landmarks)
    landmarks3d = landmarks if sample.has_3d else model.image_landmarks(params, layout)
    pose = sample.pose_deg if sample.pose_deg is not None else decompose_camera(camera).degrees
    x0, y0, x1, y1 = landmark_box(landmarks)
    columns = column_slices(label_columns(layout))
    label = np.zeros(record_width(columns), np.float32)
    label[columns["identity"]] = identity
    label[columns["params"]] = params
    label[columns["landmarks2d"]] = landmarks[:, :2].ravel()
    label[columns["landmarks3d"]] = landmarks3d.ravel()
    label[columns["pose_deg"]] = pose
    label[columns["face_box"]] = (x0, y0, x1, y1)
    return crop_image(sample.image, transform), label, params


def fit_to_dataset(splits: Mapping[str, Iterable[RealSample]], model: MorphableModel, out_dir: str | Path,
                   config: RealDatasetConfig = RealDatasetConfig(), source: dict | None = None) -> dict:
    """Fit every landmarked sample and write the project's dataset format; returns the manifest.

    ``splits`` maps a split name to samples (a loader, typically; for ``share_identity`` the
    images of one identity must come consecutively, as loaders list them). Labels are in crop
    coordinates: landmarks2d is the annotation; landmarks3d the 3D annotation when there is one,
    else the fitted model's landmarks; pose_deg the dataset's pose when given, else the fitted
    camera's; face_box the landmark box. Samples that cannot be used are listed in the manifest.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = model.layout(config.fit.n_id)
    identities: dict[str, int] = {}
    writers: dict[str, _SplitWriter] = {}
    skipped: list[tuple[Path, str]] = []
    for name, samples in splits.items():
        writer = writers[name] = _SplitWriter(out / name, config.shard_size)
        for group in _groups(samples, config.share_identity, skipped):
            results = fit_identity(model, [s.landmarks for s in group], config.fit)
            for sample, result in zip(group, results):
                number = identities.setdefault(sample.identity, len(identities))
                image, label, params = _label(sample, result, number, model, layout, config.image_size)
                writer.add(image, label, result.residual_px, params, number)
        writer.flush()
        skipped += getattr(samples, "skipped", [])
    whitening_split = "train" if "train" in writers else None
    params = [p for n, w in writers.items() if whitening_split in (None, n) for p in w.all_params]
    if not params:
        raise SiamfaceError(f"no sample could be fitted for {out}: the inputs hold no images with landmarks")
    manifest = manifest_header(layout, model.describe(), config.image_size) | {
        "splits": {name: w.info() for name, w in writers.items()},
        "whitening": Whitening.fit(np.stack(params)).to_dict(),
        "whitening_split": whitening_split or "all",
        "identity_names": sorted(identities, key=identities.get),
        "source": source or {"kind": "real", "datasets": sorted({str(n) for n in splits})},
        "config": asdict(config),
        "versions": package_versions("numpy", "scipy", "opencv-python-headless"),
        "fitting": {name: w.residual_summary() for name, w in writers.items()},
        "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
    }
    atomic_write_json(out / MANIFEST, manifest)
    return manifest
