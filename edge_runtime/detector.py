"""Offline face detection: find the face boxes that the 3DDFA crop starts from.

BlazeFace (MediaPipe's face detector, Apache-2.0) runs through our own ``TFLiteModel``; its two
.tflite files ship in models/detector (no download, no extra package; the NOTICE there says where
they come from). Anchors, box decoding and NMS are the few numpy/OpenCV lines below.
docs/detector.md has the measurements behind the default.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from .defaults import DETECTOR_DIR
from .errors import SiamfaceError
from .interpreter import TFLiteModel



@dataclass(frozen=True, eq=False)  # keypoints is an array, so == is identity: compare .box/.score
class Detection:
    """A face: box (x0, y0, x1, y1) in image pixels, score in [0, 1], optional keypoints (K, 2) in pixels."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB (or gray/RGBA) uint8 image, largest box first."""
        ...


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Gray (HxW, HxWx1), RGB or RGBA uint8 -> RGB uint8 HxWx3 (alpha dropped)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"face detection needs a uint8 image, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., :3])
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"face detection needs an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")


def ssd_anchors(input_size: int, layers: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], MediaPipe's order: per (stride, anchors per cell) layer, rows, cols, anchors."""
    centres = []
    for stride, per_cell in layers:
        grid = input_size // stride
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cells = (np.stack([xs, ys], axis=-1).reshape(-1, 2) + 0.5) / grid
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class BlazeFaceConfig:
    """One BlazeFace variant: weights file in the package, input size, anchor layers, thresholds."""

    model_file: str
    input_size: int
    anchor_layers: tuple[tuple[int, int], ...]
    min_score: float = 0.5
    nms_iou: float = 0.3


# MediaPipe face_detection_{short,full}_range_common.pbtxt: short range has 2 anchors per
# cell at stride 8 and 6 per cell at stride 16 (three stride-16 layers of 2); full range 1 at stride 4.
# Short range's min_score is raised from MediaPipe's 0.5 to 0.65: at 0.5 it fires on blurry
# non-face patches and a colour wheel, at 0.65 it keeps ~99% recall (docs/detector.md).
SHORT_RANGE = BlazeFaceConfig("face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), min_score=0.65)
FULL_RANGE = BlazeFaceConfig("face_detection_full_range.tflite", 192, ((4, 1),))


def packaged_weights(file_name: str, folder: Path = DETECTOR_DIR) -> Path:
    """Path of a shipped detector .tflite file (models/detector)."""
    path = Path(folder) / file_name
    if not path.is_file():
        raise SiamfaceError(f"{path}: face detector weights missing; reinstall siamface or restore models/detector "
                            "from a clone")
    return path


class BlazeFaceDetector:
    """MediaPipe BlazeFace on a letterboxed square input; keypoints are eyes, nose, mouth, two tragions."""

    def __init__(self, config: BlazeFaceConfig = SHORT_RANGE, model_path: str | Path | None = None,
                 num_threads: int = 1):
        self.config = config
        self.model = TFLiteModel(model_path or packaged_weights(config.model_file), num_threads)
        self.anchors = ssd_anchors(config.input_size, config.anchor_layers)
        self._boxes, self._scores = self._output_names()

    def _output_names(self) -> tuple[str, str]:
        """The (N, 16) regressor output and the (N, 1) score output, told apart by their last dimension."""
        by_width = {info.shape[-1]: info.name for info in self.model.outputs}
        if set(by_width) != {16, 1} or self.model.outputs[0].shape[-2] != len(self.anchors):
            raise SiamfaceError(f"{self.model.path}: not a BlazeFace model with {len(self.anchors)} anchors")
        return by_width[16], by_width[1]

    def _input(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """Pad bottom/right to a square, resize to the input size, scale to [-1, 1]; returns the square's side."""
        h, w = rgb.shape[:2]
        side = max(h, w)
        square = cv2.copyMakeBorder(rgb, 0, side - h, 0, side - w, cv2.BORDER_CONSTANT, value=0)
        size = self.config.input_size
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        small = cv2.resize(square, (size, size), interpolation=interpolation)
        return (small.astype(np.float32) / 127.5 - 1.0)[None], float(side)

    def detect(self, image: np.ndarray) -> list[Detection]:
        rgb = to_rgb(image)
        tensor, side = self._input(rgb)
        out = self.model.run(tensor)
        raw = out[self._boxes][0] / self.config.input_size
        logits = np.clip(out[self._scores][0, :, 0], -80.0, 80.0)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero((scores >= self.config.min_score) & (raw[:, 2] > 0) & (raw[:, 3] > 0))
        if keep.size == 0:
            return []
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        centres = raw[:, :2] + anchors
        boxes = np.concatenate([centres - raw[:, 2:4] / 2, centres + raw[:, 2:4] / 2], axis=1) * side
        keypoints = (raw[:, 4:].reshape(len(keep), -1, 2) + anchors[:, None]) * side
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        chosen = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.config.min_score, self.config.nms_iou)
        h, w = rgb.shape[:2]
        limits = np.array([w, h, w, h], dtype=np.float64)
        detections = [
            Detection(
                box=tuple(float(v) for v in np.clip(boxes[i], 0.0, limits)),
                score=float(scores[i]),
                keypoints=keypoints[i].astype(np.float64),
            )
            for i in np.asarray(chosen, dtype=int).reshape(-1)
        ]
        return sorted(detections, key=lambda d: d.area, reverse=True)


DETECTORS: dict[str, Callable[[], FaceDetector]] = {
    "blazeface": lambda: BlazeFaceDetector(SHORT_RANGE),
    "blazeface-full": lambda: BlazeFaceDetector(FULL_RANGE),
}
DEFAULT_DETECTOR = "blazeface"


def make_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """The detector registered under ``name`` (see ``DETECTORS``)."""
    if name not in DETECTORS:
        raise SiamfaceError(f"unknown face detector {name!r}: choose one of {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]()
