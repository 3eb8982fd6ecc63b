"""The on-disk dataset format: sharded .npy files plus a manifest.

Each split folder holds shards ``shard-NNNNN.images.npy`` (uint8, N x S x S x 3, RGB) and
``shard-NNNNN.labels.npy`` (float32, N x D). A .npy file is a header followed by fixed-size
records, so numpy reads it with ``np.load(mmap_mode='r')`` and tf.data with
``FixedLengthRecordDataset(header_bytes=...)``, with no Python work per sample. The label
columns and everything needed to interpret them live in ``manifest.json``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from siamface.edge_runtime.atomic import atomic_write, atomic_write_json  # noqa: F401  (re-exported)
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.edge_runtime.versioned_json import read_versioned_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
# manifest "labels" of a dataset whose samples carry only an identity (every geometry column NaN)
LABELS_IDENTITY_ONLY = "identity-only"


def label_columns(layout: ParamLayout, traits: int = 0) -> list[tuple[str, int]]:
    """Ordered (name, width) of the label record for a parameter layout; synthetic datasets add
    ``traits`` columns of what each person looks like (``data.traits``), last."""
    return [("identity", 1), ("params", layout.size), ("landmarks2d", 68 * 2), ("landmarks3d", 68 * 3),
            ("pose_deg", 3), ("face_box", 4)] + ([("traits", traits)] if traits else [])


def manifest_header(layout: ParamLayout, face_model: dict, image_size: int, traits: int = 0) -> dict:
    """The manifest fields every writer starts with: what ``Dataset.open`` and training check."""
    return {"format_version": FORMAT_VERSION, "image_size": image_size, "pixel_format": "RGB uint8",
            "param_layout": layout.to_dict(), "face_model": face_model,
            "columns": [list(c) for c in label_columns(layout, traits)]}


def column_slices(columns: list[tuple[str, int]]) -> dict[str, slice]:
    out, start = {}, 0
    for name, width in columns:
        out[name] = slice(start, start + width)
        start += width
    return out


def record_width(columns: dict[str, slice]) -> int:
    """Numbers per label record: where the last column ends."""
    return max(s.stop for s in columns.values())


def shard_paths(split_dir: Path, index: int) -> tuple[Path, Path]:
    stem = split_dir / f"shard-{index:05d}"
    return stem.with_suffix(".images.npy"), stem.with_suffix(".labels.npy")


def start_output(out: Path, config_file: str, settings: dict, remedy: str,
                 implied: Callable[[dict], dict] = lambda recorded: recorded) -> None:
    """Begin or resume writing a dataset into ``out``: refuse to mix shards made with other
    settings (one line naming the keys that differ and ``remedy``), record the settings, and
    clear the temp files a killed run left behind. ``implied`` completes settings recorded before
    newer ones existed with the values those older shards were made under (compared, not rewritten)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / config_file
    if path.is_file():
        before = implied(json.loads(path.read_text()))
        if before != settings:
            keys = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise SiamfaceError(f"{out} holds a dataset started with a different config ({', '.join(keys)} "
                                f"differ from {path}): {remedy}")
    else:
        atomic_write_json(path, settings)
    for split in SPLITS:
        (out / split).mkdir(exist_ok=True)
        for tmp in (out / split).glob(".*.tmp"):
            tmp.unlink()


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Never a half-written shard: temp file, then rename."""
    with atomic_write(path) as f:
        np.save(f, array)


def write_shard(split_dir: Path, index: int, images: np.ndarray, labels: np.ndarray) -> None:
    """Images first, labels last: a labels file exists only for a complete shard."""
    img_path, lab_path = shard_paths(split_dir, index)
    atomic_save_npy(img_path, np.ascontiguousarray(images, dtype=np.uint8))
    atomic_save_npy(lab_path, np.ascontiguousarray(labels, dtype=np.float32))


def shard_is_complete(split_dir: Path, index: int, count: int, width: int | None = None) -> bool:
    """Both files of the shard hold ``count`` records (and the labels ``width`` columns, when given:
    a shard written before columns were added is redone)."""
    img_path, lab_path = shard_paths(split_dir, index)
    if not (img_path.is_file() and lab_path.is_file()):
        return False
    try:
        labels = np.load(lab_path, mmap_mode="r")
        return (np.load(img_path, mmap_mode="r").shape[0] == count and labels.shape[0] == count
                and width in (None, labels.shape[1]))
    except (OSError, ValueError):
        return False


@dataclass
class SplitData:
    """One split: labels in memory, images memory-mapped shard by shard."""

    name: str
    image_files: list[Path]
    label_files: list[Path]
    columns: dict[str, slice]
    identity_offsets: list[int] | None = None  # per shard, keeps merged datasets' identities apart

    @cached_property
    def labels(self) -> np.ndarray:
        width = record_width(self.columns)
        if not self.label_files:
            return np.zeros((0, width), np.float32)
        parts = [_pad_columns(np.load(p), width) for p in self.label_files]
        for part, offset in zip(parts, self.identity_offsets or []):
            part[:, self.columns["identity"]] += offset
        return np.concatenate(parts)

    @cached_property
    def _images(self) -> list[np.ndarray]:
        return [np.load(p, mmap_mode="r") for p in self.image_files]

    @cached_property
    def _offsets(self) -> np.ndarray:
        return np.cumsum([0] + [a.shape[0] for a in self._images])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self._images[0].shape[1])

    def column(self, name: str) -> np.ndarray:
        return self.labels[:, self.columns[name]]

    @property
    def traits(self) -> np.ndarray | None:
        """(N, T) what each sample's person looks like (NaN rows: unknown), or None: no dataset has them."""
        return self.column("traits") if "traits" in self.columns else None

    @property
    def identity(self) -> np.ndarray:
        return self.column("identity")[:, 0].astype(np.int64)

    @property
    def params(self) -> np.ndarray:
        return self.column("params")

    @property
    def landmarks2d(self) -> np.ndarray:
        return self.column("landmarks2d").reshape(-1, 68, 2)

    @property
    def landmarks3d(self) -> np.ndarray:
        return self.column("landmarks3d").reshape(-1, 68, 3)

    @property
    def pose_deg(self) -> np.ndarray:
        return self.column("pose_deg")

    @property
    def face_box(self) -> np.ndarray:
        return self.column("face_box")

    def images(self, indices: np.ndarray) -> np.ndarray:
        """Gather images by global index (vectorized per shard)."""
        indices = np.asarray(indices, np.int64)
        shard = np.searchsorted(self._offsets, indices, side="right") - 1
        out = np.empty((len(indices),) + self._images[0].shape[1:], np.uint8)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._images[s][indices[sel] - self._offsets[s]]
        return out


