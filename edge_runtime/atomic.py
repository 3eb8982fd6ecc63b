"""Write files atomically and durably: a temp file in the same folder, fsynced, renamed over the
target when complete, then the folder fsynced, so a power cut on an SD card leaves the old file
or the new one, never an empty or half-written one.

Temp files and folders are named ``.{target}.{8 random chars}.tmp`` (SQLite adds -wal, -shm or
-journal to a temp gallery). A kill -9 leaves them behind; every new temp file or folder first
removes such leftovers in its folder that are older than STALE_AFTER_S, which no live writer
keeps that long between creating and renaming.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 60.0
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(-wal|-shm|-journal)?")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a folder (a folder's fsync makes a rename or a new name durable); a no-op
    where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_change(entry: os.DirEntry) -> float:
    """Newest mtime of a temp file, or of a temp folder and everything in it (a file being written
    inside a folder does not change the folder's own mtime)."""
    newest = entry.stat(follow_symlinks=False).st_mtime
    if entry.is_dir(follow_symlinks=False):
        for folder, _, files in os.walk(entry.path):
            newest = max([newest, *(os.lstat(os.path.join(folder, name)).st_mtime for name in files)])
    return newest


def clean_stale_temps(folder: str | os.PathLike, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temp files and folders of this module's naming pattern in ``folder`` whose last
    change is older than ``older_than_s``; returns what was removed."""
    removed = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMP_NAME.fullmatch(entry.name):
            continue
        try:
            if _last_change(entry) > cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue  # another process removed or renamed it first
        removed.append(Path(entry.path))
    return removed


def temp_file(path: str | os.PathLike) -> Path:
    """A new empty 0600 temp file beside ``path`` (stale leftovers cleaned first); the caller renames
    or deletes it."""
    path = Path(path)
    clean_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", permissions: int | None = None) -> Iterator[IO]:
    """Yield a file to write; the target appears only if the block finishes without error, and is
    on disk (file and folder fsynced) when this returns.

    The file gets ``permissions``, by default what a plain open() would give (0666 less the
    umask), not mkstemp's private 0600.
    """
    path = Path(path)
    tmp = temp_file(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask() if permissions is None else permissions)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(folder)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder to fill; it replaces ``path`` only if the block finishes without error,
    with every file in it, the folder and its parent fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 -> what mkdir() would give
        _fsync_tree(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
