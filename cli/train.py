"""`siamface train`: Siamese training from a config file plus KEY=VALUE overrides."""
from __future__ import annotations

import json

import click

from siamface.cli.options import config_option


@click.command()
@config_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumed if it exists).")
@click.argument("overrides", nargs=-1)
def train(config_path, out, overrides) -> None:
    """Train the Siamese encoder; the best checkpoint lands in OUT/best.

    OVERRIDES are KEY=VALUE settings of TrainConfig, e.g. steps=2000 loss.identity=arcface
    data=[runs/data,runs/fitted].
    """
    from siamface.training.config_io import load_config
    from siamface.training.train import TrainConfig
    from siamface.training.train import train as run_training

    cfg = load_config(TrainConfig, config_path, overrides)
    report = run_training(cfg, out)
    click.echo(f"best checkpoint: {out}/best")
    click.echo(json.dumps({"nme": report.get("nme"), "shape_error_mm": report.get("shape_error_mm")}, indent=1))


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="QAT run folder (resumed if it exists).")
@config_option
@click.argument("overrides", nargs=-1)
def qat(checkpoint, out, config_path, overrides) -> None:
    """Quantization-aware fine-tuning of a float CHECKPOINT (the best/ folder of `siamface train`).

    OVERRIDES are KEY=VALUE settings of QATConfig: steps, learning_rate, warmup_steps, eval_every, batch_size.
    """
    from siamface.training.config_io import load_config
    from siamface.training.qat import QATConfig, run_qat

    report = run_qat(checkpoint, out, load_config(QATConfig, config_path, overrides))
    click.echo(f"best QAT checkpoint: {out}/best")
    click.echo(json.dumps({"nme": report.get("nme"), "shape_error_mm": report.get("shape_error_mm")}, indent=1))
