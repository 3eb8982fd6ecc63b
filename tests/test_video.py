"""Video tracking on a real MJPG file through a real bundle and BlazeFace.

The bundle's model follows what it sees: it places the mean face at the brightness centroid of its
crop, at the size whose landmark crop is that crop (so a landmark crop maps onto itself). A face
photo moving over a black frame is then tracked from crop to crop the way a trained model tracks,
and per-frame detection gives the same landmarks up to the detector's box size.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data

from siamface.edge_runtime.crop import SIDE_FACTOR, landmark_box
from siamface.edge_runtime.reconstructor import Reconstructor
from siamface.edge_runtime.crop import CropTransform
from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.video import CropFilter, Tracker, TrackerOptions, read_frames, track_video
from test_outputs import FACE_SCHEMA, FRAME_SCHEMA, conforms

SIZE, N_ID, W, H = 64, 10, 320, 240
FACE = data.astronaut()[60:200, 160:290]  # the face only: it fits inside the crops the detector gives


def _centroid_encoder(face_model):
    """Keras encoder: params = mean face at the crop's brightness centroid, embedding = centroid."""
    import tensorflow as tf
    import tf_keras as keras

    from siamface.edge_runtime.camera import FLIP

    layout = face_model.layout(N_ID)
    lm = face_model.landmarks3d(np.zeros(N_ID, np.float32))[:, :2] * [1, -1]
    extent = np.ptp(lm, axis=0)
    scale = SIZE / (SIDE_FACTOR * extent.mean())
    centre = scale * (lm.min(axis=0) + extent / 2)
    camera = np.concatenate([scale * FLIP, [[-centre[0]], [-centre[1]], [0.0]]], axis=1)
    base = layout.join(camera, np.zeros(N_ID), np.zeros(layout.n_exp)).astype(np.float32)
    unit_x, unit_y = np.zeros_like(base), np.zeros_like(base)
    unit_x[3], unit_y[7] = 1.0, 1.0
    grid_y, grid_x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

    def centroid_params(x):
        weight = tf.nn.relu(tf.reduce_mean(x, axis=-1) + 0.9)  # black (-0.996 after normalising) weighs 0
        total = tf.reduce_sum(weight, axis=[1, 2])
        cx = tf.reduce_sum(weight * grid_x, axis=[1, 2]) / total
        cy = tf.reduce_sum(weight * grid_y, axis=[1, 2]) / total
        params = base + cx[:, None] * unit_x + cy[:, None] * unit_y
        return [params, tf.stack([cx, cy, tf.ones_like(cx)], axis=1)]

    x = keras.Input((SIZE, SIZE, 3))
    params, embedding = keras.layers.Lambda(centroid_params)(x)
    return keras.Model(x, [params, embedding]), layout


@pytest.fixture(scope="module")
def centroid_bundle(face_model, tmp_path_factory):
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    encoder, layout = _centroid_encoder(face_model)
    size = layout.size
    meta = {"variant": "fp32", "input": {"name": "pixels", "size": SIZE, "dtype": "float32"},
            "param_layout": layout.to_dict(), "whitening": {"mean": [0.0] * size, "std": [1.0] * size},
            "verification": {"threshold": 0.5, "far": 0.01}}
    return write_bundle(tmp_path_factory.mktemp("centroid") / "bundle", convert(encoder, "fp32"), meta,
                        face_model, layout)


def write_video(path, positions) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    assert writer.isOpened()
    for x, y in positions:
        frame = np.zeros((H, W, 3), np.uint8)
        frame[y:y + FACE.shape[0], x:x + FACE.shape[1]] = FACE
        writer.write(frame[..., ::-1])
    writer.release()


