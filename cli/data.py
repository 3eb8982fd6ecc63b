"""`siamface data ...`: synthesize, preview and benchmark datasets."""
from __future__ import annotations

import click

from cli.options import config_option, face_model_option


@click.group()
def data() -> None:
    """Synthetic datasets from the face model."""


@data.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Dataset folder to create or resume.")
@config_option
@face_model_option
@click.option("--workers", default=0, show_default=True, help="Worker processes (0 = all cores).")
@click.option("--overwrite", is_flag=True, help="Delete an existing dataset at --out first.")
@click.argument("overrides", nargs=-1)
def synth(out, config_path, face_model, workers, overwrite, overrides) -> None:
    """Render a labelled synthetic dataset (resumes an interrupted run).

    OVERRIDES are KEY=VALUE settings of SynthConfig, e.g. train_identities=500 pose.yaw_max_deg=60.
    """
    from training.config_io import load_config
    from training.data.synth import SynthConfig, synthesize

    cfg = load_config(SynthConfig, config_path, overrides)
    ds = synthesize(out, cfg, face_model=face_model, workers=workers, overwrite=overwrite)
    m = ds.manifest
    counts = ", ".join(f"{s} {v['images']} images / {v['identities']} ids" for s, v in m["splits"].items())
    click.echo(f"dataset {out}: {counts}; layout {m['param_layout']}; {m['synthesis_seconds']} s")


@data.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="PNG path (default DATASET/preview.png).")
@click.option("--split", default="train", show_default=True)
@click.option("-n", "count", default=24, show_default=True, help="Number of samples.")
def preview(dataset, out, split, count) -> None:
    """Write a PNG grid of samples with landmarks drawn."""
    from pathlib import Path

    from training.data.dataset import Dataset
    from training.data.preview import write_preview

    out = out or str(Path(dataset) / "preview.png")
    n = write_preview(Dataset.open(dataset), out, split=split, n=count)
    click.echo(f"wrote {out} ({n} samples of {split})")


@data.command()
@click.option("--images", default=2000, show_default=True, help="Images to render.")
@click.option("--workers", default=0, show_default=True, help="Worker processes (0 = all cores).")
@face_model_option
def bench(images, workers, face_model) -> None:
    """Print synthesis throughput (images/s), end to end including shard writes."""
    from training.data.bench import benchmark

    for line in benchmark(images, workers, face_model):
        click.echo(line)
