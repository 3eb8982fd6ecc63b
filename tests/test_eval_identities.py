"""`siamface evaluate` on photos with identities only: a folder of people (LFW layout), LFW pairs.txt
and a pairs CSV. Real rendered faces written as JPEG files; the predictor that scores them returns
each photo's true identity coefficients, so every identity figure is known exactly.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from siamface.edge_runtime.crop import crop_from_box, crop_image, whole_image_box
from siamface.edge_runtime.crop_outputs import OutputRules
from siamface.edge_runtime.detector import make_detector
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.image_io import read_image
from siamface.edge_runtime.params import Whitening
from siamface.evaluation.eval_data import NO_FACE, EvalSet, open_eval_set
from siamface.evaluation.evaluate import evaluate, write_reports
from siamface.evaluation.predictors import Predictor

SIZE, N_ID, PEOPLE, PER_PERSON = 64, 20, 3, 3
BOX = whole_image_box(SIZE)  # renders are already crops: the box whose crop is the whole image
PERFECT = {"auc": 1.0, "eer": 0.0, "tar_at_far_1e-2": 1.0, "tar_at_far_1e-3": 1.0, "acc_mean": 1.0, "acc_std": 0.0}


def write_jpeg(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


@pytest.fixture(scope="module")
def people(face_model, tmp_path_factory) -> dict:
    """LFW layout: person_k/person_k_000j.jpg rendered from the face model, plus one unreadable
    person_0/person_0_0004.jpg; ``params`` holds each readable photo's true parameters."""
    from siamface.training.data.synth import FaceSynthesizer, SynthConfig

    root = tmp_path_factory.mktemp("lfw")
    synth = FaceSynthesizer(face_model, SynthConfig(image_size=SIZE, n_id=N_ID, images_per_identity=PER_PERSON))
    params = {}
    for k in range(PEOPLE):
        images, labels = synth.render_identity("test", k)
        for j, (image, label) in enumerate(zip(images, labels), start=1):
            params[write_jpeg(root / f"person_{k}" / f"person_{k}_{j:04d}.jpg", image)] = label[synth.columns["params"]]
    broken = root / "person_0" / "person_0_0004.jpg"
    broken.write_bytes(b"not a jpeg")
    return {"root": root, "params": params, "broken": broken, "layout": synth.layout}


def crop_key(crop: np.ndarray) -> bytes:
    return np.ascontiguousarray(crop).tobytes()


def photo_of_crop(people) -> dict[bytes, Path]:
    """Which photo a crop (fixed box) came from: the crops are computed here exactly as evaluation does."""
    return {crop_key(crop_image(read_image(p), crop_from_box(BOX, SIZE))): p for p in people["params"]}


@pytest.fixture(scope="module")
def truth_predictor(people, face_model) -> Predictor:
    """A predictor that knows the answer: each crop's true parameters, and its true identity
    coefficients as the embedding (same person: cosine 1; different people: below 1)."""
    layout, photo = people["layout"], photo_of_crop(people)

    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = np.stack([people["params"][photo[crop_key(c)]] for c in crops])
        return params, params[:, layout.identity]

    identity = Whitening(np.zeros(layout.size, np.float32), np.ones(layout.size, np.float32))
    return Predictor("truth", "truth", SIZE, OutputRules(layout, identity, face_model), run, {})


def listed(eval_set: EvalSet, people) -> list[tuple[Path, Path, bool]]:
    """The pairs an evaluation set scores, as (photo, photo, same)."""
    photo = photo_of_crop(people)
    i, j, same = eval_set.truth.pairs
    return [(photo[crop_key(eval_set.crops[a])], photo[crop_key(eval_set.crops[b])], bool(s))
            for a, b, s in zip(i, j, same)]


def assert_perfect(report: dict, n_same: int, n_diff: int) -> None:
    assert report["n_same"] == n_same and report["n_diff"] == n_diff
    assert {k: report[k] for k in PERFECT} == pytest.approx(PERFECT, abs=1e-12)


