"""The render mesh: version 2 of the asset extends the label model, or loading says what is wrong."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.data.render_model import V2_NAME, load_render_model
from siamface.training.face_model import load_training_face_model, resolve_face_model_path


def test_render_mesh_extends_the_label_model(face_model):
    render = load_render_model(face_model)
    mesh = render.mesh
    assert render.path.name == V2_NAME and render.path.parent == resolve_face_model_path().parent
    assert mesh.n_vertices == 25959 and len(mesh.triangles) == 50995
    n = face_model.n_vertices
    np.testing.assert_array_equal(mesh.shape(np.ones(5))[:n], face_model.shape(np.ones(5)))
    regions = render.region_vertices
    assert set(regions) >= {"face", "head_neck", "gums_tongue", "teeth", "eyelashes_left", "eyelashes_right"}
    assert sum(len(v) for v in regions.values()) == mesh.n_vertices
    assert regions["head_neck"].min() >= n                     # appended after the label vertices
    assert mesh.extras["uv_triangles"].shape == (50995, 3)
    drawn = render.drawn_triangles                               # all but the lower eyelash strips
    lashes = mesh.region_mask("eyelashes_left", "eyelashes_right")[mesh.triangles].any(axis=1)
    assert np.all(np.isin(np.flatnonzero(~lashes), drawn))
    assert 0.3 < lashes[drawn].sum() / lashes.sum() < 0.7
    kept = np.unique(mesh.triangles[drawn][lashes[drawn]])
    eye_y = mesh.mean[regions["sclera_left"], 1].mean()
    assert mesh.mean[np.intersect1d(kept, regions["eyelashes_left"]), 1].mean() > eye_y


def test_missing_or_foreign_render_mesh_is_a_one_line_error(face_model, tmp_path, monkeypatch):
    from siamface.training.data.render_model import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # the foreign mesh stays out of the user's cache
    v1 = tmp_path / "ict_face_model.npz"
    shutil.copy(resolve_face_model_path(), v1)
    with pytest.raises(SiamfaceError, match=f"render mesh not found at {tmp_path / V2_NAME}"):
        load_render_model(face_model, v1)
    with np.load(resolve_face_model_path().with_name(V2_NAME)) as data:
        arrays = dict(data)
    arrays["mean"] = arrays["mean"] + np.float32(0.5)           # another face
    np.savez(tmp_path / V2_NAME, **arrays)
    with pytest.raises(SiamfaceError, match="does not extend the face model") as err:
        load_render_model(face_model, v1)
    assert "\n" not in str(err.value)


def test_cached_arrays_are_built_once_per_mesh_and_source(face_model, tmp_path, monkeypatch):
    from siamface.training.data import appearance, texture
    from siamface.training.data.render_model import CACHE_ENV, cached_arrays

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    sha, builds = load_render_model(face_model).mesh.sha256, []

    def build():
        builds.append(1)
        return {"a": np.arange(5, dtype=np.int32), "b": np.full((2, 3), 0.5, np.float32)}

    first = cached_arrays(sha, "thing", build, (texture,))
    again = cached_arrays(sha, "thing", build, (texture,))
    assert len(builds) == 1 and len(list((tmp_path / "cache").glob("thing-*"))) == 1
    for k in first:
        assert again[k].dtype == first[k].dtype and np.array_equal(again[k], first[k])
    cached_arrays(sha, "thing", build, (appearance,))  # other code derives it: another entry, replacing it
    assert len(builds) == 2 and len(list((tmp_path / "cache").glob("thing-*"))) == 1
    for entry in (tmp_path / "cache").glob("thing-*/a.npy"):  # a damaged entry is rebuilt
        entry.write_bytes(b"not an array")
    assert np.array_equal(cached_arrays(sha, "thing", build, (appearance,))["a"], np.arange(5)) and len(builds) == 3
    assert np.array_equal(cached_arrays(sha, "thing", build, (appearance,))["a"], np.arange(5)) and len(builds) == 3
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))  # cannot be created: built each time, no error
    assert np.array_equal(cached_arrays(sha, "thing", build, (texture,))["b"], np.full((2, 3), 0.5)) and len(builds) == 4


def test_render_mesh_from_the_cache_is_the_loaded_one(face_model, tmp_path, monkeypatch):
    """Mapped copy-on-write from the cache: the same fields, values and types as loading the asset,
    writable, and a write stays in this process."""
    from siamface.training.data.render_model import CACHE_ENV, render_model_path

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    built, mapped = load_render_model(face_model).mesh, load_render_model(face_model).mesh
    loaded = load_training_face_model(render_model_path())
    assert isinstance(mapped.id_basis.base, np.memmap) and not isinstance(built.id_basis.base, np.memmap)
    for name, value in vars(loaded).items():
        other = getattr(mapped, name)
        assert type(other) is type(value), name
        if name == "extras":
            assert other.keys() == value.keys()
            assert all(other[k].dtype == v.dtype and np.array_equal(other[k], v) for k, v in value.items())
        elif isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and np.array_equal(other, value), name
        else:
            assert other == value, name
    mapped.mean[0] += 1.0
    assert load_render_model(face_model).mesh.mean[0, 0] == loaded.mean[0, 0]