def test_tracking_runs_the_detector_every_n_frames_and_follows_the_face(centroid_bundle, tmp_path):
    video = tmp_path / "walk.avi"
    write_video(video, [(40 + 4 * i, 50 + i) for i in range(12)])
    rec = Reconstructor.from_bundle(centroid_bundle)
    frames = [image for _, image in read_frames(str(video))]
    tracker = Tracker(rec, TrackerOptions(detect_every=5))
    results = [tracker.step(image) for image in frames]
    assert [detected for _, detected in results] == [i % 5 == 0 for i in range(12)]
    assert len(rec.timings["detect"]) == 3
    for (faces, _), image in zip(results, frames):
        (tracked,), (detected,) = faces, rec.reconstruct(image)
        side = np.ptp(detected.landmarks68, axis=0).mean()
        error = np.linalg.norm(tracked.landmarks68 - detected.landmarks68, axis=1).mean()
        assert error < 0.04 * side, (error, side)  # within the detector's box-size jitter
    first, last = results[0][0][0].landmarks68.mean(axis=0), results[-1][0][0].landmarks68.mean(axis=0)
    np.testing.assert_allclose(last - first, (44, 11), atol=2.0)  # the face moved 44 px right, 11 down


def test_lost_track_runs_the_detector_at_once(centroid_bundle, tmp_path):
    """The face jumps across the frame at frame 3: the track fails its checks there, the detector
    finds the face in that same frame, and the schedule restarts from it."""
    video = tmp_path / "jump.avi"
    write_video(video, [(20, 40)] * 3 + [(180, 90)] * 6)
    rec = Reconstructor.from_bundle(centroid_bundle)
    tracker = Tracker(rec, TrackerOptions(detect_every=4))
    results = [tracker.step(image) for _, image in read_frames(str(video))]
    assert [detected for _, detected in results] == [True, False, False, True, False, False, False, True, False]
    assert tracker.lost == 1  # frame 3; frame 7 is the schedule
    jumped = results[3][0][0].landmarks68.mean(axis=0) - results[2][0][0].landmarks68.mean(axis=0)
    np.testing.assert_allclose(jumped, (160, 50), atol=3.0)


def test_track_video_writes_json_lines_and_an_overlay_video(centroid_bundle, tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, [(60 + 2 * i, 50) for i in range(6)])
    rec = Reconstructor.from_bundle(centroid_bundle)
    (tmp_path / "out").mkdir()
    summary = track_video(rec, str(video), tmp_path / "out", TrackerOptions(detect_every=3), tmp_path / "out" / "overlay.avi")
    assert summary == {"jsonl": str(tmp_path / "out" / "clip.jsonl"), "frames": 6, "detector_runs": 2,
                       "frames_with_face": 6}
    records = [json.loads(line) for line in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(6)) and [r["detected"] for r in records] == [True, False, False] * 2
    assert [r["time_s"] for r in records] == pytest.approx([i / 25 for i in range(6)])
    assert all(conforms(r, FRAME_SCHEMA) == [] for r in records)
    assert "embedding" not in records[0]["faces"][0]  # biometric data only when asked
    overlay = [image for _, image in read_frames(str(tmp_path / "out" / "overlay.avi"))]
    assert len(overlay) == 6 and overlay[0].shape == (H, W, 3)
    assert np.abs(overlay[0].astype(int) - [image for _, image in read_frames(str(video))][0]).mean() > 0.5


def test_bad_sources_are_one_line_errors(tmp_path, centroid_bundle):
    from siamface.edge_runtime.errors import SiamfaceError

    (tmp_path / "junk.avi").write_bytes(b"not a video" * 100)
    for source, words in ((str(tmp_path / "missing.avi"), "not found"), (str(tmp_path / "junk.avi"), "could not be opened|no readable frames")):
        with pytest.raises(SiamfaceError, match=words):
            next(read_frames(source))
    with pytest.raises(SiamfaceError, match="detect-every"):
        Tracker(Reconstructor.from_bundle(centroid_bundle), TrackerOptions(detect_every=0))


