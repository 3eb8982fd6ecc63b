"""Evaluation sets as face crops plus ground truth: a synthetic split or an AFLW2000-3D folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.crop import crop_from_box, crop_image, landmark_box
from edge_runtime.errors import SiamfaceError
from evaluation.scoring import GroundTruth


@dataclass
class EvalSet:
    name: str
    crops: np.ndarray          # (N, S, S, 3) uint8
    truth: GroundTruth         # landmarks in crop coordinates (NME is scale-free)
    skipped: int = 0


def synthetic_split(root: str | Path, split: str = "test", limit: int | None = None) -> EvalSet:
    """Held-out identities of a dataset made by `siamface data synth` (or `data fit`)."""
    from training.data.dataset import Dataset

    data = Dataset.open(root).split(split)
    if len(data) == 0:
        raise SiamfaceError(f"split {split!r} of {root} is empty: pick another split or regenerate the data")
    idx = np.arange(len(data)) if not limit or limit >= len(data) else np.linspace(0, len(data) - 1, limit).astype(int)
    truth = GroundTruth(data.landmarks2d[idx], data.pose_deg[idx], data.identity[idx], data.params[idx])
    return EvalSet(f"{Path(root).name}/{split}", data.images(idx), truth)


def aflw2000(root: str | Path, size: int, limit: int | None = None) -> EvalSet:
    """AFLW2000-3D: crops from the ground-truth 68-landmark box (the usual protocol)."""
    from training.data.real_formats import AFLW2000Loader

    loader = AFLW2000Loader(root)
    crops, lms, poses = [], [], []
    for sample in loader:
        crop = crop_from_box(landmark_box(sample.landmarks), size)
        crops.append(crop_image(sample.image, crop))
        lms.append(crop.to_crop(sample.landmarks[:, :2]))
        poses.append(sample.pose_deg)
        if limit and len(crops) >= limit:
            break
    if not crops:
        raise SiamfaceError(f"no usable AFLW2000-3D samples in {root} ({loader.n_skipped} skipped): check the folder")
    return EvalSet(f"AFLW2000-3D ({Path(root).name})", np.stack(crops),
                   GroundTruth(np.stack(lms), np.asarray(poses, np.float64)), loader.n_skipped)


def open_eval_set(path: str | Path, size: int, split: str = "test", limit: int | None = None) -> EvalSet:
    path = Path(path)
    if (path / "manifest.json").is_file():
        return synthetic_split(path, split, limit)
    if any(path.glob("image*.mat")):
        return aflw2000(path, size, limit)
    raise SiamfaceError(f"{path} is neither a siamface dataset (manifest.json) nor an AFLW2000-3D folder "
                        f"(imageNNNNN.jpg + .mat): pass one of those")
