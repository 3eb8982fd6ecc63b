"""Synthetic dataset engine: labels agree with the model and the perspective render, determinism,
splits, manifest, resume; scenes never move labels; the whole head and the mouth's interior are
drawn; light, occlusion and the pose and expression draws."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.config_io import load_config
from siamface.training.data import texture as T
from siamface.training.data.dataset import Dataset, shard_paths
from siamface.training.data.synth import SynthConfig, synthesize, worker_start_method
from siamface.training.data.traits import TRAIT_NAMES, identity_traits

SMALL = dict(train_identities=4, val_identities=2, test_identities=2, images_per_identity=3, shard_size=6, n_id=40)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "synth"
    return synthesize(out, SynthConfig(**SMALL), workers=1, progress=False)


def test_labels_agree_with_the_face_model(small_dataset, face_model):
    split = small_dataset.split("train")
    layout = small_dataset.layout
    assert layout.n_id == 40 and layout.size == 12 + 40 + 53
    # The render is perspective and the label camera its weak-perspective fit: 2D landmarks are
    # the true projections, the params' landmarks lie close to them; depth is the label camera's.
    lm = face_model.image_landmarks(split.params, layout)
    residual = np.linalg.norm(lm[..., :2] - split.landmarks2d, axis=-1).mean(axis=1)
    assert residual.mean() < 2.0 and residual.max() < 5.0
    np.testing.assert_allclose(lm[..., 2], split.landmarks3d[..., 2], atol=1e-3)
    np.testing.assert_array_equal(split.landmarks3d[..., :2], split.landmarks2d)
    # Faces are placed in the crop by the crop convention: landmarks inside (the shift jitter and
    # a close-up's perspective may carry a brow or the chin a pixel or two past an edge), face box
    # from them.
    assert split.landmarks2d.min() > -4 and split.landmarks2d.max() < 124
    assert ((split.landmarks2d > 0) & (split.landmarks2d < 120)).mean() > 0.99
    box = split.face_box
    np.testing.assert_allclose(box[:, :2], split.landmarks2d.min(axis=1), atol=1e-3)
    np.testing.assert_allclose(box[:, 2:], split.landmarks2d.max(axis=1), atol=1e-3)
    assert np.all(box[:, 2] - box[:, 0] > 25)
    # The pose label is the label camera's rotation.
    from siamface.edge_runtime.camera import decompose_camera

    poses = np.array([decompose_camera(c).degrees for c in layout.split(split.params)[0]])
    np.testing.assert_allclose(poses, split.pose_deg, atol=1e-2)
    # Images are real renders: the face differs from the background.
    imgs = split.images(np.arange(len(split)))
    assert imgs.shape == (12, 120, 120, 3) and imgs.dtype == np.uint8 and imgs.std() > 10


def test_splits_are_disjoint_and_counted(small_dataset):
    ids = {s: set(small_dataset.split(s).identity.tolist()) for s in ("train", "val", "test")}
    assert ids["train"] == {0, 1, 2, 3} and ids["val"] == {4, 5} and ids["test"] == {6, 7}
    m = small_dataset.manifest
    assert m["splits"]["train"] == {"shards": 2, "images": 12, "identities": 4, "identity_range": [0, 4]}


def test_manifest_records_how_it_was_made(small_dataset, face_model):
    m = json.loads((small_dataset.root / "manifest.json").read_text())
    assert m["generator"] == {"name": "siamface.synth", "version": 9} and m["seed"] == 0
    assert m["config"]["images_per_identity"] == 3 and m["config"]["pose"]["yaw_max_deg"] == 90
    assert m["config"]["scene"]["glasses_p"] > 0 and m["config"]["lighting"]["backlight_p"] > 0
    assert m["face_model"]["sha256"] == face_model.sha256
    from siamface.training.data.render_model import load_render_model

    assert m["render_model"] == {"name": "ict_face_model_v2.npz", "sha256": load_render_model(face_model).mesh.sha256}
    assert m["param_layout"] == {"n_id": 40, "n_exp": 53, "n_pose": 12}
    assert len(m["whitening"]["mean"]) == 105 and "numpy" in m["versions"]
    assert [c[0] for c in m["columns"]] == ["identity", "params", "landmarks2d", "landmarks3d", "pose_deg", "face_box",
                                            "traits"]
    assert m["trait_names"] == list(TRAIT_NAMES) and m["columns"][-1] == ["traits", len(TRAIT_NAMES)]


def test_traits_are_the_persons_look(small_dataset, face_model):
    """Every photo of a person carries the traits of the look its images were painted with (the
    identity's generator redrawn), and different people differ in them."""
    from siamface.training.data.scene import sample_hair_style
    from siamface.training.data.synth import FaceSynthesizer

    cfg = SynthConfig(**SMALL)
    synth = FaceSynthesizer(face_model, cfg)
    for name in ("train", "test"):
        split = small_dataset.split(name)
        for person in np.unique(split.identity):
            rng, _ = synth._identity_draw(name, int(person) - cfg.first_identity(name))
            look = T.paint_identity(synth.texture, rng, cfg.texture)
            expected = identity_traits(look, sample_hair_style(rng, look.hair_colour, cfg.scene))
            np.testing.assert_array_equal(split.traits[split.identity == person], np.tile(expected, (3, 1)))
    traits = small_dataset.split("train").traits[::3]
    names = dict(zip(TRAIT_NAMES, traits.T))
    assert np.all(np.ptp(traits, axis=0)[:4] > 0) and len({tuple(t) for t in traits}) == 4
    assert np.all(names["tone"] >= 0) and np.all(names["tone"] <= 1)
    kinds = [n for n in TRAIT_NAMES if n.startswith("facial_hair_")]
    np.testing.assert_array_equal(traits[:, [TRAIT_NAMES.index(k) for k in kinds]].sum(axis=1), 1.0)  # one-hot


def test_deterministic_regardless_of_workers_and_shards(small_dataset, tmp_path):
    """Forked workers and other shards give the same dataset. Run in a fresh process, which forks
    on Linux (no other thread, no TensorFlow); this one may run threads (xdist's) and then spawns."""
    cfg = {**SMALL, "shard_size": 3}
    script = ("import sys\nfrom siamface.training.data.synth import SynthConfig, synthesize, worker_start_method\n"
              "print(worker_start_method())\n"
              f"synthesize(sys.argv[1], SynthConfig(**{cfg!r}), workers=2, progress=False)\n")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == ("fork" if sys.platform == "linux" else "spawn")
    other = Dataset.open(tmp_path / "b")
    for split in ("train", "test"):
        a, b = small_dataset.split(split), other.split(split)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.images(np.arange(len(a))), b.images(np.arange(len(b))))


