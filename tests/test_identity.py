"""The identity gallery on real SQLite files: numbers, file checks, atomicity, concurrency."""
from __future__ import annotations

import math
import multiprocessing
import os
import sqlite3
import stat
import time
from contextlib import closing
from types import SimpleNamespace

import numpy as np
import pytest

from edge_runtime.errors import SiamfaceError
from edge_runtime.identity import (APPLICATION_ID, SCHEMA_VERSION, Gallery, Identification, as_embeddings,
                                   cosine_threshold)

HASH = "a" * 64
OTHER_HASH = "b" * 64


@pytest.fixture
def path(tmp_path):
    return tmp_path / "gallery.db"


@pytest.fixture
def gallery(path):
    return Gallery(path, HASH, threshold=0.5)


def raw(path) -> closing[sqlite3.Connection]:
    """A plain SQLite connection, to look inside the file as another program would."""
    return closing(sqlite3.connect(path, isolation_level=None))


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


# -- numbers --------------------------------------------------------------------------------

def test_template_is_normalised_mean_of_normalised_embeddings(gallery):
    # [2,0,0] and [0,3,0] normalise to e1 and e2: template (e1 + e2) / sqrt(2)
    gallery.enroll("alice", np.array([[2.0, 0, 0], [0, 3.0, 0]]))
    gallery.enroll("bob", [0.0, 0.0, 5.0])
    v = gallery.verify(np.array([1.0, 0, 0]), "alice")
    assert v.name == "alice" and v.threshold == 0.5
    assert v.score == pytest.approx(1 / math.sqrt(2), abs=1e-7) and v.match
    v = gallery.verify(np.array([1.0, 0, 0]), "bob")
    assert v.score == pytest.approx(0.0, abs=1e-7) and not v.match


def test_identify_ranks_by_cosine_and_says_unknown_below_threshold(gallery):
    gallery.enroll("alice", np.array([[2.0, 0, 0], [0, 3.0, 0]]))
    gallery.enroll("bob", [0.0, 0.0, 5.0])
    gallery.enroll("carol", [0.0, -1.0, 0.0])
    # probe [3,4,0]/5: alice (0.6 + 0.8)/sqrt(2), bob 0, carol -0.8
    ident = gallery.identify(np.array([3.0, 4.0, 0.0]))
    assert [n for n, _ in ident.candidates] == ["alice", "bob", "carol"]
    np.testing.assert_allclose([s for _, s in ident.candidates], [1.4 / math.sqrt(2), 0.0, -0.8], atol=1e-7)
    assert ident.best == "alice" and ident.threshold == 0.5
    assert gallery.identify(np.array([3.0, 4.0, 0.0]), k=2).candidates[1][0] == "bob"
    # probe -e3: alice 0, carol 0 (ties keep name order), bob -1; top score 0 < 0.5 -> unknown
    ident = gallery.identify(np.array([0.0, 0.0, -2.0]), k=1)
    assert ident.candidates == [("alice", pytest.approx(0.0, abs=1e-7))]
    assert ident.best is None


def test_identify_on_empty_gallery(gallery):
    assert gallery.identify(np.ones(8)) == Identification([], None, 0.5)


def test_threshold_boundary_is_a_match(path):
    # template e1, probe [3,4]/5: cosine exactly 0.6 in float64
    at = Gallery(path, HASH, threshold=0.6)
    at.enroll("alice", [1.0, 0.0])
    v = at.verify([3.0, 4.0], "alice")
    assert v.score == 0.6 and v.match
    assert at.identify([3.0, 4.0]).best == "alice"
    above = Gallery(path, HASH, threshold=float(np.nextafter(0.6, 1.0)))
    assert not above.verify([3.0, 4.0], "alice").match
    assert above.identify([3.0, 4.0]).best is None


def test_threshold_is_a_cosine_in_minus_one_to_one(path):
    """The gallery takes exactly the thresholds bundles and --threshold take (cosine_threshold): -1
    matches everyone, 1 only an identical direction; anything outside [-1, 1] or non-finite is refused."""
    Gallery(path, HASH, threshold=0.5).enroll("alice", [1.0, 0.0])
    assert Gallery(path, HASH, threshold=-1).identify([-1.0, 0.0]).best == "alice"
    everyone = Gallery(path, HASH, threshold=-1.0).verify([-1.0, 0.0], "alice")
    assert everyone.score == -1.0 and everyone.match
    assert Gallery(path, HASH, threshold=1.0).verify([2.0, 0.0], "alice").match
    assert not Gallery(path, HASH, threshold=1.0).verify([1.0, 1e-3], "alice").match
    for bad in (float(np.nextafter(1.0, 2.0)), float(np.nextafter(-1.0, -2.0)), math.nan, math.inf, "x"):
        with pytest.raises(SiamfaceError, match=r"gallery .*gallery.db: threshold .* is not a cosine in \[-1, 1\]"):
            Gallery(path, HASH, threshold=bad)
        with pytest.raises(SiamfaceError, match="is not a cosine"):
            cosine_threshold(bad, "here")


