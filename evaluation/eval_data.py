"""Evaluation sets as face crops plus ground truth: a synthetic split, an AFLW2000-3D folder, a
folder of people (LFW layout) or a pairs file (LFW pairs.txt or CSV)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edge_runtime.crop import crop_from_box, crop_image, landmark_box
from edge_runtime.errors import SiamfaceError
from evaluation.scoring import GroundTruth

NO_FACE = "no face detected"


@dataclass
class EvalSet:
    name: str
    crops: np.ndarray          # (N, S, S, 3) uint8
    truth: GroundTruth         # landmarks in crop coordinates (NME is scale-free)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (image, reason) left out


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
                   GroundTruth(np.stack(lms), np.asarray(poses, np.float64)), list(loader.skipped))


def face_cropper(size: int, box: Sequence[float] | None = None) -> Callable[[np.ndarray], np.ndarray | None]:
    """Photo -> the crop the device feeds the model (None when no face is found): the largest face the
    edge runtime's detector finds, or one fixed ``box`` for photos that are already aligned crops.
    The device's landmark refinement pass is left out: it needs a model's output, and every model
    compared must see the same crops."""
    from edge_runtime.detector import make_detector

    detector = make_detector() if box is None else None

    def crop(image: np.ndarray) -> np.ndarray | None:
        boxes = [box] if detector is None else [d.box for d in detector.detect(image)]  # largest first
        return crop_image(image, crop_from_box(boxes[0], size)) if boxes else None

    return crop


def photo_crops(paths: Iterable[Path], size: int, box: Sequence[float] | None = None, limit: int | None = None
                ) -> tuple[list[Path], list[np.ndarray], list[tuple[Path, str]]]:
    """(used paths, their crops, skipped (path, reason)): unreadable photos and photos without a
    detected face are recorded and left out, so one bad file never stops an evaluation."""
    from training.data.real_formats import SampleError, read_image

    crop = face_cropper(size, box)
    used, crops, skipped = [], [], []
    for path in paths:
        try:
            pixels = crop(read_image(path))
        except SampleError as exc:
            skipped.append((exc.path, exc.reason))
            continue
        if pixels is None:
            skipped.append((path, NO_FACE))
            continue
        used.append(path)
        crops.append(pixels)
        if limit and len(crops) >= limit:
            break
    return used, crops, skipped


def _unusable(path: Path, problem: str, skipped: list[tuple[Path, str]]) -> SiamfaceError:
    detail = f"; {len(skipped)} images skipped ({', '.join(sorted({r for _, r in skipped}))})" if skipped else ""
    return SiamfaceError(f"{path}: {problem}{detail}: use photos with a visible face, "
                         f"or --box x0,y0,x1,y1 when they are already aligned face crops")


def identity_folder(root: str | Path, size: int, box: Sequence[float] | None = None,
                    limit: int | None = None) -> EvalSet:
    """A folder per person (LFW layout): identities are the only ground truth, so only identity
    metrics are scored (on ``GroundTruth.verification_pairs`` of the usable photos)."""
    from training.data.real_formats import IdentityFolderLoader

    root = Path(root)
    person = {entry.image_path: entry.identity for entry in IdentityFolderLoader(root).entries}
    used, crops, skipped = photo_crops(person, size, box, limit)
    names = np.asarray([person[p] for p in used])
    if len(set(names)) < 2:
        raise _unusable(root, f"usable faces of {len(set(names))} identities, identity metrics need two", skipped)
    return EvalSet(f"people ({root.name})", np.stack(crops), GroundTruth(None, None, names), skipped)


def pairs_file(path: str | Path, size: int, images: str | Path | None = None,
               box: Sequence[float] | None = None) -> EvalSet:
    """LFW ``pairs.txt`` (images under ``images``, default its folder) or a CSV ``file_a,file_b,same``:
    exactly the listed pairs, in file order so the 10-fold accuracy follows LFW's folds; a pair
    with an unusable photo is dropped (the name says how many were kept)."""
    from training.data.real_formats import read_lfw_pairs, read_pairs_csv

    path = Path(path)
    pairs = read_pairs_csv(path) if path.suffix.lower() == ".csv" else read_lfw_pairs(path, images)
    used, crops, skipped = photo_crops(dict.fromkeys(p for pair in pairs for p in pair[:2]), size, box)
    index = {p: k for k, p in enumerate(used)}
    kept = [pair for pair in pairs if pair.path_a in index and pair.path_b in index]
    if not kept:
        raise _unusable(path, "no listed pair has two usable faces", skipped)
    listed = (np.array([index[p.path_a] for p in kept]), np.array([index[p.path_b] for p in kept]),
              np.array([p.same for p in kept]))
    return EvalSet(f"pairs {path.name} ({len(kept)} of {len(pairs)} pairs)", np.stack(crops),
                   GroundTruth(None, None, pairs=listed), skipped)


def open_eval_set(path: str | Path, size: int, split: str = "test", limit: int | None = None,
                  box: Sequence[float] | None = None, images: str | Path | None = None) -> EvalSet:
    """The evaluation set at ``path``; ``box`` (a fixed face box) and ``images`` (pairs.txt's image
    root) apply to photos only: folders of people and pairs files. ``limit`` caps images, never pairs."""
    path = Path(path)
    if path.is_file():
        return pairs_file(path, size, images, box)
    if (path / "manifest.json").is_file():
        return synthetic_split(path, split, limit)
    if any(path.glob("image*.mat")):
        return aflw2000(path, size, limit)
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return identity_folder(path, size, box, limit)
    raise SiamfaceError(f"{path} is not a siamface dataset (manifest.json), an AFLW2000-3D folder (imageNNNNN.jpg "
                        f"+ .mat), a folder of people (person/*.jpg) or a pairs file (pairs.txt, .csv): pass one of those")
