"""Backgrounds, camera effects, hair and clothes: each does what it claims, on real renders of
the version-2 head, deterministically per seed, and never moves a label."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from test_accessories import BARE, LONG, SHORT, changed, head_model, head_scene, pixels  # noqa: F401 (fixture)
from siamface.training.data.backgrounds import DRAW, KINDS, BackgroundConfig, plate
from siamface.training.data.camera_effects import disk_kernel, motion_kernel
from siamface.training.data.scene import (HAIR_KINDS, DegradationConfig, SceneConfig, channel_affine, degrade, draw_behind,
                                 draw_front, gaussian_noise, sample_background, sample_hair_style)

# The camera effects added after the first generator, all off.
FIRST_GENERATOR = dict(motion_blur_p=0, defocus_p=0, exposure_p=0, white_balance_p=0, sensor_noise_p=0,
                       low_resolution_p=0)
NOTHING = DegradationConfig(blur_p=0, noise_p=0, jpeg_p=0, grayscale_p=0, **FIRST_GENERATOR)


def test_channel_affine_scales_and_offsets_each_channel():
    img = np.random.default_rng(0).uniform(0, 1, (5, 7, 3)).astype(np.float32)
    out = channel_affine(img, [2.0, 0.5, 1.0], [0.1, 0.2, -0.3])
    np.testing.assert_allclose(out, img * [2.0, 0.5, 1.0] + [0.1, 0.2, -0.3], atol=1e-6)
    gray = img[..., 0]                                  # one channel in, three out
    np.testing.assert_allclose(channel_affine(gray, 3.0, [0.0, 1.0, 2.0]),
                               gray[..., None] * 3.0 + [0.0, 1.0, 2.0], atol=1e-6)
    assert out.dtype == np.float32 and not np.shares_memory(out, img)


def test_gaussian_noise_has_the_asked_spread_and_repeats_for_a_seed():
    a = gaussian_noise(np.random.default_rng(3), (120, 120, 3), 0.02)
    assert a.shape == (120, 120, 3) and a.dtype == np.float32
    assert abs(a.std() - 0.02) < 0.0005 and abs(a.mean()) < 0.0005
    assert abs(a[..., 0].std() - a[..., 2].std()) < 0.001            # every channel, not just the first
    np.testing.assert_array_equal(a, gaussian_noise(np.random.default_rng(3), (120, 120, 3), 0.02))
    assert not np.array_equal(a, gaussian_noise(np.random.default_rng(4), (120, 120, 3), 0.02))


def test_backgrounds_and_degradations_are_images_and_deterministic():
    cfg = DegradationConfig(blur_p=0.5, noise_p=0.5, jpeg_p=0.5, occluder_p=0.5, grayscale_p=0.2, motion_blur_p=0.3,
                            defocus_p=0.3, low_resolution_p=0.3)
    stds = []
    for seed in range(30):                              # every background kind and degradation occurs
        bg = sample_background(np.random.default_rng(seed), 64)
        assert bg.shape == (64, 64, 3) and bg.dtype == np.float32 and 0 <= bg.min() and bg.max() <= 1
        np.testing.assert_array_equal(bg, sample_background(np.random.default_rng(seed), 64, SceneConfig()))
        out = degrade(bg, cfg, np.random.default_rng(seed))
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, degrade(bg, cfg, np.random.default_rng(seed)))
        stds.append(bg.std())
    assert np.median(stds) > 0.02                       # textured, not flat


def _low_frequency_share(img: np.ndarray, cutoff: float = 1 / 8) -> float:
    """Share of the non-DC spectral power of the grey image below ``cutoff`` of the sampling rate."""
    grey = img.mean(axis=-1)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    f = np.fft.fftfreq(grey.shape[0])
    radius = np.hypot(f[:, None], f[None, :])
    return float(power[radius < cutoff].sum() / power.sum())


@pytest.mark.parametrize("kind", KINDS[:4])
def test_places_are_not_noise(kind):
    """Rooms, outdoors, surfaces and bokeh put most of their energy at low spatial frequencies
    (white noise spreads it evenly: about 5 % below an eighth of the sampling rate) and have the
    colours of places: mostly unsaturated, neither black nor white."""
    shares, saturation, brightness = [], [], []
    for seed in range(12):
        img = np.clip(DRAW[kind](np.random.default_rng(seed), 120), 0, 1)
        shares.append(_low_frequency_share(img))
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        saturation.append(hsv[..., 1].mean())
        brightness.append(img.mean())
    noise = np.random.default_rng(0).uniform(0, 1, (120, 120, 3)).astype(np.float32)
    assert _low_frequency_share(noise) < 0.1
    assert np.median(shares) > 0.8
    assert np.median(saturation) < 0.6 and 0.1 < np.median(brightness) < 0.85


def test_background_plates_are_seeded_drawn_once_and_viewed_differently():
    cfg = BackgroundConfig(plates=4, plate_seed=5)
    a = plate(cfg, 80, 2)
    assert a.dtype == np.uint8 and a.shape == (80, 80, 3) and plate(cfg, 80, 2) is a     # kept
    np.testing.assert_array_equal(plate(replace(cfg, plates=5), 80, 2), a)              # its own seed
    assert not np.array_equal(plate(replace(cfg, plate_seed=6), 80, 2), a)
    views = [sample_background(np.random.default_rng(s), 40, SceneConfig(background=cfg)) for s in range(6)]
    assert len({v.tobytes() for v in views}) == 6                                       # crops, flips, tints


def test_with_the_newer_effects_off_degrade_is_the_first_generators():
    """Sums of the uint8 outputs of the first generator's degrade (commit 6d472c3) for seeds
    0..11: an effect at probability 0 draws nothing, so older streams and pixels are kept."""
    img = cv2.GaussianBlur(np.random.default_rng(0).uniform(0, 1, (48, 48, 3)).astype(np.float32), (0, 0), 2)
    cfg = DegradationConfig(blur_p=0.3, noise_p=0.4, jpeg_p=0.5, occluder_p=0.1, grayscale_p=0.05, **FIRST_GENERATOR)
    sums = [int(degrade(img, cfg, np.random.default_rng(s)).astype(np.int64).sum()) for s in range(12)]
    assert sums == [812577, 839310, 821584, 726165, 990017, 819221, 946324, 789439, 1006528, 846732, 1002792, 649329]


def test_blur_kernels_are_normalised_lines_and_disks():
    line = motion_kernel(7.0, 0.0)
    assert abs(line.sum() - 1) < 1e-5 and (line.sum(axis=1) > 0.01).sum() <= 2         # one horizontal row
    assert (line.sum(axis=0) > 0.01).sum() >= 7
    disk = disk_kernel(2.0)
    assert abs(disk.sum() - 1) < 1e-5 and disk.shape == (5, 5) and disk[2, 2] > 0 and disk[0, 0] < disk[2, 2] / 2


def _only(**effects) -> DegradationConfig:
    return replace(NOTHING, **effects)


def test_each_camera_effect_does_what_it_says():
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.uniform(0, 1, (64, 64, 3)).astype(np.float32), (0, 0), 1.0)
    grey = np.full((64, 64, 3), 0.5, np.float32)

    def run(img, cfg, seed=1):
        return degrade(img, cfg, np.random.default_rng(seed)).astype(np.float32)

    def sharpness(img):
        return np.abs(np.diff(img.mean(axis=-1), axis=1)).mean()

    plain = run(scene, NOTHING)
    for blur in (_only(motion_blur_p=1, motion_blur_length=(6, 6)), _only(defocus_p=1, defocus_radius=(2, 2)),
                 _only(low_resolution_p=1, low_resolution_scale=(0.3, 0.3))):
        assert sharpness(run(scene, blur)) < 0.7 * sharpness(plain)
    dark = run(grey, _only(exposure_p=1, exposure_stops=(-1.5, -1.5)))
    bright = run(grey, _only(exposure_p=1, exposure_stops=(1.0, 1.0)))
    assert dark.mean() < 0.6 * run(grey, NOTHING).mean()
    assert (run(scene, _only(exposure_p=1, exposure_stops=(1, 1))) == 255).mean() > 0.05  # clipped highlights
    assert bright.mean() > run(grey, NOTHING).mean()
    def red_to_blue(cfg):
        means = np.array([run(grey, cfg, s).mean(axis=(0, 1)) for s in range(30)])
        return np.log(means[:, 0] / means[:, 2]).std()

    assert red_to_blue(_only(white_balance_p=1, white_balance_shift=0.3)) > 1.5 * red_to_blue(NOTHING)  # warm or cool
    sensor = _only(sensor_noise_p=1, read_noise=(0.004, 0.004), shot_noise=(0.002, 0.002))
    noisy, noisy_dark = run(grey, sensor), run(grey, replace(sensor, exposure_p=1, exposure_stops=(-1.5, -1.5)))
    spread, spread_dark = noisy.std(axis=(0, 1)).mean(), noisy_dark.std(axis=(0, 1)).mean()  # per channel
    assert spread > 3 and spread_dark / noisy_dark.mean() > 2 * spread / noisy.mean()  # darks: a worse signal to noise


def test_hair_styles_follow_the_weights_and_repeat_for_a_seed():
    colour = np.array([0.3, 0.2, 0.1])
    styles = [sample_hair_style(np.random.default_rng(s), colour) for s in range(600)]
    kinds = np.array([h.kind for h in styles])
    cfg = SceneConfig()
    weights = np.array([getattr(cfg, f"{k}_p") for k in HAIR_KINDS])
    for kind, share in zip(HAIR_KINDS, weights / weights.sum()):
        assert abs((kinds == kind).mean() - share) < 0.06
    assert sample_hair_style(np.random.default_rng(7), colour) == styles[7]
    assert all(h.colour == (0.3, 0.2, 0.1) for h in styles)
    long_only = replace(cfg, bald_p=0, buzz_p=0, short_p=0, medium_p=0, long_p=1)
    assert {sample_hair_style(np.random.default_rng(s), colour, long_only).kind for s in range(20)} == {"long"}
    lengths = {k: np.mean([h.length for h in styles if h.kind == k]) for k in ("short", "medium", "long")}
    assert lengths["short"] < lengths["medium"] < lengths["long"]


def _snapshot(ctx):
    return [ctx.verts.copy(), ctx.landmarks.copy(), ctx.zbuf.copy(), {k: v.copy() for k, v in ctx.region_vertices.items()}]


@pytest.mark.parametrize("yaw", [0, 50, 90])
def test_draw_front_and_behind_repeat_for_a_seed_and_never_move_labels(head_model, yaw):
    everything = SceneConfig(glasses_p=1, hat_p=0.5, mask_p=0.5, hand_p=0.5, microphone_p=0.5, edge_face_p=1,
                             flyaway_p=1, tied_p=0.5)
    image, ctx = head_scene(head_model, yaw_deg=yaw, hair=LONG)
    before = _snapshot(ctx)
    outs = []
    for seed in (3, 3, 4):
        out = image.copy()
        rng = np.random.default_rng(seed)
        draw_behind(out, ctx, everything, rng)
        draw_front(out, ctx, everything, rng)
        assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    after = _snapshot(ctx)
    for a, b in zip(before[:3], after[:3]):
        np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(before[3][k], after[3][k]) for k in before[3])


def test_short_hair_covers_the_scalp_and_clothes_the_neck_base_but_not_the_face(head_model):
    image, ctx = head_scene(head_model, pitch_deg=10, zoom=0.6)
    out = image.copy()
    draw_front(out, ctx, BARE, np.random.default_rng(0))
    diff = changed(out, image)
    verts, lm = ctx.verts, ctx.landmarks
    face, neck = ctx.region_vertices["face"], ctx.region_vertices["head_neck"]
    height = lm[8, 1] - lm[27, 1]
    head = np.concatenate([face, neck])
    scalp = head[verts[head, 1] < lm[17:27, 1].min() - 0.55 * height]  # 6 cm above the brows
    assert diff[seen(ctx, scalp)].mean() > 0.95                           # the top of the head is hair
    assert diff[pixels(lm[17:68])].mean() < 0.02                          # brows, eyes, nose, mouth stay
    chin = pixels(lm[5:12])
    chin = tuple(a[np.isfinite(ctx.zbuf[chin])] for a in chin)           # (the tip's pixel may be past the outline)
    assert len(chin[0]) >= 5 and not diff[chin].any()                     # the chin stays in front of the collar
    base = neck[verts[neck, 1] > lm[8, 1] + 0.6 * height]                 # well below the chin
    assert diff[seen(ctx, base)].mean() > 0.95                            # clothes over the shoulder base


def seen(ctx, vertices: np.ndarray, min_count: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the vertices the head shows (nearest at their pixel), at least ``min_count``."""
    p = ctx.verts[vertices]
    p = p[((p[:, :2] >= 0) & (p[:, :2] < ctx.size - 0.5)).all(axis=1)]
    rows, cols = np.rint(p[:, 1]).astype(int), np.rint(p[:, 0]).astype(int)
    front = ctx.zbuf[rows, cols] > p[:, 2] - 0.5
    assert front.sum() >= min_count
    return rows[front], cols[front]


def test_short_hair_leaves_the_ears_and_long_hair_covers_them(head_model):
    shares = {}
    for style in (SHORT, LONG):
        image, ctx = head_scene(head_model, yaw_deg=90, hair=style)
        out = image.copy()
        draw_front(out, ctx, BARE, np.random.default_rng(0))
        face = ctx.region_vertices["face"]
        mean = head_model.mean[face]
        ear = face[(mean[:, 0] < -8.3) & (mean[:, 1] > -1.0) & (mean[:, 1] < 3.0)]  # the near ear's rim
        rows, cols = pixels(ctx.verts[ear])
        shares[style.kind] = changed(out, image)[rows, cols].mean()
    assert shares["short"] < 0.15 and shares["long"] > 0.8