def test_folder_of_people_scores_identity_only(people, truth_predictor, tmp_path):
    eval_set = open_eval_set(people["root"], SIZE, box=BOX)
    photos = sorted(people["params"])
    assert len(eval_set.crops) == PEOPLE * PER_PERSON
    assert eval_set.skipped == [(people["broken"], "unreadable image")]
    assert eval_set.truth.landmarks2d is None and eval_set.truth.pose_deg is None
    assert eval_set.refine is None and eval_set.real  # a fixed box is used as it is: no refine pass
    assert list(eval_set.truth.identity) == [p.parent.name for p in photos]
    # The fixed box crops the whole (already cropped) image.
    assert max(np.abs(c.astype(int) - read_image(p)).max() for c, p in zip(eval_set.crops, photos)) <= 1

    result, curves = evaluate(truth_predictor, eval_set, progress=False)
    assert result["n_images"] == 9 and result["n_identities"] == 3
    assert result["skipped"] == 1 and result["skipped_images"] == [{"path": str(people["broken"]),
                                                                   "reason": "unreadable image"}]
    for code in ("shape", "embedding"):
        assert_perfect(result[f"verification_{code}"], n_same=9, n_diff=9)  # all 3 x C(3, 2) same pairs
        assert result[f"rank1_{code}"] == 1.0
    assert not {"nme", "pose_mae", "pose_invariance_shape", "shape_error_mm"} & set(result)
    assert "identification_templates" not in result  # 3 photos each: no probe beside a 4-photo template
    assert set(curves) == {"scores", "same", "units"}
    i, j, _ = eval_set.truth.pairs if eval_set.truth.pairs is not None else eval_set.truth.verification_pairs()
    people = np.unique(eval_set.truth.identity, return_inverse=True)[1]
    assert [u.tolist() for u in curves["units"]] == [people[i].tolist(), people[j].tolist()]  # intervals over people

    write_reports({"truth": result}, {"truth": curves}, tmp_path, None)
    assert json.loads((tmp_path / "report.json").read_text())["truth"]["n_identities"] == 3
    text = (tmp_path / "report.md").read_text()
    assert text.count("| truth |") == 3 and "| nan |" in text        # main, intervals and identity tables
    assert "| truth | - | 0.0 (too few to tell) |" in text             # 3 people: halves of them say nothing
    assert cv2.imread(str(tmp_path / "roc.png")) is not None
    assert not (tmp_path / "nme_yaw.png").exists() and not (tmp_path / "ced.png").exists()


def test_people_with_five_photos_are_scored_against_four_photo_templates(truth_predictor):
    from siamface.edge_runtime.scoring import GroundTruth, identity_score

    layout = truth_predictor.layout
    ids = np.repeat([0, 1, 2, 3], [5, 5, 6, 2])                    # person 3: too few photos for a template
    rng = np.random.default_rng(0)
    codes = np.eye(8)[ids] + rng.normal(0, 0.05, (len(ids), 8))
    params = np.zeros((len(ids), layout.size))
    result = identity_score(params, codes, GroundTruth(None, None, identity=ids), layout)
    templates = result["identification_templates"]
    assert templates["people"] == 3 and templates["enrolled"] == 4 and templates["rank1"] == 1.0
    assert_perfect(templates, n_same=16, n_diff=32)


