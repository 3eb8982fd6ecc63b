"""The one table of which package may import which, checked by parsing every module (no importing),
and the runtime proof that the device package loads without TensorFlow.

Layers, lowest first: edge_runtime (the numpy-only base, also the device package), training,
export, evaluation, cli. A package imports only itself and the layers below it, so a rule defined
in a lower layer is the one every layer above uses.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.normalise import PIXEL_NORMALISATION, l2_normalize, normalise_pixels
from siamface.edge_runtime.versioned_json import read_versioned_json

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("edge_runtime", "training", "export", "evaluation", "cli")
ALLOWED = {
    "edge_runtime": {"edge_runtime"},
    "training": {"edge_runtime", "training"},
    "export": {"edge_runtime", "training", "export"},
    "evaluation": {"edge_runtime", "training", "export", "evaluation"},
    "cli": set(FIRST_PARTY),
}
# What a device has besides the standard library (edge_runtime/requirements.txt, tflite_runtime as the
# older interpreter package); TensorFlow only as the interpreter's lazy last resort.
EDGE_THIRD_PARTY = {"numpy", "cv2", "ai_edge_litert", "tqdm", "tflite_runtime"}
EDGE_LAZY = {("interpreter.py", "tensorflow")}


def package_of(module: str, names: list[str] = ()) -> str:
    """The package an import reaches: `siamface.training.x` and `from siamface import training` count
    as training (first-party code lives under the siamface name), anything else as its top level."""
    parts = module.split(".")
    if parts[0] == "siamface":
        return parts[1] if len(parts) > 1 else (names[0] if len(names) == 1 else "siamface")
    return parts[0]


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(package, line, inside a function) of every import in a file; a relative import stays in the
    file's own package."""
    found, stack = [], [(ast.parse(path.read_text(), str(path)), False)]
    own = path.relative_to(REPO).parts[0]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found += [(package_of(a.name), child.lineno, inner) for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level:
                found.append((own, child.lineno, inner))
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((package_of(child.module, [a.name for a in child.names]), child.lineno, inner))
            stack.append((child, inner))
    return found


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def violations(package: str) -> list[str]:
    """Every import of a first-party package the table does not allow (lazy imports count too)."""
    return [f"{path.relative_to(REPO)}:{line} imports {name}" for path in modules(package)
            for name, line, _ in imports(path) if name in FIRST_PARTY and name not in ALLOWED[package]]


@pytest.mark.parametrize("package", FIRST_PARTY)
def test_each_package_imports_only_the_layers_below_it(package):
    assert len(modules(package)) >= 4
    assert violations(package) == []


def test_the_device_package_imports_only_what_a_device_has():
    stdlib = set(sys.stdlib_module_names)
    found = [(path.name, name, lazy) for path in modules("edge_runtime") for name, _, lazy in imports(path)
             if name not in stdlib and name != "edge_runtime" and name not in EDGE_THIRD_PARTY]
    assert found == [(file, name, True) for file, name in sorted(EDGE_LAZY)]


def test_the_device_package_imports_itself_relatively():
    """edge_runtime/ copied alone onto a device runs as `python -m edge_runtime`: it never names siamface."""
    absolute = [f"{path.name}:{node.lineno}" for path in modules("edge_runtime")
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0]
                in ("siamface", "edge_runtime")]
    assert absolute == []


def test_the_table_catches_an_upward_import(tmp_path, monkeypatch):
    """A training module importing evaluation is reported with its file and line."""
    fake = tmp_path / "training"
    fake.mkdir()
    (fake / "bad.py").write_text("import numpy\n\ndef f():\n    from siamface.evaluation.report import write\n"
                                 "    from siamface import export\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations("training") == ["training/bad.py:4 imports evaluation", "training/bad.py:5 imports export"]


def test_importing_the_device_package_loads_no_tensorflow():
    """Every edge_runtime module imported in a fresh interpreter: no TensorFlow, Keras or training code."""
    names = [p.stem for p in modules("edge_runtime") if p.stem not in ("__init__", "__main__")]
    code = (f"import sys\nfor n in {names!r}: __import__('siamface.edge_runtime.' + n)\n"
            "heavy = sorted(m for m in sys.modules if m.removeprefix('siamface.').split('.')[0] in "
            "{'tensorflow', 'tf_keras', 'keras', 'training', 'export', 'evaluation', 'cli'})\n"
            "assert not heavy, heavy\nprint(len(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- one definition of each shared rule ------------------------------------------------------------


def test_pixel_normalisation_is_written_once():
    """The input scaling's 127.5 appears in code only in edge_runtime/normalise.py (the detector's
    own model scales its input by 127.5 too: a different network's convention)."""
    own = {REPO / "edge_runtime" / "normalise.py", REPO / "edge_runtime" / "detector.py"}
    copies = [f"{path.relative_to(REPO)}:{node.lineno}" for package in FIRST_PARTY for path in modules(package)
              if path not in own for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.Constant) and node.value == 127.5]
    assert copies == []


def test_normalisation_values():
    pixels = np.array([0.0, 127.5, 255.0])
    assert normalise_pixels(pixels) == pytest.approx([-127.5 / 128, 0.0, 127.5 / 128])
    assert PIXEL_NORMALISATION == "(x - 127.5) / 128"
    unit = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert unit.dtype == np.float64 and unit.tolist() == [[0.6, 0.8], [0.0, 0.0]]


def test_versioned_json_one_way_to_open(tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"format_version": 1, "kind": "siamface.bundle", "x": 2}))
    assert read_versioned_json(path, 1, "bundle", "re-export it", ("siamface.bundle",))["x"] == 2
    path.write_text(json.dumps({"format_version": 2, "kind": "siamface.bundle"}))
    with pytest.raises(SiamfaceError, match=rf"^{re.escape(str(path))} is not a bundle this siamface reads "
                                            r"\(format 2, kind siamface.bundle, reads 1\): re-export it$"):
        read_versioned_json(path, 1, "bundle", "re-export it", ("siamface.bundle",))
    path.write_text(json.dumps({"format_version": 1, "kind": "other"}))
    with pytest.raises(SiamfaceError, match="kind other"):
        read_versioned_json(path, 1, "bundle", "re-export it", ("siamface.bundle",))
    path.write_text("[1, 2")
    with pytest.raises(SiamfaceError, match=r"^bundle .*bundle.json is unreadable \(.*\): re-export it$"):
        read_versioned_json(path, 1, "bundle", "re-export it")


def test_dataset_checkpoint_and_bundle_open_through_it(tmp_path):
    """A newer format version gets the same one-line error from each of the three readers."""
    from siamface.edge_runtime.bundle import load_bundle
    from siamface.training.checkpoint import ENCODER, META as CHECKPOINT_META, read_checkpoint_meta
    from siamface.training.data.dataset import MANIFEST, Dataset

    (tmp_path / MANIFEST).write_text(json.dumps({"format_version": 99}))
    (tmp_path / CHECKPOINT_META).write_text(json.dumps({"format_version": 99, "kind": "float"}))
    (tmp_path / ENCODER).write_bytes(b"")
    (tmp_path / "bundle.json").write_text(json.dumps({"format_version": 99, "kind": "siamface.bundle"}))
    for what, open_it in (("dataset manifest", Dataset.open), ("checkpoint", read_checkpoint_meta),
                          ("bundle", load_bundle)):
        with pytest.raises(SiamfaceError, match=f"is not a {what} this siamface reads \\(format 99"):
            open_it(tmp_path)
