"""`siamface calibrate` and the threshold rules: the operating point by hand, the smallest FAR a set
of pairs can measure, a weak model's threshold, calibration on a people folder and a pairs CSV built
here from real photos (the astronaut's face, tinted per person), the record in bundle.json, and the
metadata digest that makes a hand-edited threshold fail until the bundle is calibrated again.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from siamface.edge_runtime.bundle import META, load_bundle, write_meta
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.identity import Gallery, cosine_threshold
from siamface.edge_runtime.image_io import read_image
from siamface.edge_runtime.reconstructor import Reconstructor
from siamface.evaluation import metrics
from siamface.evaluation.calibrate import calibrate_bundle, open_pairs
from siamface.export.calibration import every_pair, operating_point, shortfall
from test_edge_cli import FACE_REGION, colour_bundle, run, synthetic, user_error  # noqa: F401 (fixtures)

SIAMFACE = [str(Path(sys.executable).with_name("siamface"))]
# Per-person colour casts of the astronaut's face: the colour bundle's embedding (the crop's mean
# colour) tells these "people" apart about as well as a weak identity model, not perfectly.
TINTS = ((1.0, 1.0, 1.0), (1.25, 0.85, 0.8), (0.75, 0.95, 1.25), (0.9, 1.2, 0.8), (1.2, 1.15, 0.7), (0.8, 0.8, 1.0))
PHOTOS_PER_PERSON = 4


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- the operating point, by hand --------------------------------------------------------------------

SAME = np.array([0.9, 0.8, 0.7, 0.4])
DIFFERENT = np.array([0.75, 0.5, 0.45, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3])


def scores_and_labels(same: np.ndarray, different: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[same, different], np.r_[np.ones(len(same), bool), np.zeros(len(different), bool)]


def test_operating_point_by_hand():
    """FAR 0.1 of 10 different pairs allows one false accept (0.75): the lowest threshold keeping it at
    one is 0.7, which accepts 3 of the 4 same pairs."""
    point = operating_point(*scores_and_labels(SAME, DIFFERENT), far_target=0.1)
    assert point["threshold"] == 0.7 and point["far"] == 0.1 and point["tar"] == 0.75
    assert point["false_accepts"] == 1 and point["true_accepts"] == 3
    assert point["n_pairs"] == {"same": 4, "different": 10} and point["similarity"] == "cosine"
    assert "far_target_used" not in point and "threshold_unclamped" not in point
    strict = operating_point(*scores_and_labels(SAME, DIFFERENT), far_target=0.19)  # still one false accept
    assert strict["threshold"] == 0.7
    same_tar = operating_point(*scores_and_labels(SAME, DIFFERENT), far_target=0.2)  # 0.5 adds a false accept only
    assert same_tar["threshold"] == 0.7
    loose = operating_point(*scores_and_labels(SAME, DIFFERENT), far_target=0.3)   # three: down to 0.4, TAR 4/4
    assert (loose["threshold"], loose["far"], loose["tar"]) == (0.4, 0.3, 1.0)


def test_far_below_what_the_pairs_can_measure_is_refused_or_clamped():
    scores, same = scores_and_labels(SAME, DIFFERENT)
    with pytest.raises(SiamfaceError, match=r"10 different-person pairs cannot measure a FAR below 1/10 = 0.1; "
                                            r"FAR 0.001 needs 1000 or more"):
        operating_point(scores, same, far_target=1e-3)
    clamped = operating_point(scores, same, far_target=1e-3, clamp_far=True)
    assert clamped["far_target"] == 1e-3 and clamped["far_target_used"] == 0.1 and clamped["threshold"] == 0.7
    with pytest.raises(SiamfaceError, match="needs same-person and different-person pairs, got 0 and 10"):
        operating_point(DIFFERENT, np.zeros(10, bool), far_target=0.5)


def test_no_same_pair_accepted_puts_the_threshold_above_every_different_pair():
    point = operating_point(*scores_and_labels(np.array([0.2, 0.1]), np.array([0.6, 0.5, 0.0, -0.5])), far_target=0.25)
    assert point["threshold"] == pytest.approx(0.6 + 1e-6) and point["far"] == 0.0 and point["tar"] == 0.0


def test_weak_model_threshold_is_clamped_into_the_cosine_range(tmp_path):
    """A collapsed model's float32 cosines reach a hair above 1: the threshold becomes 1.0 (recorded
    unclamped too), FAR and TAR are measured at 1.0, and the bundle writer and the gallery accept it,
    while 1 + 1e-6 is refused by the writer, the gallery and --threshold's rule alike."""
    same = np.array([0.99999994, 1.0000001, 0.9999999])
    different = np.array([1.0000002, 0.9999998, 0.99999994, 0.9999997])
    point = operating_point(*scores_and_labels(same, different), far_target=0.25)
    assert point["threshold"] == 1.0 and point["threshold_unclamped"] == 1.0000001
    assert point["far"] == 0.25 and point["tar"] == pytest.approx(1 / 3)  # measured at 1.0: 1.0000002 and 1.0000001
    assert shortfall(point) is None
    worse = operating_point(*scores_and_labels(same, np.r_[different, 1.0, 1.0]), far_target=0.2)
    assert worse["threshold"] == 1.0 and worse["far"] == 0.5 and shortfall(worse) == (
        "no cosine threshold reaches FAR 0.2 on these pairs: at 1, 3 of 6 different-person pairs are still "
        "accepted; the model does not tell these people apart")
    written = write_meta(tmp_path, {"verification": point})
    assert json.loads((tmp_path / META).read_text()) == written
    Gallery(tmp_path / "gallery.db", "a" * 64, written["verification"]["threshold"], create=True)
    for bad in (1 + 1e-6, -1.5, math.nan, math.inf, "high", None):
        with pytest.raises(SiamfaceError, match="is not a cosine in \\[-1, 1\\]"):
            write_meta(tmp_path / "x", {"verification": {"threshold": bad}})
        with pytest.raises(SiamfaceError, match="is not a cosine in \\[-1, 1\\]"):
            Gallery(tmp_path / "gallery.db", "a" * 64, bad)
        with pytest.raises(SiamfaceError, match="--threshold: threshold .* is not a cosine in \\[-1, 1\\]"):
            cosine_threshold(bad, "--threshold")
    assert not (tmp_path / "x").exists()
    assert [cosine_threshold(v, "t") for v in (-1, 1, "0.25")] == [-1.0, 1.0, 0.25]