def test_pairs_csv_scores_exactly_the_listed_pairs(people, truth_predictor):
    root, photos = people["root"], sorted(people["params"])
    pairs = [(photos[a], photos[b], a // PER_PERSON == b // PER_PERSON)
             for a, b in [(0, 1), (0, 3), (1, 2), (1, 4), (3, 4), (2, 6), (3, 5), (5, 8), (6, 7), (4, 7), (6, 8), (0, 8)]]
    lines = ["file_a,file_b,same", *(f"{a.relative_to(root)},{b.relative_to(root)},{int(s)}" for a, b, s in pairs),
             f"{photos[0].relative_to(root)},{people['broken'].relative_to(root)},1"]
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")

    eval_set = open_eval_set(root / "pairs.csv", SIZE, box=BOX)
    assert listed(eval_set, people) == pairs                      # in file order; the broken pair dropped
    assert eval_set.name == "pairs pairs.csv (12 of 13 pairs)" and len(eval_set.crops) == 9
    assert eval_set.skipped == [(people["broken"], "unreadable image")]
    result, curves = evaluate(truth_predictor, eval_set, progress=False)
    assert_perfect(result["verification_embedding"], n_same=6, n_diff=6)
    assert "n_identities" not in result and "rank1_shape" not in result  # pairs carry no identities
    person = np.unique([p.parent.name for p in photos], return_inverse=True)[1]  # the folders are the people:
    assert [u.tolist() for u in curves["units"]] == [[person[photos.index(a)] for a, _, _ in pairs],
                                                      [person[photos.index(b)] for _, b, _ in pairs]]  # intervals over them


def test_lfw_pairs_txt_with_an_images_root(people, truth_predictor, tmp_path):
    fold = ["person_0\t1\t2", "person_1\t1\t3", "person_2\t2\t3",
            "person_0\t1\tperson_1\t2", "person_1\t3\tperson_2\t1", "person_2\t2\tperson_0\t3"]
    second = ["person_0\t2\t4", *fold[1:]]                          # person_0_0004.jpg is unreadable
    (tmp_path / "pairs.txt").write_text("2\t3\n" + "\n".join(fold + second) + "\n")

    eval_set = open_eval_set(tmp_path / "pairs.txt", SIZE, box=BOX, images=people["root"])
    root = people["root"]

    def photo(name: str, number: str) -> Path:
        return root / name / f"{name}_{int(number):04d}.jpg"

    expected = [(photo(f[0], f[1]), photo(f[0], f[2]), True) if len(f) == 3 else (photo(f[0], f[1]), photo(f[2], f[3]), False)
                for f in (line.split("\t") for line in fold + second[1:])]
    assert listed(eval_set, people) == expected
    assert eval_set.name == "pairs pairs.txt (11 of 12 pairs)"
    assert eval_set.skipped == [(people["broken"], "unreadable image")]
    result, _ = evaluate(truth_predictor, eval_set, progress=False)
    assert_perfect(result["verification_shape"], n_same=5, n_diff=6)


def test_detection_crops_the_largest_face_and_skips_photos_without_one(tmp_path):
    """No --box: the edge runtime's detector finds the face (the largest of several) in each photo."""
    astronaut = data.astronaut()
    face = astronaut[20:260, 110:350]
    two = np.full((240, 440, 3), 90, np.uint8)
    two[:, :240], two[20:188, 260:428] = face, cv2.resize(face, (168, 168), interpolation=cv2.INTER_AREA)
    photos = {"alice/a.jpg": astronaut, "alice/b.jpg": astronaut[:, ::-1], "alice/c.jpg": astronaut[::2, ::2],
              "bob/face.jpg": face, "bob/flipped.jpg": face[:, ::-1], "bob/two.jpg": two,
              "bob/noise.jpg": np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)}
    for name, rgb in photos.items():
        write_jpeg(tmp_path / name, np.ascontiguousarray(rgb))
    (tmp_path / "bob" / "broken.jpg").write_bytes(b"")

    eval_set = open_eval_set(tmp_path, SIZE)
    assert eval_set.skipped == [(tmp_path / "bob" / "broken.jpg", "unreadable image"),
                                (tmp_path / "bob" / "noise.jpg", NO_FACE)]
    assert list(eval_set.truth.identity) == ["alice"] * 3 + ["bob"] * 3
    detector = make_detector()
    used = ["alice/a.jpg", "alice/b.jpg", "alice/c.jpg", "bob/face.jpg", "bob/flipped.jpg", "bob/two.jpg"]
    assert eval_set.refine.paths == [tmp_path / name for name in used]  # each model refines these, as the device
    for crop, first, name in zip(eval_set.crops, eval_set.refine.crops, used):
        image = read_image(tmp_path / name)
        faces = detector.detect(image)
        assert first == crop_from_box(faces[0].box, SIZE) and np.array_equal(crop, crop_image(image, first))
    assert len(detector.detect(read_image(tmp_path / "bob" / "two.jpg"))) == 2


