"""Outputs a user can open: .obj and .ply meshes, an overlay PNG, a JSON file (all atomic)."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from edge_runtime.atomic import atomic_write, atomic_write_bytes
from edge_runtime.errors import SiamfaceError


def _mesh_space(vertices: np.ndarray) -> np.ndarray:
    """Image space (y down, z away) to a viewer's space (y up, z towards the viewer)."""
    return vertices * np.array([1.0, -1.0, -1.0])


def write_obj(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> None:
    v = _mesh_space(vertices)
    with atomic_write(path, "w") as f:
        f.write("# siamface mesh (image pixels, y up)\n")
        np.savetxt(f, v, fmt="v %.3f %.3f %.3f")
        np.savetxt(f, triangles + 1, fmt="f %d %d %d")


def write_ply(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> None:
    """Binary little-endian PLY."""
    v = _mesh_space(vertices).astype("<f4")
    faces = np.empty(len(triangles), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    faces["n"], faces["idx"] = 3, triangles
    header = (f"ply\nformat binary_little_endian 1.0\ncomment siamface mesh\nelement vertex {len(v)}\n"
              f"property float x\nproperty float y\nproperty float z\nelement face {len(triangles)}\n"
              f"property list uchar int vertex_indices\nend_header\n")
    with atomic_write(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(v.tobytes())
        f.write(faces.tobytes())


def draw_overlay(image_rgb: np.ndarray, faces) -> np.ndarray:
    """BGR image with each face's visible mesh wireframe, 68 landmarks and pose."""
    out = image_rgb[..., ::-1].copy()
    wire = out.copy()
    for face in faces:
        v, tris = face.vertices, face.triangles
        p = v[tris][..., :2]
        area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
        front = p[area < 0]
        cv2.polylines(wire, list(np.round(front * 4).astype(np.int32)), True, (255, 200, 80), 1, cv2.LINE_AA, shift=2)
    out = cv2.addWeighted(wire, 0.45, out, 0.55, 0)
    for face in faces:
        for x, y in face.landmarks68:
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
