"""Loaders for real face datasets in their published layouts: 300W-LP, AFLW2000-3D, folders of
people (LFW), and folders of images with iBUG ``.pts`` files (300-W, LFPW, HELEN, AFW, iBUG). The
LFW pairs-file readers serve evaluation only and live in ``evaluation.pair_files``.

Each loader lists its files when constructed and reads a sample (image + annotation) only
when iterated. A bad sample (missing or unreadable .mat, a key of the wrong shape, an
unreadable image) never stops the iteration: it is recorded in ``loader.skipped`` as
``(path, reason)``. Samples come out grouped by identity (listing order), so a consumer can
fit all images of one identity together.

Pose convention. The .mat files store ``Pose_Para = [pitch, yaw, roll, tx, ty, tz, scale]``
with 3DDFA's rotation ``R = Rx'(pitch) @ Ry'(yaw) @ Rz'(roll)``, where the primed matrices are
the transposes of the standard right-handed rotations (face3d's ``angle2matrix_3ddfa``),
applied to the model (+y up, +z towards the viewer) before the image's y is flipped. That
matrix is ``euler_to_matrix(yaw, pitch, roll).T`` in edge_runtime.camera's terms, so the
project's (yaw, pitch, roll) are read off it with ``matrix_to_euler``; for small angles this
is simply all three signs flipped. DOCUMENTED ASSUMPTION: taken from 3DDFA's published code
(RotationMatrix.m / face3d), not verified against the real files, which are not available here.

AFLW2000-3D's ``pt3d_68`` holds x, y in image pixels and z in the same pixel scale with +z
towards the viewer (3DDFA projects the model without flipping z); loaders negate z into the
project's image convention (+z away from the viewer). Its depth offset is arbitrary. The x, y
values are used as stored (MATLAB origin), as every published NME does.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.io

from siamface.edge_runtime import image_io
from siamface.edge_runtime.camera import euler_to_matrix, matrix_to_euler
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.image_io import IMAGE_SUFFIXES  # what the device reads; shared so both sides list the same files

SOURCE_300WLP = "300W-LP"
SOURCE_AFLW2000 = "AFLW2000-3D"
SOURCE_FOLDER = "folder"
SOURCE_PTS = "pts"
W300LP_SUBSETS = ("AFW", "HELEN", "IBUG", "LFPW")


@dataclass(frozen=True, eq=False)
class RealSample:
    """One annotated photo; landmarks in image pixels (y down), z (if any) +away from viewer."""

    image_path: Path
    identity: str
    image: np.ndarray                     # (H, W, 3) uint8 RGB
    landmarks: np.ndarray | None          # (68, 2) or (68, 3) float64, None when unannotated
    pose_deg: tuple[float, float, float] | None  # (yaw, pitch, roll), project convention
    source: str

    @property
    def has_3d(self) -> bool:
        return self.landmarks is not None and self.landmarks.shape[1] == 3


@dataclass(frozen=True)
class Entry:
    """A listed sample: its image, identity and annotation files, nothing read yet."""

    image_path: Path
    identity: str
    mat_path: Path | None = None
    landmark_path: Path | None = None


class SampleError(Exception):
    """A sample that cannot be used; the loader records it and moves on."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


