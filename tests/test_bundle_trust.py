"""A bundle is trusted only when it should be: bundle.json matches its schema, names files inside
its folder, is covered by its digest, and its .tflite has the signature it describes. Every bad
bundle here is built from a real exported one; a fuzz pass checks that nothing but SiamfaceError
escapes, whatever field or model byte is changed."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from siamface.edge_runtime.bundle import DIGEST, META, load_bundle, metadata_digest
from siamface.edge_runtime.detector import SHORT_RANGE, packaged_weights
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.interpreter import TFLiteModel
from siamface.edge_runtime.morphable_model import file_sha256
from siamface.edge_runtime.params import Whitening

SIZE, N_ID, DIM = 16, 4, 8
REPO = Path(__file__).resolve().parents[1]


def _encoder(size: int, n_params: int, dim: int):
    """A small Keras encoder with random (seeded) weights, so damaged bytes change its outputs."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    pixels = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(pixels)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(pixels, [keras.layers.Dense(n_params)(x), keras.layers.Dense(dim)(x)])


@pytest.fixture(scope="module")
def exported(face_model, tmp_path_factory) -> Path:
    """A real fp32 bundle written by export.bundle (16 px input, 4 identity modes, 8-d embedding)."""
    pytest.importorskip("tensorflow")
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    layout = face_model.layout(N_ID)
    rng = np.random.default_rng(0)
    meta = {"variant": "fp32", "input": {"name": "pixels", "size": SIZE, "dtype": "float32"},
            "param_layout": layout.to_dict(), "embedding": {"dim": DIM, "similarity": "cosine"},
            "whitening": Whitening(rng.normal(0, 1, layout.size), rng.uniform(0.5, 2, layout.size)).to_dict(),
            "verification": {"source": "synthetic", "threshold": 0.5, "far": 0.01, "far_target": 0.01}}
    folder = tmp_path_factory.mktemp("trust")
    (folder / "foreign.tflite").write_bytes(convert(_encoder(SIZE + 8, layout.size, DIM), "fp32"))
    return write_bundle(folder / "bundle", convert(_encoder(SIZE, layout.size, DIM), "fp32"), meta, face_model, layout)


@pytest.fixture
def bundle(exported, tmp_path) -> Path:
    return shutil.copytree(exported, tmp_path / "bundle")


def reseal(folder: Path, edit: Callable[[dict], Any] = lambda meta: None) -> None:
    """Apply ``edit`` (in place) to bundle.json, then recompute the model's sha256 and the metadata
    digest: what someone who knows the format would do, so the digest is not what catches the change."""
    meta = json.loads((folder / META).read_text())
    edit(meta)
    model = meta.get("model")
    if isinstance(model, dict) and isinstance(model.get("file"), str) and (folder / model["file"]).is_file():
        model["sha256"] = file_sha256(folder / model["file"])
    meta[DIGEST] = metadata_digest(meta)
    (folder / META).write_text(json.dumps(meta, indent=1))


def use(folder: Path) -> None:
    """What the device does with a bundle: load every check, read what decides a match, run the model."""
    b = load_bundle(folder)
    b.layout.split(np.zeros(b.layout.size)), b.whitening.unwhiten(np.zeros(b.layout.size))
    b.threshold, b.threshold_source, b.variant, b.model_hash
    out = TFLiteModel(b.model_path).run(np.full((1, b.input_size, b.input_size, 3), 128, np.uint8))
    b.whitening.unwhiten(out["params"][0])


def refused(folder: Path, *parts: str) -> str:
    with pytest.raises(SiamfaceError) as info:
        use(folder)
    line = str(info.value)
    assert "\n" not in line and all(p in line for p in parts), line
    return line


def test_the_exported_bundle_loads_and_runs(bundle):
    use(bundle)
    assert load_bundle(bundle).threshold_source == "bundle: synthetic, FAR 0.01"


@pytest.mark.parametrize("key", ["param_layout", "model", "whitening", "input", "face_model", "variant",
                                 "verification", "verification.far", "verification.threshold", "input.size",
                                 "face_model.decoder", "face_model.decoder.sha256"])
def test_a_missing_key_is_named(bundle, key):
    def drop(meta):
        *parents, last = key.split(".")
        node = meta
        for p in parents:
            node = node[p]
        del node[last]

    reseal(bundle, drop)
    refused(bundle, f"bundle.json lacks {key}; re-export the bundle")


