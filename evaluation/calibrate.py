"""`siamface calibrate`: a bundle's verification threshold measured on the user's own photos, whose
embeddings come from the device path (detector, crop, refine pass, largest face), so the threshold
fits the scores `siamface verify` will compute. The threshold rule itself is ``export.calibration``'s,
shared with export.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from siamface.edge_runtime.atomic import atomic_folder
from siamface.edge_runtime.bundle import DIGEST, META, Bundle, load_bundle, metadata_digest, write_meta
from siamface.edge_runtime.cli import native_stderr_silenced
from siamface.edge_runtime.detector import DEFAULT_DETECTOR
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.provenance import utc_now
from siamface.edge_runtime.reconstructor import Reconstructor, ReconstructorOptions
from siamface.evaluation.eval_data import NO_FACE
from siamface.evaluation.pair_files import photo_units, read_lfw_pairs, read_pairs_csv
from siamface.export.calibration import check_measurable, every_pair, operating_point, pair_scores
from siamface.training.data.real_formats import IdentityFolderLoader, SampleError, read_image

@dataclass
class PairSet:
    """Photos and the pairs over them (indices into ``photos``); ``units``: each photo's independent unit
    for the rates' intervals (its person; in a pairs file its folder where the folders are people, else itself)."""

    photos: list[Path]
    i: np.ndarray
    j: np.ndarray
    same: np.ndarray
    units: np.ndarray


def open_pairs(data: str | os.PathLike, images: str | os.PathLike | None = None) -> PairSet:
    """A folder of people (person/*.jpg: every pair of photos) or a pairs file (LFW pairs.txt with
    images under ``images``, default its folder; or a CSV file_a,file_b,same): the listed pairs."""
    data = Path(data)
    if data.is_file():
        pairs = read_pairs_csv(data) if data.suffix.lower() == ".csv" else read_lfw_pairs(data, images)
        photos = list(dict.fromkeys(p for pair in pairs for p in pair[:2]))
        index = {p: k for k, p in enumerate(photos)}
        return PairSet(photos, np.array([index[p.path_a] for p in pairs]), np.array([index[p.path_b] for p in pairs]),
                       np.array([p.same for p in pairs], bool), photo_units(photos, pairs))
    if data.is_dir():
        entries = IdentityFolderLoader(data).entries
        people = np.array([e.identity for e in entries])
        return PairSet([e.image_path for e in entries], *every_pair(people), np.unique(people, return_inverse=True)[1])
    raise SiamfaceError(f"--data {data} does not exist: pass a folder of people (person/*.jpg) or a pairs file "
                        f"(LFW pairs.txt, CSV file_a,file_b,same)")


def embed_photos(rec: Reconstructor, photos: Sequence[Path], box: Sequence[float] | None = None, progress: bool = True
                 ) -> tuple[np.ndarray, list[tuple[Path, str]]]:
    """Each photo's identity embedding as `siamface verify` computes it (the largest face, or the face
    in ``box``); rows of unusable photos are NaN and listed in skipped as (path, reason)."""
    rows, skipped = [], []
    for path in tqdm(photos, desc="embed", unit="photo", disable=not progress):
        try:
            faces = rec.reconstruct(read_image(path), boxes=None if box is None else [box])
        except SampleError as exc:
            faces, reason = [], exc.reason
        else:
            reason = NO_FACE
        if not faces:
            skipped.append((Path(path), reason))
        rows.append(faces[0].embedding if faces else None)
    dim = next((len(r) for r in rows if r is not None), 1)
    return np.stack([np.full(dim, np.nan) if r is None else r for r in rows]), skipped


@dataclass
class Calibration:
    """What `siamface calibrate` did: the bundle written, the verification block recorded in it,
    the photos left out, and whether the old bundle.json had been edited by hand."""

    bundle: Path
    verification: dict
    skipped: list[tuple[Path, str]]
    was_edited: bool
    shape_weight: float  # the shape code's share of the identity vector the threshold was set on


AUTO = "auto"  # --shape-weight auto: chosen on a dataset's validation people, as export chooses it


