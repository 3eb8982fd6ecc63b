"""Synthetic face datasets: exact identities, parameters and landmarks rendered from the face model.

Work is split into shards of whole identities; each shard is rendered by a worker process and
written atomically, so an interrupted run resumes where it stopped. Randomness is drawn from
generators seeded by (seed, split, identity, image): the output does not depend on the number
of workers or the shard size.
"""
from __future__ import annotations

import json
import multiprocessing
import multiprocessing.pool
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Iterator

import numba
import numpy as np
from tqdm import tqdm

from siamface.edge_runtime import morphable_model
from siamface.edge_runtime.atomic import atomic_write_json
from siamface.edge_runtime.morphable_model import MorphableModel, file_sha256
from siamface.edge_runtime.params import ParamLayout, Whitening
from siamface.edge_runtime.provenance import package_versions, utc_now
from siamface.training.config_io import Range, config_to_dict
from siamface.training.data import appearance, rasterizer, sampling, texture
from siamface.training.data.appearance import LightingConfig, Occlusion, sample_lighting, shade
from siamface.training.data.dataset import (MANIFEST, SPLITS, Dataset, column_slices, label_columns, manifest_header,
                                   record_width, shard_is_complete, start_output, write_shard)
from siamface.training.data.rasterizer import (cull_triangles, drawn_vertices, opening_windows, rasterize_surface,
                                              shade_textured, soften_silhouette, vertex_normals_where)
from siamface.training.data.render_model import (V2_NAME, RenderModel, cached_arrays, cached_face_model,
                                                  load_render_model, render_model_path)
from siamface.training.data.sampling import (PoseConfig, sample_angles, sample_camera, sample_expression,
                                    sample_identity)
from siamface.training.data.scene import (SceneConfig, SceneContext, degrade, draw_behind, draw_front,
                                 sample_background, sample_hair_style)
from siamface.training.data.texture import Look, TextureConfig, TextureLayout, paint_identity, vary_photo
from siamface.training.data.traits import TRAIT_NAMES, identity_traits
from siamface.training import face_model as training_face_model
from siamface.training.face_model import resolve_face_model_path

GENERATOR = "siamface.synth"
# 2: gamma applied to 8-bit levels after noise (faster degrade); 3: same scenes, faster synthesis
# (culling pass, plane-form barycentrics, octaves summed before one resize, OpenCV noise and
# colour transforms, batched clutter draws): other pixels and random streams for a seed;
# 4: photo-like faces: the whole version-2 head (back of the head, neck, mouth interior, eyelashes)
# textured per identity and lit by a coloured SH environment and directional lights with soft
# self-shadows, seen by perspective cameras from selfie distance to near-orthographic (the label
# camera is the weak-perspective fit), with hair, clothes, accessories and camera effects around
# it, and more open mouths, smiles, blinks and one-sided expressions; 5: faster (light and normals only at
# the corners of triangles that won a pixel): auto-exposure meters the skin seen in the image rather than
# all front-facing skin in the crop (images about 3 levels darker on average, labels unchanged); the eyes'
# sockets and eyeballs drawn only within their lids' box like the mouth's interior within its lips', both
# boxes a pixel wider (the mouth's exact box missed a proud tooth in 1 of 240 photos); 6: the mouth's
# self-shadowing follows the lips as well as the jaw (appearance.MOUTH_OPENERS), so a grin's bared teeth are lit;
# 7: the light inside the mouth follows the inner lips' opening (appearance.Occlusion.inside_light), so a
# laugh's teeth are lit as exact shadow maps light them, not dimmed by blending one-way openings; 8: teeth,
# gums and tongue keep their albedo however deep they sit (the shadow maps alone darken what the lips hide);
# 9: the ambient light bounces off the identity's albedo (appearance.bounced), so white teeth and pink
# walls light a mouth's inside as interreflection does
GENERATOR_VERSION = 9
CONFIG_FILE = "synth_config.json"
# Openings' windows reach this far beyond the box of the rim: an eyeball's front or the teeth can
# stand a pixel proud of the lids or lips seen from the side (none did beyond it in 320 photos).
OPENING_MARGIN_PX = 1