def test_a_threaded_caller_spawns_workers_with_the_same_output(small_dataset, tmp_path):
    """A process running another thread must not fork (a child could inherit a held lock): its
    workers are spawned and load everything themselves, with the same images and labels."""
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait)
    busy.start()
    try:
        assert worker_start_method() == "spawn"
        two = {"train_identities": 2, "val_identities": 0, "test_identities": 0, "shard_size": 3}
        other = synthesize(tmp_path / "s", SynthConfig(**{**SMALL, **two}), workers=2, progress=False).split("train")
    finally:
        stop.set()
        busy.join()
    first = np.arange(6)  # the first two people
    np.testing.assert_array_equal(small_dataset.split("train").labels[first], other.labels)
    np.testing.assert_array_equal(small_dataset.split("train").images(first), other.images(first))


def test_held_out_splits_can_have_more_photos_per_person(small_dataset, tmp_path):
    more = synthesize(tmp_path / "more", SynthConfig(**{**SMALL, "held_out_images_per_identity": 5}),
                      workers=1, progress=False)
    train, test = more.split("train"), more.split("test")
    assert len(train) == 4 * 3 and len(test) == 2 * 5 and len(more.split("val")) == 2 * 5
    assert np.bincount(test.identity - test.identity.min()).tolist() == [5, 5]
    np.testing.assert_array_equal(train.labels, small_dataset.split("train").labels)
    # Per-photo seeds: a person's first 3 photos are the ones the 3-per-person dataset has.
    first3 = np.concatenate([np.flatnonzero(test.identity == i)[:3] for i in np.unique(test.identity)])
    np.testing.assert_array_equal(test.labels[first3], small_dataset.split("test").labels)


