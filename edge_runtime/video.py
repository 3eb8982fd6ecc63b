"""Video and camera: faces tracked from frame to frame, one JSON Lines record per frame.

A camera app cannot afford a detector pass per frame. Tracking takes each frame's crop from the
previous frames' landmarks (``reconstructor.refined_crop``, the rule of the refine pass, through a
``CropFilter`` that smooths it and predicts the motion) and runs the model once on it; the detector
runs on the first frame, every ``detect_every`` frames, and whenever a track fails
``plausible_track``. The model has no face-presence score, so a face that leaves the picture
between detections can be followed as a ghost until the next scheduled detection drops it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .crop import CropTransform, crop_square, is_crop_side, landmark_box
from .errors import SiamfaceError
from .reconstructor import Face, Reconstructor, refined_crop

OVERLAY_CODECS = {".avi": "MJPG", ".mp4": "mp4v"}


@dataclass(frozen=True)
class TrackerOptions:
    detect_every: int = 30         # frames between detector passes while tracking holds
    all_faces: bool = False        # track every detected face, not only the largest
    max_step_change: float = 1.15  # lost: face size changed by more than this factor in one frame
    max_drift: float = 1.5         # lost: face size changed by more than this factor since its detection
    max_shift: float = 0.2         # lost: the face moved more than this fraction of the crop side in one frame
    min_inside: float = 0.5        # lost: fewer than this fraction of the landmarks inside the frame
    smoothing: float = 0.6         # crop filter: weight of each frame's landmark crop in the level (1: none)
    trend: float = 0.6             # crop filter: weight of each frame's motion in the predicted velocity (0: none)


@dataclass
class FrameResult:
    index: int
    time_s: float
    detected: bool        # the detector ran on this frame
    faces: list[Face]

    def to_dict(self, embedding: bool = False) -> dict:
        """One JSON Lines record (outputs.FRAME_SCHEMA); the embedding only when asked."""
        faces = [f.to_dict(embedding) for f in self.faces]
        return {"frame": self.index, "time_s": round(self.time_s, 4), "detected": self.detected, "faces": faces}


def _within(ratio: float, factor: float) -> bool:
    return 1.0 / factor <= ratio <= factor


def plausible_track(face: Face, crop: CropTransform, detected_side: float, image_shape: tuple[int, ...],
                    options: TrackerOptions) -> bool:
    """A tracked face stays when its landmarks are finite and mostly inside the frame, and the crop
    they give next (the 3DDFA square of their box) is near this frame's crop in place and size
    (the face moved and scaled little in one frame) and near the size at the last detection (no drift)."""
    lm = face.landmarks68
    if not np.isfinite(lm).all():
        return False
    h, w = image_shape[:2]
    inside = np.mean((lm[:, 0] >= 0) & (lm[:, 0] < w) & (lm[:, 1] >= 0) & (lm[:, 1] < h))
    x0, y0, side = crop_square(landmark_box(lm))  # collapsed landmarks give no side: the track is lost
    if not (is_crop_side(side) and is_crop_side(detected_side)):
        return False
    shift = np.hypot(x0 + side / 2 - crop.x0 - crop.side / 2, y0 + side / 2 - crop.y0 - crop.side / 2)
    return bool(inside >= options.min_inside and shift <= options.max_shift * crop.side
                and _within(side / crop.side, options.max_step_change)
                and _within(side / detected_side, options.max_drift))


class CropFilter:
    """Double exponential smoothing (Holt's linear trend; LaViola 2003's predictive tracker) of one
    track's crop: centre x, y and log side. The trend predicts where the face will be, so a moving
    face stays near the crop centre, the only place the model follows it (it tracks an offset of up
    to about 0.1 of the crop side, docs/device-outputs.md); the level smooths the measured crops.
    With the default weights the trend costs what the level smooths (noise passes about unchanged);
    lower weights calm the crop and react later. Deterministic: the crops in give the crops out."""

    def __init__(self, crop: CropTransform, smoothing: float, trend: float):
        self.check_weights(smoothing, trend)
        self.smoothing, self.trend_weight, self.size = smoothing, trend, crop.size
        self.level, self.trend = self._state(crop), np.zeros(3)

    @staticmethod
    def check_weights(smoothing: float, trend: float) -> None:
        if not (0.0 < smoothing <= 1.0 and 0.0 <= trend <= 1.0):
            raise SiamfaceError(f"crop filter smoothing {smoothing} / trend {trend}: pass 0 < smoothing <= 1 "
                                f"and 0 <= trend <= 1")

    @staticmethod
    def _state(crop: CropTransform) -> np.ndarray:
        return np.array([crop.x0 + crop.side / 2, crop.y0 + crop.side / 2, np.log(crop.side)])

    def predict(self) -> CropTransform:
        """The crop for the next frame: the level moved on by one frame of trend."""
        cx, cy, log_side = self.level + self.trend
        side = float(np.exp(log_side))
        return CropTransform(float(cx - side / 2), float(cy - side / 2), side, self.size)

    def update(self, measured: CropTransform) -> CropTransform:
        """Take this frame's landmark crop; returns the next frame's crop."""
        previous = self.level
        self.level = self.smoothing * self._state(measured) + (1 - self.smoothing) * (previous + self.trend)
        self.trend = self.trend_weight * (self.level - previous) + (1 - self.trend_weight) * self.trend
        return self.predict()


@dataclass
class Track:
    """One followed face: its last result, the crop side at its detection (drift) and its crop filter."""

    face: Face
    detected_side: float
    crop_filter: CropFilter


class Tracker:
    """Faces through a sequence of RGB frames with a Reconstructor (one model pass per tracked face)."""

    def __init__(self, rec: Reconstructor, options: TrackerOptions = TrackerOptions()):
        if options.detect_every < 1:
            raise SiamfaceError(f"--detect-every {options.detect_every}: pass a whole number of frames >= 1")
        CropFilter.check_weights(options.smoothing, options.trend)
        self.rec, self.options = rec, options
        self.tracks: list[Track] = []
        self.lost = 0  # detector runs caused by a lost track (not by the schedule)
        self._since_detection = 0

    @property
    def faces(self) -> list[Face]:
        return [track.face for track in self.tracks]

    def _next_crop(self, face: Face) -> CropTransform:
        """The refine crop of a face's landmarks (what the next frame's crop is measured as)."""
        return refined_crop(face.crop, face.params, self.rec.decoder, self.rec.layout)

    def _detect(self, image: np.ndarray) -> list[Track]:
        faces = self.rec.reconstruct(image)
        faces = faces if self.options.all_faces else faces[:1]
        self._since_detection = 0
        tracks = []
        for face in faces:
            crop = self._next_crop(face)
            tracks.append(Track(face, crop.side, CropFilter(crop, self.options.smoothing, self.options.trend)))
        return tracks

    def _follow(self, image: np.ndarray) -> list[Track] | None:
        """The tracks moved on to this frame, or None when any track is lost."""
        for track in self.tracks:
            crop = track.crop_filter.predict()
            prev = track.face
            face = self.rec.face_in_crop(image, crop, landmark_box(prev.landmarks68), prev.score)
            if not plausible_track(face, crop, track.detected_side, image.shape, self.options):
                return None
            track.face = face
            track.crop_filter.update(self._next_crop(face))
        return self.tracks

    def step(self, image: np.ndarray) -> tuple[list[Face], bool]:
        """(faces, whether the detector ran) for the next frame. The faces' landmarks are the model's
        on this frame's crop, unsmoothed: only the crops are filtered."""
        self._since_detection += 1
        tracks = None
        if self.tracks and self._since_detection < self.options.detect_every:
            tracks = self._follow(image)
            self.lost += tracks is None
        detected = tracks is None
        self.tracks = self._detect(image) if detected else tracks
        return self.faces, detected


