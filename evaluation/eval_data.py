"""Evaluation sets as face crops plus ground truth: a synthetic split, an AFLW2000-3D folder, a
folder of images with iBUG .pts files, a folder of people (LFW layout) or a pairs file (LFW
pairs.txt or CSV). Photos are cropped as the device crops them; see ``PhotoCrops``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from siamface.edge_runtime.crop import CropTransform, crop_from_box, crop_image, landmark_box
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.scoring import GroundTruth

if TYPE_CHECKING:
    from siamface.training.data.real_formats import Loader

NO_FACE = "no face detected"
NOT_ANNOTATED_FACE = "no detected face overlaps the annotated one"


@dataclass(frozen=True)
class PhotoCrops:
    """Where each crop of a photo set came from: the image file and the first crop (the detector's
    box). The device refines that crop with the model's own landmarks (a second pass), so every
    model gets its own second crops: evaluation redoes the pass per model from these."""

    paths: list[Path]
    crops: list[CropTransform]


@dataclass
class EvalSet:
    name: str
    crops: np.ndarray          # (N, S, S, 3) uint8: the crops models see (the first pass when ``refine``)
    truth: GroundTruth         # landmarks in these crops' coordinates (NME is scale-free)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (image, reason) left out
    refine: PhotoCrops | None = None  # set: each model refines the crops as the device does
    real: bool = False         # photos of real people: reports give the count and "measure only"
    landmarks: str | None = None  # synthetic sets: the landmark definition their labels follow
    units: np.ndarray | None = None  # pairs files: each photo's independent unit (pair_files.photo_units)


def synthetic_split(root: str | Path, split: str = "test", limit: int | None = None) -> EvalSet:
    """Held-out identities of a dataset made by `siamface data synth` (or `data fit`).

    ``limit`` keeps whole people (all their photos, people evenly spread over the split) so that a
    shortened split still has same-person pairs: the train split's photos of a person are contiguous,
    and every n-th image would leave one photo per person and no identity figures."""
    from siamface.training.data.dataset import Dataset, whole_people
    from siamface.training.face_model import recorded_definition

    dataset = Dataset.open(root)
    data = dataset.split(split)
    if len(data) == 0:
        raise SiamfaceError(f"split {split!r} of {root} is empty: pick another split or regenerate the data")
    idx = np.arange(len(data)) if not limit or limit >= len(data) else whole_people(data.identity, limit)
    truth = GroundTruth(data.landmarks2d[idx], data.pose_deg[idx], data.identity[idx], data.params[idx])
    return EvalSet(f"{Path(root).name}/{split}", data.images(idx), truth,
                   landmarks=recorded_definition(dataset.face_model))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


MIN_IOU = 0.3  # a detection further from the annotated face is another face (or none)


def landmarked_photos(loader: Loader, name: str, size: int, detector: str | None = None,
                      limit: int | None = None, convention: str = "3d") -> EvalSet:
    """Annotated photos (AFLW2000-3D, .pts folders) cropped from the ground-truth 68-landmark box
    (the usual protocol), or with ``detector`` as the device crops them: the detected face that
    overlaps the annotated one most (IoU >= MIN_IOU, else the photo is skipped), then each model's
    refine pass. Ground truth is in the first crop's coordinates either way; ``convention`` is the
    annotations' ("2d": the jaw follows the visible contour, edge_runtime.contour)."""
    from siamface.edge_runtime.detector import make_detector

    find = make_detector(detector) if detector else None
    crops, lms, poses, paths, transforms, skipped = [], [], [], [], [], []
    for sample in loader:
        box = landmark_box(sample.landmarks)
        if find is not None:
            overlap = [(box_iou(d.box, box), d.box) for d in find.detect(sample.image)]
            best = max(overlap, default=(0.0, None), key=lambda o: o[0])
            if best[0] < MIN_IOU:
                skipped.append((sample.image_path, NOT_ANNOTATED_FACE if overlap else NO_FACE))
                continue
            box = best[1]
        crop = crop_from_box(box, size)
        crops.append(crop_image(sample.image, crop))
        lms.append(crop.to_crop(sample.landmarks[:, :2]))
        poses.append(sample.pose_deg)
        paths.append(sample.image_path)
        transforms.append(crop)
        if limit and len(crops) >= limit:
            break
    skipped = list(loader.skipped) + skipped
    if not crops:
        raise SiamfaceError(f"no usable {loader.source} samples in {loader.root} ({len(skipped)} skipped: "
                            f"{', '.join(sorted({r for _, r in skipped}))}): check the folder")
    pose = None if any(p is None for p in poses) else np.asarray(poses, np.float64)
    return EvalSet(name, np.stack(crops), GroundTruth(np.stack(lms), pose, convention=convention), skipped,
                   PhotoCrops(paths, transforms) if find is not None else None, real=True)