def calibrate_bundle(bundle_path: str | os.PathLike, data: str | os.PathLike, far_target: float,
                     out: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
                     box: Sequence[float] | None = None, detector: str = DEFAULT_DETECTOR,
                     progress: bool = True, shape_weight: float | str | None = None) -> Calibration:
    """Set the bundle's threshold at ``far_target`` on the pairs in ``data`` and record where it came
    from; bundle.json is rewritten atomically (or the bundle copied to ``out``) with a new digest.
    ``shape_weight`` (a number, or ``AUTO`` on a siamface dataset) first sets the shape code's share
    of the identity vector (normalise.identity_vector); None keeps the bundle's."""
    bundle = load_bundle(bundle_path, check_metadata=False)  # file hashes checked; a hand edit is replaced below
    target = _target(bundle, out)
    was_edited = bundle.meta.get(DIGEST) != metadata_digest(bundle.meta)
    if shape_weight is not None and bundle.texture:
        raise SiamfaceError(f"{bundle.root} has a texture identity model, whose share was chosen beside the shape "
                            f"code's: set --shape-weight on the bundle it was attached to, then attach again "
                            f"(`siamface texture-id attach`, docs/texture-identity.md)")
    if (Path(data) / "manifest.json").is_file():
        return _calibrate_on_dataset(bundle, target, Path(data), far_target, shape_weight, was_edited)
    if shape_weight == AUTO:
        raise SiamfaceError(f"--shape-weight auto chooses on a siamface dataset's validation people, and {data} is "
                            f"photos: pass a number (0 keeps the embedding alone) or a dataset")
    if shape_weight is not None:
        bundle = Bundle(bundle.root, {**bundle.meta, "embedding": {
            **bundle.meta.get("embedding", {}), "shape_weight": float(shape_weight),
            "shape_weight_from": {"source": "calibrate", "date": utc_now()}}})
    pairs = open_pairs(data, images)
    check_measurable(far_target, int((~pairs.same).sum()))  # before the photos: skipped ones only lower n
    with native_stderr_silenced():
        rec = Reconstructor(bundle, ReconstructorOptions(detector))
    embeddings, skipped = embed_photos(rec, pairs.photos, box, progress)
    usable = np.isfinite(embeddings).all(axis=1)
    keep = usable[pairs.i] & usable[pairs.j]
    if not keep.any():
        raise SiamfaceError(f"{data}: no pair has two photos with a face ({len(skipped)} of {len(pairs.photos)} photos "
                            f"skipped): use photos with a visible face, or --box for aligned face crops")
    i, j = pairs.i[keep], pairs.j[keep]
    point = operating_point(pair_scores(embeddings, i, j), pairs.same[keep], far_target,
                            units=(pairs.units[i], pairs.units[j]))
    old = bundle.meta.get("verification", {})
    block = {"source": "calibrated", "data": str(Path(data).resolve()), "date": utc_now(), **point,
             "photos": int(usable.sum()), "skipped_photos": len(skipped),
             "faces": f"box {','.join(f'{v:g}' for v in box)}" if box is not None else f"{detector}, refined, largest",
             "previous": {k: old[k] for k in ("source", "data", "threshold", "far_target") if k in old}}
    write_calibrated(bundle, {**bundle.meta, "verification": block}, target)
    return Calibration(target, block, skipped, was_edited, bundle.shape_weight)


def _calibrate_on_dataset(bundle: Bundle, target: Path, data: Path, far_target: float,
                          shape_weight: float | str | None, was_edited: bool) -> Calibration:
    """A siamface dataset's held-out people, their crops through the device's outputs, as `siamface
    export` calibrates (export.exporter.synthetic_identity): for a bundle whose threshold or shape
    weight should be set again without its checkpoint."""
    from dataclasses import replace

    from siamface.evaluation.predictors import bundle_predictor
    from siamface.export.exporter import ExportConfig, synthetic_identity
    from siamface.training.data.dataset import Dataset

    predictor = bundle_predictor(bundle.root)
    weight = {AUTO: None, None: bundle.shape_weight}.get(shape_weight, shape_weight)
    cfg = replace(ExportConfig(), far_target=far_target, shape_weight=None if weight is None else float(weight))
    identity, block = synthetic_identity(cfg, predictor.run, predictor.rules, Dataset.open(data))
    if shape_weight is None:  # the bundle's share stays, with its own record of where it came from
        identity = {"shape_weight": bundle.shape_weight}
    old = bundle.meta.get("verification", {})
    block = {**block, "date": utc_now(),
             "previous": {k: old[k] for k in ("source", "data", "threshold", "far_target") if k in old}}
    meta = {**bundle.meta, "embedding": {**bundle.meta.get("embedding", {}), **identity}, "verification": block}
    write_calibrated(bundle, meta, target)
    return Calibration(target, block, [], was_edited, identity["shape_weight"])


def _target(bundle: Bundle, out: str | os.PathLike | None) -> Path:
    """Where the calibrated bundle goes: the bundle itself, or a new folder (checked before any work)."""
    if out is None or Path(out).resolve() == bundle.root.resolve():
        return bundle.root
    if Path(out).exists():
        raise SiamfaceError(f"--out {out} exists: pass a new folder, or leave out --out to update "
                            f"{bundle.root} in place")
    return Path(out)


def write_calibrated(bundle: Bundle, meta: dict, target: Path) -> None:
    """Rewrite the bundle's bundle.json in place (``target`` is its folder), or copy the bundle to the
    new folder ``target`` with ``meta``; either appears whole or not at all, and is re-read with every check."""
    if target == bundle.root:
        write_meta(bundle.root, meta)
    else:
        with atomic_folder(target) as tmp:
            shutil.copytree(bundle.root, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(META, ".*"))
            write_meta(tmp, meta)
    load_bundle(target)
