"""`siamface evaluate` and `siamface compare`: every model on the same crops, one report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_runtime.atomic import atomic_write_json
from evaluation import metrics, report
from evaluation.eval_data import EvalSet
from evaluation.predictors import Predictor
from evaluation.scoring import score


def evaluate(predictor: Predictor, data: EvalSet, batch: int = 64, progress: bool = True) -> tuple[dict, dict]:
    """(result, curves): the scored metrics, and per-image arrays for plots."""
    params, embs = [], []
    for i in tqdm(range(0, len(data.crops), batch), desc=predictor.kind, disable=not progress, leave=False):
        p, e = predictor.predict(data.crops[i:i + batch])
        params.append(p)
        embs.append(e)
    params, embs = np.concatenate(params), np.concatenate(embs)
    result = score(params, embs, data.truth, predictor.decoder, predictor.layout)
    result.update(model=predictor.name, kind=predictor.kind, data=data.name, skipped=len(data.skipped),
                  skipped_images=[{"path": str(path), "reason": reason} for path, reason in data.skipped],
                  invoke_ms=float(np.median(predictor.invoke_ms)) if predictor.invoke_ms else None,
                  size_bytes=predictor.meta.get("size_bytes"))
    curves = {}
    if data.truth.landmarks2d is not None:
        lm = predictor.decoder.image_landmarks(params, predictor.layout)[..., :2]
        curves["nme"] = metrics.nme(lm, data.truth.landmarks2d)
    pairs = data.truth.verification_pairs()
    if pairs is not None:
        i, j, same = pairs
        curves.update(scores=metrics.cosine_scores(embs[i], embs[j]), same=same)
    return result, curves


def unique_names(predictors: list[Predictor]) -> list[str]:
    """Report labels: the variant (or checkpoint kind), or the run folder where kinds repeat."""
    kinds = [p.kind for p in predictors]

    def folder(p: Predictor) -> str:
        path = Path(p.name)
        return path.parent.name if path.name == "best" else path.name

    names = [k if kinds.count(k) == 1 else folder(p) for k, p in zip(kinds, predictors)]
    return names if len(set(names)) == len(names) else [p.name for p in predictors]


def write_reports(results: dict[str, dict], curves: dict[str, dict], out: Path, reference: str | None) -> str:
    """JSON, Markdown tables and PNG plots into ``out``; returns the main table."""
    out.mkdir(parents=True, exist_ok=True)
    table = report.markdown_table(results, reference)
    atomic_write_json(out / "report.json", json.loads(json.dumps(results, default=float)))
    text = (f"# siamface comparison\n\nData: {next(iter(results.values()))['data']}; reference for deltas: "
            f"{reference}. NME, EER and TAR in percent.\n\n{table}")
    if any("verification_shape" in r for r in results.values()):
        text += ("\n## Identity and pose invariance\n\nEER and TAR@FAR=1e-3 (%) of the identity shape code and of "
                 "the embedding; spread: the shape code's intra-identity RMS spread divided by the inter-identity "
                 "spread (lower is more pose-invariant), then the intra spread per |yaw| bin.\n\n"
                 + report.identity_table(results))
    report.write_text(out / "report.md", text)
    report.plot_all(curves, results, out)
    return table
