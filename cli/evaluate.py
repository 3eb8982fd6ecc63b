"""`siamface evaluate` and `siamface compare`."""
from __future__ import annotations

from pathlib import Path

import click


def _default_data(predictor) -> str:
    data = predictor.meta.get("training", {}).get("config", predictor.meta.get("config", {})).get("data")
    if not data:
        raise click.UsageError("pass --data (a dataset folder or an AFLW2000-3D folder)")
    return data[0]


@click.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True), help="Checkpoint or bundle folder.")
@click.option("--data", default=None, type=click.Path(exists=True), help="Dataset folder (test split) or AFLW2000-3D folder.")
@click.option("--split", default="test", show_default=True)
@click.option("--limit", default=0, help="Evaluate at most this many images (0 = all).")
@click.option("--out", default="runs/evaluate", show_default=True, type=click.Path(file_okay=False))
def evaluate(model_path, data, split, limit, out) -> None:
    """Landmark NME per yaw bin, pose, 3D shape and identity metrics of one model; JSON + Markdown."""
    from evaluation.eval_data import open_eval_set
    from evaluation.evaluate import evaluate as run, write_reports
    from evaluation.predictors import open_predictor

    predictor = open_predictor(model_path)
    eval_set = open_eval_set(data or _default_data(predictor), predictor.size, split, limit or None)
    result, curves = run(predictor, eval_set)
    click.echo(write_reports({predictor.kind: result}, {predictor.kind: curves}, Path(out), None))
    click.echo(f"reports in {out}/report.md, report.json, roc.png, nme_yaw.png, ced.png")


@click.command()
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", default=None, type=click.Path(exists=True), help="Default: the first bundle's training dataset.")
@click.option("--split", default="test", show_default=True)
@click.option("--limit", default=0, help="At most this many images (0 = all).")
@click.option("--out", default="runs/compare", show_default=True, type=click.Path(file_okay=False))
def compare(bundles, data, split, limit, out) -> None:
    """Every bundle (variant) on the same data: one table with deltas from float, plots."""
    from evaluation.eval_data import open_eval_set
    from evaluation.evaluate import evaluate as run, write_reports
    from evaluation.predictors import open_predictor

    predictors = [open_predictor(b) for b in bundles]
    eval_set = open_eval_set(data or _default_data(predictors[0]), predictors[0].size, split, limit or None)
    results, curves = {}, {}
    for p in predictors:
        results[p.kind], curves[p.kind] = run(p, eval_set)
    reference = "fp32" if "fp32" in results else next(iter(results))
    click.echo(write_reports(results, curves, Path(out), reference))
    click.echo(f"reports in {out}/report.md, report.json, roc.png, nme_yaw.png, ced.png")
