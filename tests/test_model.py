"""The encoder, its embedding branch, the Siamese and batch models: shapes, size budget, shared weights,
QAT wrapping, int8 conversion, save/load."""
from __future__ import annotations

import numpy as np
import pytest

from siamface import training  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from siamface.edge_runtime.params import ParamLayout
from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.model import (MOBILENET_V2_STAGES, EncoderConfig, pool_features, build_batch_model, build_encoder, build_siamese,
                            embedding_branch_variables, make_divisible, multiply_adds)

CFG = EncoderConfig()
BRANCH = EncoderConfig(embedding_from_stage=4)
NO_DROPOUT = EncoderConfig(dropout=0.0)  # dropout would make two identical branches differ in training mode


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(CFG)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, size=(2, 120, 120, 3)).astype(np.float32) for _ in range(2)]


def perturb_batchnorm(model: keras.Model, seed: int) -> None:
    """Give BN layers non-trivial statistics so inference outputs depend on every saved variable."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        if "moving_variance" in var.name:
            var.assign(rng.uniform(0.5, 2.0, var.shape).astype(np.float32))
        elif "moving_mean" in var.name or "beta" in var.name:
            var.assign(rng.normal(0, 0.1, var.shape).astype(np.float32))


def test_make_divisible_matches_mobilenet_rounding():
    assert [make_divisible(v) for v in (16, 12, 20, 4, 47.9, 80)] == [16, 16, 24, 8, 48, 80]


def test_default_encoder_shapes_and_budget(encoder, images):
    assert CFG.n_params == ParamLayout().size == 165
    assert encoder.input_shape == (None, 120, 120, 3)
    assert encoder.output_names == ["params", "embedding"]
    params, embedding = encoder(images[0], training=False)
    assert params.shape == (2, 165) and embedding.shape == (2, 128)
    assert 500_000 < encoder.count_params() < 1_500_000
    allowed = (keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
               keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Add,
               keras.layers.GlobalAveragePooling2D, keras.layers.Dropout, keras.layers.Dense)
    assert all(type(layer) in allowed for layer in encoder.layers)
    assert sum(isinstance(layer, keras.layers.Add) for layer in encoder.layers) == 10  # MobileNetV2 skips


def test_multiply_adds_counts_by_hand():
    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, 2, padding="same")(image)          # 4x4x4 outputs, 27 MACs each
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)           # 4x4x4 outputs, 9 each
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, keras.layers.Dense(5)(x))            # 4 x 5
    assert multiply_adds(model) == 64 * 27 + 64 * 9 + 20


def test_fast_downsampling_keeps_weights_and_cuts_compute(encoder):
    """The default stages stride early: same weights and 4x4 final maps as MobileNetV2 at 120 px,
    about half its multiply-adds (what makes int8 inference fit the device budget)."""
    mobilenet = build_encoder(EncoderConfig(stages=MOBILENET_V2_STAGES))
    assert encoder.count_params() == mobilenet.count_params()
    assert encoder.get_layer("head_conv").output_shape[1:3] == mobilenet.get_layer("head_conv").output_shape[1:3] == (4, 4)
    assert multiply_adds(encoder) < 0.55 * multiply_adds(mobilenet)
    stem = encoder.get_layer("stem_conv")                             # 2x2 patches, stride 2: 120 -> 60
    assert stem.kernel_size == (2, 2) and stem.output_shape[1:] == (60, 60, 16)
    assert build_encoder(EncoderConfig(stem_kernel=3)).get_layer("stem_conv").output_shape[1:] == (60, 60, 16)
    assert EncoderConfig(stages=[[1, 16, 1, 2]]).stages == ((1, 16, 1, 2),)  # YAML lists become tuples


def test_config_changes_heads_and_width():
    small = build_encoder(EncoderConfig(input_size=64, width=0.35, embedding_dim=32, n_params=60, dropout=0.0))
    params, embedding = small(np.zeros((1, 64, 64, 3), np.float32))
    assert params.shape == (1, 60) and embedding.shape == (1, 32)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in small.layers)
    assert small.count_params() < build_encoder(EncoderConfig(input_size=64, width=0.5)).count_params()


def test_siamese_outputs_and_normalised_embeddings(images):
    encoder = build_encoder(NO_DROPOUT)
    siamese = build_siamese(encoder)
    # training=True: batch statistics give O(1) activations (untrained moving statistics do not).
    out = siamese({"image_a": images[0], "image_b": images[1]}, training=True)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "params_a": (2, 165), "params_b": (2, 165), "embedding_a": (2, 128), "embedding_b": (2, 128)}
    np.testing.assert_allclose(np.linalg.norm(out["embedding_a"], axis=1), 1.0, atol=1e-5)
    params_b, raw_b = encoder(images[1], training=True)
    assert np.linalg.norm(raw_b, axis=1).min() > 1e-2
    np.testing.assert_allclose(out["params_b"], params_b, atol=1e-5)
    np.testing.assert_allclose(out["embedding_b"], raw_b / np.linalg.norm(raw_b, axis=1, keepdims=True), atol=1e-5)


def test_siamese_shares_one_set_of_weights(images):
    encoder = build_encoder(NO_DROPOUT)
    siamese = build_siamese(encoder)
    assert len(siamese.weights) == len(encoder.weights)
    assert {id(v) for v in siamese.weights} == {id(v) for v in encoder.weights}
    assert siamese.count_params() == encoder.count_params()

    same = {"image_a": images[0], "image_b": images[0]}
    before = siamese(same, training=True)
    kernel = encoder.get_layer("stem_conv").kernel  # the first layer: every output depends on it
    kernel.assign(kernel * 2.0 + 0.05)
    after = siamese(same, training=True)
    for key in ("params", "embedding"):
        assert np.abs(after[f"{key}_a"] - before[f"{key}_a"]).max() > 1e-3
        np.testing.assert_array_equal(after[f"{key}_a"], after[f"{key}_b"])


def test_float_siamese_save_load_round_trip(tmp_path, images):
    siamese = build_siamese(build_encoder(CFG))
    perturb_batchnorm(siamese, seed=1)
    inputs = {"image_a": images[0], "image_b": images[1]}
    expected = siamese(inputs, training=False)
    siamese.save(tmp_path / "siamese.keras")
    loaded = keras.models.load_model(tmp_path / "siamese.keras")
    got = loaded(inputs, training=False)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert len(loaded.weights) == len(siamese.weights)


def test_encoder_quantizes_and_plugs_into_siamese(tmp_path, encoder, images):
    """QAT path: quantize_model wraps the encoder; the wrapped model round-trips through .h5."""
    qencoder = tfmot.quantization.keras.quantize_model(encoder)
    assert qencoder.output_names == ["quant_params", "quant_embedding"]
    qencoder(images[0], training=True)  # one training-mode pass moves the quantizer ranges
    perturb_batchnorm(qencoder, seed=2)

    siamese = build_siamese(qencoder)
    out = siamese({"image_a": images[0], "image_b": images[0]}, training=False)
    assert out["params_a"].shape == (2, 165) and out["embedding_b"].shape == (2, 128)
    np.testing.assert_array_equal(out["params_a"], out["params_b"])
    assert {id(v) for v in siamese.weights} == {id(v) for v in qencoder.weights}

    # The .keras format cannot reload quantize wrappers (tfmot 0.8.1); .h5 in quantize_scope can.
    qencoder.save(tmp_path / "qat.h5")
    with tfmot.quantization.keras.quantize_scope():
        restored = keras.models.load_model(tmp_path / "qat.h5")
    for got, expected in zip(restored(images[1], training=False), qencoder(images[1], training=False)):
        np.testing.assert_array_equal(got, expected)


def test_outputs_stay_float32_under_mixed_precision(images):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        encoder = build_encoder(EncoderConfig(input_size=120, dropout=0.0))
        out = build_siamese(encoder)({"image_a": images[0], "image_b": images[1]}, training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert encoder.get_layer("stem_conv").compute_dtype == "float16"
    assert {v.dtype for v in out.values()} == {tf.float32}
    np.testing.assert_allclose(np.linalg.norm(out["embedding_a"], axis=1), 1.0, atol=1e-5)


def test_batch_model_outputs_stay_float32_under_mixed_precision(images):
    """The GPU config's path: P x K slices, branch, mixed_float16."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        encoder = build_encoder(EncoderConfig(dropout=0.0, embedding_from_stage=4))
        out = build_batch_model(encoder, slices=2)({"image": np.concatenate(images)}, training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert encoder.get_layer("emb0_0_expand_conv").compute_dtype == "float16"
    assert {v.dtype for v in out.values()} == {tf.float32} and out["embedding"].shape == (4, 128)


# --- embedding branch ---------------------------------------------------------------------------

ALLOWED = (keras.layers.InputLayer, keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.BatchNormalization,
           keras.layers.ReLU, keras.layers.Add, keras.layers.GlobalAveragePooling2D, keras.layers.Dropout,
           keras.layers.Dense)


def test_embedding_branch_keeps_the_signature_and_the_budget(encoder, images):
    branched = build_encoder(BRANCH)
    assert branched.output_names == ["params", "embedding"] and branched.input_shape == (None, 120, 120, 3)
    params, embedding = branched(images[0], training=False)
    assert params.shape == (2, 165) and embedding.shape == (2, 128)
    assert all(type(layer) in ALLOWED for layer in branched.layers)
    # 4x4 map after the fourth stage, two inverted residuals at 48 channels, 512-channel 1x1, pooled
    assert branched.get_layer("emb0_0_expand_conv").input_shape == (None, 4, 4, 32)
    assert branched.get_layer("emb_head_conv").output_shape == (None, 4, 4, 512)
    assert branched.get_layer("embedding").input_shape == (None, 512)
    added = multiply_adds(branched) / multiply_adds(encoder) - 1
    assert 0.05 < added < 0.15                                     # 1.05 M MACs on 14.3 M
    assert branched.count_params() < 1_500_000
    with pytest.raises(SiamfaceError, match="embedding_from_stage=8 is not a stage"):
        EncoderConfig(embedding_from_stage=8)


def test_depthwise_pooling_keeps_where_a_feature_sits(images):
    """Global depthwise pooling weighs each map position by its own weight: moving a feature from
    one corner of the map to another changes the embedding; global average pooling cannot see it."""
    inputs = keras.Input((4, 4, 8))
    pooled = {pool: keras.Model(inputs, pool_features(inputs, 8, 0.0, pool, relu=False, pool=pool))
              for pool in ("average", "depthwise")}
    rng = np.random.default_rng(1)
    for model in pooled.values():
        for weight in model.weights:
            if weight.trainable:
                weight.assign(rng.normal(size=weight.shape))
    corner, other = np.zeros((1, 4, 4, 8), np.float32), np.zeros((1, 4, 4, 8), np.float32)
    corner[0, 0, 0], other[0, 3, 3] = 1.0, 1.0
    gap, gdc = pooled["average"], pooled["depthwise"]
    np.testing.assert_allclose(gap(corner), gap(other), atol=1e-6)
    assert np.abs(gdc(corner) - gdc(other)).max() > 0.1
    assert gdc.get_layer("depthwisepool_conv").depthwise_kernel.shape == (4, 4, 8, 1)
    branched = build_encoder(EncoderConfig(embedding_from_stage=3, embedding_pool="depthwise",
                                           embedding_stages=((6, 96, 1, 1), (6, 128, 1, 2))))
    assert branched.get_layer("emb0_0_expand_conv").input_shape == (None, 8, 8, 16)
    assert branched.get_layer("emb_pool").output_shape == (None, 512)
    with pytest.raises(SiamfaceError, match="embedding_pool must be one of average, depthwise"):
        EncoderConfig(embedding_pool="max")
    located = build_encoder(EncoderConfig(params_pool="depthwise"))   # the parameters' head too
    assert located.get_layer("pool_conv").depthwise_kernel.shape == (4, 4, 1280, 1)
    assert located.get_layer("params").input_shape == (None, 1280)
    assert located.count_params() < 1_500_000
    with pytest.raises(SiamfaceError, match="params_pool must be one of average, depthwise"):
        EncoderConfig(params_pool="max")


def test_centred_embedding_has_zero_mean_over_a_batch_whatever_the_weights():
    """encoder.embedding_centred: no shift in the branch's last batch norm, no bias in the embedding
    layer, so in training mode the batch's embeddings average to zero for any weights; the default
    branch, given a shift, does not."""
    rng = np.random.default_rng(3)
    batch = rng.uniform(-1, 1, size=(8, 120, 120, 3)).astype(np.float32)
    means = {}
    for centred in (True, False):
        encoder = build_encoder(EncoderConfig(embedding_from_stage=4, dropout=0.0, embedding_centred=centred))
        for var in encoder.trainable_weights:                     # trained-looking weights, shifts included
            var.assign(var + rng.normal(0, 0.2, var.shape).astype(np.float32))
        assert (encoder.get_layer("embedding").bias is None) == centred
        assert (encoder.get_layer("emb_head_bn").beta is None) == centred
        embedding = encoder(batch, training=True)[1].numpy()
        means[centred] = np.abs(embedding.mean(axis=0)).max() / np.abs(embedding).mean()
    assert means[True] < 1e-4 < 0.05 < means[False]


def test_embedding_branch_does_not_read_the_later_stages(images):
    """Geometry keeps stages 5-7 and the head: changing them moves the parameters, not the embedding."""
    branched = build_encoder(EncoderConfig(embedding_from_stage=4, dropout=0.0))
    before = branched(images[0], training=True)
    for name in ("block4_0_expand_conv", "head_conv"):
        kernel = branched.get_layer(name).kernel
        kernel.assign(kernel * 2.0 + 0.05)
    after = branched(images[0], training=True)
    assert np.abs(after[0] - before[0]).max() > 1e-3
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)