def test_resume_renders_only_missing_shards(small_dataset, tmp_path):
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(small_dataset.root, out)
    (out / "manifest.json").unlink()
    img, lab = shard_paths(out / "train", 1)
    lab.unlink()                                   # an interrupted shard: images without labels
    (out / "train" / ".shard-00001.labels.npy.x.tmp").write_bytes(b"half")
    ds = synthesize(out, SynthConfig(**SMALL), workers=1, progress=False)
    assert ds.manifest["shards_rendered_this_run"] == 1
    assert not list((out / "train").glob(".*.tmp"))
    np.testing.assert_array_equal(ds.split("train").labels, small_dataset.split("train").labels)
    np.save(lab, np.load(lab)[:, :-len(TRAIT_NAMES)])   # a shard written before the traits column: redone
    assert synthesize(out, SynthConfig(**SMALL), workers=1, progress=False).manifest["shards_rendered_this_run"] == 1
    np.testing.assert_array_equal(np.load(lab), np.load(shard_paths(small_dataset.root / "train", 1)[1]))
    with pytest.raises(SiamfaceError, match="different config.*--overwrite"):
        synthesize(out, SynthConfig(**{**SMALL, "seed": 1}), workers=1, progress=False)
    recorded = json.loads((out / "synth_config.json").read_text())
    del recorded["synth"]["clean_photos"]          # a dataset written before the setting existed
    (out / "synth_config.json").write_text(json.dumps(recorded))
    assert synthesize(out, SynthConfig(**SMALL), workers=1, progress=False).manifest["shards_rendered_this_run"] == 0
    assert json.loads((out / "synth_config.json").read_text()) == recorded   # compared, not rewritten
    with pytest.raises(SiamfaceError, match=r"different config \(synth differ"):
        synthesize(out, SynthConfig(**{**SMALL, "clean_photos": 0.5}), workers=1, progress=False)


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_identities: 7\npose:\n  yaw_max_deg: 45\n")
    cfg = load_config(SynthConfig, path, ["pose.roll_max_deg=5", "seed=3"])
    assert (cfg.train_identities, cfg.pose.yaw_max_deg, cfg.pose.roll_max_deg, cfg.seed) == (7, 45, 5, 3)
    with pytest.raises(SiamfaceError, match=r"unknown key\(s\) \['yaw'\]"):
        load_config(SynthConfig, None, ["pose.yaw=3"])


def test_open_rejects_missing_dataset(tmp_path):
    with pytest.raises(SiamfaceError, match="no dataset at .*siamface data synth"):
        Dataset.open(tmp_path)


def test_seeds_give_other_photos(small_dataset, tmp_path):
    other = synthesize(tmp_path / "seed1", SynthConfig(**{**SMALL, "seed": 1, "val_identities": 0, "test_identities": 0,
                                                          "train_identities": 1}), workers=1, progress=False)
    a, b = small_dataset.split("train"), other.split("train")
    assert not np.allclose(a.params[:3], b.params)
    assert np.abs(a.images(np.arange(3)).astype(int) - b.images(np.arange(3))).mean() > 10


@pytest.fixture(scope="module")
def synth(face_model):
    from siamface.training.data.synth import FaceSynthesizer

    return FaceSynthesizer(face_model, SynthConfig(n_id=40, images_per_identity=4))


def test_shapes_and_the_pinhole_projection(synth):
    """add_modes is the model's shape; the camera is a pinhole at ``distance`` from the pivot."""
    from siamface.training.data.sampling import PoseConfig, sample_camera
    from siamface.training.data.synth import add_modes

    mesh = synth.render.mesh
    rng = np.random.default_rng(1)
    id_coeffs = rng.standard_normal(40).astype(np.float32)
    exp = np.zeros(len(mesh.exp_names), np.float32)
    exp[[2, 7, 30]] = [0.6, 0.3, 0.9]                          # sparse, as synthetic faces are
    shape = add_modes(add_modes(mesh.mean, mesh.id_basis, id_coeffs), mesh.exp_basis, exp)
    assert shape.shape == (mesh.n_vertices, 3) and shape.dtype == np.float32
    np.testing.assert_allclose(shape, mesh.shape(id_coeffs, exp), atol=1e-4)
    people = rng.standard_normal((5, 40)).astype(np.float32)   # a shard's people in one pass: each as alone, exactly
    together = add_modes(mesh.mean, mesh.id_basis, people)
    assert together.shape == (5, mesh.n_vertices, 3)
    for row, alone in zip(together, people):
        np.testing.assert_array_equal(row, add_modes(mesh.mean, mesh.id_basis, alone))
    camera, _ = sample_camera(shape[synth.model.landmarks68], (0.4, -0.2, 0.1), 120, PoseConfig(), rng)
    image, cam = camera.project(shape)
    expected_cam = (shape - camera.pivot) @ camera.rotation.T + [0, 0, camera.distance]
    np.testing.assert_allclose(cam, expected_cam, atol=1e-3)
    np.testing.assert_allclose(image[:, :2], camera.focal * cam[:, :2] / cam[:, 2:] + camera.centre, atol=1e-3)
    np.testing.assert_allclose(image[:, 2], camera.scale * (cam[:, 2] - camera.distance), atol=1e-3)


