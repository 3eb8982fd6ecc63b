"""Export: every variant loads in LiteRT, bundles round-trip and are hash-checked, parity fails
when the model does not compute what the checkpoint does, int8 takes int8 pixels (p - 128), QAT keeps
the Siamese branches shared.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from siamface.edge_runtime.bundle import load_bundle, metadata_digest
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import TFLiteModel
from siamface.export.calibration import SHAPE_WEIGHTS
from siamface.export.exporter import ExportConfig, export_checkpoint
from siamface.export.parity import check_fp32, compare, run_tflite
from siamface.training.checkpoint import load_checkpoint
from siamface.training.data.dataset import Dataset
from test_identity_vector import _chosen_by_rule

VARIANTS = ("fp32", "fp16", "dynamic-int8", "int8-ptq", "int8-qat")


def test_every_variant_loads_and_records_itself(tiny_bundles):
    sizes = {}
    for variant in VARIANTS:
        bundle = load_bundle(tiny_bundles / "bundles" / variant)
        m = bundle.meta
        assert m["variant"] == variant and m["model"]["size_bytes"] == bundle.model_path.stat().st_size
        assert m["param_layout"] == {"n_id": 20, "n_exp": 53, "n_pose": 12}
        assert m["input"]["size"] == 64 and m["embedding"]["dim"] == 32
        v = m["verification"]
        assert v["source"] == "synthetic" and v["data"].startswith("test split of ") and v["identities"] == 4
        assert v["n_pairs"] == {"same": 24, "different": 96}  # 16 held-out photos of 4 people, every pair
        assert v["far_target"] == 0.01 and v["far_target_used"] == pytest.approx(1 / 96)  # 0.01 is unmeasurable
        assert -1.0 <= v["threshold"] <= 1.0  # the tiny models' float cosines of alike faces reach above 1: clamped
        assert v["far"] <= v["far_target_used"] or (v["threshold"] == 1.0 and v["threshold_unclamped"] > 1.0)
        assert bundle.threshold_source == "bundle: synthetic, FAR 0.0104" and "tensorflow" in m["versions"]
        chosen = m["embedding"]["shape_weight_from"]  # the shape code's share, chosen on the validation people
        assert chosen["data"].startswith("val split of ") and list(chosen["eer_by_weight"]) == [f"{w:g}" for w in SHAPE_WEIGHTS]
        assert bundle.shape_weight == _chosen_by_rule(chosen)
        assert m["training"]["kind"] == ("qat" if variant == "int8-qat" else "float")
        parent = m["training"]["parent"]  # a QAT bundle names the float run it fine-tuned, with that run's config
        if variant == "int8-qat":
            assert parent["checkpoint"].endswith("train/best")
            assert (parent["config"]["steps"], m["training"]["config"]["steps"]) == (8, 4)
        else:
            assert parent is None
        assert (bundle.root / "FACE_MODEL_LICENSE").is_file()
        model = TFLiteModel(bundle.model_path)
        assert set(model.output_names) == {"params", "embedding"}
        sizes[variant] = m["model"]["size_bytes"]
    assert sizes["fp16"] < sizes["fp32"] and sizes["int8-ptq"] < sizes["fp16"]


def test_bundle_round_trip_matches_checkpoint(tiny_bundles, face_model):
    bundle = load_bundle(tiny_bundles / "bundles" / "fp32" / "bundle.json")
    _, meta = load_checkpoint(tiny_bundles / "train" / "best")
    assert bundle.meta["whitening"] == meta["whitening"]
    np.testing.assert_array_equal(bundle.whitening.std, np.asarray(meta["whitening"]["std"], np.float32))
    decoder = bundle.face_model
    assert decoder.n_id_total == 20 and decoder.landmarks68.shape == (68,)
    assert decoder.extras.keys() == face_model.extras.keys()            # shape scores use the same vertices
    np.testing.assert_array_equal(decoder.extras["fitting_vertices"], face_model.extras["fitting_vertices"])
    assert bundle.meta["face_model"]["n_id_total"] == 100  # the training face model, described


def test_fp32_parity_figures_are_tight(tiny_bundles):
    p = load_bundle(tiny_bundles / "bundles" / "fp32").meta["parity"]
    assert p["params_max_abs"] < 1e-3 and p["embedding_cosine_min"] > 0.9999 and p["images"] == 8


def test_tampered_files_are_refused(tiny_bundles, tmp_path):
    for name in ("model.tflite", "face_model.npz"):
        copy = tmp_path / name.replace(".", "_")
        shutil.copytree(tiny_bundles / "bundles" / "int8-ptq", copy)
        with open(copy / name, "ab") as f:
            f.write(b"\0")
        with pytest.raises(SiamfaceError, match=f"{name} does not match the sha256"):
            load_bundle(copy)
    with pytest.raises(SiamfaceError, match="not a siamface bundle"):
        load_bundle(tmp_path)


def test_metadata_digest_covers_what_decides_matches(tiny_bundles, tmp_path):
    """Any edit of a sealed value fails load (and so `check`) with a line saying to calibrate or
    re-export; descriptive fields, key order and whitespace may change freely."""
    copy = shutil.copytree(tiny_bundles / "bundles" / "fp16", tmp_path / "fp16")
    original = json.loads((copy / "bundle.json").read_text())
    assert original["metadata_sha256"] == metadata_digest(original)

    def with_edit(edit) -> None:
        meta = json.loads(json.dumps(original))
        edit(meta)
        (copy / "bundle.json").write_text(json.dumps(meta, indent=2))

    edits = {"threshold": lambda m: m["verification"].update(threshold=-1.0),
             "far": lambda m: m["verification"].update(far=0.5),
             "layout": lambda m: m["param_layout"].update(n_id=19),
             "whitening": lambda m: m["whitening"]["mean"].__setitem__(0, 1.5),
             "input size": lambda m: m["input"].update(size=120),
             "model hash": lambda m: m["model"].update(size_bytes=1),
             "added key": lambda m: m["crop"].update(extra=1),
             "removed block": lambda m: m.pop("embedding")}
    for name, edit in edits.items():
        with_edit(edit)
        with pytest.raises(SiamfaceError, match="bundle.json was edited by hand.*siamface calibrate .* or re-export"):
            load_bundle(copy)
    with_edit(lambda m: m.pop("metadata_sha256"))
    with pytest.raises(SiamfaceError, match="has no metadata_sha256 .*siamface calibrate"):
        load_bundle(copy)
    with_edit(lambda m: (m["parity"].update(images=0), m["training"].update(step=-1), m.update(created="then")))
    assert load_bundle(copy).meta["parity"]["images"] == 0
    (copy / "bundle.json").write_text(json.dumps(dict(reversed(list(original.items())))))  # order, no indent
    assert load_bundle(copy).meta == original


def test_parity_check_fails_when_model_and_checkpoint_differ(tiny_bundles):
    encoder, meta = load_checkpoint(tiny_bundles / "train" / "best")
    ds = Dataset.open(tiny_bundles / "data")
    images = ds.split("test").images(np.arange(6))
    bundle = load_bundle(tiny_bundles / "bundles" / "fp32")
    out = run_tflite(bundle.model_path, images)
    args = (bundle.face_model, bundle.layout, bundle.whitening)
    check_fp32(compare(out, encoder, images, *args), "fp32")       # the real pair agrees
    for w in encoder.get_layer("params").weights[:1]:
        w.assign(w + 0.05)                                          # a checkpoint the file was not made from
    with pytest.raises(SiamfaceError, match="parity check failed"):
        check_fp32(compare(out, encoder, images, *args), "fp32")


def test_full_integer_variants_take_int8_pixels(tiny_bundles):
    ds = Dataset.open(tiny_bundles / "data")
    images = ds.split("test").images(np.arange(4))
    ref = run_tflite(load_bundle(tiny_bundles / "bundles" / "fp32").model_path, images)
    for variant in ("int8-ptq", "int8-qat"):
        model = TFLiteModel(tiny_bundles / "bundles" / variant / "model.tflite")
        (inp,) = model.inputs
        assert inp.dtype == np.int8 and inp.scale == 1.0 and inp.zero_point == -128   # p - 128
        assert json.loads((tiny_bundles / "bundles" / variant / "bundle.json").read_text())["input"]["dtype"] == "int8"
        # uint8 pixels take the XOR shortcut, float pixels the generic quantiser: the same input.
        for name, value in model.run(images[:1]).items():
            np.testing.assert_array_equal(value, model.run(images[:1].astype(np.float32))[name])
    params, _ = run_tflite(tiny_bundles / "bundles" / "int8-ptq" / "model.tflite", images)
    assert np.abs(params - ref[0]).mean() < 0.1 * np.abs(ref[0]).mean() + 0.05


def test_qat_wrapper_keeps_siamese_weights_shared(tiny_bundles):
    from siamface.training.model import build_siamese
    from siamface.training.qat import quantize_encoder

    encoder, _ = load_checkpoint(tiny_bundles / "train" / "best")
    quantized = quantize_encoder(encoder)
    siamese = build_siamese(quantized)
    assert len(siamese.weights) == len(quantized.weights)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    out = siamese({"image_a": x, "image_b": x}, training=False)
    np.testing.assert_array_equal(out["params_a"].numpy(), out["params_b"].numpy())
    np.testing.assert_array_equal(out["embedding_a"].numpy(), out["embedding_b"].numpy())


def test_bad_export_requests(tiny_bundles, tmp_path):
    cfg = ExportConfig(representative_images=4, parity_images=2, calibration_images=8)
    with pytest.raises(SiamfaceError, match="unknown variant 'int4'"):
        export_checkpoint(tiny_bundles / "train" / "best", ["int4"], tmp_path, cfg, progress=False)
    with pytest.raises(SiamfaceError, match="int8-qat cannot be exported from the float checkpoint.*siamface qat"):
        export_checkpoint(tiny_bundles / "train" / "best", ["int8-qat"], tmp_path, cfg, progress=False)
    with pytest.raises(SiamfaceError, match="not a siamface checkpoint"):
        export_checkpoint(tmp_path, ["fp32"], tmp_path / "out", cfg, progress=False)
    assert not (tmp_path / "out").exists()
