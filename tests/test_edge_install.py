"""Installing on a device: a fresh venv with only the edge extra (`pip install .[edge]`: numpy,
OpenCV, LiteRT; the detector weights travel inside the package) passes `pip check`, has no
TensorFlow, and runs the device commands on a real bundle, both installed and as a clone's
edge_runtime/ and models/ folders run with `python -m edge_runtime`.

Skipped only when pip cannot reach the package registry.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from skimage import data

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
               "Network is unreachable", "ConnectTimeout", "ProxyError", "Could not fetch URL")
TRAINING_STACK = ("tensorflow", "tf-keras", "tf_keras", "keras", "tensorflow-model-optimization")


def _clean_env(home: Path) -> dict:
    """This process's environment without anything pointing at the project or its venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SIAMFACE", "VIRTUAL_ENV"))}
    return {**env, "HOME": str(home)}


def _pip_install(python: Path, env: dict, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
                            capture_output=True, text=True, env=env, timeout=900)
    if result.returncode == 0:
        return
    if any(marker in result.stderr for marker in UNREACHABLE):
        pytest.skip(f"pip cannot reach the package registry: {result.stderr.strip().splitlines()[-1]}")
    pytest.fail(f"pip install {' '.join(args)} failed:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def device(tmp_path_factory) -> dict:
    """A fresh venv with the edge extra installed from this checkout, and a folder holding only a clone's
    edge_runtime/ and models/ (what a device copies)."""
    root = tmp_path_factory.mktemp("device")
    env = _clean_env(root)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=env, timeout=300)
    python = root / "venv" / "bin" / "python"
    source = root / "source"  # a copy, so the build never writes into the checkout the other tests read
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv*", "runs", ".git", "__pycache__", "build",
                                                                 "*.egg-info", ".pytest_cache"))
    _pip_install(python, env, f"{source}[edge]")
    app = root / "app"
    for folder in ("edge_runtime", "models"):
        shutil.copytree(REPO / folder, app / folder, ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = root / "elsewhere"  # a working directory without the project: the installed package answers
    elsewhere.mkdir()
    return {"python": python, "app": app, "env": env, "elsewhere": elsewhere}


def on_device(device: dict, *args, cwd: str = "app") -> subprocess.CompletedProcess:
    return subprocess.run([str(device["python"]), *map(str, args)], cwd=device[cwd], capture_output=True,
                          text=True, env=device["env"], timeout=300)


def test_the_device_has_no_training_stack(device):
    check = on_device(device, "-m", "pip", "check")
    assert check.returncode == 0 and "No broken requirements" in check.stdout, check.stdout + check.stderr
    for module in ("tensorflow", "tf_keras", "keras", "siamface.training.train", "siamface.export.exporter"):
        result = on_device(device, "-c", f"import {module}", cwd="elsewhere")
        assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr, (module, result.stderr)
    listed = json.loads(on_device(device, "-m", "pip", "list", "--format", "json").stdout)
    names = {p["name"].lower() for p in listed}
    assert {"numpy", "opencv-python-headless", "ai-edge-litert", "siamface"} <= names
    assert not names & set(TRAINING_STACK)
    siamface = device["python"].parent / "siamface"
    train = subprocess.run([str(siamface), "train", "--config", str(REPO / "configs" / "train-small.yaml"),
                            "--out", "run"], cwd=device["elsewhere"],
                           capture_output=True, text=True, env=device["env"], timeout=300)
    assert train.returncode == 3 and train.stderr.count("\n") == 1 and "siamface[train]" in train.stderr, train.stderr


def test_the_installed_package_runs_without_the_checkout(device, tiny_bundles, tmp_path):
    """From a folder without the project: the wheel's edge_runtime, its shipped detector weights, `siamface`."""
    photo = tmp_path / "astronaut.jpg"
    assert cv2.imwrite(str(photo), data.astronaut()[..., ::-1])
    bundle = tiny_bundles / "bundles" / "int8-ptq"
    where = on_device(device, "-c", "import siamface.edge_runtime as e, siamface.edge_runtime.defaults as d, sysconfig; "
                      "print(e.__file__); print(d.DETECTOR_DIR); print(sysconfig.get_paths()['purelib'])", cwd="elsewhere")
    package, detector, site = where.stdout.split()
    assert package.startswith(site) and detector.endswith("site-packages/siamface/edge_runtime/models/detector"), where.stdout
    generic = {"edge_runtime", "training", "export", "evaluation", "cli", "models"}
    assert not generic & {p.name for p in Path(site).iterdir()}, sorted(Path(site).iterdir())  # one name: siamface
    device_help = on_device(device, "-m", "siamface.edge_runtime", "--help", cwd="elsewhere")
    assert device_help.returncode == 0 and "reconstruct" in device_help.stdout, device_help.stderr
    siamface = device["python"].parent / "siamface"
    verified = subprocess.run([str(siamface), "verify", str(photo), str(photo), "--model", str(bundle)],
                              cwd=device["elsewhere"], capture_output=True, text=True, env=device["env"], timeout=300)
    assert verified.returncode == 0, verified.stderr  # BlazeFace from the installed package found her face
    assert json.loads(verified.stdout)["score"] == pytest.approx(1.0, abs=1e-4)


def test_device_commands_on_a_bundle(device, tiny_bundles, tmp_path):
    photo, gallery, out = tmp_path / "astronaut.jpg", tmp_path / "gallery.db", tmp_path / "out"
    assert cv2.imwrite(str(photo), data.astronaut()[..., ::-1])
    for variant in ("fp32", "int8-ptq"):
        bundle = tiny_bundles / "bundles" / variant
        check = on_device(device, "-m", "edge_runtime", "check", "--model", bundle)
        assert check.returncode == 0 and check.stderr == "", check.stderr
        assert check.stdout.strip().endswith(f"variant {variant}, hashes ok, interpreter ai-edge-litert, inference ok")
    bundle = tiny_bundles / "bundles" / "int8-ptq"
    result = on_device(device, "-m", "edge_runtime", "reconstruct", photo, "--model", bundle, "--box", "175,70,275,175",
                       "--out", out, "--obj")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json", "astronaut.obj"]
    assert json.loads((out / "astronaut.json").read_text())["faces"][0]["box"] == [175.0, 70.0, 275.0, 175.0]
    enrolled = on_device(device, "-m", "edge_runtime", "enroll", "astronaut", photo, "--model", bundle, "--gallery", gallery)
    assert enrolled.returncode == 0, enrolled.stderr  # BlazeFace from the clone's models/detector found her face
    assert enrolled.stdout.strip() == f"enrolled astronaut from 1 image(s) into {gallery}"
    verified = on_device(device, "-m", "edge_runtime", "verify", photo, photo, "--model", bundle)
    assert verified.returncode == 0, verified.stderr
    verdict = json.loads(verified.stdout)
    assert verdict["score"] == pytest.approx(1.0, abs=1e-4)  # a photo against itself
    assert verdict["threshold"] <= 1.0 and isinstance(verdict["same_person"], bool)