def open_capture(source: str | int) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture of a video file or camera index, or a one-line error (OpenCV's
    own warnings about the backends it tried are kept off the terminal)."""
    if isinstance(source, str) and not Path(source).is_file():
        raise SiamfaceError(f"video {source} not found: pass an existing video file")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        cap = cv2.VideoCapture(source)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        raise SiamfaceError(f"{'camera' if isinstance(source, int) else 'video'} {source} could not be opened by "
                            f"OpenCV: pass a readable video file (.avi, .mp4) or a connected camera's index")
    return cap


def read_frames(source: str | int) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB frame) from a video file or a camera index, until it ends. File times
    come from the frame rate; camera times from the clock."""
    cap = open_capture(source)
    fps = cap.get(cv2.CAP_PROP_FPS) if isinstance(source, str) else 0.0
    start = time.monotonic()
    try:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                if index == 0:
                    raise SiamfaceError(f"video {source} has no readable frames: pass a video OpenCV can decode")
                return
            yield (index / fps if fps > 0 else time.monotonic() - start), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


def video_fps(source: str | int, default: float = 30.0) -> float:
    """A file's frame rate (for the overlay video); a camera's is not reliable, so ``default``."""
    if isinstance(source, int):
        return default
    cap = open_capture(source)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return fps if fps > 0 else default


class OverlayWriter:
    """The overlay (mesh_io.draw_overlay) of every frame into a video file, codec by suffix."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        codec = OVERLAY_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise SiamfaceError(f"--overlay-video {path}: use a {' or '.join(OVERLAY_CODECS)} file name")
        self.fps, self.codec, self.writer = fps, codec, None

    def write(self, image_rgb: np.ndarray, faces: list[Face]) -> None:
        from .mesh_io import draw_overlay

        frame = draw_overlay(image_rgb, faces)
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.codec), self.fps,
                                          (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise SiamfaceError(f"--overlay-video {self.path}: OpenCV cannot write {self.codec} video here; "
                                    f"try a {' or '.join(OVERLAY_CODECS)} name in a writable folder")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def track_video(rec: Reconstructor, source: str | int, out_dir: str | os.PathLike,
                options: TrackerOptions = TrackerOptions(), overlay_path: str | os.PathLike | None = None,
                embedding: bool = False) -> dict:
    """Track faces through a video file or camera, writing one JSON line per frame to
    OUT_DIR/<video stem>.jsonl (or camera<N>.jsonl), flushed, so a camera stopped with Ctrl-C keeps
    every finished frame; the embedding (biometric data) only when asked. Returns a summary."""
    jsonl_path = Path(out_dir) / (f"camera{source}.jsonl" if isinstance(source, int) else f"{Path(source).stem}.jsonl")
    overlay = OverlayWriter(overlay_path, video_fps(source)) if overlay_path else None
    tracker = Tracker(rec, options)
    frames = detections = with_face = 0
    try:
        with open(jsonl_path, "w") as out:
            for index, (time_s, image) in enumerate(read_frames(source)):
                faces, detected = tracker.step(image)
                out.write(json.dumps(FrameResult(index, time_s, detected, faces).to_dict(embedding)) + "\n")
                out.flush()
                if overlay:
                    overlay.write(image, faces)
                frames, detections, with_face = frames + 1, detections + detected, with_face + bool(faces)
    except KeyboardInterrupt:
        pass
    finally:
        if overlay:
            overlay.close()
    return {"jsonl": str(jsonl_path), "frames": frames, "detector_runs": detections, "frames_with_face": with_face}
