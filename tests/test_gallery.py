"""The gallery as files on disk: who may create it, permissions, locks, damage, names, the in-memory
templates under concurrent writers, and the atomic writer's fsync and stale temp files. Every bad
input is built here for real (other users via a child process as 'nobody' when running as root,
since root ignores file modes)."""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from siamface.edge_runtime import atomic
from siamface.edge_runtime.atomic import atomic_folder, atomic_write_json, clean_stale_temps
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.identity import APPLICATION_ID, MAX_NAME_CHARS, SCHEMA_VERSION, Gallery, person_name

HASH = "a" * 64
OTHER_HASH = "b" * 64
REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534


@pytest.fixture
def path(tmp_path):
    return tmp_path / "gallery.db"


@pytest.fixture
def gallery(path):
    return Gallery(path, HASH, threshold=0.5, create=True)


def raw(path) -> closing[sqlite3.Connection]:
    """A plain SQLite connection, to look inside the file as another program would."""
    return closing(sqlite3.connect(path, isolation_level=None))


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "damaged" not in message and "backup" not in message, message
    return message


# -- only enroll creates a gallery ------------------------------------------------------------

def test_a_mistyped_path_is_an_error_and_creates_nothing(tmp_path, gallery):
    gallery.enroll("alice", [1.0, 0.0])
    typo = tmp_path / "galery.db"
    with pytest.raises(SiamfaceError) as exc:
        Gallery(typo, HASH, threshold=0.5)
    assert one_line(exc) == (f"no gallery at {typo}: check the path, or enrol someone first with "
                             f"`siamface enroll NAME PHOTO --gallery {typo}`")
    with pytest.raises(SiamfaceError, match=f"no gallery at {tmp_path / 'new' / 'g.db'}"):
        Gallery(tmp_path / "new" / "g.db", HASH, threshold=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.db"]
    # the "not enrolled" hint names the gallery it was asked about
    with pytest.raises(SiamfaceError, match=re.escape(f"`siamface gallery list --gallery {gallery.path}`")):
        gallery.verify([1.0, 0.0], "bob")


def test_a_folder_or_a_dangling_symlink_as_the_path(tmp_path):
    with pytest.raises(SiamfaceError) as exc:
        Gallery(tmp_path, HASH, threshold=0.5, create=True)
    assert one_line(exc) == f"gallery {tmp_path} is a folder; pass the gallery file inside it (for example {tmp_path / 'gallery.db'})"
    link = tmp_path / "people.db"
    link.symlink_to(tmp_path / "gone" / "people.db")
    for create in (False, True):
        with pytest.raises(SiamfaceError) as exc:
            Gallery(link, HASH, threshold=0.5, create=create)
        assert one_line(exc).startswith(f"gallery {link} is a symlink to {tmp_path / 'gone' / 'people.db'}, which does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.db"] and not (tmp_path / "gone").exists()


# -- permissions and locks: one-line errors, never "damaged" ----------------------------------

PROBE = f"""
import os, sys
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.identity import Gallery
if os.geteuid() == 0:  # after the imports: this Python lives under root's 0700 home
    os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
for path, action in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        gallery = Gallery(path, "{HASH}", 0.5)
        gallery.identify([1.0, 0.0]) if action == "identify" else gallery.enroll("bob", [0.0, 1.0])
        print("ok")
    except SiamfaceError as exc:
        print("error:", exc)
"""


def as_another_user(*cases: str | Path) -> list[str]:
    """One output line per (path, action) from a child process run as another user: 'nobody' when
    the tests run as root (root ignores file modes), else this user, after the test took its rights away."""
    result = subprocess.run([sys.executable, "-c", PROBE, *map(str, cases)], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def shared_folder():
    """A folder another user can reach (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="siamface-gallery-"))
    os.chmod(folder, 0o755)
    yield folder
    for sub in folder.iterdir():
        os.chmod(sub, 0o755)
    shutil.rmtree(folder)


def test_another_users_file_read_only_folder_and_read_only_file(shared_folder):
    root = os.geteuid() == 0
    private, locked, readonly = (shared_folder / name for name in ("private", "locked-folder", "readonly"))
    for folder in (private, locked, readonly):
        folder.mkdir()
        gallery = Gallery(folder / "g.db", HASH, 0.5, create=True)
        gallery.enroll("alice", [1.0, 0.0])
        if root:
            os.chown(folder / "g.db", NOBODY if folder != private else 0, -1)
    os.chmod(private / "g.db", 0o600 if root else 0o000)  # another user's 0600 file
    os.chmod(locked, 0o555)                               # the file is ours, the folder is not writable
    os.chmod(readonly, 0o777)
    os.chmod(readonly / "g.db", 0o400)                    # our file, read-only
    lines = as_another_user(private / "g.db", "identify", locked / "g.db", "identify",
                            readonly / "g.db", "identify", readonly / "g.db", "enroll")
    owner = 0 if root else os.geteuid()
    assert lines == [
        f"error: gallery {private / 'g.db'}: permission denied on {private / 'g.db'} (owner uid {owner}, mode "
        f"{'0600' if root else '0000'}); run as the gallery's owner or fix the permissions",
        f"error: gallery {locked / 'g.db'}: folder {locked} is not writable, and SQLite needs to create g.db-wal "
        f"and g.db-shm beside the gallery; make the folder writable for this user or move the gallery",
        "ok",
        f"error: gallery {readonly / 'g.db'} is read-only for this user; run as its owner or "
        f"`chmod u+w {readonly / 'g.db'}`"]


def test_a_locked_gallery_is_busy_not_damaged(path, gallery):
    gallery.enroll("alice", [1.0, 0.0])
    with raw(path) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another process mid-enrolment, past the timeout
        writer.execute("DELETE FROM people")
        waiting = Gallery(path, HASH, 0.5, timeout_s=0.2)
        start = time.monotonic()
        with pytest.raises(SiamfaceError) as exc:
            waiting.enroll("bob", [0.0, 1.0])
        assert time.monotonic() - start >= 0.2
        assert one_line(exc) == (f"gallery {path} is busy: another process has held its write lock for over "
                                 "0.2 s; retry when it has finished")
        assert waiting.identify([1.0, 0.0]).best == "alice"  # readers go on (WAL): the committed state
        writer.execute("ROLLBACK")
    waiting.close()
    gallery.close()
    with raw(path) as exclusive:  # a program that locks out readers too
        exclusive.execute("PRAGMA locking_mode = EXCLUSIVE")
        exclusive.execute("BEGIN EXCLUSIVE")
        with pytest.raises(SiamfaceError, match=f"gallery {path} is busy.*retry"):
            Gallery(path, HASH, 0.5, timeout_s=0.1)
    waiting.enroll("bob", [0.0, 1.0])
    assert waiting.names() == ["alice", "bob"]


def test_a_group_readable_gallery_is_used_with_a_warning(path, gallery, caplog):
    gallery.enroll("alice", [1.0, 0.0])
    with caplog.at_level(logging.WARNING, logger="siamface.edge_runtime.identity"):
        Gallery(path, HASH, 0.5)
    assert caplog.records == []
    os.chmod(path, 0o644)  # as a copy with cp or a restore from a backup may leave it
    with caplog.at_level(logging.WARNING, logger="siamface.edge_runtime.identity"):
        assert Gallery(path, HASH, 0.5).identify([1.0, 0.0]).best == "alice"
    assert [r.getMessage() for r in caplog.records] == [
        f"gallery {path} can be read by other users (mode 0644) and holds biometric templates; run `chmod 600 {path}`"]


# -- names ------------------------------------------------------------------------------------

def test_names_are_normalised(gallery):
    gallery.enroll("alice ", [1.0, 0.0])
    assert gallery.enroll("\talice", [0.0, 1.0], update=True).count == 2  # the same person
    gallery.enroll("Zoe\u0308", [1.0, 1.0])  # decomposed ë, stored composed
    assert gallery.names() == ["Zo\u00eb", "alice"]  # SQLite's binary order
    assert gallery.verify([1.0, 1.0], "Zo\u00eb ").score == pytest.approx(1.0)
    gallery.remove(" alice")
    assert gallery.names() == ["Zo\u00eb"]
    assert person_name("\U0001f469\u200d\U0001f4bb dev", "x") == "\U0001f469\u200d\U0001f4bb dev"  # emoji joiners


@pytest.mark.parametrize("bad, why", [
    ("", "non-empty"), ("   ", "non-empty"), ("mallory\nalice\t1 image(s)", "U+000A at position 7"),
    ("ali\tce", "U+0009"), ("\x1b[31mroot", "U+001B"), ("eve\u202etxt.exe", "U+202E"), ("a\u2028b", "U+2028"),
    ("x" * (MAX_NAME_CHARS + 1), f"{MAX_NAME_CHARS + 1} characters"), (b"alice", "must be text")])
def test_bad_names_are_refused_on_one_line(gallery, bad, why):
    with pytest.raises(SiamfaceError, match=re.escape(why)) as exc:
        gallery.enroll(bad, [1.0, 0.0])
    assert str(exc.value).startswith(f"gallery {gallery.path}: ") and "\n" not in str(exc.value)
    assert gallery.names() == []


# -- templates in memory, refreshed when anyone writes ----------------------------------------

def test_one_gallery_object_sees_its_own_and_others_writes(path, gallery):
    other = Gallery(path, HASH, 0.5)
    assert gallery.identify([1.0, 0.0, 0.0]).best is None
    gallery.enroll("alice", [1.0, 0.0, 0.0])
    assert gallery.identify([1.0, 0.0, 0.0]).best == "alice" == other.identify([1.0, 0.0, 0.0]).best
    other.enroll("bob", [0.0, 1.0, 0.0])
    other.enroll("alice", [0.0, 0.0, 1.0])  # replaced: the old template must not linger in memory
    assert gallery.identify([0.0, 1.0, 0.0]).best == "bob"
    assert gallery.verify([0.0, 0.0, 1.0], "alice").score == pytest.approx(1.0)
    other.remove("bob")
    assert gallery.names() == ["alice"] and gallery.identify([0.0, 1.0, 0.0]).best is None
    copy = pickle.loads(pickle.dumps(gallery))  # as multiprocessing passes it to a spawned process
    assert copy._templates.names == [] and copy.identify([0.0, 0.0, 1.0]).best == "alice"
    with pytest.raises(SiamfaceError, match="'bob' is not enrolled"):
        gallery.verify([0.0, 1.0, 0.0], "bob")


def test_a_gallery_replaced_or_deleted_under_a_running_search(tmp_path, path, gallery):
    gallery.enroll("alice", [1.0, 0.0])
    assert gallery.identify([1.0, 0.0]).best == "alice"
    backup = Gallery(tmp_path / "backup.db", HASH, 0.5, create=True)
    backup.enroll("bob", [0.0, 1.0])
    os.replace(backup.path, path)  # a restore: another file under the same name
    assert gallery.names() == ["bob"] and gallery.identify([0.0, 1.0]).best == "bob"
    path.unlink()
    with pytest.raises(SiamfaceError, match=f"no gallery at {path}"):
        gallery.identify([0.0, 1.0])


def person(name: str, dim: int = 32) -> np.ndarray:
    """The embedding a writer process enrols for ``name`` (any process derives the same one)."""
    return np.random.default_rng(list(name.encode())).normal(size=dim)


def _enroll_many(path: str, worker: int, barrier) -> None:
    barrier.wait()  # the writers create the gallery at the same moment: one wins, both use its file
    gallery = Gallery(path, HASH, threshold=0.5, create=True)
    for i in range(25):
        name = f"w{worker}-{i:02d}"
        gallery.enroll(name, np.stack([person(name), person(name)]))


def test_identify_stays_correct_while_processes_create_and_enrol(path):
    """Two writer processes create one gallery at once and enrol 25 people each, while one Gallery
    object here identifies: every person it lists is the best match of their own embedding, with
    cosine 1, and in the end all 50 are, from the same (cached) object; no row or lock is lost."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_enroll_many, args=(str(path), w, barrier)) for w in range(2)]
    for p in procs:
        p.start()
    barrier.wait()
    while not path.exists():  # published complete (hard link), so it can be opened at once
        time.sleep(0.005)
    gallery = Gallery(path, HASH, threshold=0.5)
    seen = set()
    while any(p.is_alive() for p in procs):
        names = gallery.names()
        seen.add(len(names))
        if names:
            found = gallery.identify(person(names[-1]), k=1)
            assert found.best == names[-1] and found.candidates[0][1] == pytest.approx(1.0, abs=1e-6)
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    expected = sorted(f"w{w}-{i:02d}" for w in range(2) for i in range(25))
    assert gallery.names() == expected
    for name in expected:
        assert gallery.identify(person(name), k=1).best == name
    assert len(seen) > 2, "the writers finished before the searches: no concurrency was tested"
    assert all(e.count == 2 for e in gallery.list())
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert mode(path) == 0o600
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # losers' temp files gone


def test_gallery_list_lists_the_path_it_is_given_and_creates_nothing(tiny_bundles, tmp_path):
    """`gallery list PATH` lists PATH (it used to list the default gallery, creating it); a mistyped
    path is exit 3 with one line, and neither it, its folder nor the default gallery appear."""
    from siamface.edge_runtime.bundle import load_bundle

    model = tiny_bundles / "bundles" / "fp32"
    people = tmp_path / "people.db"
    Gallery(people, load_bundle(model).model_hash, 0.5, create=True).enroll("alice", [1.0, 0.0])
    env = {**os.environ, "SIAMFACE_GALLERY": str(tmp_path / "default" / "gallery.db")}

    def edge(*args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge_runtime", *map(str, args), "--model", str(model)],
                              cwd=REPO, capture_output=True, text=True, env=env, timeout=120)

    listed = edge("gallery", "list", people)
    assert listed.returncode == 0 and "alice" in listed.stdout, listed.stderr
    typo = tmp_path / "typo" / "people.db"
    missing = edge("gallery", "list", typo)
    assert missing.returncode == 3 and missing.stderr.splitlines() == [
        f"error: no gallery at {typo}: check the path, or enrol someone first with "
        f"`siamface enroll NAME PHOTO --gallery {typo}`"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.db"]


def test_bench_prints_the_identify_line(capsys):
    from siamface.edge_runtime.cli import main

    assert main(["bench", "--gallery", "1000"]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"identify 1000 people: p50 \d+\.\d{3} ms", line), line
    assert float(line.split()[-2]) < 50  # 0.08 ms measured; generous for a loaded test machine


def test_ranking_in_float32_reports_exact_float64_scores(gallery):
    rng = np.random.default_rng(3)
    people = {f"p{i:04d}": v for i, v in enumerate(rng.normal(size=(2000, 64)))}
    gallery.enroll_many(people)
    probe = people["p0123"] + 0.5 * rng.normal(size=64)
    found = gallery.identify(probe, k=10)
    names = sorted(people)
    templates = np.stack([people[n] / np.linalg.norm(people[n]) for n in names])
    scores = templates @ (probe / np.linalg.norm(probe))
    top = np.argsort(-scores, kind="stable")[:10]
    assert [n for n, _ in found.candidates] == [names[i] for i in top]
    np.testing.assert_allclose([s for _, s in found.candidates], scores[top], atol=1e-6)
    assert found.best == "p0123"


# -- the file -------------------------------------------------------------------------------

def test_file_is_private_wal_and_versioned(path):
    old = os.umask(0)  # the 0600 must not depend on the caller's umask
    try:
        gallery = Gallery(path, HASH, threshold=0.5, create=True)
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
    Gallery(path, HASH, threshold=0.5, create=True).enroll("alice", [1.0, 0.0])
    before = path.read_bytes()
    expected = f"gallery {path} .*model {HASH}.*model {OTHER_HASH}.*matching bundle or a new gallery path"
    with pytest.raises(SiamfaceError, match=expected):
        Gallery(path, OTHER_HASH, threshold=0.5)
    assert path.read_bytes() == before


def test_other_schema_version_is_refused(path):
    Gallery(path, HASH, threshold=0.5, create=True).enroll("alice", [1.0, 0.0])
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
    Gallery(path, HASH, threshold=0.5, create=True).enroll("alice", [1.0, 0.0])
    damaged = bytearray(path.read_bytes())
    damaged[16:100] = b"\xff" * 84  # page size, versions and counters of the header
    path.write_bytes(bytes(damaged))
    with pytest.raises(SiamfaceError, match=f"gallery {path}: SQLite error.*the file is damaged: restore it from"):
        Gallery(path, HASH, threshold=0.5)
    assert path.read_bytes() == bytes(damaged)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SiamfaceError, match="does not exist; create it first"):
        Gallery(tmp_path / "nope" / "gallery.db", HASH, threshold=0.5, create=True)
    assert not (tmp_path / "nope").exists()


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


# -- atomic writes: fsync and temp files left by a kill -9 -------------------------------------

def stale(p: Path, age_s: float = 120.0) -> Path:
    then = time.time() - age_s
    os.utime(p, (then, then))
    return p


def test_stale_temp_files_are_removed_by_the_next_write(tmp_path):
    """What a kill -9 leaves (a temp file, a temp gallery's -journal, a half-built bundle folder) goes
    at the next write into the folder once older than a minute; young ones (a live writer) and
    other people's files stay."""
    (tmp_path / ".bundle.k2j4h8qz.tmp").mkdir()
    (tmp_path / ".bundle.k2j4h8qz.tmp" / "model.tflite").write_bytes(b"half")
    stale(tmp_path / ".bundle.k2j4h8qz.tmp" / "model.tflite")
    stale(tmp_path / ".bundle.k2j4h8qz.tmp")
    for name in (".report.json.a1b2c3d4.tmp", ".gallery.db.x_9y8z7w.tmp", ".gallery.db.x_9y8z7w.tmp-journal"):
        (tmp_path / name).write_bytes(b"half")
        stale(tmp_path / name)
    young = tmp_path / ".report.json.q1w2e3r4.tmp"
    young.write_bytes(b"being written")
    filling = tmp_path / ".ckpt.m0n1b2v3.tmp"  # an old folder whose file is still being written
    filling.mkdir()
    (filling / "encoder.h5").write_bytes(b"weights")
    stale(filling)
    kept = [tmp_path / name for name in ("notes.tmp", ".notes.tmp", ".shard.x1.tmp", "a.b.c1d2e3f4.tmp")]
    for p in kept:
        p.write_bytes(b"mine")
        stale(p)
    atomic_write_json(tmp_path / "report.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["report.json", young.name, filling.name, *(p.name for p in kept)])
    assert sorted(clean_stale_temps(tmp_path, older_than_s=0.0)) == [filling, young]


def test_gallery_creation_cleans_up_and_publishes_no_temp(tmp_path):
    left = tmp_path / ".gallery.db.abcd1234.tmp"
    left.write_bytes(b"")
    stale(left)
    Gallery(tmp_path / "gallery.db", HASH, 0.5, create=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.db"]


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """Paths os.fsync is called on (the real fsync still runs): a spy, as a power cut cannot be staged."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    return calls


def test_atomic_writes_fsync_the_file_then_the_folder(tmp_path, fsynced):
    atomic_write_json(tmp_path / "report.json", {"a": 1})
    assert len(fsynced) == 2 and re.fullmatch(rf"{tmp_path}/\.report\.json\.\w{{8}}\.tmp", fsynced[0])
    assert fsynced[1] == str(tmp_path)
    fsynced.clear()
    with atomic_folder(tmp_path / "bundle") as folder:
        (folder / "sub").mkdir()
        (folder / "sub" / "model.tflite").write_bytes(b"x")
        (folder / "bundle.json").write_text("{}")
    tmp = Path(fsynced[0]).parent
    assert sorted(fsynced[:4]) == sorted([str(tmp / "bundle.json"), str(tmp), str(tmp / "sub" / "model.tflite"),
                                          str(tmp / "sub")])
    assert fsynced[4:] == [str(tmp_path)]


def test_gallery_creation_fsyncs_the_folder(tmp_path, fsynced):
    Gallery(tmp_path / "gallery.db", HASH, 0.5, create=True)
    assert fsynced[-1] == str(tmp_path)
