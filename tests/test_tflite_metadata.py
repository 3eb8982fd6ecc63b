"""Every exported model carries TFLite metadata that tooling can read: the input format (its in-graph
normalisation from normalise.py), each output's meaning, the licence, and as associated files the
parameter labels (the face model's 53 blendshape names), bundle.json and the face-model licence.
Read back here with export.tflite_metadata's reader (flatbuffers' Table API + zipfile); the model
still runs, bit for bit as without metadata, and an existing bundle is rewritten and resealed."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl
from click.testing import CliRunner

from siamface.cli.main import main
from siamface.edge_runtime.bundle import DIGEST, META, MODEL, load_bundle, write_meta
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import TFLiteModel, model_signature
from siamface.edge_runtime.morphable_model import file_sha256
from siamface.edge_runtime.normalise import PIXEL_NORMALISATION
from siamface.edge_runtime.params import Whitening
from siamface.export.tflite_metadata import (FACE_MODEL_LICENCE, MIN_PARSER_VERSION, PARAMS_LABELS,
                                             TENSOR_AXIS_LABELS, embed_in_bundle, metadata_bytes, param_labels,
                                             parse_metadata, read)

from test_default_bundle import DIM, SIZE, tiny_encoder


@pytest.fixture(scope="module")
def exported(face_model, tmp_path_factory) -> dict:
    """The converter's fp32 and int8-ptq bytes of a seeded 16-px encoder, and the bundles export writes."""
    pytest.importorskip("tensorflow")
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    layout, encoder = tiny_encoder(face_model)
    images = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    root, out = tmp_path_factory.mktemp("metadata"), {}
    for variant, dtype in (("fp32", "float32"), ("int8-ptq", "int8")):
        raw = convert(encoder, variant, lambda: iter(images))
        (root / f"{variant}.tflite").write_bytes(raw)
        meta = {"variant": variant, "input": {"name": "pixels", "size": SIZE, "dtype": dtype},
                "param_layout": layout.to_dict(), "embedding": {"dim": DIM, "similarity": "cosine", "flip": variant == "fp32"},
                "reconstruction": {"flip": variant == "fp32"},
                "whitening": Whitening(np.zeros(layout.size), np.ones(layout.size)).to_dict(),
                "crop": {"convention": "3ddfa", "center_shift": 0.14, "side_factor": 1.58},
                "verification": {"source": "synthetic", "threshold": 0.5, "far": 0.01, "far_target": 0.01}}
        out[variant] = (root / f"{variant}.tflite", write_bundle(root / variant, raw, meta, face_model, layout))
    return out


def test_metadata_says_what_goes_in_and_comes_out(exported, face_model):
    _, bundle = exported["fp32"]
    metadata, files = read(bundle / MODEL)
    assert metadata["min_parser_version"] == MIN_PARSER_VERSION == "1.0.0"
    assert metadata["name"] == "siamface encoder (fp32)" and "crop" in metadata["description"].lower()
    assert metadata["license"].startswith("MIT") and FACE_MODEL_LICENCE in metadata["license"]
    graph = metadata["subgraph_metadata"][0]
    (image,) = graph["input_tensor_metadata"]
    assert image["name"] == "pixels" and PIXEL_NORMALISATION in image["description"]
    assert image["content"]["content_properties"] == {"type": "ImageProperties", "color_space": 1,
                                                      "default_size": {"width": SIZE, "height": SIZE}}
    # the normalisation is inside the graph: tooling must feed pixels as they are (mean 0, std 1)
    assert image["process_units"] == [{"options": {"type": "NormalizationOptions", "mean": [0.0], "std": [1.0]}}]
    assert image["stats"] == {"min": [0.0], "max": [255.0]}
    _, outputs = model_signature(bundle / MODEL)  # the subgraph's output order, as the metadata must follow
    assert [t["name"] for t in graph["output_tensor_metadata"]] == [t.name for t in outputs]
    described = {t["name"]: t for t in graph["output_tensor_metadata"]}
    assert "not normalised" in described["embedding"]["description"] and f"{DIM}-d" in described["embedding"]["description"]
    assert "mirrored left to right" in described["embedding"]["description"]   # embedding.flip: true
    assert "mirrored left to right" in described["params"]["description"]      # reconstruction.flip: true
    int8_graph = read(exported["int8-ptq"][1] / MODEL)[0]["subgraph_metadata"][0]
    assert all("mirrored" not in t["description"] for t in int8_graph["output_tensor_metadata"])  # flip false
    assert "[0:12] pose" in described["params"]["description"] and "whitened" in described["params"]["description"]
    assert described["params"]["associated_files"][0]["name"] == PARAMS_LABELS
    assert described["params"]["associated_files"][0]["type"] == TENSOR_AXIS_LABELS


def test_associated_files_are_in_the_zip(exported, face_model):
    _, bundle = exported["fp32"]
    metadata, files = read(bundle / MODEL)
    named = [f["name"] for f in metadata["associated_files"]]
    named += [f["name"] for t in metadata["subgraph_metadata"][0]["output_tensor_metadata"]
              for f in t.get("associated_files", [])]
    assert sorted(named) == sorted(files) == sorted([META, FACE_MODEL_LICENCE, PARAMS_LABELS])
    with zipfile.ZipFile(bundle / MODEL) as archive:  # TFLite Support reads them in place: stored, not deflated
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    layout = load_bundle(bundle).layout
    labels = files[PARAMS_LABELS].decode().splitlines()
    assert labels == param_labels(layout, face_model.exp_names) and len(labels) == layout.size
    assert labels[layout.expression] == list(face_model.exp_names) and len(face_model.exp_names) == 53
    assert labels[:4] == ["pose_sR00", "pose_sR01", "pose_sR02", "pose_t0"] and labels[12] == "identity_00"
    beside = json.loads((bundle / META).read_text())
    embedded = json.loads(files[META])
    assert embedded == {k: v for k, v in beside.items() if k not in ("model", DIGEST)}
    assert files[FACE_MODEL_LICENCE] == (bundle / FACE_MODEL_LICENCE).read_bytes()


