"""Atomic writes: all or nothing, and files as readable as a plain open() would make them."""
from __future__ import annotations

import os
import stat

import pytest

from siamface.edge_runtime.atomic import atomic_folder, atomic_write, atomic_write_json


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_follow_the_umask(tmp_path, umask_022):
    atomic_write_json(tmp_path / "report.json", {"a": 1})
    with atomic_folder(tmp_path / "bundle") as folder:
        (folder / "model.tflite").write_bytes(b"x")
    with atomic_write(tmp_path / "secret.db", permissions=0o600) as f:
        f.write(b"template")
    assert mode(tmp_path / "report.json") == 0o644 and mode(tmp_path / "bundle") == 0o755
    assert mode(tmp_path / "secret.db") == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "bundle"):
            raise RuntimeError("export failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
