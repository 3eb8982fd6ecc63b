"""`siamface data import`: folders of people -> identity-only dataset, on real photo files.

The people are synthetic faces (FaceSynthesizer) pasted with a margin into larger blurred-noise
photos, so the edge runtime's detector has to find them as it would in a real photo.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamface.edge_runtime.crop import crop_from_box, crop_image, landmark_box
from siamface.edge_runtime.detector import make_detector
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.image_io import read_image
from siamface.training.data.dataset import LABELS_IDENTITY_ONLY, SPLITS, Dataset, label_columns
from siamface.training.data.import_people import (FAILURES_FILE, NO_FACE, UNREADABLE, ImportConfig, import_people,
                                         split_of)

SIAMFACE = str(Path(sys.executable).parent / "siamface")
N_ID, SIZE = 20, 120
# split_of with these fractions: train Ada_Lovelace, Edsger_Dijkstra; val Alan_Turing;
# test Barbara_Liskov, Donald_Knuth, Grace_Hopper (asserted below)
PEOPLE = ("Ada_Lovelace", "Alan_Turing", "Barbara_Liskov", "Donald_Knuth", "Edsger_Dijkstra", "Grace_Hopper")
PHOTOS_EACH = 3
CFG = ImportConfig(image_size=SIZE, shard_size=2, n_id=N_ID, val_fraction=0.25, test_fraction=0.25)


def blurred_noise(rng: np.random.Generator) -> np.ndarray:
    """A 240 x 320 photo background without a face."""
    return cv2.GaussianBlur(rng.integers(60, 200, (240, 320, 3), dtype=np.uint8), (0, 0), 8)


@pytest.fixture(scope="module")
def add_person(face_model):
    """add_person(root, name, identity, suffixes, rng): one photo per suffix of synthetic person
    ``identity``, a near-frontal render enlarged to 160 px and pasted 20 px or more from the edges
    of a blurred-noise photo. A photo is kept only if the detector finds its face in the written
    file (the renderer's occluders and lighting can hide one), so the folder holds exactly the
    faces a device would find."""
    from siamface.training.data.sampling import PoseConfig
    from siamface.training.data.synth import FaceSynthesizer, SynthConfig

    pose = PoseConfig(yaw_max_deg=20, pitch_max_deg=10, roll_max_deg=10, scale_jitter=0, shift_jitter=0)
    synth = FaceSynthesizer(face_model, SynthConfig(images_per_identity=3 * PHOTOS_EACH, n_id=N_ID, pose=pose))
    detector = make_detector()

    def add(root: Path, name: str, identity: int, suffixes: tuple[str, ...], rng: np.random.Generator) -> None:
        (root / name).mkdir(parents=True, exist_ok=True)
        written = 0
        for face in synth.render_identity("train", identity)[0]:
            photo = blurred_noise(rng)
            x, y = rng.integers(20, 320 - 180), rng.integers(20, 240 - 180)
            photo[y:y + 160, x:x + 160] = cv2.resize(face, (160, 160))
            path = root / name / f"{name}_{written:04d}{suffixes[written]}"
            cv2.imwrite(str(path), photo[..., ::-1])
            if not detector.detect(read_image(path)):
                path.unlink()
                continue
            written += 1
            if written == len(suffixes):
                return
        raise AssertionError(f"the detector found fewer than {len(suffixes)} of person {identity}'s rendered faces")

    return add


@pytest.fixture(scope="module")
def people_dir(add_person, tmp_path_factory) -> Path:
    """Six people x 3 photos (the first a PNG), a file that is not an image, a photo without a
    face, and a text file the importer must ignore."""
    root = tmp_path_factory.mktemp("people") / "people"
    rng = np.random.default_rng(0)
    for number, name in enumerate(PEOPLE):
        add_person(root, name, number, (".png",) + (".jpg",) * (PHOTOS_EACH - 1), rng)
    (root / "Ada_Lovelace" / "broken.jpg").write_bytes(b"this is not a JPEG")
    cv2.imwrite(str(root / "Alan_Turing" / "empty_wall.png"), blurred_noise(rng))
    assert not make_detector().detect(read_image(root / "Alan_Turing" / "empty_wall.png"))
    (root / "Alan_Turing" / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def imported(people_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "ds"
    import_people(people_dir, out, CFG, workers=1, progress=False)
    return out


def files(root: Path) -> dict[str, bytes]:
    """Every shard, plan and done file of a dataset folder by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/shard-*"))}


def test_split_rule_is_a_per_person_hash():
    assert {name: split_of(name, CFG) for name in PEOPLE} == {
        "Ada_Lovelace": "train", "Edsger_Dijkstra": "train", "Alan_Turing": "val",
        "Barbara_Liskov": "test", "Donald_Knuth": "test", "Grace_Hopper": "test"}
    assert all(split_of(name, ImportConfig(val_fraction=0, test_fraction=0)) == "train" for name in PEOPLE)
    assert all(split_of(name, ImportConfig(val_fraction=1, test_fraction=0)) == "val" for name in PEOPLE)


def test_import_writes_device_crops_with_identity_only_labels(people_dir, imported, face_model):
    ds = Dataset.open(imported)
    m = ds.manifest
    assert m["labels"] == LABELS_IDENTITY_ONLY and m["identity_names"] == list(PEOPLE)
    assert m["columns"] == [list(c) for c in label_columns(face_model.layout(N_ID))]
    assert m["crop"] == {"method": "detector", "detector": "blazeface", "face": "largest detector box"}
    assert m["source"] == {"kind": "people folder", "root": str(people_dir), "photos": 20}
    assert {"python", "numpy", "siamface"} <= set(m["versions"]) and m["face_model"]["sha256"] == face_model.sha256
    # 2 train people x 3 (Ada's broken.jpg failed), 1 val person x 3 (+ the faceless photo), 3 test x 3
    assert m["splits"] == {"train": {"shards": 4, "images": 6, "identities": 2, "failures": 1},
                           "val": {"shards": 2, "images": 3, "identities": 1, "failures": 1},
                           "test": {"shards": 5, "images": 9, "identities": 3, "failures": 0}}
    assert m["failures"] == {"count": 2, "by_reason": {UNREADABLE: 1, NO_FACE: 1}, "file": FAILURES_FILE}
    lines = (imported / FAILURES_FILE).read_text().splitlines()
    assert lines[0] == "path\treason\tdetail" and len(lines) == 3
    failed = {Path(line.split("\t")[0]).name: line.split("\t")[1:] for line in lines[1:]}
    assert failed["broken.jpg"][0] == UNREADABLE and "not a readable image" in failed["broken.jpg"][1]
    assert failed["empty_wall.png"] == [NO_FACE, ""]

    detector = make_detector()
    for split in SPLITS:
        data = ds.split(split)
        names = [m["identity_names"][i] for i in data.identity]
        assert all(split_of(n, CFG) == split for n in names)
        assert len(data) == PHOTOS_EACH * len(set(names))
        for column in ("params", "landmarks2d", "landmarks3d", "pose_deg", "face_box"):
            assert np.isnan(data.column(column)).all()
        # each crop is the device's: the detector's largest box in the photo, 3DDFA-cropped
        crops = data.images(np.arange(len(data)))
        assert crops.shape == (len(data), SIZE, SIZE, 3) and crops.dtype == np.uint8
        photos = sorted(p for n in set(names) for p in (people_dir / n).iterdir() if p.suffix != ".txt")
        photos = [p for p in photos if p.name not in ("broken.jpg", "empty_wall.png")]
        for crop, path in zip(crops, photos):
            image = read_image(path)
            box = detector.detect(image)[0].box  # largest first
            assert np.array_equal(crop, crop_image(image, crop_from_box(box, SIZE)))
    # training sees no 3D label: identity ids are whole numbers, everything else NaN
    train = ds.split("train").labels
    assert np.isfinite(train[:, 0]).all() and np.isnan(train[:, 1:]).all()


def test_rerun_after_a_kill_finishes_with_identical_shards(imported, people_dir, tmp_path):
    """The state a kill leaves: a shard's images written, its labels and done record not, a temp
    file, no manifest. The rerun redoes only that shard and ends byte for byte as the clean run."""
    out = tmp_path / "ds"
    shutil.copytree(imported, out)
    (out / "manifest.json").unlink()
    (out / "test" / "shard-00002.labels.npy").unlink()
    (out / "test" / "shard-00002.done.json").unlink()
    (out / "test" / ".shard-00002.labels.npy.x1.tmp").write_bytes(b"half")
    kept = {p: p.stat().st_mtime_ns for p in (out / "train").glob("shard-*")}
    ds = import_people(people_dir, out, CFG, workers=1, progress=False)
    assert ds.manifest["shards_imported_this_run"] == 1
    assert files(out) == files(imported)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert not list(out.glob("*/.*.tmp"))
    again = import_people(people_dir, out, CFG, workers=1, progress=False)
    assert again.manifest["shards_imported_this_run"] == 0 and again.manifest["splits"] == ds.manifest["splits"]


def test_import_killed_mid_run_resumes_to_the_same_bytes(people_dir, tmp_path):
    """A real SIGKILL of `siamface data import` after 10 of its 38 shards (74 photos); the rerun does the rest."""
    many, out, reference = tmp_path / "people", tmp_path / "ds", tmp_path / "reference"
    shutil.copytree(people_dir, many)
    for photo in list(many.glob("*/*_000[0-2].*")):
        for copy in range(1, 4):  # 4 x the photos: a second or so of cropping to interrupt
            shutil.copyfile(photo, photo.with_name(f"copy{copy}_{photo.name}"))
    import_people(many, reference, CFG, workers=1, progress=False)
    shards = len(list(reference.glob("*/shard-*.done.json")))
    command = [SIAMFACE, "data", "import", str(many), "--out", str(out), "--workers", "1", "shard_size=2",
               f"n_id={N_ID}", "val_fraction=0.25", "test_fraction=0.25"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while len(list(out.glob("*/shard-*.done.json"))) < 10 and process.poll() is None:
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    done = len(list(out.glob("*/shard-*.done.json")))
    assert 10 <= done < shards == 38 and not (out / "manifest.json").exists()
    ds = import_people(many, out, CFG, workers=1, progress=False)
    assert ds.manifest["shards_imported_this_run"] == shards - done
    assert files(out) == files(reference)


def test_rerun_on_a_grown_folder_imports_only_the_new_photos(people_dir, add_person, tmp_path):
    grown, out = tmp_path / "people", tmp_path / "ds"
    shutil.copytree(people_dir, grown)
    import_people(grown, out, CFG, workers=1, progress=False)
    before = files(out)
    rng = np.random.default_rng(1)
    add_person(grown, "Katherine_Johnson", 10, (".jpg", ".jpg"), rng)  # a new person (val by hash)
    add_person(grown, "Ada_Lovelace", 0, (".jpeg",), rng)  # a new photo of a known one
    ds = import_people(grown, out, CFG, workers=1, progress=False)
    m = ds.manifest
    assert {k: v for k, v in files(out).items() if k in before} == before  # old shards untouched
    assert split_of("Katherine_Johnson", CFG) == "val"
    assert m["identity_names"] == list(PEOPLE) + ["Katherine_Johnson"] and m["shards_imported_this_run"] == 2
    assert m["splits"]["train"]["images"] == 7 and m["splits"]["train"]["shards"] == 5
    assert m["splits"]["val"] == {"shards": 3, "images": 5, "identities": 2, "failures": 1}
    val = ds.split("val")
    assert list(val.identity[-2:]) == [len(PEOPLE)] * 2
    assert ds.split("train").identity[-1] == PEOPLE.index("Ada_Lovelace")


def test_other_settings_are_a_one_line_error(imported, people_dir):
    with pytest.raises(SiamfaceError) as err:
        import_people(people_dir, imported, replace(CFG, shard_size=3), workers=1, progress=False)
    message = str(err.value)
    assert "\n" not in message and "import_config.json" in message and "(import differ" in message
    with pytest.raises(SiamfaceError, match="sum to at most 1"):
        import_people(people_dir, imported, replace(CFG, val_fraction=0.6, test_fraction=0.6))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SIAMFACE, "data", "import", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_imports_in_worker_processes_and_fails_in_one_line(imported, people_dir, tmp_path):
    out = tmp_path / "ds"
    r = run(people_dir, "--out", out, "--workers", "2", "shard_size=2", f"n_id={N_ID}", "val_fraction=0.25",
            "test_fraction=0.25")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "train: 6 images / 2 ids (1 failed)" in r.stdout and "2 failure(s)" in r.stdout
    assert files(out) == files(imported)  # the same shards as one process writes
    (tmp_path / "empty" / "nobody").mkdir(parents=True)
    for args, words in (((tmp_path / "missing",), f"{tmp_path / 'missing'} does not exist"),
                        ((tmp_path / "empty",), f"no photos in {tmp_path / 'empty'}"),
                        ((people_dir, "--model", tmp_path / "no-bundle"), f"{tmp_path / 'no-bundle'} is not a siamface bundle")):
        r = run(*args, "--out", tmp_path / "other")
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and words in lines[0], r.stderr
    assert not (tmp_path / "other").exists()  # nothing written before the checks


def test_model_bundle_refines_each_crop_as_the_reconstructor_does(people_dir, face_model, tmp_path):
    """A real bundle whose model answers one fixed parameter vector: the refined crop is the
    3DDFA crop of that face's landmarks placed in the detector's crop."""
    import tf_keras as keras

    from siamface.edge_runtime.bundle import load_bundle
    from siamface.edge_runtime.params import Whitening
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    layout = face_model.layout(N_ID)
    params = np.zeros(layout.size, np.float32)  # a frontal mean face (cm) 44 px wide, off the crop's centre
    params[:12] = [3.0, 0, 0, 55, 0, -3.0, 0, 60, 0, 0, -3.0, 0]
    pixels = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(pixels)
    heads = [keras.layers.Dense(len(v), kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(v))(pooled)
             for v in (params, np.linspace(-1, 1, 16))]
    meta = {"variant": "fp32", "input": {"name": "pixels", "size": SIZE, "dtype": "float32"},
            "param_layout": layout.to_dict(),
            "whitening": Whitening(np.zeros(layout.size, np.float32), np.ones(layout.size, np.float32)).to_dict(),
            "verification": {"threshold": 0.5, "far": 0.01}}
    bundle = write_bundle(tmp_path / "bundle", convert(keras.Model(pixels, heads), "fp32"), meta, face_model, layout)

    people = tmp_path / "people"
    shutil.copytree(people_dir / "Grace_Hopper", people / "Grace_Hopper")
    ds = import_people(people, tmp_path / "ds", replace(CFG, test_fraction=0), bundle=bundle, workers=1, progress=False)
    assert ds.manifest["crop"]["method"] == "detector+refine"
    assert ds.manifest["crop"]["model_bundle"]["model_sha256"] == load_bundle(bundle).model_hash
    decoder = load_bundle(bundle).face_model
    crops = ds.split("train").images(np.arange(PHOTOS_EACH))
    for crop, path in zip(crops, sorted((people / "Grace_Hopper").iterdir())):
        image = read_image(path)
        first = crop_from_box(make_detector().detect(image)[0].box, SIZE)
        refined = crop_from_box(landmark_box(first.to_image(decoder.image_landmarks(params, layout))), SIZE)
        assert refined.side < 0.8 * first.side  # the refine pass moved the crop
        np.testing.assert_allclose(crop, crop_image(image, refined), atol=1)


def test_preview_of_an_identity_only_dataset_draws_faces_without_landmarks(imported, tmp_path):
    from siamface.training.data.dataset import Dataset
    from siamface.training.data.preview import write_preview

    out = tmp_path / "preview.png"
    assert write_preview(Dataset.open(imported), out, n=4, columns=2) == 4
    grid = cv2.imread(str(out))
    assert grid.shape[0] > 100 and grid.std() > 5
