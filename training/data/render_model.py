"""The render mesh: version 2 of the face-model asset (whole head, mouth interior, eyelashes, uv).

Images are rendered from it; labels still come from the version-1 MorphableModel, whose vertices,
triangles, bases and index sets are the first ones of version 2. Loading checks that they are,
so a label can never describe another mesh than the one drawn.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from siamface.edge_runtime import morphable_model
from siamface.edge_runtime.atomic import TEMP_SUFFIX, clean_stale_temps
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.morphable_model import MorphableModel, file_sha256
from siamface.training import face_model as training_face_model
from siamface.training.face_model import load_training_face_model, resolve_face_model_path

V2_NAME = "ict_face_model_v2.npz"
CACHE_ENV = "SIAMFACE_CACHE"  # where arrays derived from the asset are kept (default: the user's cache folder)


@dataclass(frozen=True, eq=False)
class RenderModel:
    """The version-2 mesh (a MorphableModel of all its vertices) and where it came from."""

    mesh: MorphableModel
    path: Path

    @cached_property
    def region_vertices(self) -> dict[str, np.ndarray]:
        """Vertex indices of each region of the asset (face, head_neck, teeth, eyelashes_left, ...)."""
        return {name: np.flatnonzero(self.mesh.vertex_region == i) for i, name in enumerate(self.mesh.region_names)}

    @cached_property
    def drawn_triangles(self) -> np.ndarray:
        """Indices of the triangles to render: all but the lower eyelashes, whose strips (down to
        6 mm below the lid) drawn opaque read as a thick dark line under the eye; real lower lashes
        are short and sparse."""
        mesh, regions = self.mesh, self.region_vertices
        tris = mesh.triangles
        n = mesh.n_vertices
        edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]]])
        _, component = connected_components(coo_matrix((np.ones(len(edges)), edges.T), (n, n)), directed=False)
        lower = np.zeros(n, bool)
        for side in ("left", "right"):
            lashes = regions[f"eyelashes_{side}"]
            eye_y = mesh.mean[np.concatenate([regions[f"sclera_{side}"], regions[f"iris_{side}"]]), 1].mean()
            for c in np.unique(component[lashes]):
                strip = lashes[component[lashes] == c]
                lower[strip] = mesh.mean[strip, 1].mean() < eye_y
        return np.flatnonzero(~lower[tris].any(axis=1))


def render_model_path(face_model: str | os.PathLike | None = None) -> Path:
    """The version-2 asset beside the (resolved) version-1 file; a one-line error when missing."""
    path = resolve_face_model_path(face_model).with_name(V2_NAME)
    if not path.is_file():
        raise SiamfaceError(f"render mesh not found at {path}: put {V2_NAME} beside the face model "
                            f"(see shared/assets/ict-face-model/README.md)")
    return path


def load_render_model(labels: MorphableModel, face_model: str | os.PathLike | None = None) -> RenderModel:
    """Load the render mesh beside ``face_model`` and check that it extends ``labels``."""
    path = render_model_path(face_model)
    mesh = cached_face_model(path)
    n, t = labels.n_vertices, len(labels.triangles)
    same = (mesh.n_vertices > n and mesh.exp_names == labels.exp_names and mesh.n_id_total == labels.n_id_total
            and np.array_equal(mesh.mean[:n], labels.mean) and np.array_equal(mesh.triangles[:t], labels.triangles)
            and np.array_equal(mesh.landmarks68, labels.landmarks68)
            and np.array_equal(mesh.id_basis[:, :n], labels.id_basis)
            and np.array_equal(mesh.exp_basis[:, :n], labels.exp_basis))
    if not same:
        raise SiamfaceError(f"render mesh {path} does not extend the face model {labels.name} (its first "
                            f"{n} vertices, triangles or bases differ): use the {V2_NAME} of the same asset")
    return RenderModel(mesh=mesh, path=path)


def cached_face_model(path: str | os.PathLike | None = None) -> MorphableModel:
    """``load_training_face_model(path)``, its arrays mapped from the cache after the first time
    (converting the float16 bases of the asset into fresh memory takes 0.2-0.6 s per load)."""
    path = resolve_face_model_path(path)
    if not path.is_file():
        return load_training_face_model(path)  # its one-line error
    return _mesh_from_arrays(cached_arrays(file_sha256(path), path.stem,
                                           lambda: _mesh_arrays(load_training_face_model(path)),
                                           (morphable_model, training_face_model, sys.modules[__name__])))


def _mesh_arrays(mesh: MorphableModel) -> dict[str, np.ndarray]:
    """A MorphableModel as arrays (names as unicode arrays, extras prefixed), for the cache."""
    plain = {k: np.asarray(v) for k, v in vars(mesh).items() if k != "extras"}
    return plain | {f"extras.{k}": np.asarray(v) for k, v in mesh.extras.items()}


def _mesh_from_arrays(arrays: dict[str, np.ndarray]) -> MorphableModel:
    """The MorphableModel ``_mesh_arrays`` stored, as ``load_face_model`` gives it."""
    names = {"name": str(arrays["name"]), "sha256": str(arrays["sha256"]),
             "exp_names": tuple(str(n) for n in arrays["exp_names"]),
             "region_names": tuple(str(n) for n in arrays["region_names"]),
             "landmark_definition": str(arrays["landmark_definition"])}
    extras = {k.removeprefix("extras."): v for k, v in arrays.items() if k.startswith("extras.")}
    return MorphableModel(**{k: v for k, v in arrays.items() if k not in names and not k.startswith("extras.")},
                          **names, extras=extras)


def cache_dir() -> Path:
    """$SIAMFACE_CACHE, else $XDG_CACHE_HOME/siamface, else ~/.cache/siamface."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "siamface"


