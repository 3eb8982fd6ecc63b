"""`siamface evaluate` and `siamface compare`: every model on the same crops, one report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from siamface.edge_runtime import metrics
from siamface.edge_runtime.atomic import atomic_write_json
from siamface.edge_runtime.crop import CropTransform, crop_image
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.image_io import read_image
from siamface.edge_runtime.params import ParamLayout
from siamface.edge_runtime.reconstructor import refined_crop
from siamface.edge_runtime.scoring import score
from siamface.evaluation import report
from siamface.evaluation.differences import difference_table, differences, interval_table, intervals
from siamface.evaluation.eval_data import EvalSet, PhotoCrops
from siamface.evaluation.predictors import Predictor
from siamface.training.face_model import recorded_definition


def reframe(params: np.ndarray, layout: ParamLayout, src: CropTransform, dst: CropTransform) -> np.ndarray:
    """Parameters predicted in crop ``src`` re-expressed in crop ``dst`` of the same image: the
    camera gains the crops' relative scale and offset (landmarks land where ``dst.to_crop`` of
    ``src.to_image`` puts them; pose, identity and expression are unchanged)."""
    camera, id_coeffs, exp_coeffs = layout.split(np.asarray(params, np.float64))
    camera = camera * (dst.scale / src.scale)
    camera[0, 3] += (src.x0 - dst.x0) * dst.scale
    camera[1, 3] += (src.y0 - dst.y0) * dst.scale
    return layout.join(camera, id_coeffs, exp_coeffs)


def refine_pass(predictor: Predictor, photos: PhotoCrops, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The device's second pass on a batch of photos: crop each again from the box of the landmarks
    the model predicted in its first crop (``refined_crop``, the edge runtime's own function),
    predict there, and return parameters in the first crop's coordinates (where the truth is)."""
    second = [refined_crop(crop, p, predictor.decoder, predictor.layout) for crop, p in zip(photos.crops, first)]
    pixels = np.stack([crop_image(read_image(path), crop) for path, crop in zip(photos.paths, second)])
    params, embs = predictor.predict(pixels)
    return np.stack([reframe(p, predictor.layout, s, f) for p, s, f in zip(params, second, photos.crops)]), embs


def predict(predictor: Predictor, data: EvalSet, batch: int = 64, progress: bool = True
            ) -> tuple[np.ndarray, np.ndarray]:
    """(params in the crops' coordinates, unit embeddings) of every image: for photos, the
    device's refine pass included, so a bundle gives what the edge runtime gives on that photo."""
    params, embs = [], []
    for i in tqdm(range(0, len(data.crops), batch), desc=predictor.kind, disable=not progress, leave=False):
        p, e = predictor.predict(data.crops[i:i + batch], mirrored=data.refine is None)
        if data.refine is not None:
            p, e = refine_pass(predictor, PhotoCrops(data.refine.paths[i:i + batch], data.refine.crops[i:i + batch]), p)
        params.append(p)
        embs.append(e)
    return np.concatenate(params), np.concatenate(embs)


def evaluate(predictor: Predictor, data: EvalSet, batch: int = 64, progress: bool = True) -> tuple[dict, dict]:
    """(result, curves): the scored metrics, and per-image arrays for plots."""
    trained_on = recorded_definition(predictor.meta.get("face_model", {}))
    if data.landmarks is not None and data.landmarks != trained_on:
        raise SiamfaceError(f"{data.name} labels landmark definition {data.landmarks!r}, {predictor.name} was trained "
                            f"on {trained_on!r} (docs/landmarks.md): evaluate it on data made by the same code")
    params, embs = predict(predictor, data, batch, progress)
    result = score(params, embs, data.truth, predictor.decoder, predictor.layout)
    result.update(model=predictor.name, kind=predictor.kind, data=data.name, real_photos=data.real,
                  refined=data.refine is not None, skipped=len(data.skipped),
                  skipped_images=[{"path": str(path), "reason": reason} for path, reason in data.skipped],
                  invoke_ms=float(np.median(predictor.invoke_ms)) if predictor.invoke_ms else None,
                  size_bytes=predictor.meta.get("size_bytes"))
    curves = {}
    if data.truth.landmarks2d is not None:
        lm = predictor.decoder.image_landmarks(params, predictor.layout, data.truth.convention)[..., :2]
        curves["nme"] = metrics.nme(lm, data.truth.landmarks2d)
        if data.truth.pose_deg is not None:  # the headline NME is pose-balanced: intervals need each face's yaw
            curves["yaw"] = data.truth.pose_deg[:, 0]
    pairs = data.truth.verification_pairs()
    if pairs is not None:
        i, j, same = pairs
        curves.update(scores=metrics.cosine_scores(embs[i], embs[j]), same=same, units=pair_units(data, i, j))
    return result, curves


