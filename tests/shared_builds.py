"""Artifacts the test session builds once and shares between xdist workers (a file lock).

`siamface demo --quick` takes minutes; the first worker starts it in a background process when
the session begins (``python tests/shared_builds.py ROOT NAME``), so both workers run other tests
meanwhile instead of one building and the other waiting on the lock. A fixture that needs the
artifact takes the same lock: it waits for the background build, or builds itself if that failed.
"""
from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path
from typing import Callable


def build_tiny_bundles(root: Path) -> None:
    """`siamface demo --quick` in a real process, its output kept in demo.log."""
    siamface = str(Path(sys.executable).parent / "siamface")
    r = subprocess.run([siamface, "demo", "--quick", "--out", str(root)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (root / "demo.log").write_text(r.stdout)


BUILDS: dict[str, Callable[[Path], None]] = {"tiny-bundles": build_tiny_bundles}


def build_once(root: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``root/name`` built by ``build`` unless a finished build is there (``.done``), under a lock."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".done").exists():
            build(target)
            (target / ".done").touch()
    return target


def start_in_background(root: Path, name: str) -> subprocess.Popen | None:
    """Start building ``name`` in another process unless some worker already did (None then)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        (root / f"{name}.started").open("x").close()
    except FileExistsError:
        return None
    return subprocess.Popen([sys.executable, __file__, str(root), name], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


if __name__ == "__main__":
    from siamface.edge_runtime.terminal import tensorflow_env

    tensorflow_env()
    build_once(Path(sys.argv[1]), sys.argv[2], BUILDS[sys.argv[2]])