def cached_arrays(asset_sha256: str, name: str, build: Callable[[], dict[str, np.ndarray]],
                  sources: tuple[ModuleType, ...]) -> dict[str, np.ndarray]:
    """``build()``'s arrays, read back from ``cache_dir()`` when the same asset (by sha256) and the
    same source of the ``sources`` modules made them: a synthesis worker's render mesh, texture
    layout and shadow maps take about 1.5 s to derive and a few hundredths to map. Arrays come
    memory-mapped copy-on-write (workers share the pages; writing changes only the process's own
    copy). An unreadable entry is rebuilt, and a new entry replaces the others of its ``name``; a
    cache folder that cannot be written only costs the time."""
    key = hashlib.sha256(f"{name}:{asset_sha256}".encode())
    for module in sources:
        key.update(Path(module.__file__).read_bytes())
    folder = cache_dir() / f"{name}-{key.hexdigest()[:24]}"
    try:
        stored = {f.stem: np.asarray(np.load(f, mmap_mode="c")) for f in sorted(folder.glob("*.npy"))}
        if stored:  # an entry being removed reads as none
            return stored
    except (OSError, ValueError):
        _remove(folder)  # damaged: built again below
    arrays = build()
    if _store(folder, arrays):
        for stale in folder.parent.glob(f"{name}-*"):  # made by other code or another asset
            if stale != folder:
                _remove(stale)
    return arrays


def _store(folder: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Write the entry ``folder`` whole: built beside it, each file synced, then renamed into place
    unless another process got there first (an entry is never rewritten, so no reader sees one
    half gone). False where the cache cannot be written."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(folder.parent)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=TEMP_SUFFIX))
    except OSError:
        return False
    try:
        for k, v in arrays.items():
            with open(tmp / f"{k}.npy", "wb") as f:
                np.save(f, v, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, folder)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return folder.is_dir()


def _remove(entry: Path) -> None:
    """Delete an entry by first renaming it away (readers then find it whole or not at all)."""
    try:
        gone = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=TEMP_SUFFIX))
        os.replace(entry, gone)
    except OSError:
        return
    shutil.rmtree(gone, ignore_errors=True)