def test_scenes_never_move_labels(face_model, synth):
    """The same identities with every accessory, and with none: other pixels, the same labels."""
    from siamface.training.data.scene import SceneConfig
    from siamface.training.data.synth import FaceSynthesizer

    every = dict(glasses_p=1.0, hat_p=1.0, mask_p=1.0, hand_p=1.0, microphone_p=1.0, edge_face_p=1.0)
    loaded = FaceSynthesizer(face_model, SynthConfig(n_id=40, images_per_identity=4, scene=SceneConfig(**every)),
                             synth.render)
    bare = FaceSynthesizer(face_model, SynthConfig(n_id=40, images_per_identity=4,
                                                   scene=SceneConfig(**{k: 0.0 for k in every})), synth.render)
    for identity in (0, 1):
        images_a, labels_a = loaded.render_identity("train", identity)
        images_b, labels_b = bare.render_identity("train", identity)
        np.testing.assert_array_equal(labels_a, labels_b)
        assert np.abs(images_a.astype(int) - images_b).mean() > 5


def test_clean_photos_keep_labels_and_steady_the_face(face_model, synth):
    """Clean photos change pixels only (labels equal), show no accessories or camera effects, and a
    person's face colour varies less between them than between photos of the full variation."""
    from siamface.training.data.appearance import LightingConfig
    from siamface.training.data.scene import SceneConfig
    from siamface.training.data.synth import FaceSynthesizer, clean_photo_settings

    light, scene = clean_photo_settings(LightingConfig(), SceneConfig())
    assert scene.glasses_p == scene.mask_p == scene.hand_p == scene.degradation.jpeg_p == 0.0
    assert light.backlight_p == 0.0 and light.exposure == (0.9, 1.0)
    full = FaceSynthesizer(face_model, SynthConfig(n_id=40, images_per_identity=6), synth.render)
    clean = FaceSynthesizer(face_model, SynthConfig(n_id=40, images_per_identity=6, clean_photos=1.0), synth.render)
    spreads = {"full": [], "clean": []}
    for identity in range(3):
        for name, synthesizer in (("full", full), ("clean", clean)):
            images, labels = synthesizer.render_identity("train", identity)
            inner = images[:, 50:80, 45:75].reshape(len(images), -1, 3).mean(axis=1)  # cheeks, nose and mouth
            spreads[name].append(inner.std(axis=0).mean())
            if name == "full":
                full_labels = labels
            else:
                np.testing.assert_array_equal(labels, full_labels)
    assert np.mean(spreads["clean"]) < 0.7 * np.mean(spreads["full"]), spreads


def _gbuffer(synth, exp: np.ndarray, angles: tuple[float, float, float], distance: float = 100.0, zoom: float = 1.0):
    """Triangle id per pixel (-1: none) of the mean face, each drawn triangle's region name and the
    z-buffer; ``zoom`` < 1 shows more around the face."""
    from siamface.training.data.rasterizer import rasterize_ids
    from siamface.training.data.sampling import PoseConfig, sample_camera
    from siamface.training.data.synth import add_modes

    mesh, size = synth.render.mesh, synth.cfg.image_size
    shape = add_modes(mesh.mean, mesh.exp_basis, exp)
    pose = PoseConfig(distance_cm=(distance, distance), scale_jitter=0.0, shift_jitter=0.0)
    camera, _ = sample_camera(shape[synth.model.landmarks68], angles, size, pose, np.random.default_rng(0))
    centre = np.asarray(camera.centre) * zoom + size / 2 * (1 - zoom)
    camera = replace(camera, focal=camera.focal * zoom, centre=tuple(centre))
    verts, cam = camera.project(shape)
    visible, boxes = synth.visible_surface(verts)
    zbuf = np.full((size, size), np.inf, np.float32)
    tri_id = np.full((size, size), -1, np.int32)
    bary = np.empty((size, size, 2), np.float32)
    rasterize_ids(verts, 1 / cam[:, 2], synth.triangles, visible, boxes, zbuf, tri_id, bary)
    region = np.asarray(mesh.region_names)[mesh.vertex_region[synth.triangles[:, 0]]]
    return tri_id, region, zbuf