def pair_units(data: EvalSet, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The independent units behind each pair, for the intervals of evaluation.differences: the
    people of its two photos, or a pairs file's units (its folders where they are people, else the photos)."""
    if data.units is not None:
        return data.units[i], data.units[j]
    if data.truth.identity is None:
        return i, j
    people = np.unique(data.truth.identity, return_inverse=True)[1]
    return people[i], people[j]


def unique_names(predictors: list[Predictor]) -> list[str]:
    """Report labels: the variant (or checkpoint kind), or the run folder where kinds repeat."""
    kinds = [p.kind for p in predictors]

    def folder(p: Predictor) -> str:
        path = Path(p.name)
        return path.parent.name if path.name == "best" else path.name

    names = [k if kinds.count(k) == 1 else folder(p) for k, p in zip(kinds, predictors)]
    return names if len(set(names)) == len(names) else [p.name for p in predictors]


MEASURE_ONLY = ("real photos for measuring only: never train or tune on them (a figure tuned on a "
                "small evaluation set means nothing)")


def describe_data(result: dict) -> str:
    """One line on what was scored: the set, its image count, how photos were cropped, and for real
    photos the measure-only note, so every real-photo figure travels with its count."""
    n, kind = result["n_images"], "face" if "nme" in result else "photo"
    line = f"{result['data']}: {n} {kind}{'' if n == 1 else 's'}"
    if result.get("skipped"):
        line += f" ({result['skipped']} skipped, listed in report.json)"
    if result.get("real_photos"):
        crop = ("cropped as the device crops them (detected face, then each model's refine pass)"
                if result.get("refined") else "cropped from the ground-truth landmark box" if "nme" in result
                else "cropped from the given box")
        line += f", {crop}; {MEASURE_ONLY}"
    if result.get("landmark_convention") == "2d":
        line += "; landmarks in the annotations' 2D convention (jaw on the visible contour, docs/landmarks.md)"
    return line + "."


def write_reports(results: dict[str, dict], curves: dict[str, dict], out: Path, reference: str | None) -> str:
    """JSON, Markdown tables and PNG plots into ``out``; returns the summary: what was scored, the
    main table and, with landmark truth, NME and signed offset per landmark group."""
    out.mkdir(parents=True, exist_ok=True)
    data = describe_data(next(iter(results.values())))
    table = report.markdown_table(results, reference)
    groups = report.group_table(results)
    if groups:
        table += ("\nPer landmark group (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67): NME and the "
                  "mean signed offset dx, dy (prediction minus truth, +y down), % of the ground-truth box size "
                  "sqrt(w*h).\n\n" + groups)
    own = {name: intervals(c) for name, c in curves.items()}
    for name, d in own.items():
        results[name]["intervals"] = d
    if any(own.values()):
        table += ("\nThe same figures with 95 % intervals from random halves of the faces, people or photos (how far "
                  "another draw of as many could move them; clipped to 0-100):\n\n" + interval_table(own))
    found = differences(curves, reference) if reference else {}
    for name, d in found.items():
        results[name]["versus_reference"] = d
    if found:
        table += (f"\nChanges against {reference} on the same faces and pairs (model minus {reference}, percent "
                  f"points), each with a 95 % interval from random halves of the faces, people or photos: an interval "
                  f"that spans 0 is within the noise of this set.\n\n" + difference_table(found))
    atomic_write_json(out / "report.json", json.loads(json.dumps(results, default=float)))
    text = (f"# siamface comparison\n\nData: {data} Reference for deltas: {reference}. NME, EER and TAR in "
            f"percent.\n\n{table}")
    if any("verification_shape" in r for r in results.values()):
        text += ("\n## Identity and pose invariance\n\nEER and TAR@FAR=1e-3 (%) of the identity shape code and of "
                 "the embedding; spread: the shape code's intra-identity RMS spread divided by the inter-identity "
                 "spread (lower is more pose-invariant), then the intra spread per |yaw| bin; FAR near / far "
                 "shapes: at the threshold that accepts 10 % of different-person pairs, the % accepted among the "
                 "quarter with the most alike and the quarter with the least alike true face shapes (mm after "
                 "similarity alignment): equal when a code ignores face shape.\n\n"
                 + report.identity_table(results))
    report.write_text(out / "report.md", text)
    report.plot_all(curves, results, out)
    return f"Data: {data}\n\n{table}"