def test_every_pair_counts_all_different_pairs():
    i, j, same = every_pair(np.array(["a", "a", "b", "c", "c", "c"]))
    assert len(i) == 15 and same.sum() == 1 + 3 and np.all(i < j)


def test_open_pairs_reads_folders_csv_and_lfw_pairs(tmp_path):
    """A people folder gives every pair; a CSV or LFW pairs.txt gives exactly its listed pairs, each photo once,
    and each photo's unit for the intervals: its folder where the folders are the people, else itself."""
    for name, count in (("ann", 2), ("bo", 1), ("cy", 2)):
        (tmp_path / "lfw" / name).mkdir(parents=True)
        for k in range(1, count + 1):
            (tmp_path / "lfw" / name / f"{name}_{k:04d}.jpg").write_bytes(b"")
    folder = open_pairs(tmp_path / "lfw")
    assert [p.name for p in folder.photos] == ["ann_0001.jpg", "ann_0002.jpg", "bo_0001.jpg", "cy_0001.jpg",
                                               "cy_0002.jpg"]
    assert len(folder.i) == 10 and folder.same.sum() == 2
    (tmp_path / "lfw" / "pairs.txt").write_text("1 2\nann 1 2\ncy 1 2\nann 1 bo 1\nbo 1 cy 2\n")
    listed = open_pairs(tmp_path / "lfw" / "pairs.txt")
    assert [p.name for p in listed.photos] == ["ann_0001.jpg", "ann_0002.jpg", "cy_0001.jpg", "cy_0002.jpg",
                                               "bo_0001.jpg"]
    assert listed.i.tolist() == [0, 2, 0, 4] and listed.j.tolist() == [1, 3, 4, 3]
    assert listed.same.tolist() == [True, True, False, False]
    assert listed.units.tolist() == [0, 0, 2, 2, 1]      # LFW's folders are its people: intervals over people
    (tmp_path / "lfw" / "pairs.csv").write_text("ann/ann_0001.jpg,cy/cy_0001.jpg,1\nann/ann_0002.jpg,bo/bo_0001.jpg,0\n")
    assert open_pairs(tmp_path / "lfw" / "pairs.csv").units.tolist() == [0, 1, 2, 3]  # a same pair across folders
    (tmp_path / "flat").mkdir()
    for k in range(3):
        (tmp_path / "flat" / f"{k}.jpg").write_bytes(b"")
    (tmp_path / "flat" / "pairs.csv").write_text("0.jpg,1.jpg,1\n1.jpg,2.jpg,0\n")
    assert open_pairs(tmp_path / "flat" / "pairs.csv").units.tolist() == [0, 1, 2]  # one folder: each photo its own
    with pytest.raises(SiamfaceError, match="--data .*nowhere does not exist"):
        open_pairs(tmp_path / "nowhere")


# -- photos of people built here ----------------------------------------------------------------------