@dataclass
class SynthConfig:
    """Everything that determines a synthetic dataset (recorded in its manifest)."""

    train_identities: Annotated[int, Range(ge=0)] = 200
    val_identities: Annotated[int, Range(ge=0)] = 20
    test_identities: Annotated[int, Range(ge=0)] = 20
    images_per_identity: Annotated[int, Range(ge=1)] = 10
    held_out_images_per_identity: Annotated[int, Range(ge=0)] = 0  # val and test (0: images_per_identity): many photos per person
                                           # for verification and the pose spread, whatever training uses
    image_size: Annotated[int, Range(ge=16)] = 120
    n_id: Annotated[int, Range(ge=1)] = 100
    id_truncation: Annotated[float, Range(gt=0)] = 3.0
    seed: int = 0
    shard_size: Annotated[int, Range(ge=1)] = 1000
    pose: PoseConfig = field(default_factory=PoseConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    # Share of photos drawn clean (``clean_photo_settings``): same person, pose, expression, camera,
    # hair and clothes, but no accessories, occluders or camera effects, in even white light. Photo
    # collections hold many such portraits; without them identity cues are rarely all visible at
    # once and identity learns slowly (docs/generator.md). 0 draws nothing: v5's pixels exactly.
    clean_photos: Annotated[float, Range(ge=0, le=1)] = 0.0

    def identities(self, split: str) -> int:
        return {"train": self.train_identities, "val": self.val_identities, "test": self.test_identities}[split]

    def images(self, split: str) -> int:
        """Photos per identity in ``split``."""
        if split == "train" or not self.held_out_images_per_identity:
            return self.images_per_identity
        return self.held_out_images_per_identity

    def first_identity(self, split: str) -> int:
        """Global identity ids: train first, then val, then test (disjoint by construction)."""
        return sum(self.identities(s) for s in SPLITS[: SPLITS.index(split)])


# Settings added after datasets were written without them, with the value those datasets were
# made with: a dataset started before ``clean_photos`` existed resumes under clean_photos=0.
IMPLIED_SETTINGS = {"clean_photos": 0.0}


def _with_implied_settings(recorded: dict) -> dict:
    """An older dataset's recorded config with the implied values of settings added since."""
    synth = recorded.get("synth", {})
    return {**recorded, "synth": {**IMPLIED_SETTINGS, **synth}}


def clean_photo_settings(lighting: LightingConfig, scene: SceneConfig) -> tuple[LightingConfig, SceneConfig]:
    """The light and scene of a clean photo: every accessory, occluder and camera effect off, and
    white, even light that exposes the face well (a soft key light, no hard side or back light)."""
    light = replace(lighting, hard_side_p=0.0, backlight_p=0.0, coloured_lobes=0, ambient=(0.6, 0.75),
                    key=(0.5, 0.6), exposure=(0.9, 1.0))
    effects = replace(scene.degradation, **{f.name: 0.0 for f in fields(scene.degradation) if f.name.endswith("_p")})
    return light, replace(scene, glasses_p=0.0, hat_p=0.0, hand_p=0.0, mask_p=0.0, microphone_p=0.0, edge_face_p=0.0,
                          hair_volume_jitter=0.0, degradation=effects)


def synthetic_columns(layout: ParamLayout) -> dict[str, slice]:
    """The label columns a synthetic dataset writes: the common record, then the traits."""
    return column_slices(label_columns(layout, len(TRAIT_NAMES)))


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    first: int   # identity index within the split
    stop: int


_MODE_BLOCK = 2048  # floats of a sum kept in L1 while every mode adds to it


@numba.njit(cache=True, fastmath=True)
def _add_modes(base, basis, weights):
    start_from, modes = base.reshape(-1), basis.reshape(basis.shape[0], -1)
    n = start_from.shape[0]
    shapes = np.empty((weights.shape[0], n), np.float32)
    for lo in range(0, n, _MODE_BLOCK):
        hi = min(lo + _MODE_BLOCK, n)
        for row in range(weights.shape[0]):  # the block of every mode is read from memory once for all rows
            block = shapes[row, lo:hi]
            block[:] = start_from[lo:hi]
            for j in np.flatnonzero(weights[row]):
                w, mode = weights[row, j], modes[j, lo:hi]
                for i in range(block.shape[0]):
                    block[i] += w * mode[i]
    return shapes


def add_modes(base: np.ndarray, basis: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Vertices (..., V, 3) float32 of ``base + weights @ basis[:K]`` for weights (K,) or (B, K)
    (modes (K', V, 3)), reading only the modes of non-zero weights: a photo's expression (a
    synthetic face has a few), or a shard's identities in one pass over the 31 MB of identity
    modes (about 4 ms less per person than a pass each). Each row's sum is built in blocks that
    stay in L1 while its modes stream past, in mode order: the same additions in the same order
    however many rows come together (a BLAS product's rounding depends on them), so a dataset
    does not depend on how it is cut into shards."""
    rows = np.atleast_2d(np.asarray(weights, np.float32))
    shapes = _add_modes(np.ascontiguousarray(base, np.float32), np.ascontiguousarray(basis, np.float32), rows)
    return shapes.reshape(np.shape(weights)[:-1] + np.shape(base))


class FaceSynthesizer:
    """Renders the images and labels of a run of identities (a shard) at a time.

    Images are rendered from the version-2 mesh (``render``, loaded beside the face model when not
    given); labels come from ``model``, whose vertices are that mesh's first ones.
    """

    def __init__(self, model: MorphableModel, cfg: SynthConfig, render: RenderModel | None = None):
        self.model, self.cfg = model, cfg
        self.render = render or load_render_model(model)
        self.layout: ParamLayout = model.layout(cfg.n_id)
        self.columns = synthetic_columns(self.layout)
        mesh = self.render.mesh
        drawn = self.render.drawn_triangles
        self.triangles = np.ascontiguousarray(mesh.triangles[drawn], np.uint32)  # as cull_triangles wants them
        # Derived from the asset once, then mapped from the cache (about a second less per start-up).
        self.texture = TextureLayout.from_arrays(cached_arrays(
            mesh.sha256, "texture_layout", lambda: TextureLayout.from_npz(self.render.path).to_arrays(), (texture, training_face_model)))
        self.uv_triangles = np.ascontiguousarray(self.texture.uv_triangles[drawn], np.uint32)
        self.vertex_texels = self.texture.vertex_texels(mesh.n_vertices)  # per-vertex albedo: the ambient's bounce
        self.occlusion = Occlusion(**cached_arrays(mesh.sha256, "occlusion", lambda: vars(Occlusion.of_mesh(mesh)),
                                                   (appearance, rasterizer, sampling, morphable_model)))
        self.clean = clean_photo_settings(cfg.lighting, cfg.scene)
        self.skin = mesh.region_mask("face", "head_neck")  # what auto-exposure meters
        # Openings: the mouth's interior behind the lips, each eye (socket, sclera, iris) behind its lids.
        self.opening = np.full(len(self.triangles), -1, np.int8)     # per drawn triangle: which, or -1
        rims = []                                                    # face vertices round each opening
        for k, (inside, socket) in enumerate([(("mouth_socket", "gums_tongue", "teeth"), "mouth_socket")] + [
                ((f"eye_socket_{side}", f"sclera_{side}", f"iris_{side}"), f"eye_socket_{side}")
                for side in ("left", "right")]):
            interior = mesh.region_mask(*inside)
            self.opening[interior[self.triangles].any(axis=1)] = k
            rim = np.unique(mesh.triangles[mesh.region_mask(socket)[mesh.triangles].any(axis=1)])
            rims.append(rim[~interior[rim]])
        self.rims, self.rim_ends = np.concatenate(rims), np.cumsum([len(r) for r in rims])

    def render_identities(self, split: str, first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, S, S, 3) uint8 and label records (n, D) of identities ``first``..``stop - 1`` of a
        split, in order; their neutral shapes come from one pass over the identity modes."""
        draws = [self._identity_draw(split, identity) for identity in range(first, stop)]
        neutrals = add_modes(self.render.mesh.mean, self.render.mesh.id_basis, np.stack([c for _, c in draws]))
        parts = [self._render_identity(split, identity, rng, coeffs, neutral)
                 for identity, (rng, coeffs), neutral in zip(range(first, stop), draws, neutrals)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def render_identity(self, split: str, identity: int) -> tuple[np.ndarray, np.ndarray]:
        """Images and label records of one identity of a split (``render_identities`` of one)."""
        return self.render_identities(split, identity, identity + 1)

    def _identity_draw(self, split: str, identity: int) -> tuple[np.random.Generator, np.ndarray]:
        """The identity's generator, and its shape coefficients, the generator's first draw."""
        id_rng = np.random.default_rng([self.cfg.seed, SPLITS.index(split), identity, 0])
        return id_rng, sample_identity(id_rng, self.cfg.n_id, self.cfg.id_truncation)

    def _render_identity(self, split: str, identity: int, id_rng: np.random.Generator, id_coeffs: np.ndarray,
                         neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One identity's photos from its generator after the shape draw and its ``neutral`` vertices.

        Per identity (one generator): shape, texture and hair style. Per photo (one generator
        each): expression, pose, camera, then light, scene and camera effects, so that everything a
        label depends on is drawn before anything that only changes pixels.
        """
        cfg, model, mesh, n = self.cfg, self.model, self.render.mesh, self.cfg.images(split)
        split_code = SPLITS.index(split)
        look = paint_identity(self.texture, id_rng, cfg.texture)
        albedo = self.vertex_albedo(look)
        hair = sample_hair_style(id_rng, look.hair_colour, cfg.scene)
        rngs = [np.random.default_rng([cfg.seed, split_code, identity, 1 + k]) for k in range(n)]
        exps = np.stack([sample_expression(r, model.exp_names) for r in rngs])
        # One photo at a time: a batched product's rounding depends on how many rows it has (on some
        # CPUs), and a photo's labels must not depend on how many photos its person has.
        landmarks = np.stack([model.landmarks3d(id_coeffs, e) for e in exps])
        size, face = cfg.image_size, model.face_vertices
        images = np.empty((n, size, size, 3), np.uint8)
        cameras = np.empty((n, 3, 4), np.float32)
        lms = np.empty((n, 68, 3), np.float32)
        angles, boxes = np.empty((n, 3)), np.empty((n, 4))
        for k, rng in enumerate(rngs):
            angles[k] = sample_angles(rng, cfg.pose)
            camera, boxes[k] = sample_camera(landmarks[k], tuple(angles[k]), size, cfg.pose, rng)
            shape = add_modes(neutral, mesh.exp_basis, exps[k])
            verts, cam = camera.project(shape)
            cameras[k] = camera.weak_perspective(shape, verts, face)
            lms[k, :, :2] = verts[model.landmarks68, :2]
            lms[k, :, 2] = shape[model.landmarks68] @ cameras[k, 2, :3]  # depth: the label camera's
            ctx = SceneContext(size, verts, verts[model.landmarks68], tuple(angles[k]), None,
                               self.render.region_vertices, hair, camera=camera)
            images[k] = self._photo(ctx, cam, look, albedo, exps[k], rng)
        labels = np.empty((n, record_width(self.columns)), np.float32)
        cols = self.columns
        labels[:, cols["identity"]] = cfg.first_identity(split) + identity
        labels[:, cols["params"]] = self.layout.join(cameras, np.broadcast_to(id_coeffs, (n, cfg.n_id)), exps)
        labels[:, cols["landmarks2d"]] = lms[:, :, :2].reshape(n, -1)
        labels[:, cols["landmarks3d"]] = lms.reshape(n, -1)
        labels[:, cols["pose_deg"]] = np.degrees(angles)
        labels[:, cols["face_box"]] = boxes
        labels[:, cols["traits"]] = identity_traits(look, hair)
        return images, labels

    def vertex_albedo(self, look: Look) -> np.ndarray:
        """(V, 3) float32: the identity's colour at each render vertex, read before any photo varies
        its atlas; the ambient light bounces off it."""
        return np.ascontiguousarray(look.atlas.reshape(-1, 4)[self.vertex_texels, :3])

    def _photo(self, ctx: SceneContext, cam: np.ndarray, look: Look, albedo: np.ndarray, expression: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        """One image: the lit, textured head in its scene, degraded (uint8 RGB). ``ctx`` holds the
        image-space vertices and the camera; ``cam`` the camera-space ones; ``albedo`` (V, 3) the
        identity's colour at each vertex, off which the ambient light bounces."""
        size, verts, lighting, scene = self.cfg.image_size, ctx.verts, self.cfg.lighting, self.cfg.scene
        if self.cfg.clean_photos and rng.uniform() < self.cfg.clean_photos:
            lighting, scene = self.clean
        light = sample_lighting(rng, lighting)
        image = sample_background(rng, size, scene)  # drawn over in place
        draw_behind(image, ctx, scene, rng)
        visible, boxes = self.visible_surface(verts)
        zbuf, tri_id, bary = rasterize_surface(verts, cam[:, 2], self.triangles, visible, boxes, size, size)
        drawn = drawn_vertices(tri_id, self.triangles, len(verts))  # light is needed at these only
        normals = vertex_normals_where(cam, self.triangles, drawn)
        diffuse, specular = shade(normals, cam, drawn, light, self.occlusion, ctx.camera.rotation, expression,
                                  drawn & self.skin, albedo)
        atlas = vary_photo(look, rng)
        shade_textured(tri_id, bary, self.triangles, self.texture.uv, self.uv_triangles, atlas, diffuse, specular,
                       image)
        soften_silhouette(image, zbuf)
        key = light.directions[np.argmax(light.colours.sum(axis=1))] if len(light.colours) else None
        draw_front(image, replace(ctx, zbuf=zbuf, light=key), scene, rng)
        return degrade(image, scene.degradation, rng)

    def visible_surface(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``cull_triangles`` of the drawn mesh (image-space ``verts``), where what lies inside the
        mouth (socket, gums, tongue, teeth: a quarter of the front-facing triangles) and the eyes
        (sockets, eyeballs: a sixth) is kept only within the box of the projected rim of its
        opening (the inner lips, the lids), OPENING_MARGIN_PX wider: it shows only through it, and
        a closed mouth leaves a sliver. Same pixels, less work."""
        size = self.cfg.image_size
        windows = opening_windows(verts, self.rims, self.rim_ends, OPENING_MARGIN_PX)
        return cull_triangles(verts, self.triangles, size, size, self.opening, windows)


_WORKER: FaceSynthesizer | None = None


def _init_worker(model_path: str, cfg: SynthConfig) -> None:
    global _WORKER
    model = cached_face_model(model_path)
    _WORKER = FaceSynthesizer(model, cfg, load_render_model(model, model_path))


def _run_task(args: tuple[ShardTask, str]) -> tuple[ShardTask, int]:
    task, out = args
    images, labels = _WORKER.render_identities(task.split, task.first, task.stop)
    write_shard(Path(out) / task.split, task.index, images, labels)
    return task, len(images)


def worker_start_method() -> str:
    """'fork' on Linux when this process runs no other thread and has not loaded TensorFlow: the
    workers then inherit the parent's imports and synthesizer (meshes, texture layout, shadow maps)
    instead of each spending about 1.3 s of start-up on them. 'spawn' anywhere else (a forked
    child of a threaded process can inherit a lock held for ever)."""
    if (sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1 and "tensorflow" not in sys.modules):
        return "fork"
    return "spawn"


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Workers already use every core; BLAS threads inside them would only contend."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _worker_pool(workers: int, model_path: str, cfg: SynthConfig,
                 model: MorphableModel) -> Iterator[multiprocessing.pool.Pool | None]:
    """A pool of ``workers`` ready workers, or None where this process renders alone. Made before
    the progress bar, whose monitor thread would rule out forking."""
    global _WORKER
    method = worker_start_method() if workers > 1 else None
    try:
        if method != "spawn":  # this process renders, or its forked children copy what it loaded
            _WORKER = FaceSynthesizer(model, cfg, load_render_model(model, model_path))
        if method is None:
            yield None
        else:
            init, args = (_init_worker, (model_path, cfg)) if method == "spawn" else (None, ())
            with _single_threaded_children(), multiprocessing.get_context(method).Pool(workers, init, args) as pool:
                yield pool
    finally:
        _WORKER = None  # the meshes need not outlive the run


def plan_shards(cfg: SynthConfig) -> list[ShardTask]:
    tasks = []
    for split in SPLITS:
        n, per_shard = cfg.identities(split), max(1, cfg.shard_size // cfg.images(split))
        tasks += [ShardTask(split, i, start, min(start + per_shard, n))
                  for i, start in enumerate(range(0, n, per_shard))]
    return tasks


def synthesize(out: str | os.PathLike, cfg: SynthConfig, face_model: str | None = None,
               workers: int = 0, overwrite: bool = False, progress: bool = True) -> Dataset:
    """Render (or finish rendering) a dataset into ``out`` and write its manifest."""
    out = Path(out)
    model_path = resolve_face_model_path(face_model)
    model = cached_face_model(model_path)
    model.layout(cfg.n_id)  # validates n_id against the model
    render_sha256 = file_sha256(render_model_path(model_path))  # images come from it: part of what resumes
    cfg_dict = {"synth": config_to_dict(cfg), "face_model_sha256": model.sha256, "render_model_sha256": render_sha256,
                "generator_version": GENERATOR_VERSION}
    if overwrite and out.exists():
        shutil.rmtree(out)
    start_output(out, CONFIG_FILE, cfg_dict,
                 "pass --overwrite or delete the folder to replace it, or choose another --out", _with_implied_settings)
    tasks = plan_shards(cfg)
    counts = {t: (t.stop - t.first) * cfg.images(t.split) for t in tasks}
    width = record_width(synthetic_columns(model.layout(cfg.n_id)))
    todo = [t for t in tasks if not shard_is_complete(out / t.split, t.index, counts[t], width)]
    workers = min(workers or os.cpu_count() or 1, len(todo))
    started = time.perf_counter()
    with _worker_pool(workers, str(model_path), cfg, model) as pool, \
            tqdm(total=sum(counts.values()), initial=sum(counts.values()) - sum(counts[t] for t in todo),
                 unit="img", desc=f"synth {out.name}", disable=not progress, smoothing=0.1) as bar:
        jobs = [(t, str(out)) for t in todo]
        for _, n in (pool.imap_unordered(_run_task, jobs) if pool else map(_run_task, jobs)):
            bar.update(n)
    elapsed = time.perf_counter() - started
    return _write_manifest(out, cfg, model, render_sha256, tasks, counts, elapsed, len(todo))


def _write_manifest(out: Path, cfg: SynthConfig, model: MorphableModel, render_sha256: str, tasks: list[ShardTask],
                    counts: dict, elapsed: float, rendered_shards: int) -> Dataset:
    layout = model.layout(cfg.n_id)
    splits = {}
    for split in SPLITS:
        mine = [t for t in tasks if t.split == split]
        first = cfg.first_identity(split)
        splits[split] = {"shards": len(mine), "images": sum(counts[t] for t in mine),
                         "identities": cfg.identities(split),
                         "identity_range": [first, first + cfg.identities(split)]}
    manifest = manifest_header(layout, model.describe(), cfg.image_size, len(TRAIT_NAMES)) | {
        "trait_names": list(TRAIT_NAMES),
        "generator": {"name": GENERATOR, "version": GENERATOR_VERSION},
        "created": utc_now(),
        "seed": cfg.seed,
        "config": config_to_dict(cfg),
        "render_model": {"name": V2_NAME, "sha256": render_sha256},
        "splits": splits,
        "whitening": {},
        "synthesis_seconds": round(elapsed, 2),
        "shards_rendered_this_run": rendered_shards,
        "versions": package_versions("numpy", "numba", "opencv-python-headless"),
    }
    dataset = Dataset(out, manifest)
    if splits["train"]["images"]:
        manifest["whitening"] = Whitening.fit(dataset.split("train").params).to_dict()
    atomic_write_json(out / MANIFEST, manifest)
    return dataset