WRONG = {
    "input is a list": (lambda m: m.update(input=[m["input"]]), "input must be an object, found a list"),
    "threshold is text": (lambda m: m["verification"].update(threshold="high"),
                          "verification.threshold must be a finite number, found 'high'"),
    "threshold as a string number": (lambda m: m["verification"].update(threshold="0.5"),
                                     "verification.threshold must be a finite number"),
    "threshold out of range": (lambda m: m["verification"].update(threshold=5), "threshold 5 is not a cosine in [-1, 1]"),
    "far above 1": (lambda m: m["verification"].update(far=2), "verification.far must be a number in [0, 1]"),
    "size is a float": (lambda m: m["input"].update(size=16.0), "input.size must be a whole number"),
    "bool as a count": (lambda m: m["param_layout"].update(n_id=True), "param_layout.n_id must be a whole number"),
    "short whitening": (lambda m: m["whitening"]["std"].pop(), "whitening.std has 68 values, param_layout needs 69"),
    "zero std": (lambda m: m["whitening"]["std"].__setitem__(3, 0.0), "whitening.std must be positive"),
    "sha256 not hex": (lambda m: m["face_model"]["decoder"].update(sha256="z" * 64), "face_model.decoder.sha256 must be"),
    "unknown dtype": (lambda m: m["input"].update(dtype="float64"), "input.dtype must be float32, int8 or uint8"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_type_or_value_is_named(bundle, case):
    edit, message = WRONG[case]
    reseal(bundle, edit)
    refused(bundle, "bundle.json", message)


def test_a_list_instead_of_an_object_is_refused(bundle):
    meta = json.loads((bundle / META).read_text())
    (bundle / META).write_text(json.dumps([meta]))
    refused(bundle, "bundle.json is not a bundle this siamface reads (format None")


def test_extra_keys_are_allowed(bundle):
    reseal(bundle, lambda m: (m.update(note="copied to the kiosk"), m["input"].update(camera="front")))
    use(bundle)


def test_check_fails_on_a_bundle_without_verification(bundle):
    reseal(bundle, lambda m: m.pop("verification"))
    r = subprocess.run([sys.executable, "-m", "edge_runtime", "check", "--model", str(bundle)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode not in (0, 1) and "ok" not in r.stdout, (r.returncode, r.stdout)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bundle.json lacks verification" in lines[0], r.stderr


def test_a_hand_edited_threshold_fails_the_digest(bundle):
    meta = json.loads((bundle / META).read_text())
    meta["verification"]["threshold"] = -1.0  # verify would then accept anyone
    (bundle / META).write_text(json.dumps(meta))
    refused(bundle, "was edited by hand", "siamface calibrate")


def test_file_names_must_stay_inside_the_folder(bundle, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(bundle / "model.tflite", outside / "model.tflite")
    for name in ("../outside/model.tflite", str(outside / "model.tflite"), "/etc/passwd", "sub/../../x", ""):
        reseal(bundle, lambda m: m["model"].update(file=name))
        refused(bundle, "model.file must be a file name inside the bundle folder")
    reseal(bundle, lambda m: m["model"].update(file="model.tflite"))
    (bundle / "model.tflite").unlink()
    (bundle / "model.tflite").symlink_to(outside / "model.tflite")  # same bytes, same hash: still refused
    refused(bundle, "model.file 'model.tflite' leads outside the bundle folder")
    (bundle / "model.tflite").unlink()
    (bundle / "inner").mkdir()
    shutil.copy(outside / "model.tflite", bundle / "inner" / "real.tflite")
    (bundle / "model.tflite").symlink_to(Path("inner") / "real.tflite")  # a link that stays inside is fine
    use(bundle)


def test_a_foreign_model_with_a_recomputed_hash_is_refused(bundle, exported):
    for foreign, found in ((exported.parent / "foreign.tflite", "(1, 24, 24, 3)"),
                           (packaged_weights(SHORT_RANGE.model_file), "(1, 128, 128, 3)")):
        shutil.copy(foreign, bundle / "model.tflite")
        reseal(bundle)
        line = refused(bundle, "model.tflite is not the model", "bundle.json describes", "one input (1, 16, 16, 3) "
                       "float32, outputs 'params' (1, 69) and 'embedding' (1, 8)", found)
        assert "re-export the bundle" in line
    shutil.copy(exported / "model.tflite", bundle / "model.tflite")
    reseal(bundle, lambda m: m["embedding"].update(dim=9))
    refused(bundle, "is not the model")


# -- fuzz: every field and ~20 model bytes; each case loads and runs, or is one SiamfaceError ---------

def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in bundle.json (lists as one leaf)."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(prefix + (key,))
            out += _paths(value, prefix + (key,))
    return out


def _mutations(value: Any) -> list[Any]:
    wrong_type = {str: 7, int: "7", float: "0.5", list: {"0": 1}, dict: ["x"], bool: "yes"}.get(type(value), 0)
    extreme = {str: "../" * 40 + "x", int: 2**63, float: 1e308, list: [1e308] * 3, dict: {}, bool: None}.get(type(value))
    return [wrong_type, extreme, None, -1]


def _outcome(folder: Path) -> str:
    try:
        use(folder)
    except SiamfaceError as exc:
        assert "\n" not in str(exc), str(exc)
        return "refused"
    return "ran"


def test_fuzz_bundle_json_fields(bundle):
    original = json.loads((bundle / META).read_text())
    outcomes: dict[str, int] = {}
    cases = 0
    for path in _paths(original):
        if path[0] in (DIGEST, "created", "versions"):
            continue
        node = original
        for key in path:
            node = node[key]
        for mutation in ["delete", *_mutations(node)]:
            def edit(meta, path=path, mutation=mutation):
                parent = meta
                for key in path[:-1]:
                    parent = parent[key]
                if mutation == "delete":
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = copy.deepcopy(mutation)

            (bundle / META).write_text(json.dumps(original))
            reseal(bundle, edit)
            result = _outcome(bundle)  # anything but SiamfaceError fails the test here
            outcomes[result] = outcomes.get(result, 0) + 1
            cases += 1
    assert cases > 100 and outcomes["refused"] > 50 and outcomes["ran"] > 10, outcomes


def test_fuzz_model_bytes(bundle):
    raw = (bundle / "model.tflite").read_bytes()
    rng = np.random.default_rng(18)
    outcomes: dict[str, int] = {}
    for offset in rng.choice(len(raw), 20, replace=False):
        damaged = bytearray(raw)
        damaged[offset] ^= int(rng.integers(1, 256))
        (bundle / "model.tflite").write_bytes(bytes(damaged))
        reseal(bundle)
        result = _outcome(bundle)
        outcomes[result] = outcomes.get(result, 0) + 1
    for offset in (0, 4, 8, 16):  # the flatbuffer's root offset and file identifier
        damaged = bytearray(raw)
        damaged[offset:offset + 4] = b"\xff\xff\xff\x7f"
        (bundle / "model.tflite").write_bytes(bytes(damaged))
        reseal(bundle)
        assert _outcome(bundle) == "refused"
    assert sum(outcomes.values()) == 20, outcomes