def tinted_photo(person: int, k: int) -> np.ndarray:
    """The astronaut's face with person's colour cast, at photo k's scale, brightness and place on a
    320 x 320 grey canvas (BlazeFace finds it in every one)."""
    face = data.astronaut()[FACE_REGION]
    scale = 0.8 + 0.1 * k
    face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float64)
    face = np.clip(face * np.array(TINTS[person]) * (0.95 + 0.05 * k), 0, 255).astype(np.uint8)
    canvas = np.full((320, 320, 3), 100, np.uint8)
    y, x = 20 + 10 * k, 30 + 5 * k
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    return canvas


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    """people/person_<p>/photo_<k>.png for 6 people x 4 photos (36 same-person and 240 different-person
    pairs), a photo without a face, and pairs.csv listing some of the pairs."""
    root = tmp_path_factory.mktemp("people")
    for p in range(len(TINTS)):
        (root / f"person_{p}").mkdir()
        for k in range(PHOTOS_PER_PERSON):
            assert cv2.imwrite(str(root / f"person_{p}" / f"photo_{k}.png"), tinted_photo(p, k)[..., ::-1])
    rows = ["file_a,file_b,same"]
    for p in range(3):
        rows += [f"person_{p}/photo_0.png,person_{p}/photo_{k}.png,1" for k in (1, 2, 3)]
        rows += [f"person_{p}/photo_{k}.png,person_{q}/photo_{k}.png,0" for q in range(3, 6) for k in (0, 1)]
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root


def device_scores(bundle: Path, photos: list[Path]) -> np.ndarray:
    """Embeddings the way `siamface verify` computes them, through the Python API."""
    rec = Reconstructor.from_bundle(bundle)
    return np.stack([rec.reconstruct(read_image(p))[0].embedding for p in photos])


def test_calibrate_on_a_people_folder_records_where_the_threshold_came_from(colour_bundle, people, tmp_path):
    """Every pair of the 24 photos, scored on the device path; the threshold is the one threshold_at_far
    gives on those scores; the record names the data, counts, FAR, TAR and the synthetic value it
    replaced; the copy keeps the model hash (galleries stay valid) and the original is untouched."""
    folder = shutil.copytree(people, tmp_path / "people")
    no_face = folder / "person_0" / "no_face.png"
    assert cv2.imwrite(str(no_face), np.full((200, 200, 3), 90, np.uint8))
    before = (colour_bundle / META).read_bytes()
    out = tmp_path / "calibrated"
    result = run("calibrate", colour_bundle, "--data", folder, "--far", "0.05", "--out", out, program=SIAMFACE)
    stdout = ok(result)
    assert [ln for ln in result.stderr.splitlines() if ln and not ln.startswith("embed:")] == [
        f"skipped {no_face}: no face detected"]

    photos = sorted(folder.glob("person_*/photo_*.png"))
    i, j, same = every_pair(np.array([p.parent.name for p in photos]))
    scores = metrics.cosine_scores(*(device_scores(colour_bundle, photos)[idx] for idx in (i, j)))
    expected = metrics.threshold_at_far(scores, same, 0.05)
    v = load_bundle(out).meta["verification"]
    assert v["source"] == "calibrated" and v["data"] == str(folder.resolve())
    assert v["n_pairs"] == {"same": 36, "different": 240} and v["photos"] == 24 and v["skipped_photos"] == 1
    assert v["threshold"] == pytest.approx(expected["threshold"], abs=1e-12)
    assert v["far"] == pytest.approx(expected["far"]) and v["tar"] == pytest.approx(expected["tar"])
    assert v["far"] <= 0.05 and v["false_accepts"] == round(240 * v["far"]) and 0.3 < v["tar"] < 1.0
    assert v["far_target"] == 0.05 and v["faces"] == "blazeface, refined, largest" and v["date"][:2] == "20"
    assert v["previous"] == {"threshold": 0.9}  # the colour bundle's hand-written block had no source
    # the rates' 95 % intervals over random halves of the 6 people: around the measured rates, within [0, 1]
    (far_lo, far_hi), (tar_lo, tar_hi) = v["far_interval"], v["tar_interval"]
    assert 0.0 <= far_lo < v["far"] < far_hi <= 1.0 and 0.0 <= tar_lo < v["tar"] < tar_hi <= 1.0
    assert stdout.startswith(f"{out}: threshold {v['threshold']:.4f} (cosine) at FAR {v['far']:.4g} (95 % interval "
                             f"{far_lo:.4g}-{far_hi:.4g}) ({v['false_accepts']} of 240 different-person pairs accepted; "
                             f"target 0.05), ")
    assert load_bundle(out).model_hash == load_bundle(colour_bundle).model_hash
    assert (colour_bundle / META).read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in colour_bundle.iterdir())