def test_open_mouth_shows_teeth_and_tongue(synth):
    exp = np.zeros(len(synth.model.exp_names), np.float32)
    closed, region, _ = _gbuffer(synth, exp, (0.0, 0.2, 0.0))
    exp[synth.model.exp_names.index("jawOpen")] = 1.0
    open_, _, _ = _gbuffer(synth, exp, (0.0, 0.2, 0.0))

    def pixels(tri_id, *names):
        return int(np.isin(region[tri_id[tri_id >= 0]], names).sum())

    inside = pixels(open_, "teeth", "gums_tongue", "mouth_socket")
    assert pixels(open_, "teeth") > 10 and pixels(open_, "gums_tongue") > 50 and inside > 150
    assert pixels(closed, "teeth", "gums_tongue", "mouth_socket") < 0.05 * inside  # a closed mouth: a seam at most


def test_opening_windows_keep_every_pixel(synth):
    """visible_surface's restriction of the mouth's and eyes' interiors to their openings draws
    exactly what the full mesh does: open and closed mouths and eyes, profiles and close-ups."""
    from siamface.training.data.rasterizer import cull_triangles, rasterize_ids
    from siamface.training.data.sampling import PoseConfig, sample_camera
    from siamface.training.data.synth import add_modes

    mesh, size, names = synth.render.mesh, synth.cfg.image_size, synth.model.exp_names
    rng = np.random.default_rng(3)
    for k in range(8):
        exp = np.zeros(len(names), np.float32)
        exp[names.index("jawOpen")] = (0.0, 0.3, 0.7, 1.0)[k % 4]
        for name in (("eyeWide_L", "eyeWide_R"), ("eyeBlink_L", "eyeBlink_R"))[k % 2]:
            exp[names.index(name)] = rng.uniform(0.3, 1.0)
        shape = add_modes(mesh.shape(rng.standard_normal(40)), mesh.exp_basis, exp)
        yaw = (rng.uniform(-1.4, 1.4), 1.57, -1.57)[k % 3]
        camera, _ = sample_camera(shape[synth.model.landmarks68], (yaw, rng.uniform(-0.6, 0.6), 0.0), size,
                                  PoseConfig(distance_cm=(25.0, 60.0) if k < 4 else (25.0, 600.0)), rng)
        verts, cam = camera.project(shape)
        ids = []
        for visible, boxes in (synth.visible_surface(verts), cull_triangles(verts, synth.triangles, size, size)):
            tri_id = np.full((size, size), -1, np.int32)
            zbuf, bary = np.full((size, size), np.inf, np.float32), np.empty((size, size, 2), np.float32)
            rasterize_ids(verts, 1 / cam[:, 2], synth.triangles, visible, boxes, zbuf, tri_id, bary)
            ids.append(tri_id)
        np.testing.assert_array_equal(ids[0], ids[1])
    assert (synth.opening >= 0).mean() > 0.4  # mouths and eyes: much of the mesh


def test_back_of_the_head_is_drawn_in_profile(synth):
    exp = np.zeros(len(synth.model.exp_names), np.float32)
    for yaw in (np.pi / 2, -np.pi / 2):
        tri_id, region, zbuf = _gbuffer(synth, exp, (yaw, 0.0, 0.0), zoom=0.45)  # the whole head in the image
        back = np.isin(region[tri_id], ["head_neck"]) & (tri_id >= 0)
        assert back.sum() > 300                        # the back of the head and the neck
        # No cut where the version-1 mesh ended: every row through the head is one run of pixels.
        rows = np.flatnonzero(np.isfinite(zbuf).any(axis=1))
        for row in np.isfinite(zbuf)[rows[0] + 2: rows[-1] - 10]:
            assert len(np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))) == 2


def test_perspective_labels_fit_the_render(synth):
    """The label camera is the least-squares weak-perspective fit with the true rotation: nearly
    exact far away, a few pixels at selfie distance, and no other scale or shift fits better."""
    from siamface.training.data.sampling import PoseConfig, sample_camera

    model = synth.model
    shape = model.shape(np.random.default_rng(0).standard_normal(40))
    lm, face = model.landmarks68, model.face_vertices
    errors = {}
    for distance in (25.0, 60.0, 10_000.0):
        pose = PoseConfig(distance_cm=(distance, distance))
        camera, box = sample_camera(shape[lm], (0.5, 0.2, -0.1), 120, pose, np.random.default_rng(1))
        verts, cam = camera.project(shape)
        np.testing.assert_allclose(cam[:, 2].mean(), distance, rtol=0.1)
        label = camera.weak_perspective(shape, verts, face)
        fit = shape @ label[:, :3].T + label[:, 3]
        errors[distance] = np.linalg.norm(fit[lm, :2] - verts[lm, :2], axis=1).mean()
        sq = ((fit[face, :2] - verts[face, :2]) ** 2).sum()
        for ds, dx in ((1.001, 0.0), (0.999, 0.0), (1.0, 0.05)):
            moved = (label[:2, :3] * ds) @ shape[face].T + label[:2, 3:] + [[dx], [0]]
            assert ((moved.T - verts[face, :2]) ** 2).sum() > sq
        np.testing.assert_allclose(box[:2], verts[lm, :2].min(axis=0), atol=1e-3)
    assert errors[10_000.0] < 0.02 and errors[60.0] < 2.0 and errors[25.0] < 5.0
    assert errors[25.0] > errors[60.0] > errors[10_000.0]