def _pad_columns(labels: np.ndarray, width: int) -> np.ndarray:
    """Label records widened to ``width`` with NaN: columns added to the format since (they come
    last) are unknown for shards written before them, or by writers that do not fill them."""
    if labels.shape[1] == width:
        return labels
    return np.concatenate([labels, np.full((len(labels), width - labels.shape[1]), np.nan, np.float32)], 1)


def whole_people(identity: np.ndarray, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` images: every photo of people evenly spaced over ``identity``'s order."""
    people, first = np.unique(identity, return_index=True)
    people = people[np.argsort(first)]
    photos = max(1, round(len(identity) / len(people)))
    chosen = people[np.linspace(0, len(people) - 1, max(1, limit // photos)).astype(int)]
    idx = np.flatnonzero(np.isin(identity, chosen))
    return idx[:limit]


def merge_splits(splits: list[SplitData]) -> SplitData:
    """One view over several datasets' splits; identities of each are shifted to stay distinct.
    A dataset without the last columns of another (synthetic traits, say) reads them as NaN."""
    if len(splits) == 1:
        return splits[0]
    widest = max(splits, key=lambda s: len(s.columns)).columns
    images, labels, offsets, shift = [], [], [], 0
    for split in splits:
        if list(split.columns.items()) != list(widest.items())[:len(split.columns)]:
            raise SiamfaceError(f"cannot mix datasets with different label layouts ({split.label_files[0].parent})")
        images += split.image_files
        labels += split.label_files
        offsets += [shift + o for o in (split.identity_offsets or [0] * len(split.label_files))]
        shift += int(split.identity.max()) + 1 if len(split) else 0
    return SplitData(splits[0].name, images, labels, widest, offsets)


@dataclass
class Dataset:
    """A dataset folder opened and validated through its manifest."""

    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Dataset":
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise SiamfaceError(f"no dataset at {root} ({MANIFEST} missing): create one with `siamface data synth --out {root}`")
        return cls(root, read_versioned_json(path, FORMAT_VERSION, "dataset manifest",
                                             "regenerate it with `siamface data synth`"))

    @property
    def layout(self) -> ParamLayout:
        return ParamLayout.from_dict(self.manifest["param_layout"])

    @property
    def whitening(self) -> Whitening:
        return Whitening.from_dict(self.manifest["whitening"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    @property
    def face_model(self) -> dict:
        return self.manifest["face_model"]

    def split(self, name: str) -> SplitData:
        info = self.manifest["splits"].get(name)
        if info is None:
            raise SiamfaceError(f"dataset {self.root} has no split {name!r} (has {sorted(self.manifest['splits'])})")
        split_dir = self.root / name
        pairs = [shard_paths(split_dir, i) for i in range(info["shards"])]
        columns = column_slices([tuple(c) for c in self.manifest["columns"]])
        return SplitData(name, [p[0] for p in pairs], [p[1] for p in pairs], columns)