def test_calibrate_in_place_on_a_pairs_csv_then_verify_uses_it(colour_bundle, people, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(colour_bundle, bundle)
    result = calibrate_bundle(bundle, people / "pairs.csv", 0.1, progress=False)
    assert result.bundle == bundle and result.skipped == [] and not result.was_edited
    v = load_bundle(bundle).meta["verification"]
    assert v["n_pairs"] == {"same": 9, "different": 18} and v["photos"] == 18  # 4 of people 0-2, 2 of 3-5
    assert v["data"] == str((people / "pairs.csv").resolve())
    a, b = people / "person_1" / "photo_0.png", people / "person_1" / "photo_3.png"
    verdict = json.loads(ok(run("verify", a, b, "--model", bundle)))
    assert verdict["threshold"] == round(v["threshold"], 4) and verdict["score_kind"] == "cosine"
    assert verdict["threshold_source"] == f"bundle: calibrated on {people / 'pairs.csv'}"
    assert verdict["far_at_threshold"] == v["far"]
    score = float(np.prod(device_scores(bundle, [a, b]), axis=0).sum())  # unrounded: it may be the threshold itself
    assert verdict["score"] == pytest.approx(score, abs=1e-4)
    if abs(score - v["threshold"]) > 1e-6:  # a score equal to the threshold is decided by float rounding
        assert verdict["same_person"] == (score >= v["threshold"])


def test_too_low_a_far_for_the_pairs_is_refused_and_changes_nothing(colour_bundle, people):
    before = (colour_bundle / META).read_bytes()
    result = run("calibrate", colour_bundle, "--data", people / "pairs.csv", "--far", "1e-3", program=SIAMFACE)
    assert result.returncode != 0 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "18 different-person pairs cannot measure a FAR below 1/18 = 0.056; FAR 0.001 needs 1000 or more" in line
    assert (colour_bundle / META).read_bytes() == before


def test_calibrate_refuses_an_existing_out_folder_and_bad_data(colour_bundle, people, tmp_path):
    with pytest.raises(SiamfaceError, match=f"--out {tmp_path} exists"):
        calibrate_bundle(colour_bundle, people, 0.05, out=tmp_path, progress=False)
    (tmp_path / "one_person" / "solo").mkdir(parents=True)
    shutil.copy(people / "person_0" / "photo_0.png", tmp_path / "one_person" / "solo" / "a.png")
    shutil.copy(people / "person_0" / "photo_1.png", tmp_path / "one_person" / "solo" / "b.png")
    with pytest.raises(SiamfaceError, match="got 1 and 0"):
        calibrate_bundle(colour_bundle, tmp_path / "one_person", 0.05, progress=False)


# -- the digest: a hand-edited threshold fails until the bundle is calibrated ---------------------------


def test_hand_edited_threshold_fails_check_and_load_until_calibrated(tiny_bundles, synthetic, tmp_path):
    """Setting the threshold to -1 by hand (verify would then match anyone) fails load, `check` and
    verify with one line that says to calibrate; `siamface calibrate` on synthetic photos of four people
    (a real int8 bundle, --box for the aligned renders) writes a measured threshold and a new digest."""
    bundle = tmp_path / "int8-qat"
    shutil.copytree(tiny_bundles / "bundles" / "int8-qat", bundle)
    meta = json.loads((bundle / META).read_text())
    meta["verification"]["threshold"] = -1.0
    (bundle / META).write_text(json.dumps(meta, indent=2))
    with pytest.raises(SiamfaceError, match="was edited by hand.*siamface calibrate"):
        load_bundle(bundle)
    for args in (("check",), ("verify", synthetic["paths"][0], synthetic["paths"][1], "--box", "8,8,56,56")):
        line = user_error(run(*args, "--model", bundle), bundle / META)
        assert f"set a threshold with `siamface calibrate {bundle} --data PHOTOS` or re-export the bundle" in line

    people = tmp_path / "people"
    for path, person in zip(synthetic["paths"], synthetic["identity"]):
        (people / f"person_{person}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, people / f"person_{person}" / path.name)
    result = run("calibrate", bundle, "--data", people, "--far", "0.05", "--box", "8,8,56,56", program=SIAMFACE)
    ok(result)
    assert "had no valid metadata digest (edited by hand or older)" in result.stderr
    v = load_bundle(bundle).meta["verification"]
    assert v["source"] == "calibrated" and v["faces"] == "box 8,8,56,56" and v["previous"]["threshold"] == -1.0
    assert v["n_pairs"] == {"same": 24, "different": 96} and -1.0 < v["threshold"] <= 1.0
    # The tiny int8 model's embeddings are nearly all alike: if no threshold reaches the FAR, it says so.
    warned = "warning: no cosine threshold reaches FAR 0.05" in result.stderr
    assert v["far"] <= 0.05 or (v["threshold"] == 1.0 and warned)
    assert "hashes ok" in ok(run("check", "--model", bundle))
