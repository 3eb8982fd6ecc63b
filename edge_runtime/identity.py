"""Offline identity gallery: enrolled people's templates in one SQLite file.

Why SQLite: one file a Raspberry Pi can keep on an SD card, transactions so a crash or a
bad input never leaves half an enrolment, and locking so several processes (a camera loop
and an ``enroll`` command) can share it. The file records the model hash of the bundle
whose embeddings it holds, because embeddings of different models are not comparable, and
it is created with mode 0600 because templates are biometric data (SQLite gives its -wal
and -shm files the main file's mode).

A person's template is the L2-normalised mean of their L2-normalised embeddings. The file
stores the un-normalised mean (float32, little-endian) and the count, so that enrolling
more images later is an exact running mean.
"""
from __future__ import annotations

import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import SiamfaceError

SCHEMA_VERSION = 1
APPLICATION_ID = int.from_bytes(b"SIAM", "big")  # PRAGMA application_id of a siamface gallery
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's transaction
SQLITE_MAGIC = b"SQLite format 3\x00"
_BLOB_DTYPE = np.dtype("<f4")
_MIN_NORM = 1e-12

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE people (
        name TEXT PRIMARY KEY,
        dim INTEGER NOT NULL CHECK (dim > 0),
        count INTEGER NOT NULL CHECK (count > 0),
        mean BLOB NOT NULL CHECK (length(mean) = 4 * dim),
        enrolled_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
)
_RECOVER = "restore it from a backup or pass a new gallery path"


@dataclass(frozen=True)
class Verification:
    """Is this face ``name``? ``match`` is ``score >= threshold`` (cosine similarity)."""

    name: str
    score: float
    match: bool
    threshold: float


@dataclass(frozen=True)
class Identification:
    """Who is this? Top candidates by cosine, best first; ``best`` is None for "unknown"."""

    candidates: list[tuple[str, float]]
    best: str | None
    threshold: float


@dataclass(frozen=True)
class Enrollment:
    """One enrolled person: how many embeddings make the template, first and last enrolment."""

    name: str
    count: int
    enrolled_at: datetime
    updated_at: datetime


