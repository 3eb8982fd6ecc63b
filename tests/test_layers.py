"""The one table of which package may import which, checked by parsing every module (no importing),
and the runtime proof that the device package loads without TensorFlow.

Layers, lowest first: edge_runtime (the numpy-only base, also the device package), training,
export, evaluation, cli. A package imports only itself and the layers below it, so a rule defined
in a lower layer is the one every layer above uses.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("edge_runtime", "training", "export", "evaluation", "cli")
ALLOWED = {
    "edge_runtime": {"edge_runtime"},
    "training": {"edge_runtime", "training"},
    "export": {"edge_runtime", "training", "export"},
    "evaluation": {"edge_runtime", "training", "export", "evaluation"},
    "cli": set(FIRST_PARTY),
}
# What a device has besides the standard library; TensorFlow only as the interpreter's lazy fallback.
EDGE_THIRD_PARTY = {"numpy", "cv2", "ai_edge_litert", "tflite_runtime"}
EDGE_LAZY = {("interpreter.py", "tensorflow")}


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(top-level module, line, inside a function) of every absolute import in a file."""
    found, stack = [], [(ast.parse(path.read_text(), str(path)), False)]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found += [(a.name.split(".")[0], child.lineno, inner) for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module.split(".")[0], child.lineno, inner))
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


def test_the_table_catches_an_upward_import(tmp_path, monkeypatch):
    """A training module importing evaluation is reported with its file and line."""
    fake = tmp_path / "training"
    fake.mkdir()
    (fake / "bad.py").write_text("import numpy\n\ndef f():\n    from evaluation.report import write\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations("training") == ["training/bad.py:4 imports evaluation"]


def test_importing_the_device_package_loads_no_tensorflow():
    """Every edge_runtime module imported in a fresh interpreter: no TensorFlow, Keras or training code."""
    names = [p.stem for p in modules("edge_runtime") if p.stem not in ("__init__", "__main__")]
    code = (f"import sys\nfor n in {names!r}: __import__('edge_runtime.' + n)\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'tensorflow', 'tf_keras', 'keras', 'training', 'export', 'evaluation', 'cli'})\n"
            "assert not heavy, heavy\nprint(len(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
