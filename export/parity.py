"""Run an exported model with the real TFLite interpreter and compare it with the Keras encoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from siamface.edge_runtime import metrics
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.crop_outputs import encoder_run
from siamface.edge_runtime.interpreter import TFLiteModel
from siamface.edge_runtime.morphable_model import MorphableModel
from siamface.edge_runtime.normalise import normalise_pixels
from siamface.edge_runtime.params import ParamLayout, Whitening

# fp32 must match Keras this closely or the export fails.
FP32_TOLERANCE = {"params_max_abs": 1e-3, "landmark_nme_percent": 0.01, "embedding_cosine_min": 0.9999}


def run_tflite(path: str | Path, images: np.ndarray, num_threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(whitened params (N, P), raw embeddings (N, D)) for uint8 images, one at a time."""
    return encoder_run(TFLiteModel(path, num_threads))(images)


def run_keras(encoder, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    params, embs = [], []
    for i in range(0, len(images), batch):
        x = normalise_pixels(images[i:i + batch].astype(np.float32))
        p, e = encoder(x, training=False)
        params.append(np.asarray(p))
        embs.append(np.asarray(e))
    return np.concatenate(params), np.concatenate(embs)


def compare(tflite_out: tuple[np.ndarray, np.ndarray], encoder, images: np.ndarray, model: MorphableModel,
            layout: ParamLayout, whitening: Whitening) -> dict:
    """Parameter, landmark and embedding agreement between TFLite outputs on ``images`` and Keras."""
    zt, et = tflite_out
    zk, ek = run_keras(encoder, images)
    lm_t = model.image_landmarks(whitening.unwhiten(zt), layout)[..., :2]
    lm_k = model.image_landmarks(whitening.unwhiten(zk), layout)[..., :2]
    cos = metrics.cosine_scores(et, ek)
    return {"images": int(len(images)), "params_max_abs": float(np.abs(zt - zk).max()),
            "params_mean_abs": float(np.abs(zt - zk).mean()),
            "landmark_nme_percent": float(100 * metrics.nme(lm_t, lm_k).mean()),
            "embedding_cosine_mean": float(cos.mean()), "embedding_cosine_min": float(cos.min())}


def check_fp32(figures: dict, path: str | Path) -> None:
    """Fail the export when an fp32 model disagrees with Keras beyond float round-off."""
    bad = [f"{k} {figures[k]:.3g}" for k, limit in FP32_TOLERANCE.items()
           if (figures[k] < limit if k.endswith("_min") else figures[k] > limit)]
    if bad:
        raise SiamfaceError(f"parity check failed for {path}: {', '.join(bad)} beyond tolerance {FP32_TOLERANCE}; "
                            f"the converted model does not compute what the checkpoint does")
