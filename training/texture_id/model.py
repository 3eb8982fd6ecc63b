"""The texture identity network: plain 3x3 convolutions over the unwrapped map (RGB and
visibility), global average pooling, a linear embedding. Small (0.76 M parameters at width 1),
because the map is already aligned: what is left to learn is what tells people apart."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tf_keras as keras

from siamface.edge_runtime.unwrap import CHANNELS
from siamface.training.config_io import Range

# (filters at width 1, stride) per convolution
LAYERS = ((32, 1), (48, 2), (64, 1), (96, 2), (128, 1), (160, 2), (192, 1))
HEAD = 256


@dataclass
class TextureNetConfig:
    width: Annotated[float, Range(gt=0)] = 1.0
    embedding_dim: Annotated[int, Range(ge=2)] = 128
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.1
    layers: tuple[tuple[int, int], ...] = field(default=LAYERS)


def build_texture_net(shape: tuple[int, int], cfg: TextureNetConfig = TextureNetConfig(),
                      channels: int = CHANNELS) -> keras.Model:
    """(H, W, channels) maps in [0, 1] (UnwrapTable.expand's) -> embedding (dim); compared by cosine
    like the encoder's."""
    maps = keras.Input((*shape, channels), name="texture")
    x = maps
    for i, (filters, stride) in enumerate((*cfg.layers, (HEAD, 0))):
        kernel, stride = (3, stride) if stride else (1, 1)
        x = keras.layers.Conv2D(max(8, int(filters * cfg.width)), kernel, stride, padding="same", use_bias=False,
                                name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    embedding = keras.layers.Dense(cfg.embedding_dim, name="embedding")(x)
    return keras.Model(maps, embedding, name="texture_net")
