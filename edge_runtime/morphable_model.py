"""The morphable face model in numpy: load the asset, decode parameters to vertices and landmarks.

The device loads the decoder its bundle ships (edge_runtime.bundle); training code finds the asset
with training.face_model (--face-model, SIAMFACE_FACE_MODEL, the workspace's ICT Face Model Light).
Loading accepts float16 or float32 arrays and always holds float32.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .camera import project
from .contour import CONVENTIONS, ContourLines, contour_lines, march
from .errors import SiamfaceError
from .params import ParamLayout

REQUIRED_KEYS = ("mean", "id_basis", "exp_basis", "exp_names", "triangles", "vertex_region",
                 "region_names", "landmarks68")
HOW_TO_FIX = "re-export the bundle with `siamface export` (its decoder is this file)"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """Linear face model: ``mean + id @ id_basis + exp @ exp_basis`` (model space, cm)."""

    name: str
    sha256: str
    mean: np.ndarray          # (V, 3) float32
    id_basis: np.ndarray      # (K_total, V, 3) float32
    exp_basis: np.ndarray     # (E, V, 3) float32
    exp_names: tuple[str, ...]
    triangles: np.ndarray     # (T, 3) int32, counter-clockwise seen from outside
    vertex_region: np.ndarray  # (V,) uint8
    region_names: tuple[str, ...]
    landmarks68: np.ndarray   # (68,) int32
    extras: dict              # optional index sets (fitting_vertices, rigid_vertices, ...)
    landmark_definition: str = "asset"  # which vertices landmarks68 holds: the file's, or training's own choice

    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def n_id_total(self) -> int:
        return self.id_basis.shape[0]

    def layout(self, n_id: int | None = None) -> ParamLayout:
        n_id = self.n_id_total if n_id is None else n_id
        if not 0 < n_id <= self.n_id_total:
            raise SiamfaceError(f"face model {self.name} has {self.n_id_total} identity modes, {n_id} requested")
        return ParamLayout(n_id=n_id, n_exp=len(self.exp_names))

    @cached_property
    def _flat_bases(self) -> tuple[np.ndarray, np.ndarray]:
        v3 = self.n_vertices * 3
        return self.id_basis.reshape(-1, v3), self.exp_basis.reshape(-1, v3)

    def shape(self, id_coeffs: np.ndarray, exp_coeffs: np.ndarray | None = None) -> np.ndarray:
        """Model-space vertices (..., V, 3) for coefficients (..., K) and (..., E)."""
        id_coeffs = np.asarray(id_coeffs, np.float32)
        flat = id_coeffs @ self._flat_bases[0][: id_coeffs.shape[-1]]
        neutral = self.mean + flat.reshape(flat.shape[:-1] + (self.n_vertices, 3))
        return neutral if exp_coeffs is None else neutral + self.expression_offsets(exp_coeffs)

    @cached_property
    def face_vertices(self) -> np.ndarray:
        """The asset's ``fitting_vertices`` (the face proper, no neck or eyeballs) when it has them,
        else every vertex: where shapes are fitted and compared."""
        return np.asarray(self.extras.get("fitting_vertices", np.arange(self.n_vertices)), np.int64)

    def expression_offsets(self, exp_coeffs: np.ndarray) -> np.ndarray:
        """Vertex displacements (..., V, 3) of expression coefficients (..., E): add them to one
        neutral shape to pose many expressions of a person without recomputing the identity."""
        flat = np.asarray(exp_coeffs, np.float32) @ self._flat_bases[1]
        return flat.reshape(flat.shape[:-1] + (self.n_vertices, 3))

    def bases_at(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and bases on a few vertices, flat: decoding them (``decode_at``) is one small matmul
        per basis. Keep them for a set of vertices decoded again and again."""
        return (self.mean[idx].reshape(-1), self.id_basis[:, idx].reshape(self.n_id_total, -1),
                self.exp_basis[:, idx].reshape(len(self.exp_names), -1))

    def decode_at(self, bases: tuple[np.ndarray, np.ndarray, np.ndarray], id_coeffs: np.ndarray,
                   exp_coeffs: np.ndarray | None) -> np.ndarray:
        mean, id_basis, exp_basis = bases
        id_coeffs = np.asarray(id_coeffs, np.float32)
        flat = mean + id_coeffs @ id_basis[: id_coeffs.shape[-1]]
        if exp_coeffs is not None:
            flat = flat + np.asarray(exp_coeffs, np.float32) @ exp_basis
        return flat.reshape(flat.shape[:-1] + (-1, 3))

    @cached_property
    def _landmark_bases(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The 68 landmark vertices' bases (the device decodes landmarks twice per face)."""
        return self.bases_at(self.landmarks68)

    def landmarks3d(self, id_coeffs: np.ndarray, exp_coeffs: np.ndarray | None = None) -> np.ndarray:
        """Model-space 68 landmarks (..., 68, 3), computed on those vertices only."""
        return self.decode_at(self._landmark_bases, id_coeffs, exp_coeffs)

    @cached_property
    def contour_lines(self) -> ContourLines:
        """The 2D convention's candidate lines (edge_runtime.contour) on this model's face proper:
        the narrow face area's ``face`` region when the model says which vertices those are."""
        ids = np.arange(int(self.extras.get("narrow_face_vertices", self.n_vertices)))
        if "face" in self.region_names:
            ids = ids[self.vertex_region[ids] == self.region_names.index("face")]
        return contour_lines(self.mean, self.landmarks68, ids)

    @cached_property
    def _contour_bases(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.bases_at(self.contour_lines.vertices)

    def image_landmarks(self, params: np.ndarray, layout: ParamLayout, convention: str = "3d") -> np.ndarray:
        """Image-space 68 landmarks (..., 68, 3) of parameter vectors (x, y pixels; z depth): fixed
        vertices ("3d", what the network learns), or with the jaw on the visible contour ("2d", the
        convention of 300-W-style annotations; edge_runtime.contour)."""
        if convention not in CONVENTIONS:
            raise SiamfaceError(f"unknown landmark convention {convention!r}: use one of {', '.join(CONVENTIONS)}")
        camera, id_coeffs, exp_coeffs = layout.split(params)
        landmarks = project(self.landmarks3d(id_coeffs, exp_coeffs), camera)
        if convention == "3d":
            return landmarks
        candidates = project(self.decode_at(self._contour_bases, id_coeffs, exp_coeffs), camera)
        return march(landmarks, candidates, self.contour_lines, camera)

    def image_vertices(self, params: np.ndarray, layout: ParamLayout) -> np.ndarray:
        """Image-space vertices (..., V, 3) of parameter vectors."""
        camera, id_coeffs, exp_coeffs = layout.split(params)
        return project(self.shape(id_coeffs, exp_coeffs), camera)

    def region_mask(self, *names: str) -> np.ndarray:
        ids = [self.region_names.index(n) for n in names]
        return np.isin(self.vertex_region, ids)

    def describe(self) -> dict:
        """What artifacts record about the face model they were made with."""
        return {"name": self.name, "sha256": self.sha256, "n_vertices": int(self.n_vertices),
                "n_id_total": int(self.n_id_total), "n_exp": len(self.exp_names), "landmarks": self.landmark_definition}


def load_face_model(path: str | os.PathLike, how_to_fix: str = HOW_TO_FIX) -> MorphableModel:
    """Load and validate the .npz at ``path``: a bundle's decoder, or a training asset (the caller
    resolves it and says how to fix it: this module knows no default); any problem is a one-line
    SiamfaceError ending in ``how_to_fix``."""
    path = Path(path)
    if not path.is_file():
        raise SiamfaceError(f"face model not found at {path}: {how_to_fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED_KEYS if k not in data.files]
            if missing:
                raise SiamfaceError(f"face model {path} lacks keys {missing}: {how_to_fix}")
            arrays = {k: data[k] for k in data.files}
    except SiamfaceError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SiamfaceError(f"face model {path} is unreadable or corrupt ({exc.__class__.__name__}): {how_to_fix}") from None
    mean = arrays["mean"].astype(np.float32)
    n_v = mean.shape[0]
    id_basis = arrays["id_basis"].astype(np.float32)
    exp_basis = arrays["exp_basis"].astype(np.float32)
    if mean.shape != (n_v, 3) or id_basis.shape[1:] != (n_v, 3) or exp_basis.shape[1:] != (n_v, 3):
        raise SiamfaceError(f"face model {path} has inconsistent basis shapes: {how_to_fix}")
    extras = {k: arrays[k] for k in arrays if k not in REQUIRED_KEYS}
    return MorphableModel(
        name=path.stem, sha256=file_sha256(path), mean=mean, id_basis=id_basis, exp_basis=exp_basis,
        exp_names=tuple(str(n) for n in arrays["exp_names"]), triangles=arrays["triangles"].astype(np.int32),
        vertex_region=arrays["vertex_region"].astype(np.uint8),
        region_names=tuple(str(n) for n in arrays["region_names"]),
        landmarks68=arrays["landmarks68"].astype(np.int32), extras=extras)
