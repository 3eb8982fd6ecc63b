"""`siamface export`: TFLite bundles from a float or QAT checkpoint."""
from __future__ import annotations

import click

from siamface.cli.options import config_option


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.option("--variant", "variants", multiple=True,
              help="fp32, fp16, dynamic-int8, int8-ptq (float checkpoint) or int8-qat (QAT checkpoint); "
                   "default: all the checkpoint allows.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for OUT/<variant> bundles.")
@click.option("--metadata-only", is_flag=True,
              help="CHECKPOINT is a bundle: embed fresh TFLite metadata in its model and reseal it (no conversion).")
@config_option
@click.argument("overrides", nargs=-1)
def export_cmd(checkpoint, variants, out, metadata_only, config_path, overrides) -> None:
    """Convert CHECKPOINT to TFLite bundles, check parity, calibrate the verification threshold."""
    if metadata_only:
        from siamface.export.tflite_metadata import embed_in_bundle

        click.echo(f"{embed_in_bundle(checkpoint)}: TFLite metadata embedded, bundle.json resealed")
        return
    if not out:
        raise click.UsageError("--out is required (or --metadata-only with a bundle)")
    from siamface.edge_runtime.bundle import load_bundle
    from siamface.export.exporter import FLOAT_VARIANTS, QAT_VARIANTS, ExportConfig, export_checkpoint
    from siamface.training.checkpoint import read_checkpoint_meta
    from siamface.training.config_io import load_config

    cfg = load_config(ExportConfig, config_path, overrides)
    if not variants:
        variants = QAT_VARIANTS if read_checkpoint_meta(checkpoint)["kind"] == "qat" else FLOAT_VARIANTS
    for folder in export_checkpoint(checkpoint, list(variants), out, cfg):
        b = load_bundle(folder)
        p = b.meta["parity"]
        click.echo(f"{folder}: {b.meta['model']['size_bytes'] / 1e6:.2f} MB, threshold {b.threshold:.3f} "
                   f"(FAR {b.meta['verification']['far']:.4f}), parity NME {p['landmark_nme_percent']:.3f}%, "
                   f"embedding cos {p['embedding_cosine_mean']:.4f}")
