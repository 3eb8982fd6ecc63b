"""The face's texture, unwrapped: the crop's colours read where each texel of the face model's UV
map lands under the predicted parameters, so every photo of a person gives the same map of the
same skin whatever the pose, framing or background. Identity read from this map
(texture_identity) does not have to learn pose invariance from pixels; on synthetic people a
small network on it verified in 6 CPU minutes as well as the encoder after 2 hours (docs/results.md,
"Texture identity").

``UnwrapTable`` is built once per face model at training time (from the UV layout of
ict_face_model_v2.npz) and shipped in the bundle: per texel, the mesh triangle under it and the
barycentric weights of its three corners. Texels whose triangle faces away from the camera are
marked not visible (channel 3), and their colour is zero. A table may also name each texel's
mirror partner (the texel at its surface point's mirror image, x -> -x on the symmetric mean
face): ``expand`` then appends the map read at the partners, so a cheek the pose hides is seen
through the other cheek at the same place of the map.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from .atomic import atomic_write
from .camera import project
from .errors import SiamfaceError
from .morphable_model import MorphableModel
from .params import ParamLayout

KEYS = ("vertices", "weights", "painted")
CHANNELS = 4  # RGB in [0, 1] and visibility, per unwrapped map; twice that once expanded with a mirror


@dataclass(frozen=True, eq=False)
class UnwrapTable:
    """Per texel of an (H, W) map: the triangle's mesh vertices, their barycentric weights and
    whether any triangle covers the texel at all."""

    vertices: np.ndarray  # (H, W, 3) int32 mesh vertex indices
    weights: np.ndarray   # (H, W, 3) float32, rows sum to 1 where painted
    painted: np.ndarray   # (H, W) bool
    mirror: np.ndarray | None = None  # (H, W) int32 flat index of each texel's mirror partner, -1 for none; None: no mirror

    @property
    def shape(self) -> tuple[int, int]:
        return self.painted.shape

    @property
    def channels(self) -> int:
        """Channels of the texture network's input: the map's, and as many again with a mirror."""
        return CHANNELS if self.mirror is None else 2 * CHANNELS

    def expand(self, maps: np.ndarray) -> np.ndarray:
        """Maps (N, H, W, 4) -> the network's input (N, H, W, channels): with a mirror, each texel
        followed by its partner's four channels (zeros, not visible, where it has none)."""
        if self.mirror is None:
            return maps
        n, h, w, c = maps.shape
        flat = np.concatenate([maps.reshape(n, h * w, c), np.zeros((n, 1, c), maps.dtype)], axis=1)
        partners = flat[:, self.mirror.ravel()].reshape(maps.shape)  # -1 reads the appended zero texel
        return np.concatenate([maps, partners], axis=-1)

    @cached_property
    def used(self) -> np.ndarray:
        """The mesh vertices the table reads (sorted)."""
        return np.unique(self.vertices)

    @cached_property
    def local(self) -> np.ndarray:
        """(H, W, 3): each texel corner's index into ``used``."""
        return np.searchsorted(self.used, self.vertices)

    def check_model(self, decoder: MorphableModel, where: str) -> None:
        """The table's vertices exist in ``decoder``, or a one-line error naming ``where``."""
        if int(self.vertices.max()) >= decoder.n_vertices:
            raise SiamfaceError(f"{where}: its unwrap table reads vertex {int(self.vertices.max())} but the face model "
                                f"has {decoder.n_vertices}; rebuild it for this face model")

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as .npz, atomically (a temp file renamed over ``path``)."""
        with atomic_write(path) as f:
            extra = {} if self.mirror is None else {"mirror": self.mirror}
            np.savez(f, vertices=self.vertices, weights=self.weights, painted=self.painted, **extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "UnwrapTable":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in KEYS}
                mirror = data["mirror"].astype(np.int32) if "mirror" in data.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise SiamfaceError(f"{path}: not an unwrap table ({type(exc).__name__}: {exc}); re-export the bundle") from None
        table = cls(arrays["vertices"].astype(np.int32), arrays["weights"].astype(np.float32),
                    arrays["painted"].astype(bool), mirror)
        h, w = table.painted.shape if table.painted.ndim == 2 else (0, 0)
        bad_mirror = mirror is not None and (mirror.shape != (h, w) or mirror.min() < -1 or mirror.max() >= h * w)
        if table.vertices.shape != (h, w, 3) or table.weights.shape != (h, w, 3) or not table.painted.any() or bad_mirror:
            raise SiamfaceError(f"{path}: unwrap table arrays do not fit together; re-export the bundle")
        return table


@dataclass(frozen=True, eq=False)
class Unwrapper:
    """A table bound to the face model and parameter layout whose faces it unwraps."""

    table: UnwrapTable
    decoder: MorphableModel
    layout: ParamLayout

    @cached_property
    def _bases(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.decoder.bases_at(self.table.used)

    def __call__(self, crops: np.ndarray, params: np.ndarray) -> np.ndarray:
        """(N, H, W, 4) float32: RGB of uint8 crops (N, S, S, 3) in [0, 1] at each texel's point of
        the face ``params`` (N, P; unwhitened, in crop pixels) describe, times its visibility, and
        the visibility itself."""
        crops, params = np.asarray(crops), np.atleast_2d(np.asarray(params, np.float32))
        camera, id_coeffs, exp_coeffs = self.layout.split(params)
        points = project(self.decoder.decode_at(self._bases, id_coeffs, exp_coeffs), camera)  # (N, U, 3) crop pixels
        corners = points[:, self.table.local]                                                # (N, H, W, 3, 3)
        xy = np.einsum("hwk,nhwkc->nhwc", self.table.weights, corners[..., :2]).astype(np.float32)
        edges = corners[..., 1:, :2] - corners[..., :1, :2]
        normal_z = edges[..., 0, 0] * edges[..., 1, 1] - edges[..., 0, 1] * edges[..., 1, 0]
        visible = ((normal_z < 0) & self.table.painted).astype(np.float32)  # counter-clockwise outside, y down
        out = np.empty(xy.shape[:3] + (CHANNELS,), np.float32)
        for i, crop in enumerate(crops):
            rgb = cv2.remap(crop, xy[i, ..., 0], xy[i, ..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out[i, ..., :3] = rgb.astype(np.float32) * (visible[i, ..., None] / 255.0)
        out[..., 3] = visible
        return out