def test_occlusion_shadows_and_ambient(synth):
    occ, mesh = synth.occlusion, synth.render.mesh
    nose = synth.model.landmarks68[30]
    dirs = occ.directions
    front, back = np.argmax(dirs[:, 2]), np.argmin(dirs[:, 2])          # towards +z (the face) and behind
    assert occ.visibility[nose, front, 0] == 1 and occ.visibility[nose, back, 0] == 0
    ambient = occ.ambient[0]
    cavity = ambient[synth.render.region_vertices["mouth_socket"]].mean()
    assert cavity < 0.2 < 0.8 < ambient[nose]
    teeth = synth.render.region_vertices["teeth"]
    assert occ.ambient[1, teeth].mean() > occ.ambient[0, teeth].mean()   # an open mouth lets light in
    # A grin bares the upper teeth with the jaw shut: the raised upper lip's state lets light onto them.
    x, y, z = mesh.mean[teeth].T                                          # the upper incisors' crowns, in front
    crowns = teeth[(np.abs(x) < 1.5) & (y > mesh.mean[synth.model.landmarks68[62], 1] - 0.3) & (y < -2.6) & (z > 10)]
    assert len(crowns) > 50 and occ.ambient[2, crowns].mean() > 2 * occ.ambient[0, crowns].mean()


def test_mouth_states_blend_by_how_the_mouth_opens(synth):
    occ, names = synth.occlusion, synth.render.mesh.exp_names
    e = np.zeros(len(names), np.float32)
    np.testing.assert_allclose(occ.mouth_states(e), [1, 0, 0, 0])
    e[names.index("jawOpen")] = 1.0
    np.testing.assert_allclose(occ.mouth_states(e), [0, 1, 0, 0])
    e[:] = 0
    e[names.index("mouthUpperUp_L")] = e[names.index("mouthUpperUp_R")] = 0.6
    e[names.index("mouthLowerDown_L")] = 0.2                         # one side: half the state
    np.testing.assert_allclose(occ.mouth_states(e), [0.3, 0, 0.6, 0.1], atol=1e-6)
    e[:] = 1.0                                                      # every opener full: shares that sum to 1
    np.testing.assert_allclose(occ.mouth_states(e), [0, 1 / 3, 1 / 3, 1 / 3], atol=1e-6)


def _laugh(exp_names) -> np.ndarray:
    """Expression weights of a laugh: the jaw dropped, both smiles, both lips opened."""
    names = list(exp_names)
    laugh = np.zeros(len(names), np.float32)
    for name, w in (("jawOpen", 0.3), ("mouthSmile_L", 0.9), ("mouthSmile_R", 0.9), ("mouthUpperUp_L", 0.5),
                    ("mouthUpperUp_R", 0.5), ("mouthLowerDown_L", 0.5), ("mouthLowerDown_R", 0.5)):
        laugh[names.index(name)] = w
    return laugh


def _even_light():
    """An even environment of irradiance 1 and no lights: a vertex's diffuse light is its ambient."""
    from siamface.training.data.appearance import Lighting

    sh = np.zeros((9, 3), np.float32)
    sh[0] = 1 / 0.282095                                                # the constant band: irradiance 1
    return Lighting(sh, np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), 0.0, 10.0, 0.0, 0.5, 0.0)


