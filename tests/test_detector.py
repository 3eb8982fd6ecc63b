"""The default face detector on real photos shipped with scikit-image (no network)."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage import data

from siamface.edge_runtime.detector import (
    DEFAULT_DETECTOR,
    DETECTORS,
    Detection,
    make_detector,
    packaged_weights,
    ssd_anchors,
    to_rgb,
)
from siamface.edge_runtime.errors import SiamfaceError

# The astronaut's face in skimage.data.astronaut() (512x512), found by hand: brow to chin, ear to ear.
ASTRONAUT_FACE = (175, 70, 275, 175)


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def detector():
    return make_detector()


def test_astronaut_has_exactly_one_face_in_the_known_place(detector):
    faces = detector.detect(data.astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert iou(face.box, ASTRONAUT_FACE) > 0.6
    assert 0.65 <= face.score <= 1.0
    # Six keypoints (eyes, nose, mouth, tragions), all inside the face box.
    assert face.keypoints.shape == (6, 2)
    x0, y0, x1, y1 = face.box
    assert np.all((face.keypoints[:, 0] >= x0 - 2) & (face.keypoints[:, 0] <= x1 + 2))
    assert np.all((face.keypoints[:, 1] >= y0 - 2) & (face.keypoints[:, 1] <= y1 + 2))


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "colorwheel"])
def test_no_face_in_photos_without_people(detector, name):
    assert detector.detect(getattr(data, name)()) == []


def test_grayscale_and_rgba_inputs(detector):
    rgb = data.astronaut()
    reference = detector.detect(rgb)[0]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    for image in (gray, gray[..., None]):
        (face,) = detector.detect(image)
        assert iou(face.box, ASTRONAUT_FACE) > 0.6
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    (face,) = detector.detect(rgba)
    assert face.box == reference.box and face.score == reference.score


def test_faces_come_largest_first_even_when_the_smaller_scores_higher(detector):
    head = data.astronaut()[20:230, 120:330]
    canvas = np.full((260, 460, 3), 128, np.uint8)
    canvas[40:210, 10:180] = cv2.resize(head, (170, 170), interpolation=cv2.INTER_AREA)
    big = cv2.resize(head, (250, 250), interpolation=cv2.INTER_AREA)
    canvas[5:255, 205:455] = cv2.GaussianBlur(big, (21, 21), 0)  # blurred: lower score
    faces = detector.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].score < faces[1].score
    assert faces[0].box[0] > 205 and faces[1].box[2] < 180


def test_ssd_anchors_match_mediapipe_layout():
    anchors = ssd_anchors(128, ((8, 2), (16, 6)))
    assert anchors.shape == (896, 2)
    # Stride 8: 16x16 cells, 2 anchors each, row-major; stride 16: 8x8 cells, 6 anchors each.
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16])
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])
    assert ssd_anchors(192, ((4, 1),)).shape == (2304, 2)


def test_to_rgb_conversions_and_refusals():
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(to_rgb(gray), np.repeat(gray[..., None], 3, axis=2))
    rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(to_rgb(rgba), rgba[..., :3])
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_rgb(np.zeros((4, 4, 2), np.uint8))


def test_registry_and_errors():
    assert DEFAULT_DETECTOR in DETECTORS
    with pytest.raises(SiamfaceError, match="unknown face detector 'nope'.*blazeface"):
        make_detector("nope")
    with pytest.raises(SiamfaceError, match="missing.tflite: face detector weights missing"):
        packaged_weights("missing.tflite")
    assert Detection((10.0, 20.0, 30.0, 60.0), 0.9).area == 800.0


def test_every_registered_detector_finds_the_astronaut():
    for name in DETECTORS:
        faces = make_detector(name).detect(data.astronaut())
        assert len(faces) == 1 and iou(faces[0].box, ASTRONAUT_FACE) > 0.6, name


def test_detection_runs_without_tensorflow():
    """The device path (detector + interpreter) must never import TensorFlow."""
    code = (
        "import sys, numpy as np; from edge_runtime.detector import make_detector; "
        "faces = make_detector().detect(np.zeros((64, 64, 3), np.uint8)); "
        "assert faces == [] and 'tensorflow' not in sys.modules, sorted(sys.modules)"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
