"""Build the face-model asset (ict_face_model.npz) from an ICT-FaceKit checkout (MIT licence), so a
machine without ../shared can train: FaceXModel/generic_neutral_mesh.obj, identity000..NNN.obj, the 53
expression OBJs (ARKit names) and vertex_indices.json become the keys that
../shared/assets/ict-face-model/README.md documents, with the same vertices, order, units and dtypes.

What the checkout's files give: the neutral mesh (centimetres, +y up, +z out of the face), identity
and expression deltas (target mesh minus neutral; the identity OBJs already sit at one standard
deviation, so coefficients are N(0, 1) without rescaling), the polygons, the expression order and
the 68 landmark, fitting and rigid vertex lists (vertex_indices.json). What only ICT-FaceKit's
README gives is in FaceKitLayout below: the vertex ranges of each kept region, the narrow face area
and the two alternative jawlines.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamface.edge_runtime.atomic import atomic_write
from siamface.edge_runtime.errors import SiamfaceError

SOURCE_DIR = "FaceXModel"
NEUTRAL = "generic_neutral_mesh.obj"
INDICES = "vertex_indices.json"
# asset key -> vertex_indices.json key (source vertex ids, mapped to the asset's order)
JSON_INDEX_SETS = {"landmarks68": "idx_to_landmark_verts", "fitting_vertices": "idx_to_fitting_verts",
                   "rigid_vertices": "idx_to_rigid_verts"}
# Index sets that must lie wholly in the kept vertices; the others drop vertices of regions not kept
# (rigid_vertices: 1487 in the source, 601 in the face, sockets and eyeballs).
COMPLETE_SETS = ("landmarks68", "jawline_right", "jawline_left")


@dataclass(frozen=True)
class FaceKitLayout:
    """ICT-FaceKit README tables (Face Model Topology, Eyeball Details, Face Area Details, Facial
    Landmarks), 0-based source vertex ids. The asset keeps these regions, in this order; the head and
    neck, gums, teeth, lacrimal fluid, eye blend/occlusion meshes and eyelashes are left out."""

    regions: tuple[tuple[str, int, int], ...] = (
        ("face", 0, 9409), ("mouth_socket", 11248, 13294), ("eye_socket_left", 13294, 13678),
        ("eye_socket_right", 13678, 14062), ("sclera_left", 21451, 22221), ("iris_left", 22221, 23021),
        ("sclera_right", 23021, 23791), ("iris_right", 23791, 24591))
    narrow_face_vertices: int = 6706  # vertices [0, 6706) are the narrow face area
    jawline_right: tuple[int, ...] = (1278, 1272, 12, 1834, 243, 781, 2199, 1447)  # substitutes landmarks 0-7
    jawline_left: tuple[int, ...] = (3661, 4390, 3022, 2484, 4036, 2253, 3490, 3496)  # substitutes 9-16

    def kept(self) -> np.ndarray:
        return np.concatenate([np.arange(start, stop) for _, start, stop in self.regions])


def read_obj(path: Path, polygons: bool = False) -> tuple[np.ndarray, list[list[int]]]:
    """Vertex positions (V, 3) float64 and, when asked, the polygons as 0-based vertex ids."""
    if not path.is_file():
        raise SiamfaceError(f"{path} is missing: pass the root of a complete ICT-FaceKit checkout")
    rows, faces = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("v "):
                rows.append(line.split()[1:4])
            elif polygons and line.startswith("f "):
                faces.append([int(corner.split("/")[0]) - 1 for corner in line.split()[1:]])
    try:
        return np.array(rows, np.float64), faces
    except ValueError:
        raise SiamfaceError(f"{path}: a vertex line is not three numbers; the OBJ is damaged, check out the file again") from None


def triangulate(faces: list[list[int]], remap: np.ndarray) -> np.ndarray:
    """Polygons whose corners are all kept, split into fans ((a, b, c), (a, c, d) for a quad: the
    source's winding, counter-clockwise seen from outside), in the asset's vertex ids."""
    tris = [(f[0], f[i], f[i + 1]) for f in faces if (remap[f] >= 0).all() for i in range(1, len(f) - 1)]
    return remap[np.array(tris, np.int64).reshape(-1, 3)].astype(np.int32)


def _index_set(name: str, ids, remap: np.ndarray, source: Path) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    if ids.ndim != 1 or ((ids < 0) | (ids >= len(remap))).any():
        raise SiamfaceError(f"{source}: {name} holds vertex ids outside the neutral mesh; use a matching checkout")
    mapped = remap[ids]
    if name in COMPLETE_SETS and (mapped < 0).any():
        raise SiamfaceError(f"{source}: {name} names vertices outside the kept regions; the checkout's vertex "
                            f"order differs from the one FaceKitLayout describes")
    return mapped[mapped >= 0].astype(np.int32)


def _deltas(paths: list[Path], neutral: np.ndarray, kept: np.ndarray) -> np.ndarray:
    out = np.empty((len(paths), len(kept), 3), np.float16)
    for k, path in enumerate(paths):
        verts, _ = read_obj(path)
        if verts.shape != neutral.shape:
            raise SiamfaceError(f"{path} has {len(verts)} vertices, {NEUTRAL} {len(neutral)}: the checkout is "
                                f"incomplete or mixes versions; check it out again")
        out[k] = (verts[kept] - neutral[kept]).astype(np.float16)
    return out


def source_dir(root: str | Path) -> Path:
    """The folder holding the OBJs: ROOT/FaceXModel for a checkout's root, else ROOT itself."""
    root = Path(root)
    return root / SOURCE_DIR if (root / SOURCE_DIR).is_dir() else root


def convert_facekit(root: str | Path, layout: FaceKitLayout = FaceKitLayout()) -> dict[str, np.ndarray]:
    """The asset's arrays from an ICT-FaceKit checkout (its root or its FaceXModel folder)."""
    src = source_dir(root)
    if not (src / INDICES).is_file():
        raise SiamfaceError(f"{root} is not an ICT-FaceKit checkout ({SOURCE_DIR}/{INDICES} missing): "
                            f"git clone https://github.com/ICT-VGL/ICT-FaceKit and pass its folder")
    try:
        indices = json.loads((src / INDICES).read_text())
        names = [str(n) for n in indices["expressions"]]
    except (ValueError, KeyError, TypeError):
        raise SiamfaceError(f"{src / INDICES} is not ICT-FaceKit's vertex index file (no expressions list)") from None
    neutral, faces = read_obj(src / NEUTRAL, polygons=True)
    kept = layout.kept()
    if kept.max() >= len(neutral):
        raise SiamfaceError(f"{src / NEUTRAL} has {len(neutral)} vertices, fewer than the regions FaceKitLayout "
                            f"keeps ({kept.max() + 1}); use a complete checkout")
    identities = sorted(src.glob("identity[0-9][0-9][0-9].obj"))
    if not identities or [p.name for p in identities] != [f"identity{k:03d}.obj" for k in range(len(identities))]:
        raise SiamfaceError(f"{src}: identity000.obj, identity001.obj, ... missing or not consecutive; check out again")
    remap = np.full(len(neutral), -1, np.int64)
    remap[kept] = np.arange(len(kept))
    region = np.concatenate([np.full(stop - start, k, np.uint8) for k, (_, start, stop) in enumerate(layout.regions)])
    missing = [json_key for json_key in JSON_INDEX_SETS.values() if json_key not in indices]
    if missing or len(indices[JSON_INDEX_SETS["landmarks68"]]) != 68:
        raise SiamfaceError(f"{src / INDICES} lacks {missing or 'a 68-entry landmark list'}: use a complete "
                            f"ICT-FaceKit checkout")
    sets = {key: indices[json_key] for key, json_key in JSON_INDEX_SETS.items()}
    sets.update(jawline_right=layout.jawline_right, jawline_left=layout.jawline_left)
    return {
        "mean": neutral[kept].astype(np.float32),
        "id_basis": _deltas(identities, neutral, kept),
        "exp_basis": _deltas([src / f"{n}.obj" for n in names], neutral, kept),
        "exp_names": np.array(names), "triangles": triangulate(faces, remap), "vertex_region": region,
        "region_names": np.array([name for name, _, _ in layout.regions]),
        **{key: _index_set(key, ids, remap, src / INDICES) for key, ids in sets.items()},
        "narrow_face_vertices": np.array(layout.narrow_face_vertices, np.int32),
    }


def write_face_model(root: str | Path, out: str | Path, layout: FaceKitLayout = FaceKitLayout()) -> dict[str, np.ndarray]:
    """Convert and write ``out`` atomically (np.savez_compressed); ICT-FaceKit's LICENSE goes beside it
    as LICENSE (the MIT notice must travel with the data) unless that folder already has one."""
    arrays = convert_facekit(root, layout)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as f:
        np.savez_compressed(f, **arrays)
    licence = source_dir(root).parent / "LICENSE"
    if licence.is_file() and not (out.parent / "LICENSE").exists():
        shutil.copyfile(licence, out.parent / "LICENSE")
    return arrays
