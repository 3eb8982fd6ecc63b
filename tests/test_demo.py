"""`siamface demo --quick`: the main job end to end (the shared tiny_bundles fixture runs it in a
real process) and its resume behaviour."""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2

from siamface.edge_runtime.defaults import SHIPPED_BUNDLE
from siamface.export.exporter import FLOAT_VARIANTS

VARIANTS = (*FLOAT_VARIANTS, "int8-qat")
ROWS = (*VARIANTS, "int8-qat-texture")  # the compared bundles: every variant, and int8-qat with the texture model
SIAMFACE = str(Path(sys.executable).parent / "siamface")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_quick_demo_writes_every_stage(tiny_bundles):
    root = tiny_bundles
    assert cv2.imread(str(root / "data" / "preview.png")).shape[0] > 64
    assert (root / "train" / "best" / "checkpoint.json").is_file() and (root / "qat" / "best" / "checkpoint.json").is_file()
    for variant in VARIANTS:
        assert json.loads((root / "bundles" / variant / "bundle.json").read_text())["variant"] == variant
    textured = json.loads((root / "bundles" / "int8-qat-texture" / "bundle.json").read_text())
    assert textured["variant"] == "int8-qat" and textured["texture_identity"]["model"]["dtype"] == "int8"
    assert (root / "texture" / "best" / "texture_id.json").is_file()

    report = (root / "compare" / "report.md").read_text()
    # comparison, landmark-group, intervals and identity tables; every bundle but fp32 also in the changes against it
    assert all(report.count(f"| {v} |") == (4 if v == "fp32" else 5) for v in ROWS)
    results = json.loads((root / "compare" / "report.json").read_text())
    assert set(results) == set(ROWS) and all(r["n_images"] == 16 for r in results.values())
    for plot in ("roc.png", "nme_yaw.png", "ced.png"):
        assert cv2.imread(str(root / "compare" / plot)).shape[1] > 300

    rec = root / "reconstruct"
    astronaut = json.loads((rec / "astronaut.json").read_text())
    assert astronaut["bundle"] == "int8-qat" and len(astronaut["faces"]) == 1
    assert len(astronaut["faces"][0]["landmarks68"]) == 68
    assert (rec / "astronaut.obj").stat().st_size > 0 and (rec / "astronaut.ply").stat().st_size > 0
    assert cv2.imread(str(rec / "astronaut_overlay.png")).shape == (512, 512, 3)
    assert sorted(p.name for p in rec.glob("synthetic_*_overlay.png")) == [f"synthetic_{k}_overlay.png" for k in range(4)]

    for gallery in ("gallery-shipped.db", "gallery.db"):  # step 8: the shipped bundle, then the demo's own
        with sqlite3.connect(root / gallery) as db:
            assert [r[0] for r in db.execute("SELECT name FROM people")] == ["person_a"]
    log = (root / "demo.log").read_text()
    decisions = [json.loads(line) for line in log.splitlines() if line.startswith('{"score"')]
    assert len(decisions) == 4 and all(-1 <= d["score"] <= 1 for d in decisions)
    assert [d["person"] for d in decisions] == ["person_a"] * 4  # each probe checked against the enrolled template
    found = [json.loads(line) for line in log.splitlines() if line.startswith('{"best"')]
    assert [f["candidates"][0][1] for f in found] == [d["score"] for d in decisions]  # the same cosine, 1:1 and 1:N
    shipped = json.loads((SHIPPED_BUNDLE / "bundle.json").read_text())
    assert [d["threshold"] for d in decisions] == [round(shipped["verification"]["threshold"], 4)] * 2 + \
        [round(textured["verification"]["threshold"], 4)] * 2
    # the shipped bundle accepts the enrolled person's other photo and rejects the other person
    assert [d["same_person"] for d in decisions[:2]] == [True, False]
    for v in (shipped["verification"], textured["verification"]):
        assert f"at its threshold {v['threshold']:.3f} this bundle accepts {100 * v['tar']:.1f} % of same-person" in log
    assert "== done" in log and "| variant |" in log and str(root / "compare" / "report.md") in log


def test_rerunning_the_demo_keeps_finished_work(tiny_bundles):
    """`make demo` twice: finished stages are skipped, the rest is redone in place."""
    out = tiny_bundles
    kept = [out / "train" / "best" / "encoder.h5", out / "qat" / "best" / "encoder.h5",
            *(out / "bundles" / v / "model.tflite" for v in VARIANTS),
            out / "texture" / "best" / "texture_net.h5", out / "bundles" / "int8-qat-texture" / "texture_identity.tflite"]
    before = {p: sha(p) for p in kept}
    r = subprocess.run([SIAMFACE, "demo", "--quick", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p: sha(p) for p in kept} == before
    assert "== done" in r.stdout
    enrolled = len(list((out / "photos").glob("enroll_a_*.png")))
    for gallery in ("gallery-shipped.db", "gallery.db"):  # enrolled anew, not twice: each photo once
        with sqlite3.connect(out / gallery) as db:
            assert [tuple(row) for row in db.execute("SELECT name, count FROM people")] == [("person_a", enrolled)]


def test_compare_checkpoints_by_run_name_with_the_mean_face_baseline(tiny_bundles, tmp_path):
    """The ablation form of compare: checkpoints of the same kind are labelled by their run folder."""
    shutil.copytree(tiny_bundles / "train", tmp_path / "other")
    out = tmp_path / "report"
    r = subprocess.run([SIAMFACE, "compare", str(tiny_bundles / "train" / "best"), str(tmp_path / "other" / "best"),
                        "--data", str(tiny_bundles / "data"), "--baseline", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((out / "report.json").read_text())
    assert list(results) == ["train", "other", "mean-face"]
    assert results["train"]["nme"] == results["other"]["nme"]                    # same weights, same figures
    assert results["mean-face"]["verification_embedding"]["eer"] == 0.5          # constant embedding: chance
    assert results["mean-face"]["pose_mae"]["mean"] > 0
    report = (out / "report.md").read_text()
    assert "## Identity and pose invariance" in report and "FAR near / far shapes, emb" in report
    assert report.count("| mean-face |") == 5  # main, landmark-group, intervals, changes against train, identity
    assert "| other | +0.00 (+0.00 to +0.00) | 0 / 0 of 16 | +0.0 (+0.0 to +0.0) |" in report  # same weights: no change
