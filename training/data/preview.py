"""A PNG grid of dataset samples with their 68 landmarks drawn: what the model will learn from."""
from __future__ import annotations

import os

import cv2
import numpy as np

from siamface.edge_runtime.atomic import atomic_write_bytes
from siamface.training.data.dataset import Dataset

# Landmark groups (jaw, brows, nose, eyes, mouth) in distinct BGR colours.
GROUPS = ((range(0, 17), (255, 255, 0)), (range(17, 27), (0, 200, 255)), (range(27, 36), (0, 255, 0)),
          (range(36, 48), (255, 0, 255)), (range(48, 68), (0, 0, 255)))


def draw_sample(image_rgb: np.ndarray, landmarks: np.ndarray, caption: str, zoom: int = 2) -> np.ndarray:
    """Upscaled BGR tile with landmarks (none for identity-only samples: NaN) and a caption."""
    tile = cv2.resize(image_rgb[..., ::-1], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    for idx, colour in GROUPS if np.isfinite(landmarks).all() else ():
        for i in idx:
            x, y = (landmarks[i] + 0.5) * zoom - 0.5
            cv2.circle(tile, (int(round(x)), int(round(y))), max(1, zoom // 2 + 1), colour, -1, cv2.LINE_AA)
    cv2.putText(tile, caption, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * zoom, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def write_preview(dataset: Dataset, out_png: str | os.PathLike, split: str = "train", n: int = 24,
                  columns: int = 6, seed: int = 0) -> int:
    """Write a grid of ``n`` random samples of ``split``; returns the number drawn."""
    data = dataset.split(split)
    n = min(n, len(data))
    idx = np.sort(np.random.default_rng(seed).choice(len(data), size=n, replace=False))
    images, lms = data.images(idx), data.landmarks2d[idx]
    ids, poses = data.identity[idx], data.pose_deg[idx]
    captions = [f"id {ids[k]}" + (f" yaw {poses[k, 0]:+.0f}" if np.isfinite(poses[k, 0]) else "") for k in range(n)]
    tiles = [draw_sample(images[k], lms[k], captions[k]) for k in range(n)]
    tiles += [np.zeros_like(tiles[0])] * (-n % columns)
    rows = [np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)]
    ok, buf = cv2.imencode(".png", np.concatenate(rows, axis=0))
    atomic_write_bytes(out_png, buf.tobytes())
    return n
