"""`siamface evaluate` and `siamface compare`."""
from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.cli import BOX_HELP, parse_box


BASELINE = click.option("--baseline", is_flag=True,
                        help="Also score the mean-face baseline (training-set mean parameters for every image).")
BOX = click.option("--box", default=None, help=f"Photos only: {BOX_HELP} (photos that are already face crops).")
IMAGES = click.option("--images", default=None, type=click.Path(exists=True, file_okay=False),
                      help="LFW pairs.txt only: the folder holding name/name_NNNN.jpg (default: the file's folder).")
DATA_HELP = ("Dataset folder (test split), AFLW2000-3D folder, folder of people (person/*.jpg) or pairs file "
             "(LFW pairs.txt, CSV file_a,file_b,same).")


def _default_data(predictor) -> str:
    data = predictor.meta.get("training", {}).get("config", predictor.meta.get("config", {})).get("data")
    if not data:
        raise click.UsageError("pass --data (a dataset, AFLW2000-3D or people folder, or a pairs file)")
    return data[0]


def _report(models: list[str], data: str | None, split: str, limit: int, out: str, baseline: bool,
            box: str | None, images: str | None) -> None:
    """Every model (and the optional baseline) on the same crops: tables, JSON and plots."""
    from evaluation.eval_data import open_eval_set
    from evaluation.evaluate import evaluate as run, unique_names, write_reports
    from evaluation.predictors import mean_face_predictor, open_predictor

    predictors = [open_predictor(m) for m in models]
    predictors += [mean_face_predictor(predictors[0])] if baseline else []
    eval_set = open_eval_set(data or _default_data(predictors[0]), predictors[0].size, split, limit or None,
                             parse_box(box), images)
    results, curves = {}, {}
    for name, p in zip(unique_names(predictors), predictors):
        results[name], curves[name] = run(p, eval_set)
    reference = "fp32" if "fp32" in results else next(iter(results))
    click.echo(write_reports(results, curves, Path(out), reference if len(results) > 1 else None))
    skipped = f"; {len(eval_set.skipped)} images skipped (listed in report.json)" if eval_set.skipped else ""
    click.echo(f"reports in {out}: report.md, report.json and PNG plots{skipped}")


@click.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True), help="Checkpoint or bundle folder.")
@click.option("--data", default=None, type=click.Path(exists=True), help=DATA_HELP)
@click.option("--split", default="test", show_default=True)
@click.option("--limit", default=0, help="Evaluate at most this many images (0 = all; a pairs file is used whole).")
@click.option("--out", default="runs/evaluate", show_default=True, type=click.Path(file_okay=False))
@BASELINE
@BOX
@IMAGES
def evaluate(model_path, data, split, limit, out, baseline, box, images) -> None:
    """Landmark NME per yaw bin, pose, 3D shape and identity metrics of one model (identity metrics
    only on photos: a folder of people or a pairs file); JSON + Markdown."""
    _report([model_path], data, split, limit, out, baseline, box, images)


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", default=None, type=click.Path(exists=True),
              help=DATA_HELP + " Default: the first model's training dataset.")
@click.option("--split", default="test", show_default=True)
@click.option("--limit", default=0, help="At most this many images (0 = all; a pairs file is used whole).")
@click.option("--out", default="runs/compare", show_default=True, type=click.Path(file_okay=False))
@BASELINE
@BOX
@IMAGES
def compare(models, data, split, limit, out, baseline, box, images) -> None:
    """Every bundle (variant) or checkpoint on the same data: one table with deltas from float,
    an identity/pose-invariance table (ablations: pass several checkpoints), plots."""
    _report(list(models), data, split, limit, out, baseline, box, images)
