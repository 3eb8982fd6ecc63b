"""`siamface texture-id`: identity from the unwrapped face texture (train the network, add it to a bundle)."""
from __future__ import annotations

import click

from siamface.cli.options import config_option


@click.group("texture-id")
def texture_id() -> None:
    """Identity from the face's unwrapped texture: train it, then add it to a bundle."""


@texture_id.command("train")
@config_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumed if it exists).")
@click.argument("overrides", nargs=-1)
def train_cmd(config_path, out, overrides) -> None:
    """Train the texture identity network; the best checkpoint lands in OUT/best.

    OVERRIDES are KEY=VALUE settings of TextureIdConfig, e.g. bundle=runs/demo/bundles/int8-qat
    data=[runs/demo/data] steps=3000.
    """
    from siamface.training.config_io import load_config
    from siamface.training.texture_id.train import TextureIdConfig, train_texture_id

    best = train_texture_id(load_config(TextureIdConfig, config_path, overrides), out)
    click.echo(f"best checkpoint: {out}/best (step {best['step']}, validation EER {best['validation']['eer']:.1f} % "
               f"on {best['validation']['people']} people)")


@texture_id.command("attach")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New bundle folder (must not exist).")
@click.option("--bundle", "bundle_path", type=click.Path(exists=True), default=None,
              help="The bundle to extend (default: the one the run trained against; it must be the same model).")
@click.option("--weight", type=click.FloatRange(0.0, 1.0), default=None,
              help="The texture embedding's share of the identity vector (default: chosen on validation people).")
@click.option("--far", "far_target", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=1e-2,
              show_default=True, help="The false-accept rate the new synthetic threshold is set at.")
def attach_cmd(run, out, bundle_path, weight, far_target) -> None:
    """Write OUT: a copy of the bundle with RUN's texture identity model, its share and a new threshold."""
    from siamface.edge_runtime.bundle import load_bundle
    from siamface.export.texture_id import attach_texture_identity

    b = load_bundle(attach_texture_identity(run, out, bundle_path, weight, far_target))
    t = b.texture
    click.echo(f"{out}: texture model {t['model']['size_bytes'] / 1e6:.2f} MB ({t['model']['dtype']}), share "
               f"{t['weight']:g}, parity cosine {t['parity']['embedding_cosine_mean']:.4f}; threshold {b.threshold:.3f} "
               f"(FAR {b.meta['verification']['far']:.4f}, TAR {b.meta['verification']['tar']:.3f} on "
               f"{b.meta['verification']['data']})")
