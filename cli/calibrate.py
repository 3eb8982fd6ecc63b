"""`siamface calibrate`: set a bundle's verification threshold (and shape-code share) on the user's own photos or a dataset."""
from __future__ import annotations

import click

from siamface.cli.evaluate import BOX, IMAGES
from siamface.edge_runtime.cli import parse_box


class ShapeWeight(click.ParamType):
    """A number in [0, 1) or 'auto'."""

    name = "W|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not 0.0 <= weight < 1.0:
            self.fail(f"{value!r} is not a number from 0 to below 1, nor 'auto'", param, ctx)
        return weight


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Folder of people (person/*.jpg; every pair of photos is used), pairs file "
                   "(LFW pairs.txt, CSV file_a,file_b,same), or a siamface dataset (its held-out people, "
                   "cropped, as `siamface export` calibrates).")
@click.option("--far", default=1e-2, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="False-accept rate the threshold is set for; at least 1 / (different-person pairs).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Write a calibrated copy of BUNDLE here instead of updating BUNDLE in place.")
@click.option("--detector", default=None, help="Face detector (blazeface, blazeface-full); default: the device's.")
@click.option("--shape-weight", default=None, type=ShapeWeight(),
              help="Share of the 3D shape code in the identity vector, 0 to <1 (0: the embedding alone), or "
                   "'auto' with a siamface dataset: the share with the lowest EER on its validation people "
                   "when it beats the embedding alone by more than twice its noise, else 0. "
                   "Default: the bundle's.")
@IMAGES
@BOX
def calibrate(bundle, data, far, out, detector, images, box, shape_weight) -> None:
    """Set BUNDLE's cosine threshold at FAR on photos of people, each embedded as `siamface verify`
    does (largest face, detector + refine), or on a siamface dataset's held-out people as export
    does; optionally first the shape code's share of the identity vector (--shape-weight). Records
    the data, pair counts, FAR and TAR in bundle.json (rewritten atomically, with a new digest)."""
    from siamface.edge_runtime.detector import DEFAULT_DETECTOR
    from siamface.evaluation.calibrate import calibrate_bundle
    from siamface.export.calibration import shortfall

    result = calibrate_bundle(bundle, data, far, out, images, parse_box(box), detector or DEFAULT_DETECTOR,
                              shape_weight=shape_weight)
    v, n = result.verification, result.verification["n_pairs"]
    for path, reason in result.skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    if result.was_edited:
        click.echo(f"note: {bundle}/bundle.json had no valid metadata digest (edited by hand or older); "
                   f"its threshold is replaced by the calibrated one", err=True)
    if shortfall(v):
        click.echo(f"warning: {shortfall(v)}", err=True)
    previous = v["previous"]
    click.echo(f"{result.bundle}: threshold {v['threshold']:.4f} (cosine) at FAR {v['far']:.4g}{_within(v, 'far')} "
               f"({v['false_accepts']} of {n['different']} different-person pairs accepted; target {far:g}), "
               f"TAR {v['tar']:.3f}{_within(v, 'tar')} ({v['true_accepts']} of {n['same']} same-person pairs); "
               + (f"{v['photos']} photos used, {v['skipped_photos']} skipped; " if "photos" in v
                  else f"{v['images']} held-out images of {v['identities']} synthetic people; ")
               + f"shape weight {result.shape_weight:g}; "
               f"was {previous.get('threshold', float('nan')):.4f} ({previous.get('source', 'unrecorded')})")


def _within(v: dict, rate: str) -> str:
    """`` (95 % interval a-b)`` for a rate whose interval was recorded, else nothing."""
    bounds = v.get(f"{rate}_interval")
    return f" (95 % interval {bounds[0]:.4g}-{bounds[1]:.4g})" if bounds else ""
