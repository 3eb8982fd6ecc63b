"""TFLite variants of the encoder. Every variant takes RGB pixels in [0, 255]: the paper's
normalisation (x - 127.5) / 128 is folded into the graph. Full-integer variants take int8
pixels p - 128 (input scale 1, zero point -128), which the device gets from a camera's uint8
image with one XOR and no float work; a uint8 input would add LiteRT's uint8 -> int8 QUANTIZE
op, a tenth of the whole int8 invoke (measured, see docs/results.md).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import tensorflow as tf
import tf_keras as keras

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import interpreter_class
from siamface.edge_runtime.normalise import PIXEL_MEAN, PIXEL_SCALE

VARIANTS = {
    "fp32": "float32 weights and activations",
    "fp16": "float16 weights, float32 compute",
    "dynamic-int8": "int8 weights, float activations (dynamic-range quantization)",
    "int8-ptq": "full-integer int8, post-training quantization with representative training images",
    "int8-qat": "full-integer int8 from the quantization-aware-trained checkpoint",
}
FULL_INTEGER = ("int8-ptq", "int8-qat")


def with_pixel_input(encoder: keras.Model) -> keras.Model:
    """The encoder behind a Rescaling layer: input RGB pixels [0, 255], outputs params, embedding."""
    size = encoder.input_shape[1]
    pixels = keras.Input((size, size, 3), batch_size=1, name="pixels")
    x = keras.layers.Rescaling(1.0 / PIXEL_SCALE, offset=-PIXEL_MEAN / PIXEL_SCALE, name="normalise")(pixels)
    params, embedding = encoder(x)
    params = keras.layers.Activation("linear", name="params", dtype="float32")(params)
    embedding = keras.layers.Activation("linear", name="embedding", dtype="float32")(embedding)
    return keras.Model(pixels, {"params": params, "embedding": embedding}, name="siamface_encoder")


def convert(encoder: keras.Model, variant: str, representative: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """Convert a (float or QAT) encoder to TFLite bytes for ``variant``."""
    if variant not in VARIANTS:
        raise SiamfaceError(f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}")
    model = with_pixel_input(encoder)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant in FULL_INTEGER:
        if representative is None:
            raise SiamfaceError(f"variant {variant} needs representative images (the training data)")
        _full_integer(converter, lambda: _full_pixel_range(representative()))
    tflite = _convert(converter, f"variant {variant}")
    if variant in FULL_INTEGER:
        _check_pixel_input(tflite, variant)
    return tflite


def _full_integer(converter: tf.lite.TFLiteConverter, batches: Callable[[], Iterable[list[np.ndarray]]]) -> None:
    """Full-integer int8 throughout, int8 input and output, calibrated on ``batches``."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = batches
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


def _convert(converter: tf.lite.TFLiteConverter, what: str) -> bytes:
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises many types; report one line
        raise SiamfaceError(f"TFLite conversion of {what} failed: {str(exc).splitlines()[0]}") from None


def _full_pixel_range(images: Iterable[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """Calibration batches whose first image holds a 0 and a 255 (one pixel each), so the input's
    calibrated range is exactly [0, 255]: int8 scale 1, zero point -128, i.e. p - 128."""
    for i, img in enumerate(images):
        batch = np.array(img, np.float32)[None]
        if i == 0:
            batch[0, 0, 0, 0], batch[0, -1, -1, 0] = 0.0, 255.0
        yield [batch]


def _check_pixel_input(tflite: bytes, variant: str) -> None:
    interpreter, _ = interpreter_class()  # the device's interpreter (LiteRT), not the deprecated tf.lite one
    details = interpreter(model_content=tflite).get_input_details()[0]
    if details["dtype"] != np.int8 or tuple(details["quantization"]) != (1.0, -128):
        raise SiamfaceError(f"variant {variant}: the input came out as {np.dtype(details['dtype']).name} "
                            f"{details['quantization']}, not int8 pixels - 128; report this converter version")


def convert_texture_net(net: keras.Model, full_integer: bool,
                        representative: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """The texture identity network (training.texture_id) as TFLite: one (1, H, W, C) map in
    (UnwrapTable.expand's), ``embedding`` out; full-integer int8 (float maps quantised by the
    runtime) for int8 bundles."""
    maps = keras.Input(net.input_shape[1:], batch_size=1, name="texture")
    model = keras.Model(maps, keras.layers.Activation("linear", name="embedding", dtype="float32")(net(maps)))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if full_integer:
        _full_integer(converter, lambda: ([np.asarray(m, np.float32)[None]] for m in representative()))
    return _convert(converter, "the texture network")