def cosine_threshold(value: Any, where: str) -> float:
    """The one rule for a decision threshold on cosine similarity: a finite number in [-1, 1].

    Bundles (load and write), the gallery and ``--threshold`` all check with this, so a value one
    of them accepts is accepted by all; ``where`` names the file or option in the error."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = math.nan
    if not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise SiamfaceError(f"{where}: threshold {value!r} is not a cosine in [-1, 1]; pass a number from -1 "
                            f"(accept everyone) to 1 (accept only identical embeddings)")
    return threshold


def as_embeddings(x: Any) -> np.ndarray:
    """An embedding (D,), a batch (N, D), an object with ``.embedding`` (a Face) or a list of
    any of these -> float64 array (N, D); raises SiamfaceError on anything else."""
    if hasattr(x, "embedding"):
        x = x.embedding
    if isinstance(x, (list, tuple)) and x and all(hasattr(item, "embedding") for item in x):
        return np.concatenate([as_embeddings(item) for item in x])
    if x is None:
        raise SiamfaceError("no embedding given (the bundle may have no identity head)")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SiamfaceError(f"embeddings must be numbers of shape (D,) or (N, D): {exc}") from exc
    batch = arr[None, :] if arr.ndim == 1 else arr
    if batch.ndim != 2 or batch.size == 0:
        raise SiamfaceError(f"embeddings must have shape (D,) or (N, D) with N, D > 0, got {arr.shape}")
    return batch


def _unit_rows(x: Any) -> np.ndarray:
    """Validated, L2-normalised rows of ``as_embeddings(x)``."""
    arr = as_embeddings(x)
    if not np.isfinite(arr).all():
        raise SiamfaceError("embeddings contain NaN or infinite values: check the model output")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms < _MIN_NORM).any():
        raise SiamfaceError("an embedding is all zeros and has no direction: check the model output")
    return arr / norms


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _pack(v: np.ndarray) -> bytes:
    return v.astype(_BLOB_DTYPE).tobytes()


def _unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=_BLOB_DTYPE).astype(np.float64)


def _time(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that is always closed, waits for other writers up to BUSY_TIMEOUT_S and
    turns SQLite errors into one-line SiamfaceErrors."""
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise SiamfaceError(f"gallery {path}: SQLite error: {exc}; if the file is damaged, {_RECOVER}") from exc


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (take the write lock now, waiting up to the busy timeout), then COMMIT,
    or ROLLBACK on any exception so the file is left as it was."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Gallery:
    """Enrolled people's templates in one SQLite file, for the model with ``model_hash``.

    ``threshold`` is the cosine-similarity decision threshold (the bundle's, or any in [-1, 1]:
    ``cosine_threshold`` is the one rule).
    Opening creates the file if missing and checks an existing one: SQLite, siamface schema
    version, same model hash. Each operation opens and closes its own connection, so a
    Gallery can be shared across threads and processes.
    """

    def __init__(self, path: str | os.PathLike, model_hash: str, threshold: float) -> None:
        self.path = Path(path)
        if not model_hash:
            raise SiamfaceError(f"gallery {self.path}: empty model hash; pass the bundle's model hash")
        self.model_hash = model_hash
        self.threshold = cosine_threshold(threshold, f"gallery {self.path}")
        self._open()

    # -- opening and checking the file ---------------------------------------------------

    def _open(self) -> None:
        if not self.path.parent.is_dir():
            raise SiamfaceError(f"gallery {self.path}: folder {self.path.parent} does not exist; create it first")
        if not self.path.exists():
            self._create()
        with open(self.path, "rb") as f:
            if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise SiamfaceError(f"gallery {self.path} is empty or not an SQLite file (corrupt or another "
                                    f"format); {_RECOVER}")
        with _connect(self.path) as conn:
            if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                raise SiamfaceError(f"{self.path} is an SQLite file but not a siamface gallery; "
                                    "pass a new gallery path")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise SiamfaceError(
                    f"gallery {self.path} has schema version {version}, this siamface reads version "
                    f"{SCHEMA_VERSION}; use the matching siamface version or a new gallery path")
            stored = conn.execute("SELECT value FROM meta WHERE key = 'model_hash'").fetchone()
        if stored is None:
            raise SiamfaceError(f"gallery {self.path} records no model hash; {_RECOVER}")
        if stored[0] != self.model_hash:
            raise SiamfaceError(
                f"gallery {self.path} holds embeddings of model {stored[0]}, not of this bundle's "
                f"model {self.model_hash}; use the matching bundle or a new gallery path")

    def _create(self) -> None:
        """Build the empty gallery in a 0600 temp file beside ``path`` and publish it with a hard
        link, which never replaces a file: of several processes creating it at once, one wins
        and the others open the winner's file."""
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with _connect(tmp) as conn:
                conn.execute("PRAGMA journal_mode = WAL")  # persistent; the -wal goes when conn closes
                with _transaction(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                     [("model_hash", self.model_hash), ("created_at", repr(time.time()))])
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # a concurrent opener published first: check and use its file
            except OSError:  # no hard links (FAT): rename, which cannot detect a racing creator
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with _connect(self.path) as conn, _transaction(conn):
            yield conn

    def _check_dim(self, dim: int, stored: int) -> None:
        if dim != stored:
            raise SiamfaceError(
                f"gallery {self.path} holds {stored}-d embeddings, got {dim}-d; embeddings must come "
                f"from the bundle with model hash {self.model_hash}")

    def _unknown(self, name: str) -> SiamfaceError:
        return SiamfaceError(f"{name!r} is not enrolled in gallery {self.path}; list enrolled names with "
                             f"`siamface gallery list {self.path}` (Gallery.names() in Python)")

    # -- operations -----------------------------------------------------------------------

    def enroll(self, name: str, embeddings: Any, update: bool = False) -> Enrollment:
        """Enrol ``name`` from one or more embeddings (or faces). An existing name is replaced,
        or with ``update=True`` its template becomes the mean over old and new embeddings."""
        if not isinstance(name, str) or not name.strip():
            raise SiamfaceError(f"gallery {self.path}: a person's name must be a non-empty string, got {name!r}")
        unit = _unit_rows(embeddings)
        count, dim = unit.shape
        total = unit.sum(axis=0)
        now = time.time()
        with self._write() as conn:
            other = conn.execute("SELECT dim FROM people LIMIT 1").fetchone()
            if other is not None:
                self._check_dim(dim, other[0])
            enrolled_at = now
            if update:
                row = conn.execute("SELECT count, mean, enrolled_at FROM people WHERE name = ?", (name,)).fetchone()
                if row is not None:
                    total = total + row[0] * _unpack(row[1])
                    count += row[0]
                    enrolled_at = row[2]
            mean = total / count
            if np.linalg.norm(mean) < _MIN_NORM:
                raise SiamfaceError(f"gallery {self.path}: the embeddings for {name!r} cancel out (mean is zero); "
                                    "enrol other images")
            conn.execute("INSERT OR REPLACE INTO people (name, dim, count, mean, enrolled_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (name, dim, count, _pack(mean), enrolled_at, now))
        return Enrollment(name, count, _time(enrolled_at), _time(now))

    def verify(self, embedding: Any, name: str) -> Verification:
        """Cosine similarity of one embedding (or face) to ``name``'s template, and the decision."""
        probe = self._probe(embedding)
        with _connect(self.path) as conn:
            row = conn.execute("SELECT dim, mean FROM people WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise self._unknown(name)
        self._check_dim(probe.size, row[0])
        score = float(probe @ _unit(_unpack(row[1])))
        return Verification(name, score, score >= self.threshold, self.threshold)

    def identify(self, embedding: Any, k: int = 5) -> Identification:
        """The ``k`` enrolled people most similar to one embedding (or face), best first;
        ``best`` is the top name, or None when its score is below the threshold."""
        if k < 1:
            raise SiamfaceError(f"identify needs k >= 1, got {k}")
        probe = self._probe(embedding)
        with _connect(self.path) as conn:
            rows = conn.execute("SELECT name, dim, mean FROM people ORDER BY name").fetchall()
        if not rows:
            return Identification([], None, self.threshold)
        self._check_dim(probe.size, rows[0][1])
        templates = np.stack([_unit(_unpack(mean)) for _, _, mean in rows])
        scores = templates @ probe
        order = np.argsort(-scores, kind="stable")[:k]  # ties keep name order
        candidates = [(rows[i][0], float(scores[i])) for i in order]
        best = candidates[0][0] if candidates[0][1] >= self.threshold else None
        return Identification(candidates, best, self.threshold)

    def remove(self, name: str) -> None:
        """Delete ``name``'s template."""
        with self._write() as conn:
            if conn.execute("DELETE FROM people WHERE name = ?", (name,)).rowcount == 0:
                raise self._unknown(name)

    def names(self) -> list[str]:
        """Enrolled names, sorted."""
        return [e.name for e in self.list()]

    def list(self) -> list[Enrollment]:
        """Every enrolled person with their embedding count and enrolment times, by name."""
        with _connect(self.path) as conn:
            rows = conn.execute("SELECT name, count, enrolled_at, updated_at FROM people ORDER BY name").fetchall()
        return [Enrollment(name, count, _time(first), _time(last)) for name, count, first, last in rows]

    def _probe(self, embedding: Any) -> np.ndarray:
        unit = _unit_rows(embedding)
        if unit.shape[0] != 1:
            raise SiamfaceError(f"expected one embedding to compare, got {unit.shape[0]}")
        return unit[0]