def test_update_merges_as_running_mean_and_plain_enroll_replaces(gallery):
    first = gallery.enroll("alice", [1.0, 0.0, 0.0])
    merged = gallery.enroll("alice", np.array([[0.0, 2.0, 0.0], [0.0, 7.0, 0.0]]), update=True)
    assert merged.count == 3 and merged.enrolled_at == first.enrolled_at
    # mean (e1 + 2 e2) / 3 -> template [1, 2, 0] / sqrt(5)
    assert gallery.verify([1.0, 0, 0], "alice").score == pytest.approx(1 / math.sqrt(5), abs=1e-6)
    # the stored count makes a second merge exact: (e1 + 2 e2 + e3) / 4 -> [1, 2, 1] / sqrt(6)
    assert gallery.enroll("alice", [0.0, 0.0, 9.0], update=True).count == 4
    assert gallery.verify([0, 0, 1.0], "alice").score == pytest.approx(1 / math.sqrt(6), abs=1e-6)
    assert gallery.verify([0, 1.0, 0], "alice").score == pytest.approx(2 / math.sqrt(6), abs=1e-6)
    replaced = gallery.enroll("alice", [0.0, 0.0, 1.0])
    assert replaced.count == 1 and replaced.enrolled_at > first.enrolled_at
    assert gallery.verify([0, 0, 1.0], "alice").score == pytest.approx(1.0)
    # update of a new name is a plain enrolment
    assert gallery.enroll("bob", [1.0, 0, 0], update=True).count == 1


def test_faces_with_an_embedding_attribute_are_accepted(gallery):
    faces = [SimpleNamespace(embedding=np.array([2.0, 0.0])), SimpleNamespace(embedding=np.array([0.0, 2.0]))]
    assert as_embeddings(faces).shape == (2, 2)
    assert gallery.enroll("alice", faces).count == 2
    assert gallery.verify(faces[0], "alice").score == pytest.approx(1 / math.sqrt(2), abs=1e-7)
    assert gallery.identify(faces[1]).best == "alice"


def test_list_names_remove(gallery):
    before = time.time()
    gallery.enroll("bob", np.eye(4)[:3])
    gallery.enroll("alice", np.eye(4)[3])
    after = time.time()
    assert gallery.names() == ["alice", "bob"]
    entries = gallery.list()
    assert [(e.name, e.count) for e in entries] == [("alice", 1), ("bob", 3)]
    assert all(before <= e.enrolled_at.timestamp() <= after for e in entries)
    gallery.remove("bob")
    assert gallery.names() == ["alice"]
    with pytest.raises(SiamfaceError, match="'bob' is not enrolled.*siamface gallery list"):
        gallery.remove("bob")
    with pytest.raises(SiamfaceError, match="'bob' is not enrolled.*gallery.db"):
        gallery.verify(np.eye(4)[0], "bob")


def test_bad_inputs_are_refused(gallery):
    gallery.enroll("alice", [1.0, 0.0, 0.0])
    with pytest.raises(SiamfaceError, match="holds 3-d embeddings, got 4-d"):
        gallery.enroll("bob", [1.0, 0.0, 0.0, 0.0])
    with pytest.raises(SiamfaceError, match="holds 3-d embeddings, got 2-d"):
        gallery.verify([1.0, 0.0], "alice")
    with pytest.raises(SiamfaceError, match="holds 3-d embeddings, got 2-d"):
        gallery.identify([1.0, 0.0])
    with pytest.raises(SiamfaceError, match="all zeros"):
        gallery.enroll("bob", np.zeros(3))
    with pytest.raises(SiamfaceError, match="cancel out"):
        gallery.enroll("bob", np.array([[1.0, 0, 0], [-1.0, 0, 0]]))
    with pytest.raises(SiamfaceError, match="expected one embedding"):
        gallery.identify(np.eye(3))
    with pytest.raises(SiamfaceError, match="non-empty string"):
        gallery.enroll(" ", [1.0, 0, 0])
    with pytest.raises(SiamfaceError, match="shape"):
        gallery.enroll("bob", np.zeros((2, 2, 2)))
    with pytest.raises(SiamfaceError, match="must be numbers"):
        gallery.enroll("bob", [[1.0, 0.0], [1.0]])
    with pytest.raises(SiamfaceError, match=r"got \(0,\)"):
        gallery.enroll("bob", [])
    with pytest.raises(SiamfaceError, match="threshold"):
        Gallery(gallery.path, HASH, threshold=1.5)
    assert gallery.names() == ["alice"]


# -- the file -------------------------------------------------------------------------------

def test_file_is_private_wal_and_versioned(path):
    old = os.umask(0)  # the 0600 must not depend on the caller's umask
    try:
        gallery = Gallery(path, HASH, threshold=0.5)
        assert mode(path) == 0o600
        with raw(path) as conn:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM people").fetchone()  # holds the -wal open
            gallery.enroll("alice", [1.0, 0.0])
            assert mode(f"{path}-wal") == 0o600 and mode(f"{path}-shm") == 0o600
            conn.execute("COMMIT")
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            assert conn.execute("SELECT value FROM meta WHERE key = 'model_hash'").fetchone()[0] == HASH
            dim, count, blob = conn.execute("SELECT dim, count, mean FROM people").fetchone()
            assert (dim, count) == (2, 1)
            np.testing.assert_array_equal(np.frombuffer(blob, "<f4"), [1.0, 0.0])
    finally:
        os.umask(old)


