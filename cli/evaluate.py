"""`siamface evaluate` and `siamface compare`."""
from __future__ import annotations

from pathlib import Path

import click

from siamface.cli.options import face_model_option
from siamface.edge_runtime.cli import BOX_HELP, parse_box


BASELINE = click.option("--baseline", is_flag=True,
                        help="Also score the mean-face baseline (training-set mean parameters for every image).")
BOX = click.option("--box", default=None, help=f"Photos only: {BOX_HELP} (photos that are already face crops).")
IMAGES = click.option("--images", default=None, type=click.Path(exists=True, file_okay=False),
                      help="LFW pairs.txt only: the folder holding name/name_NNNN.jpg (default: the file's folder).")
DETECTOR = click.option("--detector", default=None, type=click.Choice(["blazeface", "blazeface-full"]),
                        help="Crop as the device does: this face detector, then each model's refine pass. Annotated "
                             "photos (AFLW2000-3D, .pts) are otherwise cropped from their landmark box; photos of "
                             "people always use a detector (default blazeface) unless --box.")


def _shared_options(command):
    """The options `evaluate` and `compare` share, in one place."""
    for option in (DETECTOR, IMAGES, BOX, BASELINE, click.option("--split", default="test", show_default=True)):
        command = option(command)
    return command


DATA_HELP = ("Dataset folder (test split), AFLW2000-3D folder, folder of images with iBUG .pts files (300-W, the real "
             "dev set), folder of people (person/*.jpg) or pairs file (LFW pairs.txt, CSV file_a,file_b,same).")


def _default_data(predictor) -> str:
    data = predictor.meta.get("training", {}).get("config", predictor.meta.get("config", {})).get("data")
    if not data:
        raise click.UsageError("pass --data (a dataset, AFLW2000-3D or people folder, or a pairs file)")
    return data[0]


def _report(models: list[str], data: str | None, split: str, limit: int, out: str, baseline: bool,
            box: str | None, images: str | None, detector: str | None) -> None:
    """Every model (and the optional baseline) on the same crops: tables, JSON and plots."""
    from siamface.evaluation.eval_data import open_eval_set
    from siamface.evaluation.evaluate import evaluate as run, unique_names, write_reports
    from siamface.evaluation.predictors import mean_face_predictor, open_predictor

    predictors = [open_predictor(m) for m in models]
    predictors += [mean_face_predictor(predictors[0])] if baseline else []
    eval_set = open_eval_set(data or _default_data(predictors[0]), predictors[0].size, split, limit or None,
                             parse_box(box), images, detector)
    results, curves = {}, {}
    for name, p in zip(unique_names(predictors), predictors):
        results[name], curves[name] = run(p, eval_set)
    reference = "fp32" if "fp32" in results else next(iter(results))
    click.echo(write_reports(results, curves, Path(out), reference if len(results) > 1 else None))
    click.echo(f"reports in {out}: report.md, report.json and PNG plots")


@click.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True), help="Checkpoint or bundle folder.")
@click.option("--data", default=None, type=click.Path(exists=True), help=DATA_HELP)
@_shared_options
@click.option("--limit", default=0, help="Evaluate at most this many images (0 = all; a pairs file is used whole; "
              "a synthetic split keeps whole people, evenly spread, so identity figures stay possible).")
@click.option("--out", default="runs/evaluate", show_default=True, type=click.Path(file_okay=False))
def evaluate(model_path, data, split, limit, out, baseline, box, images, detector) -> None:
    """Landmark NME per yaw bin and per landmark group (with signed offsets), pose, 3D shape and
    identity metrics of one model (identity metrics only on photos: a folder of people or a pairs
    file); JSON + Markdown."""
    _report([model_path], data, split, limit, out, baseline, box, images, detector)


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", default=None, type=click.Path(exists=True),
              help=DATA_HELP + " Default: the first model's training dataset.")
@_shared_options
@click.option("--limit", default=0, help="At most this many images (0 = all; a pairs file is used whole).")
@click.option("--out", default="runs/compare", show_default=True, type=click.Path(file_okay=False))
def compare(models, data, split, limit, out, baseline, box, images, detector) -> None:
    """Every bundle (variant) or checkpoint on the same data: one table with deltas from float,
    an identity/pose-invariance table (ablations: pass several checkpoints), plots."""
    _report(list(models), data, split, limit, out, baseline, box, images, detector)


@click.command("evaluate-fit")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of images with iBUG .pts files (only the .pts are read).")
@click.option("--out", default="runs/evaluate-fit", show_default=True, type=click.Path(file_okay=False))
@click.option("--search/--no-search", default=True, show_default=True,
              help="Also propose other vertices for the searched groups, scored leave-one-out.")
@face_model_option
@click.argument("overrides", nargs=-1)
def evaluate_fit(data, out, search, face_model, overrides) -> None:
    """Fit the face model to each face's annotated landmarks and report the residual per landmark
    group with its signed offset: which convention the model's 68 vertices follow.

    OVERRIDES are KEY=VALUE settings of LandmarkFitConfig, e.g. fit.n_id=100 search_groups=[jaw,brows].
    """
    from siamface.evaluation.landmark_fit import LandmarkFitConfig, annotated_faces, write_fit_report
    from siamface.training.config_io import load_config
    from siamface.training.face_model import load_training_face_model

    cfg = load_config(LandmarkFitConfig, None, overrides)
    text = write_fit_report(load_training_face_model(face_model), annotated_faces(data), cfg, Path(out), search)
    click.echo(text)
    click.echo(f"report in {out}: landmark_fit.md, landmark_fit.json")