def aflw2000(root: str | Path, size: int, limit: int | None = None, detector: str | None = None) -> EvalSet:
    """AFLW2000-3D: crops from the ground-truth 68-landmark box (the usual protocol) or detected."""
    from siamface.training.data.real_formats import AFLW2000Loader

    return landmarked_photos(AFLW2000Loader(root), f"AFLW2000-3D ({Path(root).name})", size, detector, limit)


def pts_folder(root: str | Path, size: int, limit: int | None = None, detector: str | None = None) -> EvalSet:
    """Images with iBUG .pts files (300-W, LFPW, HELEN, AFW, iBUG, the real dev set): 2D-convention
    landmarks, so predictions are scored with the jaw on the visible contour; no pose, so NME is
    over all images (no yaw bins) and per landmark group."""
    from siamface.training.data.real_formats import PtsFolderLoader

    return landmarked_photos(PtsFolderLoader(root), f"pts ({Path(root).name})", size, detector, limit, "2d")


def face_cropper(size: int, box: Sequence[float] | None = None, detector: str | None = None
                 ) -> Callable[[np.ndarray], CropTransform | None]:
    """Photo -> the device's first crop (None when no face is found): the 3DDFA crop of the largest
    face the edge runtime's detector finds, or of one fixed ``box`` for photos that are already
    aligned crops. The device's second (refine) pass needs a model's landmarks, so evaluation
    does it per model (``PhotoCrops``)."""
    from siamface.edge_runtime.detector import DEFAULT_DETECTOR, make_detector

    find = make_detector(detector or DEFAULT_DETECTOR) if box is None else None

    def crop(image: np.ndarray) -> CropTransform | None:
        boxes = [box] if find is None else [d.box for d in find.detect(image)]  # largest first
        return crop_from_box(boxes[0], size) if boxes else None

    return crop


def photo_crops(paths: Iterable[Path], size: int, box: Sequence[float] | None = None, limit: int | None = None,
                detector: str | None = None) -> tuple[PhotoCrops, list[np.ndarray], list[tuple[Path, str]]]:
    """(used photos and their first crops, the crops' pixels, skipped (path, reason)): unreadable
    photos and photos without a detected face are recorded and left out, so one bad file never
    stops an evaluation."""
    from siamface.training.data.real_formats import SampleError, read_image

    find = face_cropper(size, box, detector)
    used, pixels, skipped = PhotoCrops([], []), [], []
    for path in paths:
        try:
            image = read_image(path)
        except SampleError as exc:
            skipped.append((exc.path, exc.reason))
            continue
        crop = find(image)
        if crop is None:
            skipped.append((path, NO_FACE))
            continue
        used.paths.append(path)
        used.crops.append(crop)
        pixels.append(crop_image(image, crop))
        if limit and len(pixels) >= limit:
            break
    return used, pixels, skipped


def _unusable(path: Path, problem: str, skipped: list[tuple[Path, str]]) -> SiamfaceError:
    detail = f"; {len(skipped)} images skipped ({', '.join(sorted({r for _, r in skipped}))})" if skipped else ""
    return SiamfaceError(f"{path}: {problem}{detail}: use photos with a visible face, "
                         f"or --box x0,y0,x1,y1 when they are already aligned face crops")