def _facing_the_lens(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space normals and positions (cm) of n vertices facing the lens from 60 cm."""
    return np.tile(np.float32([0, 0, -1]), (n, 1)), np.tile(np.float32([0, 0, 60]), (n, 1))


def test_light_inside_a_laugh_follows_exact_shadow_maps(synth):
    """A laugh opens the mouth several ways at once (jaw, both lips, the smile): blending one-way
    states leaves its exposed inside half as lit as exact shadow maps of that mouth; the inside's
    model of the lips' opening comes within a fifth of them, at under 0.6 of the blend's rms error,
    and the shading uses it."""
    from siamface.training.data.appearance import N_DIRECTIONS, _ambient_occlusion, fibonacci_sphere, shade

    occ, mesh = synth.occlusion, synth.render.mesh
    laugh = _laugh(mesh.exp_names)
    inside = np.flatnonzero(occ.inside >= 0)
    exact = _ambient_occlusion(mesh.mean + mesh.expression_offsets(laugh), np.ascontiguousarray(mesh.triangles, np.uint32),
                               fibonacci_sphere(N_DIRECTIONS))[1][inside]
    model = occ.inside_ambient(laugh)
    blend = (occ.mouth_states(laugh)[:, None] * occ.ambient[:, inside]).sum(0)
    lit = exact > 0.3                                                   # the bared teeth and the tongue's tip
    assert lit.sum() > 200
    assert blend[lit].mean() < 0.6 * exact[lit].mean() < 0.6 * 1.25 * model[lit].mean()
    assert np.sqrt(((model - exact) ** 2).mean()) < 0.6 * np.sqrt(((blend - exact) ** 2).mean())
    # Shading: under an even environment with no lights, a vertex's diffuse light is its ambient
    # occlusion: the model's inside the mouth, the blended states' elsewhere.
    n, nose = mesh.n_vertices, synth.model.landmarks68[30]
    even = _even_light()
    diffuse = shade(*_facing_the_lens(n), np.ones(n, bool), even, occ, np.eye(3), laugh, np.ones(n, bool))[0]
    np.testing.assert_allclose(diffuse[inside, 1], model, rtol=1e-5, atol=1e-6)
    assert diffuse[nose, 1] == pytest.approx(occ.mouth_states(laugh) @ occ.ambient[:, nose], rel=1e-5)


def test_ambient_light_bounces_inside_the_mouth(synth):
    """Interreflection (generator 9): with an identity's albedo, the ambient light of the laugh's
    inside is the visibility raised by what the walls reflect: the bright teeth gain most, an open
    surface (visibility 1) nothing, and nothing gets darker."""
    from siamface.training.data.appearance import bounced, shade

    occ, mesh = synth.occlusion, synth.render.mesh
    assert bounced(np.float32(1.0), np.float32(0.9)) == pytest.approx(1.0)
    assert bounced(np.float32(0.3), np.float32(0.0)) == pytest.approx(0.3)
    assert bounced(np.float32(0.3), np.float32(0.8)) == pytest.approx(0.616, abs=2e-3)   # the published fit's value
    laugh = _laugh(mesh.exp_names)
    look = T.paint_identity(synth.texture, np.random.default_rng(4))
    albedo = synth.vertex_albedo(look)
    teeth, tongue = mesh.region_mask("teeth"), mesh.region_mask("gums_tongue")
    assert albedo[teeth].mean() > 0.5 > albedo[tongue, 1].mean()        # teeth white, the tongue pink
    n = mesh.n_vertices
    even = _even_light()
    args = (*_facing_the_lens(n), np.ones(n, bool), even, occ, np.eye(3), laugh, np.ones(n, bool))
    seen, lit = shade(*args)[0], shade(*args, albedo)[0]
    assert (lit >= seen - 1e-6).all()
    gain = lit / np.maximum(seen, 1e-3)
    deep = seen[:, 1] < 0.5
    teeth_gain, tongue_gain = np.median(gain[teeth & deep], 0), np.median(gain[tongue & deep], 0)
    assert teeth_gain.min() > 1.6 and (teeth_gain > tongue_gain).all()  # white teeth about double their light
    assert tongue_gain[0] > tongue_gain[1] > 1.2                          # pink walls redden what they light
    assert np.abs(lit[seen[:, 1] > 0.999] - seen[seen[:, 1] > 0.999]).max() < 1e-3


def test_shading_a_vertex_subset_matches_shading_all(synth):
    from siamface.training.data.appearance import LightingConfig, sample_lighting, shade

    rng = np.random.default_rng(2)
    n = synth.render.mesh.n_vertices
    normals = rng.normal(size=(n, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    positions = (rng.normal(size=(n, 3)) * 5 + [0, 0, 60]).astype(np.float32)
    light = sample_lighting(np.random.default_rng(5), LightingConfig(lights_p=(0.0, 0.0, 1.0), metering=0.0))
    every = np.ones(n, bool)
    used = rng.uniform(size=n) < 0.5
    shut = np.zeros(len(synth.render.mesh.exp_names), np.float32)  # no expression: the closed mouth's occlusion
    full = shade(normals, positions, every, light, synth.occlusion, np.eye(3), shut, every)
    part = shade(normals, positions, used, light, synth.occlusion, np.eye(3), shut, every)
    for a, b in zip(full, part):
        np.testing.assert_array_equal(b[used], a[used])
        assert not b[~used].any()
    # Auto-exposure: the metered vertices' mean diffuse light goes to the target.
    metered = shade(normals, positions, every, replace(light, metering=1.0), synth.occlusion, np.eye(3), shut, used)[0]
    np.testing.assert_allclose(metered[used].mean(), light.exposure, rtol=1e-3)


def test_light_kinds_come_from_where_they_say():
    from siamface.training.data.appearance import LightingConfig, sample_lighting

    rng = np.random.default_rng(0)
    side = [sample_lighting(rng, LightingConfig(lights_p=(0, 1, 0), hard_side_p=1.0)) for _ in range(50)]
    back = [sample_lighting(rng, LightingConfig(lights_p=(0, 1, 0), hard_side_p=0.0, backlight_p=1.0))
            for _ in range(50)]
    key = [sample_lighting(rng, LightingConfig(lights_p=(0, 1, 0), hard_side_p=0.0, backlight_p=0.0))
           for _ in range(50)]
    assert all(abs(light.directions[0, 2]) < 0.35 * np.hypot(*light.directions[0, :2]) + 0.01 for light in side)
    assert all(light.directions[0, 2] > 0 for light in back)           # behind the head (z away from the lens)
    assert all(light.directions[0, 2] < 0 for light in key)
    assert len({tuple(light.colours[0].round(3)) for light in key}) == 50
    none = sample_lighting(rng, LightingConfig(lights_p=(1, 0, 0)))
    assert none.directions.shape == (0, 3) and none.sh.shape == (9, 3) and none.sh[0].min() > 0


def test_poses_and_expressions_cover_what_photos_show(face_model):
    from siamface.training.data.sampling import PoseConfig, sample_angles, sample_expression

    rng = np.random.default_rng(0)
    angles = np.degrees([sample_angles(rng, PoseConfig()) for _ in range(3000)])
    assert np.all(np.abs(angles).max(axis=0) <= [90, 40, 30])
    assert np.abs(angles).max(axis=0).min() > 28 and np.percentile(np.abs(angles[:, 0]), 90) > 75
    names = face_model.exp_names
    exps = np.stack([sample_expression(rng, names) for _ in range(2000)])
    jaw, smile = exps[:, names.index("jawOpen")], exps[:, [names.index("mouthSmile_L"), names.index("mouthSmile_R")]]
    blink = exps[:, [names.index("eyeBlink_L"), names.index("eyeBlink_R")]]
    assert (jaw > 0.5).mean() > 0.1 and (smile.max(axis=1) > 0.3).mean() > 0.25
    assert (blink.max(axis=1) > 0.5).mean() > 0.05
    one_sided = (smile.max(axis=1) > 0.3) & (smile.min(axis=1) < 0.3 * smile.max(axis=1))
    assert one_sided.mean() > 0.03                                     # winks and half smiles
    # grins: smile, raised upper lip, lowered lower lip and squinting cheeks together (teeth show)
    part = {n: exps[:, [names.index(f"{n}_L"), names.index(f"{n}_R")]].min(axis=1)
            for n in ("mouthSmile", "mouthUpperUp", "mouthLowerDown", "cheekSquint")}
    grin = (part["mouthSmile"] > 0.35) & (part["mouthUpperUp"] > 0.1) & (part["cheekSquint"] > 0.1)
    assert 0.18 < grin.mean() < 0.3 and (part["mouthLowerDown"][grin] > 0.05).mean() > 0.9
    assert np.all((exps >= 0) & (exps <= 1))


def test_bench_finds_the_render_mesh_beside_a_given_face_model(tmp_path, monkeypatch):
    """`data bench --face-model DIR/ict_face_model.npz` renders from DIR's version-2 file, not
    from beside the default model (here pointed at a folder without one)."""
    from siamface.training.data.bench import benchmark
    from siamface.training.data.render_model import V2_NAME, render_model_path
    from siamface.training.face_model import ENV_VAR, resolve_face_model_path

    source = resolve_face_model_path(None)
    for name in (source.name, V2_NAME):
        (tmp_path / name).symlink_to(source.with_name(name))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere" / source.name))
    lines = benchmark(images=10, workers=1, face_model=str(tmp_path / source.name))
    assert render_model_path(tmp_path / source.name) == tmp_path / V2_NAME
    assert "images/s" in lines[0] and "10 images to disk" in lines[1]
    assert lines[2].startswith("start-up of a worker") and float(lines[2].split(": ")[1].rstrip(" s")) > 0
