"""Pairs files for verification (LFW ``pairs.txt`` and a CSV ``file_a,file_b,same``): which photos
to compare and whether they show the same person. Read by evaluation and by `siamface calibrate`.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from siamface.edge_runtime.errors import SiamfaceError


class Pair(NamedTuple):
    """Two image paths and whether they show the same person."""

    path_a: Path
    path_b: Path
    same: bool


def _check_exists(path: Path, source: Path, line: int) -> Path:
    if not path.is_file():
        raise SiamfaceError(f"{source}:{line}: image {path} does not exist: fix the pairs file or the images folder")
    return path


def read_lfw_pairs(path: str | os.PathLike, images_root: str | os.PathLike | None = None) -> list[Pair]:
    """LFW ``pairs.txt``: header ``folds n`` (or ``n``), then per fold n same and n different lines.

    Same: ``name i j``; different: ``name1 i name2 j``; images are ``<root>/name/name_000i.jpg``
    with root defaulting to the pairs file's folder. Pairs come back in file order, so fold f
    is ``pairs[f * 2n:(f + 1) * 2n]``.
    """
    path = Path(path)
    root = Path(images_root) if images_root is not None else path.parent
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SiamfaceError(f"cannot read pairs file {path} ({exc.__class__.__name__}): check the path") from None
    header = lines[0].split() if lines else []
    if len(header) not in (1, 2) or not all(h.isdigit() for h in header):
        raise SiamfaceError(f"{path}:1: header must be 'folds pairs_per_fold' or 'pairs': is this an LFW pairs.txt?")
    folds, per_fold = (1, int(header[0])) if len(header) == 1 else (int(header[0]), int(header[1]))
    body = [(i + 2, line.split()) for i, line in enumerate(lines[1:]) if line.strip()]
    if len(body) != folds * per_fold * 2:
        raise SiamfaceError(f"{path}: header promises {folds * per_fold * 2} pairs, file has {len(body)}: "
                            f"the file is truncated or not an LFW pairs file")

    def image(name: str, number: str, line: int) -> Path:
        if not number.isdigit():
            raise SiamfaceError(f"{path}:{line}: image number {number!r} is not an integer: fix that line")
        return _check_exists(root / name / f"{name}_{int(number):04d}.jpg", path, line)

    pairs = []
    for line, fields in body:
        if len(fields) == 3:
            pairs.append(Pair(image(fields[0], fields[1], line), image(fields[0], fields[2], line), True))
        elif len(fields) == 4:
            pairs.append(Pair(image(fields[0], fields[1], line), image(fields[2], fields[3], line), False))
        else:
            raise SiamfaceError(f"{path}:{line}: expected 'name i j' or 'name1 i name2 j', got {len(fields)} fields")
    return pairs


TRUE_WORDS = {"1", "true", "yes"}
FALSE_WORDS = {"0", "false", "no"}


def read_pairs_csv(path: str | os.PathLike) -> list[Pair]:
    """CSV ``file_a,file_b,same`` (header optional); paths relative to the CSV's folder."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SiamfaceError(f"cannot read pairs CSV {path} ({exc.__class__.__name__}): check the path") from None
    pairs = []
    for line, row in enumerate(rows, start=1):
        row = [field.strip() for field in row]
        if not any(row):
            continue
        if len(row) != 3:
            raise SiamfaceError(f"{path}:{line}: expected 3 fields file_a,file_b,same, got {len(row)}")
        if line == 1 and row[2].lower() not in TRUE_WORDS | FALSE_WORDS:
            continue  # header
        same = row[2].lower()
        if same not in TRUE_WORDS | FALSE_WORDS:
            raise SiamfaceError(f"{path}:{line}: 'same' must be 1/0 or true/false, got {row[2]!r}")
        pairs.append(Pair(_check_exists(path.parent / row[0], path, line),
                          _check_exists(path.parent / row[1], path, line), same in TRUE_WORDS))
    if not pairs:
        raise SiamfaceError(f"pairs CSV {path} holds no pairs: add lines file_a,file_b,same")
    return pairs


def photo_units(photos: Sequence[Path], pairs: Sequence[Pair]) -> np.ndarray:
    """Each photo's independent unit for the intervals (0..n-1): its folder where the folders are the
    people (LFW's layout; every same pair within a folder, every different pair across two, two
    folders or more), else the photo itself. Two photos of one person are not independent draws: an
    interval over photos would be too narrow."""
    folders = [p.parent for p in photos]
    index = {p: k for k, p in enumerate(photos)}
    people = all((folders[index[p.path_a]] == folders[index[p.path_b]]) == p.same for p in pairs)
    if not people or len(set(folders)) < 2:
        return np.arange(len(photos))
    return np.unique([str(f) for f in folders], return_inverse=True)[1]