def test_cli_video_and_bench(centroid_bundle, tmp_path, capsys):
    from siamface.edge_runtime.cli import main

    video = tmp_path / "cli.avi"
    write_video(video, [(60 + i, 50) for i in range(8)])
    assert main(["reconstruct", "--video", str(video), "--model", str(centroid_bundle), "--out", str(tmp_path / "o"),
                 "--detect-every", "4", "--json", "--quiet"]) == 0
    assert len((tmp_path / "o" / "cli.jsonl").read_text().splitlines()) == 8
    capsys.readouterr()
    bench = ["bench", str(centroid_bundle), "--video", str(video), "--threads", "1", "--gallery", "50", "--quiet"]
    assert main(bench + ["--json"]) == 0
    gallery, result = map(json.loads, capsys.readouterr().out.splitlines())
    assert gallery["identify_people"] == 50 and gallery["p50_ms"] > 0
    assert result["frames"] == 8 and result["tracked_frames"] == 7 and result["fps"] > 0 and result["tracked_p50_ms"] > 0
    assert result["detector_runs"] == 1 and result["lost"] == 0
    assert main(bench) == 0  # the two target lines from one run
    identify, line = capsys.readouterr().out.splitlines()
    assert identify.startswith("identify 50 people: p50 ") and identify.endswith(" ms")
    assert line.startswith("video cli.avi: fp32, 1 thread(s), detector every 30 frames: 8 frames at ")
    assert "per frame with detection skipped p50/p90 " in line and "(7 frames; detector 1 times, 0 for a lost track)" in line


def test_timings_keep_only_the_last_n_per_stage(centroid_bundle):
    """A camera runs for days: per-stage timings are a window, not a growing list."""
    from siamface.edge_runtime.reconstructor import ReconstructorOptions

    rec = Reconstructor.from_bundle(centroid_bundle, ReconstructorOptions(timing_window=4))
    image = np.zeros((H, W, 3), np.uint8)
    image[50:50 + FACE.shape[0], 60:60 + FACE.shape[1]] = FACE
    for _ in range(6):
        rec.reconstruct(image, boxes=[(60.0, 50.0, 190.0, 190.0)])
    assert {stage: len(times) for stage, times in rec.timings.items()} == {"crop": 4, "invoke": 4, "embed": 4, "decode": 4}


def test_a_smoothly_moving_face_stays_tracked(centroid_bundle, tmp_path):
    """40 frames of a face swaying and bobbing (up to 6 px a frame, turning back twice): with the
    detector only scheduled on frame 0, every later frame is tracked and the landmarks follow the
    face to within a pixel of where per-frame detection puts them on average."""
    video = tmp_path / "sway.avi"
    t = np.arange(40) / 40
    write_video(video, [(int(95 + 60 * np.sin(2 * np.pi * t_)), int(50 + 20 * np.sin(4 * np.pi * t_))) for t_ in t])
    rec = Reconstructor.from_bundle(centroid_bundle)
    tracker = Tracker(rec, TrackerOptions(detect_every=100))
    frames = [image for _, image in read_frames(str(video))]
    results = [tracker.step(image) for image in frames]
    tracked = [not detected for _, detected in results]
    assert sum(tracked) >= 0.9 * len(frames) and tracked[1:] == [True] * 39 and tracker.lost == 0
    offsets = [faces[0].landmarks68.mean(axis=0) - rec.reconstruct(image)[0].landmarks68.mean(axis=0)
               for (faces, _), image in zip(results, frames)]
    assert np.abs(np.mean(offsets, axis=0)).max() < 1.0, np.mean(offsets, axis=0)


def _crop(cx: float, cy: float, side: float) -> CropTransform:
    return CropTransform(cx - side / 2, cy - side / 2, side, 64)


def _centre_side(crop: CropTransform) -> np.ndarray:
    return np.array([crop.x0 + crop.side / 2, crop.y0 + crop.side / 2, crop.side])


