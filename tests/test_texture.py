"""Procedural UV textures: layout repacking, determinism, the range of what identities get, where
features land, per-photo variation, speed (printed)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.data import texture as T
from siamface.training.face_model import WORKSPACE_ASSET, project_landmarks

V2 = WORKSPACE_ASSET.with_name("ict_face_model_v2.npz")


@pytest.fixture(scope="module")
def asset():
    with np.load(V2, allow_pickle=False) as data:
        return {k: data[k] for k in ("triangles", "uv", "uv_triangles", "vertex_region", "region_names", "landmarks68")}


@pytest.fixture(scope="module")
def layout():
    return T.TextureLayout.from_npz(V2)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)


def _triangle_regions(asset) -> np.ndarray:
    names = np.array([str(n) for n in asset["region_names"]])
    return names[asset["vertex_region"][asset["triangles"]]]


def test_every_triangle_lies_in_one_tile(layout, asset):
    corners = layout.uv[layout.uv_triangles]                        # (T, 3, 2)
    assert layout.uv_triangles.shape == asset["triangles"].shape and layout.uv_triangles.dtype == np.int32
    assert layout.uv.dtype == np.float32 and layout.uv_triangles.max() < len(layout.uv)
    tiles = np.floor(corners[..., 0])
    assert (tiles.min(axis=1) == tiles.max(axis=1)).all()
    assert tiles.min() == 0 and tiles.max() == layout.n_tiles - 1 == len(T.TILE_NAMES) - 1
    assert (corners[..., 1] > 0).all() and (corners[..., 1] < 1).all()


def test_eyeballs_and_interior_parts_move_out_of_the_face_tile(layout, asset):
    regions = _triangle_regions(asset)[:, 0]
    tile = np.floor(layout.uv[layout.uv_triangles[:, 0], 0]).astype(int)
    eyeball = np.char.startswith(regions, "sclera") | np.char.startswith(regions, "iris")
    assert eyeball.sum() == 6264 and (tile[eyeball] == 2).all()
    for prefix in ("gums", "teeth", "eyelashes"):
        assert (tile[np.char.startswith(regions, prefix)] == 2).all()
    assert not (tile[regions == "face"] == 2).any() and (tile[regions == "head_neck"] == 1).all()
    # Sclera and iris sit in their own cells of tile 2: their texels show nothing else.
    sclera = layout.uv[layout.uv_triangles[np.char.startswith(regions, "sclera")]].reshape(-1, 2)
    assert sclera[:, 0].max() < 2.5 and sclera[:, 1].max() < 0.5
    assert layout.part_mask("sclera").sum() > 0.5 * (layout.resolution / 2) ** 2
    # Triangles that stay keep their asset uv.
    stay = ~eyeball & (np.floor(asset["uv"][asset["uv_triangles"][:, 0], 0]) <= 1)
    np.testing.assert_array_equal(layout.uv[layout.uv_triangles[stay]], asset["uv"][asset["uv_triangles"][stay]])


def test_landmarks_and_texel_convention(layout, asset):
    lm = project_landmarks(asset["landmarks68"])[0]  # the project's definition: brows where they are painted
    assert (np.floor(layout.landmarks_uv[:, 0]) == 0).all()
    np.testing.assert_array_equal(layout.landmarks_uv, layout.vertex_uv(lm))
    rows, cols = np.nonzero(asset["triangles"] == lm[30])
    np.testing.assert_allclose(layout.landmarks_uv[30], asset["uv"][asset["uv_triangles"][rows[0], cols[0]]])
    tile, texel = layout.texel(np.array([[1.5, 0.25]]))
    res = layout.resolution
    assert tile[0] == 1 and np.allclose(texel[0], [0.5 * res - 0.5, 0.75 * res - 0.5])


def test_sample_atlas_follows_the_spec():
    res = 8
    atlas = np.zeros((2, res, res, 4), np.float32)
    atlas[1, :, :, 0] = np.arange(res)[None, :]          # value = column
    atlas[1, :, :, 1] = np.arange(res)[:, None]          # value = row
    uv = np.array([[1 + 2.5 / res, 1 - 4.5 / res],       # texel centre (col 2, row 4)
                   [1 + 3.0 / res, 1 - 6.0 / res],       # between centres: col 2.5, row 5.5
                   [1 + 0.1 / res, 1 - 0.1 / res]])      # inside the outer half texel: clamped
    np.testing.assert_allclose(T.sample_atlas(atlas, uv)[:, :2], [[2, 4], [2.5, 5.5], [0, 0]], atol=1e-5)


def test_paint_is_deterministic_per_seed_and_differs_across_seeds(layout):
    a = T.paint_identity(layout, np.random.default_rng(7))
    b = T.paint_identity(layout, np.random.default_rng(7))
    c = T.paint_identity(layout, np.random.default_rng(8))
    assert a.atlas.shape == (3, layout.resolution, layout.resolution, 4) and a.atlas.dtype == np.float32
    np.testing.assert_array_equal(a.atlas, b.atlas)
    assert (a.tone, a.facial_hair, a.hairline) == (b.tone, b.facial_hair, b.hairline)
    assert np.abs(a.atlas - c.atlas).mean() > 0.02
    assert np.isfinite(a.atlas).all() and a.atlas.min() >= 0 and a.atlas.max() <= 1
    assert (a.atlas[layout.part == T.NONE] == 0).all()
    assert a.hair_colour.shape == (3,) and a.hair_colour.dtype == np.float32


def test_skin_tones_cover_very_dark_to_very_light(layout):
    looks = [T.paint_identity(layout, np.random.default_rng(seed)) for seed in range(60)]
    face = (layout.part[0] == T.SKIN) & (layout.fields[T.F_HEIGHT, 0] < 3) & (layout.fields[T.F_LIP_D, 0] < -0.1)
    lum = np.array([np.median(_luminance(look.atlas[0][face])) for look in looks])
    assert lum.min() < 0.2 and lum.max() > 0.75
    assert np.histogram(lum, bins=[0, 0.3, 0.5, 0.7, 1])[0].min() >= 5  # every band of tones is drawn
    skin = np.array([look.skin_colour for look in looks])
    assert (skin[:, 0] > skin[:, 1]).all() and (skin[:, 1] > skin[:, 2]).all()  # skin is red > green > blue


def test_brows_land_on_the_brow_landmarks(layout):
    """Along the brow landmarks the atlas is darker than the forehead above them (brows are
    drawn darker than the skin unless they are blond on dark skin, skipped here)."""
    brow_uv = layout.landmarks_uv[17:27].astype(np.float64)
    lm_texel = layout.texel(layout.landmarks_uv)[1]
    brow_len = np.linalg.norm(lm_texel[21] - lm_texel[17]) / layout.resolution
    forehead_uv = brow_uv + [0.0, 0.35 * brow_len]  # above the brows, below any hairline
    checked = 0
    for seed in range(30):
        look = T.paint_identity(layout, np.random.default_rng(seed))
        if _luminance(look.colours[T.C_BROW]) > 0.7 * _luminance(look.colours[T.C_SKIN]):
            continue
        # the brow's body: within a tenth of its length below the line (thick brows reach lower)
        brows = min(np.median(_luminance(T.sample_atlas(look.atlas, brow_uv - [0.0, d * brow_len])))
                    for d in (0.03, 0.06, 0.1))
        forehead = _luminance(T.sample_atlas(look.atlas, forehead_uv))
        assert brows < 0.85 * np.median(forehead), seed
        checked += 1
    assert checked >= 20


def test_eyes_teeth_and_mouth(layout):
    look = T.paint_identity(layout, np.random.default_rng(3))
    f, atlas = layout.fields, look.atlas
    eye = layout.part_mask("sclera", "iris")
    theta = f[T.F_EYE_THETA]
    pupil = eye & (theta < 0.2 * layout.iris_degrees)
    sclera = eye & (theta > 1.3 * layout.iris_degrees) & (theta < 60)
    assert _luminance(atlas[pupil]).max() < 0.05 and _luminance(atlas[sclera]).mean() > 0.5
    teeth = layout.part == T.TEETH
    gaps = _luminance(atlas[teeth & (f[T.F_TOOTH_GAP] < 0.02)]).mean()
    crowns = _luminance(atlas[teeth & (f[T.F_TOOTH_GAP] > 0.2) & (f[T.F_DEPTH] < 0.2)]).mean()
    assert gaps < 0.8 * crowns
    deep = layout.part_mask("mouth_socket") & (f[T.F_DEPTH] > 0.6)
    assert _luminance(atlas[deep]).max() < 0.1
    # Teeth, gums and tongue are as bright deep in the mouth as near the lips (the shadow maps darken
    # what the lips hide; generator 7's albedo made the tongue a third of its colour, the back teeth
    # 0.6); only the socket, whose far end stands for the throat, darkens with depth.
    for part in ("teeth", "gums", "tongue"):
        m = layout.part_mask(part) & (f[T.F_TOOTH_GAP] > 0.2 if part == "teeth" else True)
        near, far = (_luminance(atlas[m & band]).mean() for band in (f[T.F_DEPTH] < 0.25, f[T.F_DEPTH] > 0.45))
        assert far > 0.85 * near, part
    socket = layout.part_mask("mouth_socket")
    assert _luminance(atlas[socket & (f[T.F_DEPTH] > 0.6)]).mean() < 0.5 * _luminance(atlas[socket & (f[T.F_DEPTH] < 0.2)]).mean()


def test_config_shares_drive_facial_hair_and_hairlines(layout):
    bearded = [T.paint_identity(layout, np.random.default_rng(s), T.TextureConfig(facial_hair=1.0)) for s in range(12)]
    shaven = [T.paint_identity(layout, np.random.default_rng(s), T.TextureConfig(facial_hair=0.0)) for s in range(12)]
    assert all(look.facial_hair != "none" for look in bearded) and all(look.facial_hair == "none" for look in shaven)
    chin = layout.texel(layout.landmarks_uv[8:9] + [0.0, 0.02])[1][0].round().astype(int)
    r0, _, c0, _ = layout.face_box
    at_chin = lambda look: 1 - look.bare[chin[1] - r0, chin[0] - c0]  # noqa: E731 hair cover under the lip
    assert all(at_chin(look) == 0 for look in shaven)
    assert all(at_chin(look) > 0.3 for look in bearded if look.facial_hair in ("beard", "goatee"))
    crown = np.unravel_index(np.argmax(np.where(layout.part[1] == T.SKIN, layout.fields[T.F_HEIGHT, 1], -99)),
                             layout.part[1].shape)
    for kind, share in (("bald", {"bald": 1.0, "receding": 0, "widows_peak": 0, "shaved": 0, "grey": 0}),
                        ("full", {"bald": 0.0, "receding": 0, "widows_peak": 0, "shaved": 0, "grey": 0})):
        checked = 0
        for seed in range(12):
            look = T.paint_identity(layout, np.random.default_rng(seed), T.TextureConfig(**share))
            assert look.hairline == kind
            top, hair, skin = _luminance(np.stack([look.atlas[1][crown][:3], look.colours[T.C_HAIR],
                                                   look.colours[T.C_SKIN]]))
            if abs(hair - skin) > 0.15:  # tell hair from skin by brightness
                assert (abs(top - hair) < abs(top - skin)) == (kind == "full"), (kind, seed)
                checked += 1
        assert checked >= 6
    with pytest.raises(SiamfaceError, match="keep it <= 1"):
        T.paint_identity(layout, np.random.default_rng(0), T.TextureConfig(bald=0.6, receding=0.6))


def test_vary_photo_changes_only_the_face_box_and_never_accumulates(layout):
    look = T.paint_identity(layout, np.random.default_rng(11), T.TextureConfig(makeup=1.0, facial_hair=0.0))
    base = look.atlas.copy()
    first = T.vary_photo(look, np.random.default_rng(1)).copy()
    assert T.vary_photo(look, np.random.default_rng(2)) is look.atlas
    again = T.vary_photo(look, np.random.default_rng(1))
    np.testing.assert_array_equal(again, first)  # rewritten from the identity's copy every time
    r0, r1, c0, c1 = layout.face_box
    outside = np.ones(base.shape[:3], bool)
    outside[0, r0:r1, c0:c1] = False
    np.testing.assert_array_equal(first[outside], base[outside])
    assert 0 < np.abs(first - base).max() and first.min() >= 0 and first.max() <= 1
    lips = (layout.fields[T.F_LIP_D, 0] > 0.1)[r0:r1, c0:c1]
    base_lips = base[0, r0:r1, c0:c1][lips]
    changes = [np.abs(T.vary_photo(look, np.random.default_rng(s))[0, r0:r1, c0:c1][lips] - base_lips).mean()
               for s in range(20)]
    assert max(changes) > 0.05  # lipstick on some photos


def test_v1_model_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "ict_face_model.npz"
    np.savez(path, mean=np.zeros((3, 3), np.float32), triangles=np.zeros((1, 3), np.int32))
    with pytest.raises(SiamfaceError, match="ict_face_model_v2.npz"):
        T.TextureLayout.from_npz(path)
    with pytest.raises(SiamfaceError, match="power of two"):
        T.TextureLayout.from_npz(V2, resolution=100)


def test_speed_is_printed(layout):
    look = T.paint_identity(layout, np.random.default_rng(0))
    T.vary_photo(look, np.random.default_rng(0))
    n = 100
    start = time.process_time()
    for seed in range(n):
        look = T.paint_identity(layout, np.random.default_rng(seed))
    paint_ms = (time.process_time() - start) / n * 1e3
    start = time.process_time()
    for seed in range(5 * n):
        T.vary_photo(look, np.random.default_rng(seed))
    vary_ms = (time.process_time() - start) / (5 * n) * 1e3
    print(f"\ntexture R={layout.resolution}: paint_identity {paint_ms:.2f} ms, vary_photo {vary_ms:.3f} ms "
          "(CPU time, one core)")


def test_layout_round_trips_through_arrays(layout):
    """What the start-up cache stores gives the same layout back, scalars as the same Python types
    (a float64 array in place of a float would change float32 arithmetic under NumPy 2)."""
    back = T.TextureLayout.from_arrays(layout.to_arrays())
    for name, value in vars(layout).items():
        other = getattr(back, name)
        assert type(other) is type(value), name
        if name == "sites":
            assert len(other) == len(value) == len(T.SITE_NAMES)
            assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(value, other))
        elif isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and np.array_equal(other, value), name
        else:
            assert other == value, name
