"""`siamface demo` (`make demo`): the whole pipeline from nothing on the default face model.

synthesize -> train -> QAT -> export every variant -> texture identity on the int8-qat bundle ->
compare -> reconstruct a real photo and synthetic faces -> enroll and verify (with the shipped
bundle, then the demo's own). Every stage resumes: rerunning skips finished work.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

# --quick: tiny data and model; the test suite's shared bundles are built by this preset.
QUICK = {"synth": dict(train_identities=8, val_identities=3, test_identities=4, images_per_identity=4,
                       held_out_images_per_identity=0, image_size=64, n_id=20, shard_size=16),
         "train": ["steps=8", "eval_every=8", "batch_size=4", "warmup_steps=2", "eval_images=12",
                   "encoder.width=0.35", "encoder.last_channels=256", "encoder.embedding_dim=32",
                   "loss.n_sample_vertices=50"],
         "qat": dict(steps=4, eval_every=4),
         "export": dict(representative_images=16, parity_images=8, calibration_images=16),
         "texture": ["steps=4", "eval_every=2", "n_identities=4", "n_images=2", "warmup_steps=1"]}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FULL = {"synth": {}, "train": [], "qat": {}, "export": {}, "texture": []}  # QAT: QATConfig's defaults, as `siamface qat`
TEXTURED = "int8-qat-texture"  # the int8-qat bundle with the texture identity model: step 8 enrolls with it too


def _stage(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


def astronaut(path: Path) -> Path:
    """scikit-image's astronaut photo (ships with the package; nothing is downloaded)."""
    if not path.exists():
        import cv2
        from skimage import data

        from siamface.edge_runtime.mesh_io import write_png

        write_png(path, cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@click.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--quick", is_flag=True, help="A ~3-minute smoke run with tiny data and models.")
def demo(out, quick) -> None:
    """Run the main job end to end and print where everything is."""
    from siamface.edge_runtime.cli import main as edge
    from siamface.evaluation.eval_data import open_eval_set
    from siamface.evaluation.evaluate import evaluate, write_reports
    from siamface.evaluation.predictors import open_predictor
    from siamface.export.exporter import FLOAT_VARIANTS, ExportConfig, export_checkpoint
    from siamface.training.config_io import load_config
    from siamface.training.data.dataset import Dataset
    from siamface.training.data.preview import write_preview
    from siamface.training.data.synth import SynthConfig, synthesize
    from siamface.export.texture_id import attach_texture_identity
    from siamface.training.qat import QATConfig, run_qat
    from siamface.training.texture_id.train import TextureIdConfig, train_texture_id
    from siamface.training.train import TrainConfig, train

    preset = QUICK if quick else FULL
    out = Path(out)
    _stage("1/8 synthesize faces")
    synth_cfg = replace(load_config(SynthConfig, CONFIGS / "synth-small.yaml"), **preset["synth"])
    dataset = synthesize(out / "data", synth_cfg)
    write_preview(dataset, out / "data" / "preview.png")
    _stage("2/8 train the Siamese encoder (float)")
    train_cfg = load_config(TrainConfig, CONFIGS / "train-small.yaml", [f"data=[{out / 'data'}]", *preset["train"]])
    train(train_cfg, out / "train")
    _stage("3/8 quantization-aware training")
    run_qat(out / "train" / "best", out / "qat", QATConfig(**preset["qat"]))
    _stage("4/8 export every variant")
    bundles = out / "bundles"
    ecfg = ExportConfig(**preset["export"])
    todo = [v for v in FLOAT_VARIANTS if not (bundles / v / "bundle.json").exists()]
    export_checkpoint(out / "train" / "best", todo, bundles, ecfg) if todo else None
    if not (bundles / "int8-qat" / "bundle.json").exists():
        export_checkpoint(out / "qat" / "best", ["int8-qat"], bundles, ecfg)
    _stage("5/8 texture identity: a small network on the faces unwrapped through the int8-qat bundle")
    texture_cfg = load_config(TextureIdConfig, CONFIGS / "texture-small.yaml",
                              [f"bundle={bundles / 'int8-qat'}", f"data=[{out / 'data'}]", *preset["texture"]])
    train_texture_id(texture_cfg, out / "texture")
    if not (bundles / TEXTURED / "bundle.json").exists():
        attach_texture_identity(out / "texture", bundles / TEXTURED)
    _stage("6/8 compare float and quantized variants on held-out identities")
    kinds = (*FLOAT_VARIANTS, "int8-qat", TEXTURED)
    predictors = [open_predictor(bundles / v) for v in kinds]
    eval_set = open_eval_set(out / "data", predictors[0].size, "test")
    results, curves = {}, {}
    for kind, p in zip(kinds, predictors):
        results[kind], curves[kind] = evaluate(p, eval_set)
    table = write_reports(results, curves, out / "compare", "fp32")
    _stage("7/8 reconstruct a real photo and synthetic faces")
    photos = out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    test = Dataset.open(out / "data").split("test")
    import cv2

    for k, i in enumerate(np.linspace(0, len(test) - 1, 4).astype(int)):
        cv2.imwrite(str(photos / f"synthetic_{k}.png"), cv2.cvtColor(test.images([i])[0], cv2.COLOR_RGB2BGR))
    model = str(bundles / "int8-qat")
    _run(edge, ["reconstruct", str(astronaut(photos / "astronaut.png")), "--model", model,
                "--out", str(out / "reconstruct"), "--obj", "--ply", "--overlay"])
    size = test.image_size
    _run(edge, ["reconstruct", *[str(p) for p in sorted(photos.glob("synthetic_*.png"))], "--model", model,
                "--out", str(out / "reconstruct"), "--overlay", "--box", _synthetic_box(size)])
    _stage("8/8 enroll and verify: the shipped bundle, then the demo's int8-qat bundle with its texture model")
    ids = test.identity
    person, other = ids[0], ids[ids != ids[0]][0]
    mine = np.flatnonzero(ids == person)
    for name, idx in (("enroll_a", mine[:-1]), ("probe_same", mine[-1:]), ("probe_other", np.flatnonzero(ids == other)[:1])):
        for j, i in enumerate(idx):
            cv2.imwrite(str(photos / f"{name}_{j}.png"), cv2.cvtColor(test.images([i])[0], cv2.COLOR_RGB2BGR))
    box = ["--box", _synthetic_box(size)]
    galleries = {}
    for label, model, gallery in _identity_bundles(bundles, out):
        click.secho(f"-- {label} ({model}), gallery {gallery}", bold=True)
        for stale in (gallery, f"{gallery}-wal", f"{gallery}-shm"):  # the demo's galleries, enrolled anew each run
            Path(stale).unlink(missing_ok=True)  # (one enrolled with an earlier bundle would be refused)
        _enroll_verify(edge, model, gallery, photos, box)
        galleries[label] = gallery
    click.secho("\n== done", bold=True)
    click.echo(table)
    click.echo(json.dumps({"dataset": str(out / "data"), "preview": str(out / "data" / "preview.png"),
                           "float checkpoint": str(out / "train" / "best"), "qat checkpoint": str(out / "qat" / "best"),
                           "bundles": str(bundles), "texture identity run": str(out / "texture"),
                           "comparison": str(out / "compare" / "report.md"),
                           "plots": str(out / "compare"), "reconstructions": str(out / "reconstruct"),
                           "galleries": galleries}, indent=1))


def _identity_bundles(bundles: Path, out: Path) -> list[tuple[str, str, str]]:
    """(label, bundle, gallery) for step 8: the shipped bundle first when there is one (what `siamface
    verify` uses by default, trained for hours), then the demo's own (trained for minutes here)."""
    from siamface.edge_runtime.defaults import SHIPPED_BUNDLE

    own = ("the demo's own bundle", str(bundles / TEXTURED), str(out / "gallery.db"))
    if not (SHIPPED_BUNDLE / "bundle.json").is_file():
        return [own]
    return [("the shipped bundle", str(SHIPPED_BUNDLE), str(out / "gallery-shipped.db")), own]


def _synthetic_box(size: int) -> str:
    """--box for synthetic images: the face box whose 3DDFA crop is the whole image."""
    from siamface.edge_runtime.crop import whole_image_box

    return ",".join(f"{v:.2f}" for v in whole_image_box(size))


def _run(edge, argv: list[str]) -> None:
    from siamface.edge_runtime.errors import SiamfaceError

    if edge(argv) != 0:
        raise SiamfaceError(f"demo step failed: {' '.join(argv)}")


def _enroll_verify(edge, model: str, gallery: str, photos: Path, box: list[str]) -> None:
    enroll = sorted(str(p) for p in photos.glob("enroll_a_*.png"))
    _run(edge, ["enroll", "person_a", *enroll, "--model", model, "--gallery", gallery, *box])
    for probe in ("probe_same_0.png", "probe_other_0.png"):
        click.echo(f"{probe}: verify against person_a's {len(enroll)}-photo template, then identify:")
        _run(edge, ["verify", str(photos / probe), "--person", "person_a", "--model", model, "--gallery", gallery,
                    *box])
        _run(edge, ["identify", str(photos / probe), "--model", model, "--gallery", gallery, *box])
    v = json.loads((Path(model) / "bundle.json").read_text())["verification"]
    click.echo(f"at its threshold {v['threshold']:.3f} this bundle accepts {100 * v['tar']:.1f} % of same-person and "
               f"{100 * v['far']:.1f} % of different-person pairs of held-out synthetic people (bundle.json "
               f"verification; docs/verification.md)")
