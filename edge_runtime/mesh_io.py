"""Outputs a user can open: .obj and .ply meshes, an overlay PNG, a JSON file (all atomic)."""
from __future__ import annotations

import json
import os
from functools import lru_cache

import cv2
import numpy as np

from .atomic import atomic_write, atomic_write_bytes
from .errors import SiamfaceError


def _mesh_space(vertices: np.ndarray) -> np.ndarray:
    """Image space (y down, z away) to a viewer's space (y up, z towards the viewer)."""
    return vertices * np.array([1.0, -1.0, -1.0])


SKIN_GREY = (150, 150, 150)  # colour of vertices the photo does not show (turned away, hidden, outside)
DEPTH_TOLERANCE_CELLS = 3.0  # a vertex is hidden when it lies this many z-buffer cells behind the nearest


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted, unnormalised vertex normals (outward: triangles are counter-clockwise seen from outside)."""
    v = vertices[triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    idx = triangles.reshape(-1)
    return np.stack([np.bincount(idx, np.repeat(n[:, k], 3), len(vertices)) for k in range(3)], axis=1)


def visible_vertices(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V,) bool: image-space vertices that face the viewer and are not hidden behind the mesh.
    Hidden is judged on a coarse z-buffer of the facing vertices (cells of 1.5 median edge
    lengths, so every cell of the surface holds a vertex), with DEPTH_TOLERANCE_CELLS of slack."""
    front = vertex_normals(vertices, triangles)[:, 2] < 0  # image z points away from the viewer
    if not front.any():
        return front
    edges = np.linalg.norm(vertices[triangles[:, 1], :2] - vertices[triangles[:, 0], :2], axis=1)
    cell = max(1.5 * float(np.median(edges)), 1e-6)
    ij = np.floor((vertices[:, :2] - vertices[front, :2].min(axis=0)) / cell).astype(np.int64)
    ij = np.clip(ij, 0, None)
    width = int(ij[:, 0].max()) + 1
    key = ij[:, 1] * width + ij[:, 0]
    nearest = np.full(int(key.max()) + 1, np.inf)
    np.minimum.at(nearest, key[front], vertices[front, 2])
    return front & (vertices[:, 2] <= nearest[key] + DEPTH_TOLERANCE_CELLS * cell)


def vertex_colours(image_rgb: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) uint8 RGB: the photo sampled bilinearly at each projected vertex; vertices turned
    away, hidden or outside the photo get SKIN_GREY."""
    h, w = image_rgb.shape[:2]
    xy = vertices[:, :2]
    ok = visible_vertices(vertices, triangles) & np.all((xy >= 0) & (xy <= (w - 1, h - 1)), axis=1)
    out = np.empty((len(vertices), 3), np.uint8)
    out[:] = SKIN_GREY
    if ok.any():
        maps = xy[ok].astype(np.float32)
        sampled = cv2.remap(np.ascontiguousarray(image_rgb[..., :3]), maps[:, :1], maps[:, 1:], cv2.INTER_LINEAR)
        out[ok] = sampled.reshape(-1, 3)
    return out


def write_obj(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray,
              colours: np.ndarray | None = None) -> None:
    """Wavefront OBJ; with colours (uint8 RGB) each line is ``v x y z r g b``, r g b in [0, 1]."""
    v = _mesh_space(vertices)
    with atomic_write(path, "w") as f:
        f.write("# siamface mesh (image pixels, y up)\n")
        if colours is None:
            np.savetxt(f, v, fmt="v %.3f %.3f %.3f")
        else:
            np.savetxt(f, np.hstack([v, colours / 255.0]), fmt="v %.3f %.3f %.3f %.4f %.4f %.4f")
        np.savetxt(f, triangles + 1, fmt="f %d %d %d")


def write_ply(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray,
              colours: np.ndarray | None = None) -> None:
    """Binary little-endian PLY; with colours (uint8 RGB) as ``red green blue`` uchar properties."""
    fields = [("xyz", "<f4", (3,))] + ([("rgb", "u1", (3,))] if colours is not None else [])
    v = np.empty(len(vertices), dtype=fields)
    v["xyz"] = _mesh_space(vertices)
    colour_header = ""
    if colours is not None:
        v["rgb"] = colours
        colour_header = "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    faces = np.empty(len(triangles), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    faces["n"], faces["idx"] = 3, triangles
    header = (f"ply\nformat binary_little_endian 1.0\ncomment siamface mesh\nelement vertex {len(v)}\n"
              f"property float x\nproperty float y\nproperty float z\n{colour_header}element face {len(triangles)}\n"
              f"property list uchar int vertex_indices\nend_header\n")
    with atomic_write(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(v.tobytes())
        f.write(faces.tobytes())


@lru_cache(maxsize=4)  # one model per process in practice; overlays of a video ask every frame
def face_region_triangles(model) -> np.ndarray:
    """Triangles of the face proper (no scalp, ears, neck, eyeballs or mouth interior): those whose
    corners all lie in the asset's narrow face area (vertices [0, narrow_face_vertices)), or in its
    "face" region when the asset has no such key."""
    if "narrow_face_vertices" in model.extras:
        inside = np.arange(model.n_vertices) < int(model.extras["narrow_face_vertices"])
    else:
        inside = model.region_mask("face")
    return model.triangles[inside[model.triangles].all(axis=1)]


def draw_overlay(image_rgb: np.ndarray, faces) -> np.ndarray:
    """BGR image with each face's visible face-region wireframe, 68 landmarks and pose."""
    out = image_rgb[..., ::-1].copy()
    wire = out.copy()
    for face in faces:
        p = face.vertices[face.face_triangles][..., :2]
        area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
        front = p[area < 0]
        cv2.polylines(wire, list(np.round(front * 4).astype(np.int32)), True, (255, 200, 80), 1, cv2.LINE_AA, shift=2)
    out = cv2.addWeighted(wire, 0.45, out, 0.55, 0)
    for face in faces:
        for x, y in face.landmarks68_2d:  # the visible contour, as people draw landmarks
            cv2.circle(out, (int(round(x)), int(round(y))), 2, (0, 0, 255), -1, cv2.LINE_AA)
        x0, y0 = int(face.box[0]), int(face.box[1])
        yaw, pitch, roll = face.pose
        cv2.putText(out, f"yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}", (x0, max(12, y0 - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
    return out


def write_png(path: str | os.PathLike, image_bgr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise SiamfaceError(f"{path}: OpenCV could not encode a {image_bgr.shape} {image_bgr.dtype} image as PNG")
    atomic_write_bytes(path, buf.tobytes())


def write_json(path: str | os.PathLike, obj: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)