def identity_folder(root: str | Path, size: int, box: Sequence[float] | None = None,
                    limit: int | None = None, detector: str | None = None) -> EvalSet:
    """A folder per person (LFW layout): identities are the only ground truth, so only identity
    metrics are scored (on ``GroundTruth.verification_pairs`` of the usable photos). Detected
    faces are refined per model as on the device; a fixed ``box`` is used as it is."""
    from siamface.training.data.real_formats import IdentityFolderLoader

    root = Path(root)
    person = {entry.image_path: entry.identity for entry in IdentityFolderLoader(root).entries}
    used, crops, skipped = photo_crops(person, size, box, limit, detector)
    names = np.asarray([person[p] for p in used.paths])
    if len(set(names)) < 2:
        raise _unusable(root, f"usable faces of {len(set(names))} identities, identity metrics need two", skipped)
    return EvalSet(f"people ({root.name})", np.stack(crops), GroundTruth(None, None, names), skipped,
                   used if box is None else None, real=True)


def pairs_file(path: str | Path, size: int, images: str | Path | None = None,
               box: Sequence[float] | None = None, detector: str | None = None) -> EvalSet:
    """LFW ``pairs.txt`` (images under ``images``, default its folder) or a CSV ``file_a,file_b,same``:
    exactly the listed pairs, in file order so the 10-fold accuracy follows LFW's folds; a pair
    with an unusable photo is dropped (the name says how many were kept)."""
    from siamface.evaluation.pair_files import photo_units, read_lfw_pairs, read_pairs_csv

    path = Path(path)
    pairs = read_pairs_csv(path) if path.suffix.lower() == ".csv" else read_lfw_pairs(path, images)
    used, crops, skipped = photo_crops(dict.fromkeys(p for pair in pairs for p in pair[:2]), size, box,
                                       detector=detector)
    index = {p: k for k, p in enumerate(used.paths)}
    kept = [pair for pair in pairs if pair.path_a in index and pair.path_b in index]
    if not kept:
        raise _unusable(path, "no listed pair has two usable faces", skipped)
    listed = (np.array([index[p.path_a] for p in kept]), np.array([index[p.path_b] for p in kept]),
              np.array([p.same for p in kept]))
    return EvalSet(f"pairs {path.name} ({len(kept)} of {len(pairs)} pairs)", np.stack(crops),
                   GroundTruth(None, None, pairs=listed), skipped, used if box is None else None, real=True,
                   units=photo_units(used.paths, kept))


def _has_pts(path: Path) -> bool:
    return path.is_dir() and next(path.rglob("*.pts"), None) is not None


def open_eval_set(path: str | Path, size: int, split: str = "test", limit: int | None = None,
                  box: Sequence[float] | None = None, images: str | Path | None = None,
                  detector: str | None = None) -> EvalSet:
    """The evaluation set at ``path``; ``box`` (a fixed face box) and ``images`` (pairs.txt's image
    root) apply to photos only: folders of people and pairs files. ``detector`` names the face
    detector: annotated photos (AFLW2000-3D, .pts folders) are then cropped from detections instead
    of their landmark box; photos of people use it instead of the default. ``limit`` caps images,
    never pairs."""
    path = Path(path)
    if path.is_file():
        return pairs_file(path, size, images, box, detector)
    if (path / "manifest.json").is_file():
        return synthetic_split(path, split, limit)
    if any(path.glob("image*.mat")):
        return aflw2000(path, size, limit, detector)
    if _has_pts(path):
        return pts_folder(path, size, limit, detector)
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return identity_folder(path, size, box, limit, detector)
    raise SiamfaceError(f"{path} is not a siamface dataset (manifest.json), an AFLW2000-3D folder (imageNNNNN.jpg "
                        f"+ .mat), a folder of images with iBUG .pts files, a folder of people (person/*.jpg) or a "
                        f"pairs file (pairs.txt, .csv): pass one of those")