def test_batch_model_runs_photo_slices_separately(images):
    """Two slices: each half of the batch gets its own batch-norm statistics, as each side of a pair does."""
    encoder = build_encoder(EncoderConfig(embedding_from_stage=4, dropout=0.0))
    batch = np.concatenate(images)                                   # 4 images: 2 slices of 2
    out = build_batch_model(encoder, slices=2)({"image": batch}, training=True)
    halves = [encoder(half, training=True) for half in images]
    params, raw = np.concatenate([h[0] for h in halves]), np.concatenate([h[1] for h in halves])
    np.testing.assert_allclose(out["params"], params, atol=1e-5)
    np.testing.assert_allclose(out["embedding"], raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    assert np.abs(encoder(batch, training=True)[0] - params).max() > 1e-3  # one pass would pool all four
    model = build_batch_model(encoder)
    assert {id(v) for v in model.weights} == {id(v) for v in encoder.weights}
    np.testing.assert_allclose(model({"image": batch}, training=False)["params"], encoder(batch, training=False)[0],
                               atol=1e-5)


def test_embedding_branch_quantizes_and_converts_to_int8():
    """QAT wraps the branch as it is, and full-integer conversion keeps every op int8 (small model: fast).
    Depthwise pooling here; `siamface demo --quick` (tests/conftest.py) converts the average-pooled branch."""
    from siamface.export.tflite import convert
    from siamface.edge_runtime.interpreter import interpreter_class

    small = EncoderConfig(input_size=64, width=0.35, last_channels=128, embedding_dim=16, n_params=40,
                          embedding_from_stage=4, embedding_channels=64, embedding_pool="depthwise")
    encoder = build_encoder(small)
    qencoder = tfmot.quantization.keras.quantize_model(encoder)
    assert qencoder.output_names == ["quant_params", "quant_embedding"]
    # loss.traits_branch_only finds the same branch weights once QAT has wrapped the layers
    branch, wrapped = embedding_branch_variables(encoder), embedding_branch_variables(qencoder)
    assert len(wrapped) == len(branch) > 10 and not any(v.name.startswith(("block", "stem", "quant_block")) for v in wrapped)
    rng = np.random.default_rng(0)
    tflite = convert(encoder, "int8-ptq", lambda: (rng.uniform(0, 255, (64, 64, 3)) for _ in range(4)))
    interpreter = interpreter_class()[0](model_content=tflite)
    interpreter.allocate_tensors()
    tensors = interpreter.get_tensor_details()
    assert any("/emb0_1_project_conv/" in d["name"] for d in tensors)
    assert {d["dtype"] for d in tensors} <= {np.int8, np.int32}    # weights, activations, biases
    outputs = sorted(tuple(d["shape"]) for d in interpreter.get_output_details())
    assert outputs == [(1, 16), (1, 40)]
