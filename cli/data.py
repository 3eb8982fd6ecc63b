"""`siamface data ...`: synthesize, import, preview and benchmark datasets; build the face-model asset."""
from __future__ import annotations

import click

from siamface.cli.options import config_option, face_model_option


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
    from siamface.training.config_io import load_config
    from siamface.training.data.synth import SynthConfig, synthesize

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

    from siamface.training.data.dataset import Dataset
    from siamface.training.data.preview import write_preview

    out = out or str(Path(dataset) / "preview.png")
    n = write_preview(Dataset.open(dataset), out, split=split, n=count)
    click.echo(f"wrote {out} ({n} samples of {split})")


@data.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["300w-lp", "aflw2000"]),
              help="Layout of ROOT (REFERENCE.md section 2).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Dataset folder to write.")
@click.option("--val-fraction", default=0.05, show_default=True,
              help="300W-LP: identities held out for validation (AFLW2000-3D becomes a test split).")
@face_model_option
@click.argument("overrides", nargs=-1)
def fit(root, fmt, out, val_fraction, face_model, overrides) -> None:
    """Fit the face model to a real dataset's landmarks and write training labels.

    OVERRIDES are KEY=VALUE settings of RealDatasetConfig, e.g. fit.n_id=100 share_identity=false.
    """
    from siamface.training.face_model import load_training_face_model
    from siamface.training.config_io import load_config
    from siamface.training.data.fit_dataset import RealDatasetConfig, fit_to_dataset
    from siamface.training.data.real_formats import LOADERS, split_by_identity

    cfg = load_config(RealDatasetConfig, None, overrides)
    loader = LOADERS[fmt](root)
    splits = split_by_identity(loader, val_fraction) if fmt == "300w-lp" else {"test": loader}
    manifest = fit_to_dataset(splits, load_training_face_model(face_model), out, cfg,
                              source={"kind": fmt, "root": str(root)})
    for name, info in manifest["splits"].items():
        click.echo(f"{name}: {info} ; fitting residual {manifest['fitting'][name]}")
    click.echo(f"skipped {len(manifest['skipped'])} sample(s); dataset written to {out}")


@data.command("import")
@click.argument("people_dir", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Dataset folder to create, resume or extend.")
@click.option("--model", "bundle", default=None, type=click.Path(file_okay=False),
              help="Model bundle: refine each detector crop as the device does (default: detector crop only).")
@face_model_option
@click.option("--workers", default=0, show_default=True, help="Worker processes (0 = all cores).")
@click.argument("overrides", nargs=-1)
def import_cmd(people_dir, out, bundle, face_model, workers, overrides) -> None:
    """Crop folders of people (PEOPLE_DIR/<person>/*.jpg) into an identity-only dataset.

    Resumes an interrupted run; rerun on a grown folder to add its new photos. OVERRIDES are
    KEY=VALUE settings of ImportConfig, e.g. n_id=100 val_fraction=0.02 shard_size=1000.
    """
    from siamface.training.config_io import load_config
    from siamface.training.data.import_people import FAILURES_FILE, ImportConfig, import_people

    cfg = load_config(ImportConfig, None, overrides)
    m = import_people(people_dir, out, cfg, bundle=bundle, face_model=face_model, workers=workers).manifest
    for name, info in m["splits"].items():
        click.echo(f"{name}: {info['images']} images / {info['identities']} ids ({info['failures']} failed)")
    click.echo(f"crop: {m['crop']['method']}; {m['failures']['count']} failure(s) listed in {out}/{FAILURES_FILE}; "
               f"dataset written to {out}")


@data.command()
@click.option("--images", default=2000, show_default=True, help="Images to render.")
@click.option("--workers", default=0, show_default=True, help="Worker processes (0 = all cores).")
@face_model_option
def bench(images, workers, face_model) -> None:
    """Print synthesis throughput (images/s), end to end including shard writes."""
    from siamface.training.data.bench import benchmark

    for line in benchmark(images, workers, face_model):
        click.echo(line)


@data.command("fit-check")
@face_model_option
@click.argument("overrides", nargs=-1)
def fit_check(face_model, overrides) -> None:
    """Fit synthetic faces whose truth is known; print landmark (px) and shape (mm) errors.

    OVERRIDES are KEY=VALUE settings of FitCheckConfig, e.g. identities=50 noise_px=1 fit.n_id=100.
    """
    import numpy as np

    from siamface.training.face_model import load_training_face_model
    from siamface.evaluation.fit_check import FitCheckConfig, fit_check as run
    from siamface.training.config_io import load_config

    cfg = load_config(FitCheckConfig, None, overrides)
    errors = run(load_training_face_model(face_model), cfg)
    click.echo(f"{cfg.identities} identities x {cfg.images_per_identity} images, {cfg.fit.n_id} identity modes, "
               f"landmark noise {cfg.noise_px} px; mean (p90)")
    for key, values in errors.items():
        click.echo(f"{key:20s} {values.mean():7.3f} ({np.percentile(values, 90):.3f})")


@data.command("face-model")
@click.argument("facekit_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Asset file to write (.npz).")
def face_model_cmd(facekit_dir, out) -> None:
    """Convert an ICT-FaceKit checkout (FaceXModel/*.obj, vertex_indices.json) into the face-model asset.

    Use the result with --face-model FILE or SIAMFACE_FACE_MODEL=FILE (docs/face-model.md).
    """
    from siamface.training.data.face_model_convert import write_face_model

    arrays = write_face_model(facekit_dir, out)
    click.echo(f"wrote {out}: {len(arrays['mean'])} vertices, {len(arrays['id_basis'])} identity modes, "
               f"{len(arrays['exp_names'])} expressions, {len(arrays['triangles'])} triangles")
