"""TFLiteModel on real tiny models converted by TensorFlow here, run by the real LiteRT interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import (
    TensorInfo,
    TFLiteModel,
    dequantize,
    interpreter_backend,
    load_interpreter,
    quantize,
)

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("tf_keras")


def _samples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, 1, 6, 6, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A Keras model with a named input and two named outputs, as fp32 and full-int8 (uint8 io) .tflite files."""
    keras.utils.set_random_seed(0)
    image = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = keras.layers.Flatten()(x)
    outputs = {
        "params": keras.layers.Dense(3, name="params")(x),
        "embedding": keras.layers.Dense(2, activation="sigmoid", name="embedding")(x),
    }
    model = keras.Model(image, outputs)
    folder = tmp_path_factory.mktemp("tflite")

    fp32 = folder / "fp32.tflite"
    fp32.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in _samples(32, seed=1))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    int8 = folder / "int8.tflite"
    int8.write_bytes(converter.convert())
    return model, fp32, int8


def test_litert_is_the_backend():
    assert interpreter_backend() == "ai-edge-litert"


def test_fp32_outputs_match_keras_by_name(tiny):
    model, fp32, _ = tiny
    tfl = TFLiteModel(fp32)
    assert tfl.input_names == ["image"]
    assert sorted(tfl.output_names) == ["embedding", "params"]
    for x in _samples(3, seed=2):
        expected = {k: v.numpy() for k, v in model(x).items()}
        from_dict = tfl.run({"image": x})
        from_array = tfl.run(x)
        for name in ("params", "embedding"):
            assert from_dict[name].dtype == np.float32
            np.testing.assert_allclose(from_dict[name], expected[name], rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(from_array[name], from_dict[name])


def test_int8_model_quantizes_floats_and_takes_uint8_as_is(tiny):
    model, _, int8 = tiny
    tfl = TFLiteModel(int8)
    (image,) = tfl.inputs
    assert image.dtype == np.uint8 and image.quantized
    x = _samples(1, seed=3)[0]
    q = quantize(x, image)
    from_float = tfl.run(x)
    from_uint8 = tfl.run(q)

    reference = tf.lite.Interpreter(model_path=str(int8))
    reference.allocate_tensors()
    reference.set_tensor(reference.get_input_details()[0]["index"], q)
    reference.invoke()
    keras_out = {k: v.numpy() for k, v in model(x).items()}
    for info in tfl.outputs:
        assert info.dtype == np.uint8 and info.quantized
        tf_real = (reference.get_tensor(info.index).astype(np.float32) - info.zero_point) * info.scale
        assert from_uint8[info.name].dtype == np.float32
        np.testing.assert_array_equal(from_uint8[info.name], from_float[info.name])
        np.testing.assert_allclose(from_uint8[info.name], tf_real, rtol=0, atol=1e-6)
        # Against the float Keras model: within a few quantisation steps.
        np.testing.assert_allclose(from_uint8[info.name], keras_out[info.name], atol=4 * info.scale + 0.05)


def test_quantize_and_dequantize_by_hand():
    u8 = TensorInfo("x", 0, (4,), np.dtype(np.uint8), scale=0.5, zero_point=10)
    np.testing.assert_array_equal(quantize(np.array([0.0, 1.2, -10.0, 200.0]), u8), [10, 12, 0, 255])
    np.testing.assert_allclose(dequantize(np.array([10, 12, 0], np.uint8), u8), [0.0, 1.0, -5.0])
    i8 = TensorInfo("y", 0, (3,), np.dtype(np.int8), scale=0.25, zero_point=-3)
    np.testing.assert_array_equal(quantize(np.array([0.0, 1.0, -40.0]), i8), [-3, 1, -128])
    assert dequantize(np.array([1], np.int8), i8).dtype == np.float32
    assert not TensorInfo("z", 0, (1,), np.dtype(np.float32), 0.0, 0).quantized


def test_wrong_inputs_are_refused(tiny):
    tfl = TFLiteModel(tiny[1])
    with pytest.raises(ValueError, match="needs shape"):
        tfl.run(np.zeros((1, 5, 6, 3), np.float32))
    with pytest.raises(ValueError, match="inputs are"):
        tfl.run({"img": np.zeros((1, 6, 6, 3), np.float32)})


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(SiamfaceError, match="absent.tflite: TFLite model file not found"):
        TFLiteModel(tmp_path / "absent.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"this is not a flatbuffer" * 8)
    with pytest.raises(SiamfaceError, match="corrupt.tflite: not a valid TFLite model"):
        load_interpreter(corrupt)