def test_crop_filter_predicts_steady_motion_smooths_noise_and_is_deterministic():
    # a face moving 5 px right and growing 1 % a frame: the predicted crop converges on the next one
    moving = CropFilter(_crop(100, 80, 50), smoothing=0.6, trend=0.6)
    for i in range(1, 31):
        predicted = moving.update(_crop(100 + 5 * i, 80, 50 * 1.01 ** i))
    np.testing.assert_allclose(_centre_side(predicted), (255, 80, 50 * 1.01 ** 31), atol=0.05)
    # a still face with 3 px of landmark noise: the default weights pass it on about as it is (the
    # trend that predicts motion costs what the level smooths); more smoothing and less trend damp it
    noisy = np.random.default_rng(0).normal(0.0, 3.0, (400, 2))

    def run(smoothing: float, trend: float) -> np.ndarray:
        still = CropFilter(_crop(100, 80, 50), smoothing, trend)
        return np.array([_centre_side(still.update(_crop(100 + dx, 80 + dy, 50)))[:2] for dx, dy in noisy])

    defaults = TrackerOptions()
    crops = run(defaults.smoothing, defaults.trend)
    gain = np.std(crops[20:], axis=0) / np.std(noisy, axis=0)
    assert (gain < 1.1).all() and np.abs(crops[20:].mean(axis=0) - (100, 80)).max() < 0.5, gain
    assert (np.std(run(0.3, 0.1)[20:], axis=0) < 0.6 * np.std(noisy, axis=0)).all()
    np.testing.assert_array_equal(crops, run(defaults.smoothing, defaults.trend))  # same crops in, same out
    # smoothing 1 and no trend: the crop is the measurement (the tracker before the filter)
    plain = CropFilter(_crop(100, 80, 50), smoothing=1.0, trend=0.0)
    np.testing.assert_allclose(_centre_side(plain.update(_crop(130, 70, 60))), (130, 70, 60))
    for smoothing, trend in ((0.0, 0.5), (1.2, 0.5), (0.5, -0.1)):
        with pytest.raises(SiamfaceError, match="smoothing"):
            CropFilter(_crop(100, 80, 50), smoothing, trend)


def test_detected_faces_carry_the_detector_keypoints(centroid_bundle, tmp_path):
    """BlazeFace's 6 points (eyes, nose, mouth, ears) and score on a detected face, in its JSON;
    none on a face from a given box or from tracking."""
    image = np.zeros((H, W, 3), np.uint8)
    image[50:50 + FACE.shape[0], 60:60 + FACE.shape[1]] = FACE
    rec = Reconstructor.from_bundle(centroid_bundle)
    (face,) = rec.reconstruct(image)
    x0, y0, x1, y1 = face.box
    assert face.keypoints.shape == (6, 2) and 0.65 <= face.score <= 1.0
    eyes, nose, mouth = face.keypoints[:2], face.keypoints[2], face.keypoints[3]
    assert ((x0 <= eyes[:, 0]) & (eyes[:, 0] <= x1) & (y0 <= eyes[:, 1]) & (eyes[:, 1] <= y1)).all()
    assert eyes[0, 0] < nose[0] < eyes[1, 0] and eyes[:, 1].max() < nose[1] < mouth[1]  # right eye on the image's left
    record = json.loads(json.dumps(face.to_dict()))
    assert conforms(record, FACE_SCHEMA) == [] and np.allclose(record["keypoints"], face.keypoints, atol=0.01)
    (given,) = rec.reconstruct(image, boxes=[face.box])
    assert given.keypoints is None and "keypoints" not in given.to_dict() and given.score == 1.0
    tracker = Tracker(rec, TrackerOptions(detect_every=5))
    (first,), _ = tracker.step(image)
    (followed,), detected = tracker.step(image)
    assert first.keypoints is not None and not detected and followed.keypoints is None
    assert followed.score == first.score  # a track keeps its detection's score
