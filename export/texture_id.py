"""`siamface texture-id attach`: a bundle with a texture identity model. The trained network is
converted as the bundle is (full-integer int8 for int8 bundles, float otherwise), checked against
Keras, and written beside a copy of the bundle with the unwrap table; its share of the identity
vector is chosen on the training data's validation people (``calibration.choose_share``) and the
threshold set again on its held-out people, both through the device's own outputs.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from siamface.edge_runtime.atomic import atomic_folder
from siamface.edge_runtime.bundle import META, load_bundle, write_meta
from siamface.edge_runtime.crop_outputs import OutputRules, Run, crop_outputs, encoder_run
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import TFLiteModel
from siamface.edge_runtime.morphable_model import file_sha256
from siamface.edge_runtime.normalise import identity_vector, l2_normalize
from siamface.edge_runtime.provenance import utc_now
from siamface.edge_runtime.texture_identity import TextureEmbedder
from siamface.edge_runtime.unwrap import UnwrapTable
from siamface.export.calibration import choose_share
from siamface.export.exporter import ExportConfig, spread_sample, synthetic_identity
from siamface.export.tflite import convert_texture_net
from siamface.training.data.dataset import Dataset
from siamface.training.texture_id.train import META as RUN_META
from siamface.training.texture_id.train import NET, TABLE
from siamface.training.texture_id.unwraps import to_float

MODEL_FILE = "texture_identity.tflite"
TABLE_FILE = "texture_unwrap.npz"
TEXTURE_WEIGHTS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # shares tried, up to what the shape code leaves
REPRESENTATIVE_MAPS = 200


def _read_run(run: Path) -> dict:
    best = run / "best"
    if not (best / RUN_META).is_file() or not (best / NET).is_file():
        raise SiamfaceError(f"{run} is not a texture-id run (needs best/{RUN_META} and best/{NET}): pass the --out "
                            f"folder of `siamface texture-id train`")
    return json.loads((best / RUN_META).read_text())


def texture_shares(run: Run, rules: OutputRules, crops: np.ndarray, texture: TextureEmbedder,
                   weights: tuple[float, ...] = TEXTURE_WEIGHTS) -> dict[float, np.ndarray]:
    """Identity vectors of crops for each texture share that the shape code's share leaves room for."""
    params, emb = crop_outputs(run, crops, replace(rules, shape_weight=0.0, texture=None, texture_weight=0.0))
    tex = texture(crops, params)
    return {w: identity_vector(emb, params[:, rules.layout.identity], rules.shape_weight, tex, w)
            for w in weights if w + rules.shape_weight <= 1.0 + 1e-9}


def attach_texture_identity(run: str | Path, out: str | Path, bundle_path: str | Path | None = None,
                            weight: float | None = None, far_target: float = ExportConfig.far_target) -> Path:
    """Write ``out``: the run's bundle (or ``bundle_path``, which must be the same model) with the run's
    texture model; ``weight`` None chooses the share on the validation people."""
    import tf_keras as keras

    run, out = Path(run), Path(out)
    meta = _read_run(run)
    bundle = load_bundle(bundle_path or meta["bundle"]["path"])
    if bundle.model_hash != meta["bundle"]["model_sha256"]:
        raise SiamfaceError(f"{run} was trained on the reconstructions of another model than {bundle.root}'s "
                            f"(sha256 {meta['bundle']['model_sha256'][:12]}...): attach it to that bundle, or train "
                            f"again with bundle={bundle.root}")
    if out.resolve() == bundle.root.resolve() or out.exists():
        raise SiamfaceError(f"--out {out} exists: pass a new folder (the bundle {bundle.root} is left as it is)")
    table = UnwrapTable.load(run / "best" / TABLE)
    table.check_model(bundle.face_model, str(run / "best" / TABLE))
    net = keras.models.load_model(run / "best" / NET, compile=False)
    full_integer = bundle.meta["input"].get("dtype") == "int8"
    maps = table.expand(to_float(np.load(sorted((run / "unwraps" / "train").glob("*.npy"))[0])[:REPRESENTATIVE_MAPS]))
    tflite = convert_texture_net(net, full_integer, lambda: iter(maps))
    dataset = Dataset.open(meta["config"]["data"][0])
    with atomic_folder(out) as tmp:
        for f in bundle.root.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        (tmp / MODEL_FILE).write_bytes(tflite)
        table.save(tmp / TABLE_FILE)
        texture = TextureEmbedder(tmp / MODEL_FILE, table, bundle.face_model, bundle.layout)
        keras_emb = l2_normalize(net.predict(maps[:64], verbose=0))
        lite_emb = l2_normalize(texture.embed(maps[:64]))
        parity = {"maps": 64, "embedding_cosine_mean": float(np.sum(keras_emb * lite_emb, axis=1).mean()),
                  "embedding_cosine_min": float(np.sum(keras_emb * lite_emb, axis=1).min())}
        run_encoder, rules = encoder_run(TFLiteModel(bundle.model_path)), OutputRules.of_bundle(bundle)
        share = _share(weight, run_encoder, rules, texture, dataset)
        rules = replace(rules, texture=texture, texture_weight=share["weight"])
        cfg = replace(ExportConfig(), far_target=far_target, shape_weight=bundle.shape_weight)
        _, verification = synthetic_identity(cfg, run_encoder, rules, dataset)
        block = {"model": {"file": MODEL_FILE, "sha256": file_sha256(tmp / MODEL_FILE), "size_bytes": len(tflite),
                           "dtype": "int8" if full_integer else "float32"},
                 "table": {"file": TABLE_FILE, "sha256": file_sha256(tmp / TABLE_FILE), "shape": list(table.shape),
                           "channels": table.channels},
                 "dim": int(lite_emb.shape[1]),
                 "input": "unwrapped RGB in [0, 1] x visibility, and visibility" +
                          (", then the same at each texel's mirror partner" if table.mirror is not None else ""),
                 **share, "parity": parity,
                 "training": {"run": str(run), "step": meta["step"], "validation": meta["validation"],
                              "data": meta["training_data"], "config": meta["config"], "versions": meta["versions"]},
                 "attached": utc_now()}
        previous = {k: bundle.meta["verification"][k] for k in ("source", "data", "threshold", "far") if
                    k in bundle.meta["verification"]}
        write_meta(tmp, {**bundle.meta, "texture_identity": block,
                         "verification": {**verification, "previous": previous}})
    load_bundle(out)  # re-read and re-hash what was written
    return out


def _share(weight: float | None, run: Run, rules: OutputRules, texture: TextureEmbedder, dataset: Dataset) -> dict:
    """The ``weight`` entry and where it came from: the given share, or the one chosen on the validation people."""
    if weight is not None:
        if weight + rules.shape_weight > 1.0:
            raise SiamfaceError(f"texture weight {weight:g} and the bundle's shape weight {rules.shape_weight:g} add "
                                f"up to more than 1: pass at most {1 - rules.shape_weight:g}")
        return {"weight": float(weight), "weight_from": {"source": "given"}}
    val = dataset.split("val")
    idx = spread_sample(val, ExportConfig.calibration_images)
    chosen, record = choose_share(texture_shares(run, rules, val.images(idx), texture), val.identity[idx])
    return {"weight": chosen, "weight_from": {"source": "EER on validation people", "data": f"val split of {dataset.root}",
                                              "images": int(len(idx)), **record}}
