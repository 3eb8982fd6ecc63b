"""Quantization-aware training: the float encoder wrapped by tfmot's quantize_model, put back
into the Siamese model and fine-tuned with the same losses, data and loop as float training.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import tf_keras as keras

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.checkpoint import load_checkpoint, parent_record, read_float_checkpoint_meta
from siamface.training.config_io import Range, build_config
from siamface.training.train import TrainConfig, train


@dataclass
class QATConfig:
    """What QAT changes relative to the float run's config (everything else is inherited). The one
    place for QAT settings: `siamface qat` and `siamface demo` both start from these defaults."""

    # 900 steps: 300 left the int8-qat model behind its float one at both budgets (docs/results.md, QAT steps):
    # the long config's validation NME 4.59 vs 4.20 after 300, 4.26 after 900; the demo config's held-out NME
    # +0.27 (+0.23 to +0.30) over fp32 after 300, +0.06 (+0.03 to +0.08) after 900 (1,500 faces).
    steps: Annotated[int, Range(ge=1)] = 900
    learning_rate: Annotated[float, Range(gt=0)] = 2e-4
    warmup_steps: Annotated[int, Range(ge=0)] = 20
    eval_every: Annotated[int, Range(ge=1)] = 300
    batch_size: Annotated[int, Range(ge=0)] = 0   # 0: as in float training


def quantize_encoder(encoder: keras.Model) -> keras.Model:
    """tfmot QAT wrapper; layers tfmot cannot quantize are named in the error, never skipped."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry)

    supported = registry.Default8BitQuantizeRegistry()
    folded = (keras.layers.InputLayer, keras.layers.BatchNormalization)  # BN is folded into its conv
    unsupported = [f"{layer.name} ({layer.__class__.__name__})" for layer in encoder.layers
                   if not isinstance(layer, folded) and not supported.supports(layer)]
    if unsupported:
        raise SiamfaceError(f"tfmot cannot quantize layers {', '.join(unsupported)}: rebuild the encoder "
                            f"from Conv2D/DepthwiseConv2D/BatchNormalization/ReLU/Add/Dense layers")
    return tfmot.quantization.keras.quantize_model(encoder)


def run_qat(checkpoint: str | Path, out: str | Path, qcfg: QATConfig, progress: bool = True) -> dict:
    """Fine-tune a float checkpoint with fake quantization; the best QAT checkpoint lands in out/best."""
    meta = read_float_checkpoint_meta(checkpoint, str(checkpoint), "QAT")  # the model: loaded once, by the factory
    base = build_config(TrainConfig, meta["config"], f"{checkpoint}/checkpoint.json")
    cfg = replace(base, steps=qcfg.steps, learning_rate=qcfg.learning_rate, warmup_steps=qcfg.warmup_steps,
                  eval_every=qcfg.eval_every, batch_size=qcfg.batch_size or base.batch_size,
                  pk_single_pass=False,  # sliced after a one-pass run too (one pass: validation NME 4.98 vs 4.61)
                  init="")  # its parent is the float checkpoint, not where that run started
    return train(cfg, out, progress, encoder_factory=lambda: quantize_encoder(load_checkpoint(checkpoint)[0]),
                 kind="qat", parent=parent_record(checkpoint, meta))