def test_nothing_usable_is_a_one_line_error_naming_the_path(people, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SiamfaceError, match=f"^{empty} is not a siamface dataset .*: pass one of those$"):
        open_eval_set(empty, SIZE)

    useless = tmp_path / "useless"
    (useless / "carol").mkdir(parents=True)
    (useless / "carol" / "broken.jpg").write_bytes(b"")
    write_jpeg(useless / "dave" / "noise.jpg", np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8))
    with pytest.raises(SiamfaceError) as err:
        open_eval_set(useless, SIZE)
    assert str(err.value) == (f"{useless}: usable faces of 0 identities, identity metrics need two; 2 images skipped "
                              f"(no face detected, unreadable image): use photos with a visible face, "
                              f"or --box x0,y0,x1,y1 when they are already aligned face crops")

    root = people["root"]
    (tmp_path / "bad.csv").write_text(f"{people['broken']},{root / 'person_1' / 'person_1_0001.jpg'},0\n")
    with pytest.raises(SiamfaceError, match=f"^{tmp_path / 'bad.csv'}: no listed pair has two usable faces; "
                                            f"1 images skipped \\(unreadable image\\)"):
        open_eval_set(tmp_path / "bad.csv", SIZE, box=BOX)


def test_cli_evaluates_a_checkpoint_on_a_folder_of_people_with_a_fixed_box(people, face_model, tmp_path):
    """An untrained (random) encoder saved as a real checkpoint; `siamface evaluate` in a subprocess."""
    from siamface.training.checkpoint import save_checkpoint
    from siamface.training.model import EncoderConfig, build_encoder

    layout = people["layout"]
    encoder = build_encoder(EncoderConfig(input_size=SIZE, width=0.35, last_channels=128, embedding_dim=16,
                                          n_params=layout.size))
    whitening = Whitening.fit(np.stack(list(people["params"].values())))
    save_checkpoint(tmp_path / "ckpt", encoder, {"kind": "float", "config": {}, "param_layout": layout.to_dict(),
                                                 "whitening": whitening.to_dict(), "face_model": face_model.describe(),
                                                 "image_size": SIZE})
    out = tmp_path / "eval"
    r = subprocess.run([str(Path(sys.executable).with_name("siamface")), "evaluate", "--model", str(tmp_path / "ckpt"),
                        "--data", str(people["root"]), "--box", ",".join(f"{v:.4f}" for v in BOX), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Data: people ({people['root'].name}): 9 photos (1 skipped, listed in report.json), cropped from the " \
           f"given box; real photos for measuring only" in r.stdout
    report = json.loads((out / "report.json").read_text())["checkpoint-float"]
    assert report["n_images"] == 9 and report["n_identities"] == 3 and report["data"] == f"people ({people['root'].name})"
    assert report["skipped_images"] == [{"path": str(people["broken"]), "reason": "unreadable image"}]
    ver = report["verification_embedding"]
    assert ver["n_same"] == 9 and ver["n_diff"] == 9 and 0.0 <= ver["eer"] <= 1.0
    assert "nme" not in report and (out / "roc.png").is_file() and not (out / "ced.png").exists()


def test_a_limited_synthetic_split_keeps_whole_people(tiny_data):
    """`evaluate --limit` on a split whose photos of a person are contiguous keeps every photo of
    evenly spread people, so same-person pairs remain (every n-th image would leave one per person)."""
    from siamface.evaluation.eval_data import synthetic_split
    from siamface.training.data.dataset import whole_people

    ids = np.repeat([7, 3, 9, 1, 5, 2], 4)
    assert whole_people(ids, 13).tolist() == [*range(0, 4), *range(8, 12), *range(20, 24)]   # people 7, 9, 2
    assert whole_people(ids, 3).tolist() == [0, 1, 2]                                         # at most the limit
    eval_set = synthetic_split(tiny_data, "train", limit=10)
    people, counts = np.unique(eval_set.truth.identity, return_counts=True)
    assert len(eval_set.truth.identity) == 8 and counts.tolist() == [4, 4]
    assert len(synthetic_split(tiny_data, "train").truth.identity) == 24
