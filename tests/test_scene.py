"""Backgrounds and degradations: the fast cv2 paths compute what they claim, deterministically."""
from __future__ import annotations

import numpy as np

from training.data.scene import DegradationConfig, channel_affine, degrade, gaussian_noise, sample_background


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
    cfg = DegradationConfig(blur_p=0.5, noise_p=0.5, jpeg_p=0.5, occluder_p=0.5, grayscale_p=0.2)
    stds = []
    for seed in range(30):                              # every background kind and degradation occurs
        bg = sample_background(np.random.default_rng(seed), 64)
        assert bg.shape == (64, 64, 3) and bg.dtype == np.float32 and 0 <= bg.min() and bg.max() <= 1
        out = degrade(bg, cfg, np.random.default_rng(seed))
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, degrade(bg, cfg, np.random.default_rng(seed)))
        stds.append(bg.std())
    assert np.median(stds) > 0.02                       # textured, not flat
