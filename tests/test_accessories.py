"""Head frame, shells and accessories on a real render of the version-2 head: each thing lands
where it belongs, hides behind the head where it should, and repeats for a seed."""
from __future__ import annotations

import importlib
from dataclasses import replace

import numpy as np
import pytest

from render_helpers import rasterize, visible_triangles
from siamface.edge_runtime.camera import FLIP, CameraPose, compose_camera, euler_to_matrix, project
from siamface.edge_runtime.crop import crop_from_box, landmark_box
from siamface.edge_runtime.morphable_model import load_face_model
from siamface.training.data.accessories import (ShellCanvas, draw_edge_face, draw_face_mask, draw_glasses,
                                       draw_hand, draw_hat, draw_microphone, skin_colour)
from siamface.training.data.scene import HairStyle, SceneConfig, SceneContext, _frame
from siamface.training.face_model import WORKSPACE_ASSET

V2_PATH = WORKSPACE_ASSET.with_name("ict_face_model_v2.npz")
SHORT = HairStyle("short", (0.12, 0.08, 0.05), length=0.9, volume=0.1, hairline=0.6, fringe=0.0, sweep=0.0,
                  curl=0.0, opening=1.0, crown=0.0, opacity=1.0)
LONG = replace(SHORT, kind="long", length=3.5, volume=0.2)
# Nothing but clothes and hair: each test switches on what it looks at.
BARE = SceneConfig(glasses_p=0, hat_p=0, mask_p=0, hand_p=0, microphone_p=0, edge_face_p=0, flyaway_p=0, tied_p=0,
                   hair_volume_jitter=0)
PinholeCamera = getattr(importlib.import_module("siamface.training.data.sampling"), "PinholeCamera", None)


@pytest.fixture(scope="module")
def head_model():
    return load_face_model(V2_PATH)


def head_scene(model, yaw_deg: float = 0.0, pitch_deg: float = 0.0, hair: HairStyle = SHORT, size: int = 120,
               zoom: float = 1.0, pinhole_cm: float | None = None) -> tuple[np.ndarray, SceneContext]:
    """A flat-shaded render of the mean head over grey, framed by the 3DDFA crop (``zoom`` < 1
    shows more around it), through the weak-perspective camera of the pose or, given a distance
    in cm, the renderer's pinhole camera; returns the image and its SceneContext."""
    angles = tuple(float(a) for a in np.radians([yaw_deg, pitch_deg, 0.0]))
    unit = compose_camera(CameraPose(1.0, *angles, 0.0, 0.0))
    crop = crop_from_box(landmark_box(project(model.mean[model.landmarks68], unit)), size)
    scale = size / crop.side * zoom
    centre = np.array([crop.x0 + crop.side / 2, crop.y0 + crop.side / 2])
    camera = None
    if pinhole_cm is None:
        pose = compose_camera(CameraPose(scale, *angles, *(size / 2 - centre * scale)))
        verts = project(model.mean, pose).astype(np.float32)
    else:
        rotation = FLIP @ euler_to_matrix(*angles)
        pivot = model.mean[model.landmarks68].mean(axis=0)
        camera = PinholeCamera(rotation, pivot, pinhole_cm, scale * pinhole_cm, (size / 2, size / 2))
        verts, _ = camera.project(model.mean)
    image = np.full((size, size, 3), 0.5, np.float32)
    zbuf = np.full((size, size), np.inf, np.float32)
    tris = np.ascontiguousarray(model.triangles, np.uint32)
    visible, boxes, _, normals = visible_triangles(verts, tris, size, size)
    colours = (0.3 + 0.6 * np.clip(-normals[:, 2:], 0, 1)) * np.float32([0.85, 0.65, 0.55])
    rasterize(verts, colours.astype(np.float32), tris, visible, boxes, image, zbuf)
    regions = {n: np.flatnonzero(model.vertex_region == i) for i, n in enumerate(model.region_names)}
    ctx = SceneContext(size, verts, verts[model.landmarks68], angles, zbuf, regions, hair, camera=camera)
    return image, ctx


