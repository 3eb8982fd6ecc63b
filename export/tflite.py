"""TFLite variants of the encoder. Every variant takes RGB pixels in [0, 255]: the paper's
normalisation (x - 127.5) / 128 is folded into the graph, so full-integer variants take uint8
images as they come from the camera (input scale 1, zero point 0) and the device does no
float preprocessing.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edge_runtime.errors import SiamfaceError

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
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.5 / 128.0, name="normalise")(pixels)
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
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([img[None].astype(np.float32)] for img in representative())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises many types; report one line
        raise SiamfaceError(f"TFLite conversion of variant {variant} failed: {str(exc).splitlines()[0]}") from None
