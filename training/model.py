"""The encoder (one face crop -> 3DMM parameters + identity embedding) and its Siamese pair model.

The encoder is a functional tf-keras model built only from layers that
tensorflow-model-optimization quantizes by default (Conv2D, DepthwiseConv2D,
BatchNormalization, ReLU(6), Add, GlobalAveragePooling2D, Dropout, Dense), so
``tfmot.quantization.keras.quantize_model(encoder)`` wraps it as is for QAT and the
same encoder is what gets exported to TFLite.

Its "embedding" output is NOT L2-normalised: normalisation has no int8 kernel in
tfmot's default scheme, and cosine similarity does not need it. The Siamese model
normalises outside the encoder (``embedding_a`` / ``embedding_b``); the edge runtime
normalises in numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
import tf_keras as keras

from siamface.edge_runtime.errors import SiamfaceError

Stage = tuple[int, int, int, int]  # inverted-residual stage: (expansion t, channels c, repeats n, first stride s)

# MobileNetV2's stages: at 120 px the feature maps go 60 -> 60 -> 30 -> 15 -> 8 -> 8 -> 4 -> 4.
MOBILENET_V2_STAGES: tuple[Stage, ...] = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# The same blocks with the downsampling moved forward (60 -> 30 -> 15 -> 8 -> 4, then 4x4 to the
# end, as in FD-MobileNet): the first stage strides, the sixth does not. Same weights count,
# half the multiply-adds (15.2 M vs 29.9 M at width 0.5), so int8 inference fits the device
# budget (see docs/results.md).
FAST_STAGES: tuple[Stage, ...] = ((1, 16, 1, 2), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                  (6, 96, 3, 1), (6, 160, 3, 1), (6, 320, 1, 1))


POOLS = ("average", "depthwise")
BN_MOMENTUM = 0.99  # every batch norm's, per update of its moving statistics (training.train sets it per run)


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the encoder; the defaults give about 1.1 M parameters (under the 1.5 M budget)."""

    input_size: int = 120
    width: float = 0.5          # MobileNetV2 width multiplier
    stem_kernel: int = 2        # the first conv (stride 2): 2x2 patches; LiteRT's int8 3x3 conv on
                                # 3 channels took 0.15 ms, a third of the whole invoke (docs/results.md)
    stages: tuple[Stage, ...] = FAST_STAGES
    last_channels: int = 1280   # the 1x1 conv before pooling (MobileNetV2 keeps 1280 for width < 1)
    embedding_dim: int = 128
    n_params: int = 165         # ParamLayout().size: 12 pose + 100 identity + 53 expression
    dropout: float = 0.2        # before both heads, training only
    # 0: the embedding reads the pooled features the parameters read (the paper's layout). s >= 1:
    # the embedding has its own branch from the output of stage s (1-based: 4 is the 4x4 map after
    # the fourth stage), so identity does not compete with geometry for the later stages.
    embedding_from_stage: int = 0
    embedding_stages: tuple[Stage, ...] = ((6, 96, 2, 1),)  # the branch's inverted residuals
    embedding_channels: int = 512                            # the branch's 1x1 conv before pooling
    # How the branch's map becomes a vector: "average" (global average pooling) or "depthwise"
    # (MobileFaceNet's global depthwise conv: one learnt weight per channel and map position, so
    # where on the face a feature sits is kept; GAP would weigh a brow like a cheek).
    embedding_pool: str = "average"
    # The branch's features zero-mean over faces (its last batch norm without a shift, the
    # embedding layer without a bias): embeddings start and stay centred, not in a narrow cone
    # (the re-identification "BN neck" idea, kept foldable for quantization).
    embedding_centred: bool = False
    # The same choice for the parameters' head: where the jaw, the eyes and the mouth sit on the
    # final map is what landmarks are, and global average pooling keeps it only in the channels.
    params_pool: str = "average"

    def __post_init__(self):  # YAML gives lists; keep the config hashable and comparable
        for name in ("stages", "embedding_stages"):
            object.__setattr__(self, name, tuple(tuple(int(v) for v in stage) for stage in getattr(self, name)))
        if not 0 <= self.embedding_from_stage <= len(self.stages):
            raise SiamfaceError(f"encoder.embedding_from_stage={self.embedding_from_stage} is not a stage: "
                                f"use 0 (shared features) or 1..{len(self.stages)}")
        for name in ("embedding_pool", "params_pool"):
            if getattr(self, name) not in POOLS:
                raise SiamfaceError(f"encoder.{name} must be one of {', '.join(POOLS)}, not {getattr(self, name)!r}")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 (never below 90% of the request), as MobileNetV2 does."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True, shift: bool = True):
    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, center=shift, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def inverted_residual(x, expansion: int, filters: int, stride: int, name: str):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, with a skip when shapes allow."""
    in_channels = x.shape[-1]
    y = conv_bn(x, in_channels * expansion, 1, 1, f"{name}_expand") if expansion != 1 else x
    y = keras.layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False, name=f"{name}_dw_conv")(y)
    y = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(y)
    y = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = conv_bn(y, filters, 1, 1, f"{name}_project", relu=False)
    if stride == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def _stages(x, stages: tuple[Stage, ...], width: float, prefix: str, branch_after: int = 0):
    """Inverted-residual stages; also returns the output of stage ``branch_after`` (1-based; 0: none)."""
    branch = None
    for stage, (t, c, n, s) in enumerate(stages):
        for i in range(n):
            x = inverted_residual(x, t, make_divisible(c * width), s if i == 0 else 1, f"{prefix}{stage}_{i}")
        if stage + 1 == branch_after:
            branch = x
    return x, branch


def pool_features(x, channels: int, dropout: float, prefix: str, relu: bool = True, pool: str = "average",
                  shift: bool = True):
    """1x1 conv, global pooling and (training-only) dropout: the features a dense head reads."""
    x = conv_bn(x, channels, 1, 1, f"{prefix}head", relu, shift)
    if pool == "depthwise":
        x = keras.layers.DepthwiseConv2D(tuple(x.shape[1:3]), padding="valid", use_bias=False,
                                         name=f"{prefix}pool_conv")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}pool_bn")(x)
        x = keras.layers.Flatten(name=f"{prefix}pool")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}pool")(x)
    return keras.layers.Dropout(dropout, name=f"{prefix}dropout")(x) if dropout > 0 else x


def build_encoder(cfg: EncoderConfig = EncoderConfig()) -> keras.Model:
    """Image (B, S, S, 3), already scaled (x - 127.5) / 128 -> [params (B, P) whitened, embedding (B, D)]."""
    image = keras.Input((cfg.input_size, cfg.input_size, 3), name="image")
    x = conv_bn(image, make_divisible(32 * cfg.width), cfg.stem_kernel, 2, "stem")
    x, branch = _stages(x, cfg.stages, cfg.width, "block", cfg.embedding_from_stage)
    x = pool_features(x, cfg.last_channels, cfg.dropout, "", pool=cfg.params_pool)
    if branch is not None:
        branch, _ = _stages(branch, cfg.embedding_stages, cfg.width, "emb")
        # linear 1x1 (as MobileFaceNet's embedding layers): pooled ReLU6 features all lie in one
        # orthant, so every face starts at nearly the same direction (cosine ~0.9) and losses on
        # normalised embeddings get almost no gradient; centred features start spread out.
        branch = pool_features(branch, cfg.embedding_channels, cfg.dropout, "emb_", relu=False, pool=cfg.embedding_pool,
                               shift=not cfg.embedding_centred)
    # float32 heads: under a mixed_float16 policy the outputs and the losses stay in float32.
    params = keras.layers.Dense(cfg.n_params, dtype="float32", name="params")(x)
    centred = branch is not None and cfg.embedding_centred
    embedding = keras.layers.Dense(cfg.embedding_dim, use_bias=not centred, dtype="float32", name="embedding")(
        x if branch is None else branch)
    return keras.Model(image, [params, embedding], name="encoder")


def multiply_adds(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass (convolutions and dense layers; the rest is noise)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):  # before Conv2D: it subclasses it
            _, h, w, c = layer.output_shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output_shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1] * layer.input_shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input_shape[-1] * layer.units
    return total


def embedding_branch_variables(encoder: keras.Model) -> list:
    """The trainable variables of the embedding's own branch (its stages, head and embedding
    layer: the layers named ``emb...``, ``quant_emb...`` once wrapped for QAT)."""
    return [v for layer in encoder.layers if layer.name.startswith(("emb", "quant_emb"))
            for v in layer.trainable_variables]


def build_batch_model(encoder: keras.Model, slices: int = 1) -> keras.Model:
    """A P x K batch through the encoder in ``slices`` equal consecutive slices, for P x K training.

    With a photo-major batch and slices = K, each pass holds one photo of each person, as each
    side of a Siamese pair does: batch normalisation never pools two photos of one person, and
    its moving statistics get K updates per step (the pair model gets two). With one update per
    step, 500 steps left 0.99^500 of the initial variance 1 in depthwise layers whose true
    variance is ~0.005: inference broke (held-out NME 23 instead of 9 for the same weights).

    Outputs a dict: params (whitened) and embedding (L2-normalised), in the batch's order.
    """
    image = keras.Input(tuple(encoder.input_shape[1:]), name="image")
    parts = [encoder(part) for part in tf.split(image, slices, axis=0)]
    params = tf.concat([p for p, _ in parts], axis=0)
    raw = tf.concat([e for _, e in parts], axis=0)
    embedding = keras.layers.UnitNormalization(axis=-1, dtype="float32", name="embedding_l2")(raw)
    return keras.Model({"image": image}, {"params": params, "embedding": embedding}, name="batch_model")


def build_siamese(encoder: keras.Model) -> keras.Model:
    """Two images through the one shared encoder (float or quantize_model-wrapped).

    Outputs a dict: params_a, params_b (whitened) and embedding_a, embedding_b (L2-normalised).
    """
    shape = tuple(encoder.input_shape[1:])
    image_a = keras.Input(shape, name="image_a")
    image_b = keras.Input(shape, name="image_b")
    normalise = keras.layers.UnitNormalization(axis=-1, dtype="float32", name="embedding_l2")
    params_a, raw_a = encoder(image_a)
    params_b, raw_b = encoder(image_b)
    outputs = {"params_a": params_a, "params_b": params_b,
               "embedding_a": normalise(raw_a), "embedding_b": normalise(raw_b)}
    return keras.Model({"image_a": image_a, "image_b": image_b}, outputs, name="siamese")