def pixels(points: np.ndarray, size: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of image-space points inside the image."""
    p = np.rint(points[:, :2]).astype(int)
    p = p[((p >= 0) & (p < size)).all(axis=1)]
    return p[:, 1], p[:, 0]


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).max(axis=-1) > 1e-6


@pytest.mark.parametrize("pinhole_cm", [None, 30.0])
def test_head_frame_maps_both_ways_and_encloses_the_cranium(head_model, pinhole_cm):
    if pinhole_cm and PinholeCamera is None:
        pytest.skip("siamface.training.data.sampling has no PinholeCamera")
    _, ctx = head_scene(head_model, yaw_deg=40, pitch_deg=15, pinhole_cm=pinhole_cm)
    frame = _frame(ctx)
    pts = ctx.verts[::97]
    np.testing.assert_allclose(frame.to_image(frame.from_image(pts)), pts, atol=1e-3)
    head = frame.from_image(ctx.verts[np.concatenate([ctx.region_vertices["face"], ctx.region_vertices["head_neck"]])])
    cranium = head[head[:, 1] > frame.centre[1] + 0.2 * frame.radii[1]]
    r = np.sqrt((((cranium - frame.centre) / frame.radii) ** 2).sum(axis=1))
    assert r.max() < 1.03 and np.median(r) > 0.85                      # encloses the skull, hugging it
    cm = np.linalg.norm(frame.landmarks[45] - frame.landmarks[36]) / 9.0  # pixels: the eye corners are 9 cm apart
    assert 7.5 < frame.unit / cm < 9.5                                   # the skull's half-width: 7.9 cm, enclosed


def test_shells_draw_their_near_side_only_and_their_inside_where_asked(head_model):
    """A sphere as a grid round the head's centre: drawn, each pixel holds its near hemisphere's
    depth; with a hole in front, its inner back wall shows through only if its inside is drawn."""
    _, ctx = head_scene(head_model)
    frame = _frame(ctx)
    az = np.linspace(-np.pi, np.pi, 24, endpoint=False)
    el = np.linspace(0.0, np.pi, 12)[:, None]
    r = 0.5 * frame.unit                                    # inside the crop
    sphere = np.stack([np.sin(el) * np.sin(az), np.cos(el) + 0 * az, np.sin(el) * np.cos(az)], -1) * r + frame.centre
    uv = np.zeros(sphere.shape[:2] + (2,), np.float32)
    canvas = ShellCanvas.new(ctx.size, None, np.float32([0, 0, -1]))
    pts = canvas.shell(sphere.astype(np.float32), frame, uv, 1, closed=True, inner_rows=0)
    drawn = np.isfinite(canvas.zbuf)
    centre = frame.to_image(frame.centre)
    assert drawn.sum() > 0.8 * np.pi * r * r and (canvas.zbuf[drawn] <= centre[2] + 1).all()  # the near half
    assert (canvas.buf[drawn, 2] >= 1).all() and np.ptp(canvas.buf[drawn, 2]) > 0.3         # shaded
    assert np.allclose(pts, frame.to_image(sphere.reshape(-1, 3)), atol=1e-3)
    window = np.roll(sphere, 12, axis=1)[:, 4:-3].astype(np.float32)  # columns from the nose round: a hole in front
    for inner_rows, seen in ((0, False), (None, True)):
        open_front = ShellCanvas.new(ctx.size, None, np.float32([0, 0, -1]))
        open_front.shell(window, frame, uv[:, 4:-3], 1, closed=False, inner_rows=inner_rows)
        inside = np.isfinite(open_front.zbuf) & (open_front.zbuf > centre[2] + 1)
        assert (inside.sum() > 100) == seen                   # the inner back wall through the hole


def test_glasses_sit_over_the_eyes_and_hide_behind_the_head(head_model):
    image, ctx = head_scene(head_model)
    frame = _frame(ctx)
    out = image.copy()
    draw_glasses(out, frame, ctx.zbuf, np.random.default_rng(0), tinted_p=1.0, reflection_p=0.0)
    rows, cols = np.nonzero(changed(out, image))
    lm = ctx.landmarks
    eye_y, iod = lm[36:48, 1].mean(), lm[45, 0] - lm[36, 0]
    assert len(rows) > 150                                               # rims and dark lenses
    assert abs(rows.mean() - eye_y) < 0.25 * iod                         # centred on the eyes
    assert rows.min() > lm[17:27, 1].min() - 0.5 * iod and rows.max() < lm[33, 1]
    lenses = changed(out, image)[pixels(lm[36:48])]
    assert lenses.mean() > 0.8                                           # the tinted lenses cover the eyes
    again = image.copy()
    draw_glasses(again, frame, ctx.zbuf, np.random.default_rng(0), tinted_p=1.0, reflection_p=0.0)
    np.testing.assert_array_equal(again, out)
    # Turned, the far arm runs behind the head: hidden by its z-buffer; a buffer nearer than
    # everything hides all of the glasses.
    image, ctx = head_scene(head_model, yaw_deg=50)
    frame = _frame(ctx)
    hidden = 0
    for seed in range(5):
        drawn = {}
        buffers = (("head", ctx.zbuf), ("none", np.full_like(ctx.zbuf, np.inf)), ("wall", np.full_like(ctx.zbuf, -1e6)))
        for name, zbuf in buffers:
            out = image.copy()
            draw_glasses(out, frame, zbuf, np.random.default_rng(seed), 1.0, 0.0)
            drawn[name] = changed(out, image)
        assert drawn["wall"].sum() == 0 and not (drawn["head"] & ~drawn["none"]).any()
        hidden += (drawn["none"] & ~drawn["head"]).sum()
    assert hidden > 50


def test_hat_covers_the_top_of_the_head(head_model):
    image, ctx = head_scene(head_model, pitch_deg=10, zoom=0.7)
    frame = _frame(ctx)
    for seed in range(6):                                               # caps, beanies and brimmed hats
        canvas = ShellCanvas.new(ctx.size, ctx.zbuf, np.float32([0, 0, -1]))
        draw_hat(canvas, frame, np.random.default_rng(seed), 1.1)
        out = image.copy()
        canvas.composite(out)
        rows, _ = np.nonzero(changed(out, image))
        assert len(rows) > 300
        assert np.mean(rows < ctx.landmarks[36:48, 1].mean()) > 0.9   # above the eyes


@pytest.mark.parametrize("what", ["hand", "microphone", "mask"])
def test_hands_microphones_and_masks_cover_the_lower_face(head_model, what):
    image, ctx = head_scene(head_model, yaw_deg=20)
    lm = ctx.landmarks
    skin = skin_colour(image, lm)
    assert np.abs(skin - image[pixels(lm[[31, 35]])].mean(axis=0)).max() < 0.15  # the face's own colour
    for seed in range(5):
        out, rng = image.copy(), np.random.default_rng(seed)
        {"hand": lambda: draw_hand(out, lm, skin, rng), "microphone": lambda: draw_microphone(out, lm, skin, rng),
         "mask": lambda: draw_face_mask(out, lm, rng)}[what]()
        diff = changed(out, image)
        rows, _ = np.nonzero(diff)
        assert len(rows) > 30
        assert np.median(rows) > lm[36:48, 1].mean()                      # mostly below the eyes
        if what == "mask":
            assert diff[pixels(lm[48:68])].mean() > 0.9                   # over the mouth
            assert not diff[: int(lm[17:27, 1].min())].any()              # nothing above the brows


def test_another_face_at_the_edge_leaves_most_of_the_crop_alone():
    for seed in range(6):
        rng = np.random.default_rng(seed)
        image = rng.uniform(0.2, 0.8, (120, 120, 3)).astype(np.float32)
        out = image.copy()
        draw_edge_face(out, np.random.default_rng(seed))
        diff = changed(out, image)
        assert 0.05 < diff.mean() < 0.8
        cols = np.nonzero(diff)[1]
        assert abs(np.median(cols) - 60) > 10                             # weighted to one side