def test_other_model_hash_is_refused(path):
    Gallery(path, HASH, threshold=0.5).enroll("alice", [1.0, 0.0])
    before = path.read_bytes()
    expected = f"gallery {path} .*model {HASH}.*model {OTHER_HASH}.*matching bundle or a new gallery path"
    with pytest.raises(SiamfaceError, match=expected):
        Gallery(path, OTHER_HASH, threshold=0.5)
    assert path.read_bytes() == before


def test_other_schema_version_is_refused(path):
    Gallery(path, HASH, threshold=0.5).enroll("alice", [1.0, 0.0])
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SiamfaceError, match=f"{path} has schema version {SCHEMA_VERSION + 1}"):
        Gallery(path, HASH, threshold=0.5)


def test_foreign_sqlite_file_is_refused_and_untouched(path):
    with raw(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    before = path.read_bytes()
    with pytest.raises(SiamfaceError, match="not a siamface gallery"):
        Gallery(path, HASH, threshold=0.5)
    assert path.read_bytes() == before


def test_garbage_file_is_refused_and_untouched(path):
    garbage = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    path.write_bytes(garbage)
    expected = f"{path} is empty or not an SQLite file.*restore it from a backup or pass a new gallery path"
    with pytest.raises(SiamfaceError, match=expected):
        Gallery(path, HASH, threshold=0.5)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in path.parent.iterdir()) == ["gallery.db"]
    path.write_bytes(b"")
    with pytest.raises(SiamfaceError, match="is empty or not an SQLite file"):
        Gallery(path, HASH, threshold=0.5)
    assert path.read_bytes() == b""


def test_damaged_sqlite_file_is_refused_and_untouched(path):
    Gallery(path, HASH, threshold=0.5).enroll("alice", [1.0, 0.0])
    damaged = bytearray(path.read_bytes())
    damaged[16:100] = b"\xff" * 84  # page size, versions and counters of the header
    path.write_bytes(bytes(damaged))
    with pytest.raises(SiamfaceError, match=f"gallery {path}: SQLite error.*restore it from a backup"):
        Gallery(path, HASH, threshold=0.5)
    assert path.read_bytes() == bytes(damaged)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SiamfaceError, match="does not exist; create it first"):
        Gallery(tmp_path / "nope" / "gallery.db", HASH, threshold=0.5)


# -- atomicity and concurrency ----------------------------------------------------------------

def test_invalid_row_mid_batch_leaves_gallery_unchanged(gallery):
    gallery.enroll("alice", [1.0, 0.0, 0.0])
    before = gallery.list()
    with pytest.raises(SiamfaceError, match="NaN"):
        gallery.enroll("alice", np.array([[0.0, 1.0, 0.0], [np.nan, 0.0, 0.0]]), update=True)
    with pytest.raises(SiamfaceError, match="NaN"):
        gallery.enroll("bob", np.array([[0.0, 1.0, 0.0], [np.inf, 0.0, 0.0]]))
    assert gallery.list() == before
    assert gallery.verify([1.0, 0, 0], "alice").score == pytest.approx(1.0)


def test_failure_inside_the_write_rolls_back_and_releases_the_lock(gallery, path):
    gallery.enroll("alice", [1.0, 0.0, 0.0])
    before = gallery.list()
    with raw(path) as conn:  # a real SQLite failure after the old row was replaced
        conn.execute("CREATE TRIGGER fail AFTER INSERT ON people WHEN NEW.name = 'alice' "
                     "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    with pytest.raises(SiamfaceError, match="injected failure"):
        gallery.enroll("alice", [0.0, 1.0, 0.0])
    with pytest.raises(SiamfaceError, match="injected failure"):
        gallery.enroll("alice", [0.0, 1.0, 0.0], update=True)
    assert gallery.list() == before
    assert gallery.verify([1.0, 0, 0], "alice").score == pytest.approx(1.0)
    with raw(path) as conn:  # no transaction left open: another writer gets the lock at once
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    gallery.enroll("bob", [0.0, 1.0, 0.0])
    assert gallery.names() == ["alice", "bob"]


def _enroll_many(path: str, worker: int, barrier) -> None:
    barrier.wait()  # all processes open (and create) the gallery at the same moment
    gallery = Gallery(path, HASH, threshold=0.5)
    rng = np.random.default_rng(worker)
    for i in range(25):
        gallery.enroll(f"w{worker}-{i:02d}", rng.normal(size=(2, 16)))


def test_four_processes_enrol_concurrently(path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_enroll_many, args=(str(path), w, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    gallery = Gallery(path, HASH, threshold=0.5)
    assert gallery.names() == sorted(f"w{w}-{i:02d}" for w in range(4) for i in range(25))
    assert all(e.count == 2 for e in gallery.list())
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert mode(path) == 0o600
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # losers' temp files gone