@pytest.mark.parametrize("variant", ["fp32", "int8-ptq"])
def test_model_with_metadata_runs_bit_identical(exported, variant):
    raw, bundle = exported[variant]
    assert load_bundle(bundle).meta["model"]["size_bytes"] == (bundle / MODEL).stat().st_size > raw.stat().st_size
    image = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.uint8)
    plain, described = TFLiteModel(raw).run(image), TFLiteModel(bundle / MODEL).run(image)
    assert set(plain) == {"params", "embedding"}
    for name in plain:
        np.testing.assert_array_equal(plain[name], described[name])
    root = tfl.Model.GetRootAs((bundle / MODEL).read_bytes(), 0)  # weights stay 16-byte aligned, as converted
    starts = [root.Buffers(i)._tab.Vector(4) for i in range(root.BuffersLength()) if root.Buffers(i).DataLength()]
    assert len(starts) > 2 and all(start % 16 == 0 for start in starts)
    int8 = variant == "int8-ptq"
    image_md = read(bundle / MODEL)[0]["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image_md["stats"] == ({"min": [-128.0], "max": [127.0]} if int8 else {"min": [0.0], "max": [255.0]})
    assert ("p - 128" in image_md["description"]) == int8


def _strip(bundle: Path, raw: Path) -> None:
    """An older bundle: the converter's model without metadata, resealed as export sealed it then."""
    shutil.copyfile(raw, bundle / MODEL)
    meta = json.loads((bundle / META).read_text())
    meta["model"] = {"file": MODEL, "sha256": file_sha256(bundle / MODEL), "size_bytes": raw.stat().st_size}
    write_meta(bundle, meta)


def test_embed_in_bundle_adds_metadata_and_reseals(exported, tmp_path):
    raw, written = exported["int8-ptq"]
    bundle = shutil.copytree(written, tmp_path / "old")
    _strip(bundle, raw)
    with pytest.raises(SiamfaceError, match="no TFLite metadata"):
        read(bundle / MODEL)
    before = TFLiteModel(bundle / MODEL).run(np.full((1, SIZE, SIZE, 3), 77, np.uint8))
    result = CliRunner().invoke(main, ["export", str(bundle), "--metadata-only"])
    assert result.exit_code == 0, result.output
    loaded = load_bundle(bundle)  # the model's sha256 and the metadata digest are sealed again
    assert loaded.meta["model"]["sha256"] == file_sha256(bundle / MODEL)
    assert (bundle / MODEL).read_bytes() == (written / MODEL).read_bytes()  # as export writes it, byte for byte
    metadata, files = read(bundle / MODEL)
    assert metadata["name"] == "siamface encoder (int8-ptq)" and json.loads(files[META])["variant"] == "int8-ptq"
    after = TFLiteModel(bundle / MODEL).run(np.full((1, SIZE, SIZE, 3), 77, np.uint8))
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    first = (bundle / MODEL).read_bytes()
    embed_in_bundle(bundle)  # again: the old metadata buffer and zip are replaced, not added to
    assert (bundle / MODEL).read_bytes() == first


def test_embed_refuses_a_bundle_that_does_not_verify(exported, tmp_path):
    _, written = exported["fp32"]
    bundle = shutil.copytree(written, tmp_path / "edited")
    meta = json.loads((bundle / META).read_text())
    meta["verification"]["threshold"] = 0.1  # edited by hand: the digest no longer matches
    (bundle / META).write_text(json.dumps(meta))
    model = (bundle / MODEL).read_bytes()
    with pytest.raises(SiamfaceError, match="edited by hand"):
        embed_in_bundle(bundle)
    assert (bundle / MODEL).read_bytes() == model


def test_metadata_flatbuffer_round_trip():
    metadata = {"name": "m", "version": "1", "min_parser_version": "1.0.0",
                "associated_files": [{"name": "a.txt", "type": TENSOR_AXIS_LABELS}],
                "subgraph_metadata": [{"input_tensor_metadata": [{
                    "name": "x", "dimension_names": ["batch", "h"],
                    "content": {"content_properties": {"type": "ImageProperties", "color_space": 1,
                                                       "default_size": {"width": 3, "height": 4}}},
                    "process_units": [{"options": {"type": "NormalizationOptions", "mean": [0.5], "std": [2.0]}}],
                    "stats": {"min": [-1.0, 0.0], "max": [1.0, 255.0]}}], "output_tensor_metadata": []}]}
    data = metadata_bytes(metadata)
    assert data[4:8] == b"M001"
    assert parse_metadata(data) == metadata
    with pytest.raises(SiamfaceError, match="not TFLite metadata"):
        parse_metadata(b"\x08\x00\x00\x00XXXX" + bytes(8))
    with pytest.raises(SiamfaceError, match="not a TFLite model"):
        read(data)