class Loader:
    """Lists entries once; iterating loads them, skipping (and recording) bad ones."""

    source = ""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SiamfaceError(f"{self.source} folder {self.root} does not exist: pass the dataset's root folder")
        self._listing_skips: list[tuple[Path, str]] = []
        self.entries: list[Entry] = self._list()
        if not self.entries and not self._listing_skips:
            raise SiamfaceError(f"no {self.source} images found under {self.root}: {self._layout_hint()}")
        self.skipped: list[tuple[Path, str]] = list(self._listing_skips)

    def _list(self) -> list[Entry]:
        raise NotImplementedError

    def _layout_hint(self) -> str:
        raise NotImplementedError

    def load(self, entry: Entry) -> RealSample:
        raise NotImplementedError

    def _skip_listing(self, path: Path, reason: str) -> None:
        self._listing_skips.append((path, reason))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[RealSample]:
        self.skipped = list(self._listing_skips)
        for entry in self.entries:
            try:
                yield self.load(entry)
            except SampleError as exc:
                self.skipped.append((exc.path, exc.reason))

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 image (the device's reader: grayscale/RGBA converted, pixel limit), or SampleError."""
    try:
        return image_io.read_image(path)
    except SiamfaceError:
        raise SampleError(path, "unreadable image") from None


def read_mat(path: Path) -> dict:
    try:
        return scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:
        raise SampleError(path, f"unreadable .mat ({exc.__class__.__name__})") from None


def mat_array(mat: dict, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """A finite float64 array of exactly ``shape`` from a loaded .mat, else SampleError."""
    if key not in mat:
        raise SampleError(path, f"key {key} missing")
    try:
        value = np.asarray(mat[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise SampleError(path, f"key {key} is not numeric") from None
    if value.shape != shape:
        raise SampleError(path, f"key {key} has shape {value.shape}, expected {shape}")
    if not np.all(np.isfinite(value)):
        raise SampleError(path, f"key {key} has non-finite values")
    return value


def pose_from_3ddfa(pitch: float, yaw: float, roll: float) -> tuple[float, float, float]:
    """3DDFA Pose_Para angles (radians) -> the project's (yaw, pitch, roll) in degrees."""
    rotation = euler_to_matrix(yaw, pitch, roll).T
    return tuple(float(np.degrees(a)) for a in matrix_to_euler(rotation))


def read_pose(mat: dict, path: Path) -> tuple[float, float, float]:
    pose = mat_array(mat, "Pose_Para", (1, 7), path)[0]
    return pose_from_3ddfa(pose[0], pose[1], pose[2])


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class W300LPLoader(Loader):
    """300W-LP: ``<subset>/<source>_<k>.jpg`` + ``.mat``; identity = subset + source photo.

    All pose copies k of one source photo share an identity; the *_Flip subsets are separate
    identities. Landmarks: ``pts_3d`` (68, 2) of ``landmarks/<subset>/<name>_pts.mat`` when that
    file exists (the 3D-consistent annotation, matching fixed model vertices), else the .mat's
    ``pt2d`` (2, 68). 2D only, so ``has_3d`` is False.
    """

    source = SOURCE_300WLP
    subsets = W300LP_SUBSETS + tuple(f"{s}_Flip" for s in W300LP_SUBSETS)
    NAME = re.compile(r"^(?P<source>.+)_(?P<k>\d+)$")

    def _layout_hint(self) -> str:
        return f"expected subset folders {', '.join(self.subsets)} holding <source>_<k>.jpg with .mat beside"

    def _list(self) -> list[Entry]:
        keyed = []
        for subset in self.subsets:
            folder = self.root / subset
            if not folder.is_dir():
                continue
            for image_path in image_files(folder):
                match = self.NAME.match(image_path.stem)
                mat_path = image_path.with_suffix(".mat")
                if match is None:
                    self._skip_listing(image_path, "file name is not <source>_<k>")
                elif not mat_path.is_file():
                    self._skip_listing(image_path, f"missing {mat_path.name}")
                else:
                    landmark_path = self.root / "landmarks" / subset / f"{image_path.stem}_pts.mat"
                    identity = f"{subset}/{match['source']}"
                    entry = Entry(image_path, identity, mat_path,
                                  landmark_path if landmark_path.is_file() else None)
                    keyed.append(((identity, int(match["k"])), entry))
        return [entry for _, entry in sorted(keyed, key=lambda pair: pair[0])]

    def load(self, entry: Entry) -> RealSample:
        mat = read_mat(entry.mat_path)
        pose = read_pose(mat, entry.mat_path)
        if entry.landmark_path is not None:
            landmarks = mat_array(read_mat(entry.landmark_path), "pts_3d", (68, 2), entry.landmark_path)
        else:
            landmarks = mat_array(mat, "pt2d", (2, 68), entry.mat_path).T
        image = read_image(entry.image_path)
        return RealSample(entry.image_path, entry.identity, image, landmarks, pose, self.source)


class AFLW2000Loader(Loader):
    """AFLW2000-3D: ``imageNNNNN.jpg`` + ``.mat`` (pt3d_68, Pose_Para); each image its own identity.

    The evaluation set: landmarks are (68, 3) with z negated into the project's convention,
    pose_deg carries the ground-truth yaw used for the yaw bins.
    """

    source = SOURCE_AFLW2000

    def _layout_hint(self) -> str:
        return "expected imageNNNNN.jpg files with imageNNNNN.mat beside them"

    def _list(self) -> list[Entry]:
        entries = []
        for image_path in image_files(self.root):
            mat_path = image_path.with_suffix(".mat")
            if mat_path.is_file():
                entries.append(Entry(image_path, image_path.stem, mat_path))
            else:
                self._skip_listing(image_path, f"missing {mat_path.name}")
        return entries

    def load(self, entry: Entry) -> RealSample:
        mat = read_mat(entry.mat_path)
        landmarks = mat_array(mat, "pt3d_68", (3, 68), entry.mat_path).T.copy()
        landmarks[:, 2] *= -1.0
        pose = read_pose(mat, entry.mat_path)
        image = read_image(entry.image_path)
        return RealSample(entry.image_path, entry.identity, image, landmarks, pose, self.source)


class IdentityFolderLoader(Loader):
    """A folder per person (LFW layout ``person/*.jpg``): identity = folder name, no landmarks."""

    source = SOURCE_FOLDER

    def _layout_hint(self) -> str:
        return "expected one sub-folder per person holding that person's images"

    def _list(self) -> list[Entry]:
        return [Entry(image_path, person.name)
                for person in sorted(p for p in self.root.iterdir() if p.is_dir())
                for image_path in image_files(person)]

    def load(self, entry: Entry) -> RealSample:
        return RealSample(entry.image_path, entry.identity, read_image(entry.image_path), None, None, self.source)


def read_pts(path: Path, n_points: int = 68) -> np.ndarray:
    """(n_points, 2) float64 0-based pixels from an iBUG ``.pts`` file (``version: 1``,
    ``n_points: 68``, ``{``, one ``x y`` line per point, ``}``; 1-based, so 1 is subtracted).
    Anything else is a SampleError naming the file and what is wrong."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise SampleError(path, f"unreadable .pts ({exc.__class__.__name__})") from None
    header = dict(line.split(":", 1) for line in lines if ":" in line)
    declared = header.get("n_points", "").strip()
    if not declared.isdigit():
        raise SampleError(path, "no 'n_points: N' header: not an iBUG .pts file")
    if int(declared) != n_points:
        raise SampleError(path, f"n_points is {declared}, expected {n_points} (the iBUG 68-point layout)")
    if "{" not in lines or "}" not in lines or lines.index("}") < lines.index("{"):
        raise SampleError(path, "points are not enclosed in '{' and '}' lines")
    body = [line for line in lines[lines.index("{") + 1:lines.index("}")] if line]
    if len(body) != n_points:
        raise SampleError(path, f"{len(body)} point lines between the braces, n_points says {n_points}")
    points = np.full((n_points, 2), np.nan)
    for k, line in enumerate(body):
        try:
            points[k] = [float(v) for v in line.split()]
        except ValueError:  # not numbers, or not two of them
            pass
        if not np.all(np.isfinite(points[k])):
            raise SampleError(path, f"point {k + 1} reads {line!r}, expected two finite numbers 'x y'")
    return points - 1.0


class PtsFolderLoader(Loader):
    """Images with an iBUG ``.pts`` beside them (``NAME.jpg`` + ``NAME.pts``), in the folder and
    its sub-folders (300-W's ``01_Indoor/``, LFPW's ``trainset/``); each image its own identity.

    2D-convention landmarks (the jaw on the visible contour), 0-based pixels; no pose. An image
    without a .pts is listed as skipped, not an error: annotated folders often hold extras.
    """

    source = SOURCE_PTS

    def _layout_hint(self) -> str:
        return f"expected images ({', '.join(sorted(IMAGE_SUFFIXES))}) with NAME.pts beside each"

    def _list(self) -> list[Entry]:
        entries = []
        for image_path in sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            pts = image_path.with_suffix(".pts")
            if pts.is_file():
                entries.append(Entry(image_path, str(image_path.relative_to(self.root).with_suffix("")),
                                     landmark_path=pts))
            else:
                self._skip_listing(image_path, f"missing {pts.name}")
        return entries

    def load(self, entry: Entry) -> RealSample:
        landmarks = read_pts(entry.landmark_path)
        return RealSample(entry.image_path, entry.identity, read_image(entry.image_path), landmarks, None, self.source)


def split_by_identity(loader: Loader, val_fraction: float) -> dict[str, Loader]:
    """Train/val views of a loader with disjoint identities.

    Identities are ranked by a hash of their key (stable across runs and machines) and the first
    round(fraction * n) go to val, at least one when the fraction is positive and there are two
    or more identities, so small datasets still get a validation split.
    """
    import copy
    import zlib

    identities = sorted({e.identity for e in loader.entries}, key=lambda k: (zlib.crc32(k.encode()), k))
    n_val = round(val_fraction * len(identities))
    if val_fraction > 0 and len(identities) > 1:
        n_val = min(max(n_val, 1), len(identities) - 1)
    val_ids = set(identities[:n_val])
    views = {}
    for name, want in (("train", False), ("val", True)):
        view = copy.copy(loader)
        view.entries = [e for e in loader.entries if (e.identity in val_ids) == want]
        views[name] = view
    return views


LOADERS = {"300w-lp": W300LPLoader, "aflw2000": AFLW2000Loader}  # the formats `siamface data fit` reads
