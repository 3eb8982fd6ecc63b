"""The unwrapped textures of a dataset's photos, read through a bundle's reconstruction: the
parameters the device itself would find for each crop (mirror-fused as the bundle says), so the
network trains on the maps it will see, misplaced texels included. Cached per split in chunks
(uint8, visibility as 0 / 255), each written atomically: a stopped run resumes at the first
missing chunk."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from siamface.edge_runtime.atomic import atomic_write
from siamface.edge_runtime.bundle import Bundle
from siamface.edge_runtime.crop_outputs import OutputRules, crop_outputs, encoder_run
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import TFLiteModel
from siamface.edge_runtime.unwrap import Unwrapper, UnwrapTable
from siamface.training.data.dataset import SplitData

CHUNK = 2048


def bundle_params(bundle: Bundle) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 crops (N, S, S, 3) -> the parameters (N, P) the device finds for them."""
    run = encoder_run(TFLiteModel(bundle.model_path))
    rules = OutputRules(bundle.layout, bundle.whitening, bundle.face_model, False, bundle.flip_params)
    return lambda crops: crop_outputs(run, crops, rules)[0]


def to_uint8(maps: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(maps * 255.0), 0, 255).astype(np.uint8)


def to_float(maps: np.ndarray) -> np.ndarray:
    return maps.astype(np.float32) / 255.0


def cached_unwraps(split: SplitData, rows: np.ndarray, bundle: Bundle, table: UnwrapTable, folder: Path,
                   progress: bool = True) -> np.ndarray:
    """uint8 maps (len(rows), H, W, 4) of the split's photos ``rows``, computed once into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    unwrap, params = Unwrapper(table, bundle.face_model, bundle.layout), None
    chunks = []
    starts = range(0, len(rows), CHUNK)
    for start in tqdm(starts, desc=f"unwrap {split.name}", unit="chunk", disable=not progress):
        path = folder / f"{start // CHUNK:05d}.npy"
        index = rows[start:start + CHUNK]
        if path.is_file():
            chunk = np.load(path)
            if chunk.shape[:1] != index.shape or chunk.shape[1:3] != table.shape:
                raise SiamfaceError(f"{path} holds other photos than this run needs: delete {folder} and run again")
        else:
            params = params or bundle_params(bundle)
            crops = split.images(index)
            chunk = to_uint8(unwrap(crops, params(crops)))
            with atomic_write(path) as f:
                np.save(f, chunk)
        chunks.append(chunk)
    return np.concatenate(chunks) if chunks else np.zeros((0, *table.shape, 4), np.uint8)
