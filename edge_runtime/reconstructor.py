"""One photo in, a list of Face results out: detect, crop, invoke, decode, embed.

``Reconstructor.from_bundle(path).reconstruct(image)`` follows the 3DDFA_V2 recipe: the
detector's box gives a first crop; the landmarks predicted there give a second, tighter crop
in the training distribution (the refine pass), whose prediction is the result.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from typing import Callable

import numpy as np

from .bundle import Bundle, load_bundle
from .camera import decompose_camera, project
from .crop import CropTransform, crop_from_box, crop_image, crop_square, is_crop_side, landmark_box
from .defaults import resolve_bundle
from .detector import DEFAULT_DETECTOR, FaceDetector, make_detector, to_rgb
from .interpreter import TFLiteModel
from .mirror_params import param_mirror
from .morphable_model import MorphableModel
from .normalise import fuse_mirrored, identity_vector, l2_normalize, mirror
from .params import ParamLayout


@dataclass
class Face:
    """One reconstructed face; coordinates in the input image's pixels."""

    box: tuple[float, float, float, float]  # face box used (detector's or caller's)
    score: float                            # detector score (1.0 for a given box)
    crop: CropTransform                     # the square crop the model saw
    params: np.ndarray                      # unwhitened 3DMM parameters in crop space
    crop_embedding: np.ndarray              # L2-normalised identity embedding of the crop alone
    _model: MorphableModel = field(repr=False)
    _layout: ParamLayout = field(repr=False)
    keypoints: np.ndarray | None = None     # detector's 6 BlazeFace points (6, 2) pixels; None from a box or a track
    _mirrored: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # the mirrored crop's embedding
    _shape_weight: float = field(default=0.0, repr=False)  # the bundle's embedding.shape_weight
    _texture: Callable[[], np.ndarray] | None = field(default=None, repr=False)  # the texture model's embedding
    _texture_weight: float = field(default=0.0, repr=False)  # the bundle's texture_identity.weight

    @cached_property
    def embedding(self) -> np.ndarray:
        """The unit identity vector that enrol, verify and identify compare: the embedding, with a
        bundle that says ``embedding.flip`` fused with the mirrored crop's (normalise.fuse_mirrored),
        whose invoke runs on first use, so a reconstruction that never asks for identity does not
        pay for it (unless the bundle's ``reconstruction.flip`` already ran it for the parameters);
        with ``embedding.shape_weight``, joined with the face's shape code, and with a texture
        identity model, with its embedding of the face's unwrapped texture, also run on first use
        (normalise.identity_vector)."""
        emb = self.crop_embedding if self._mirrored is None else fuse_mirrored(self.crop_embedding, self._mirrored())
        texture = self._texture() if self._texture is not None else None
        return identity_vector(emb, self._layout.split(self.params)[1], self._shape_weight, texture,
                               self._texture_weight)

    @cached_property
    def landmarks3d(self) -> np.ndarray:
        """(68, 3): x, y image pixels, z depth (image pixels, smaller is nearer)."""
        return self.crop.to_image(self._model.image_landmarks(self.params, self._layout))

    @property
    def landmarks68(self) -> np.ndarray:
        """(68, 2) image pixels: the fixed vertices the network learns (3D convention, as AFLW2000-3D)."""
        return self.landmarks3d[:, :2]

    @cached_property
    def landmarks68_2d(self) -> np.ndarray:
        """(68, 2) image pixels in the 2D convention of 300-W-style annotations: jaw points 0-6 and
        10-16 on the visible contour (edge_runtime.contour); the same as ``landmarks68`` elsewhere."""
        return self.crop.to_image(self._model.image_landmarks(self.params, self._layout, "2d"))[:, :2]

    @cached_property
    def pose(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees; yaw > 0 faces the image's right."""
        return decompose_camera(self._layout.split(self.params)[0]).degrees

    @cached_property
    def vertices(self) -> np.ndarray:
        """Dense mesh (V, 3) in image space (computed on first use)."""
        camera, id_coeffs, exp_coeffs = self._layout.split(self.params)
        return self.crop.to_image(project(self._model.shape(id_coeffs, exp_coeffs), camera))

    @property
    def triangles(self) -> np.ndarray:
        return self._model.triangles

    @property
    def face_triangles(self) -> np.ndarray:
        """The triangles of the face proper (no scalp, ears, neck): what overlays draw."""
        from .mesh_io import face_region_triangles

        return face_region_triangles(self._model)

    @property
    def shape_code(self) -> np.ndarray:
        """Identity coefficients of the morphable model (the Siamese-trained shape code)."""
        return self._layout.split(self.params)[1]

    @property
    def expression(self) -> dict[str, float]:
        """All blendshape weights by the face model's (ARKit) names, clipped to [0, 1]."""
        weights = np.clip(self._layout.split(self.params)[2], 0.0, 1.0)
        return {name: float(w) for name, w in zip(self._model.exp_names, weights)}

    @cached_property
    def camera(self) -> np.ndarray:
        """3x4 weak-perspective camera from model space (cm) to this image's pixels (camera.py's
        convention): the crop-space camera predicted by the model, uncropped."""
        cam = self._layout.split(self.params)[0].astype(np.float64) / self.crop.scale
        cam[:2, 3] += (self.crop.x0, self.crop.y0)
        return cam

    @cached_property
    def model_landmarks(self) -> np.ndarray:
        """(68, 3) landmarks of this person and expression in model space: centimetres, +y up,
        +z out of the face, the face model's origin; no pose applied."""
        _, id_coeffs, exp_coeffs = self._layout.split(self.params)
        return self._model.landmarks3d(id_coeffs, exp_coeffs).astype(np.float64)

    def to_dict(self, embedding: bool = True) -> dict:
        """The per-face record of the CLI's JSON (outputs.FACE_SCHEMA); ``embedding=False`` leaves
        the embedding out."""
        from .outputs import face_record

        return face_record(self, embedding)


def refined_crop(crop: CropTransform, params: np.ndarray, decoder: MorphableModel,
                 layout: ParamLayout) -> CropTransform:
    """The refine pass's crop: the 3DDFA crop of the box of the 68 landmarks that ``params``
    (predicted in ``crop``) place in the image. Public so evaluation crops photos exactly as the
    device does, whichever model (bundle or checkpoint) made the first prediction.

    Landmarks with no extent (all at one point, or NaN: an untrained geometry head, e.g. a model
    trained for identity only) give no crop; the first crop is kept then, so the face still gets
    its embedding from the detector's crop."""
    landmarks = crop.to_image(decoder.image_landmarks(params, layout))
    x0, y0, side = crop_square(landmark_box(landmarks))
    return CropTransform(x0, y0, side, crop.size) if is_crop_side(side) else crop


@dataclass(frozen=True)
class ReconstructorOptions:
    detector: str = DEFAULT_DETECTOR
    num_threads: int = 1
    refine: bool = True    # second pass on the crop from the first pass's landmarks
    timing_window: int = 1000  # per-stage timings kept: the last N of each (a video would grow a list forever)
    flip: bool = True      # with a bundle that says reconstruction.flip, fuse the last pass with its mirrored crop


class Reconstructor:
    """Holds the bundle's interpreter, decoder and detector; one call per image."""

    def __init__(self, bundle: Bundle, options: ReconstructorOptions = ReconstructorOptions()):
        self.bundle, self.options = bundle, options
        self.model = TFLiteModel(bundle.model_path, options.num_threads)
        self.decoder = bundle.face_model
        self.layout, self.whitening = bundle.layout, bundle.whitening
        self.size = bundle.input_size
        # the mirrored crop's parameters mapped back (mirror_params), when the bundle and the options ask for it
        self.mirror = param_mirror(self.decoder, self.layout.n_id) if options.flip and bundle.flip_params else None
        self.texture = bundle.texture_embedder(options.num_threads)
        self._detector: FaceDetector | None = None
        self.timings: dict[str, deque[float]] = {}

    @classmethod
    def from_bundle(cls, path: str | os.PathLike | None = None,
                    options: ReconstructorOptions = ReconstructorOptions()) -> "Reconstructor":
        """The bundle at ``path``, else $SIAMFACE_BUNDLE, else the shipped models/default
        (edge_runtime.defaults.resolve_bundle, the device commands' own order)."""
        return cls(load_bundle(resolve_bundle(path)), options)

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = make_detector(self.options.detector)
        return self._detector

    def _time(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.timings.setdefault(stage, deque(maxlen=self.options.timing_window)).append((now - start) * 1000.0)
        return now

    def predict_crop(self, image: np.ndarray, crop: CropTransform) -> tuple[np.ndarray, np.ndarray]:
        """(unwhitened params, normalised embedding) of one crop of the image, the crop alone."""
        return self._predict_pixels(self._crop(image, crop))

    def _crop(self, image: np.ndarray, crop: CropTransform) -> np.ndarray:
        t = time.perf_counter()
        pixels = crop_image(image, crop)
        self._time("crop", t)
        return pixels

    def _predict_pixels(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = time.perf_counter()
        out = self.model.run(pixels[None])
        t = self._time("invoke", t)
        params = self.whitening.unwhiten(out["params"][0])
        emb = l2_normalize(out["embedding"][0])
        self._time("embed", t)
        return params, emb

    def _mirrored(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(unwhitened params, raw embedding) of a crop seen in a mirror (timed as "mirror")."""
        t = time.perf_counter()
        out = self.model.run(mirror(pixels)[None])
        self._time("mirror", t)
        return self.whitening.unwhiten(out["params"][0]), out["embedding"][0]

    def _texture_embedding(self, pixels: np.ndarray, params: np.ndarray) -> np.ndarray:
        """The texture identity model's raw embedding of a crop under its parameters (timed as "texture")."""
        t = time.perf_counter()
        emb = self.texture(pixels[None], params[None])[0]
        self._time("texture", t)
        return emb

    def reconstruct(self, image: np.ndarray, boxes=None) -> list[Face]:
        """Faces in an RGB image (grayscale/RGBA converted), largest first; ``boxes`` skips detection."""
        image = to_rgb(np.asarray(image))
        if boxes is None:
            t = time.perf_counter()
            detections = self.detector.detect(image)
            self._time("detect", t)
            found = [(d.box, d.score, d.keypoints) for d in detections]
        else:
            found = [(tuple(float(v) for v in b), 1.0, None) for b in boxes]
        faces = []
        for box, score, keypoints in found:
            crop = crop_from_box(box, self.size)
            if self.options.refine:
                params, _ = self.predict_crop(image, crop)
                t = time.perf_counter()
                crop = refined_crop(crop, params, self.decoder, self.layout)
                self._time("decode", t)
            faces.append(self.face_in_crop(image, crop, box, score, keypoints))
        return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))

    def face_in_crop(self, image: np.ndarray, crop: CropTransform, box, score: float = 1.0,
                     keypoints: np.ndarray | None = None) -> Face:
        """One pass on a known crop of an RGB image (the last pass of ``reconstruct``; a tracker's
        only pass, on the crop from the previous frame's landmarks)."""
        pixels = self._crop(image, crop)
        params, emb = self._predict_pixels(pixels)
        # the mirrored crop's invoke runs at most once: now for the parameters, or when the embedding is first used
        # (the Face keeps the crop, not the whole image)
        mirrored = cache(partial(self._mirrored, pixels))
        if self.mirror is not None:
            params = self.mirror.fuse(params, mirrored()[0], self.layout, self.size)
        t = time.perf_counter()
        face = Face(tuple(float(v) for v in box), float(score), crop, params, emb, self.decoder, self.layout,
                    keypoints, (lambda: mirrored()[1]) if self.bundle.flip_embedding else None, self.bundle.shape_weight,
                    partial(self._texture_embedding, pixels, params) if self.texture is not None else None,
                    self.bundle.texture_weight)
        face.landmarks3d  # decode now so timings and errors happen here
        self._time("decode", t)
        return face
